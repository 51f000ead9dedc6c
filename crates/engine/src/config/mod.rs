//! Hyperparameters, read from the model file (GGUF metadata or config.json), never assumed.
//!
//! - `architecture`: the families and what sets their layers apart;
//! - `rope`: RoPE scaling variants;
//! - `hf_json`: config.json (Hugging Face);
//! - `gguf`: GGUF metadata, with `metadata` for typed access to its keys.

mod architecture;
mod gguf;
mod hf_json;
mod metadata;
mod rope;

pub use architecture::{Architecture, NormPlacement, QkNorm, SUPPORTED};
pub(crate) use metadata::Metadata;
pub use rope::{check_rope_factors, Llama3RopeScaling, LongRope};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct GemmaParams {
    pub query_pre_attn_scalar: f64,
    /// RoPE base of the sliding-window (local) layers; global layers use `rope_theta`.
    pub rope_local_base_freq: f64,
    /// Linear RoPE scaling factor of the global layers (1.0 = none).
    pub rope_global_linear_factor: f64,
    /// One entry per layer: true when the layer attends within the sliding window.
    pub sliding_layers: Vec<bool>,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    /// GGUF conversions store RMSNorm weights as (1 + w); safetensors store w.
    pub norm_weights_offset: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub long_rope: Option<LongRope>,
    /// GGUF llama conversions permute Q/K so that RoPE rotates adjacent pairs;
    /// everything else rotates the two halves of each head.
    pub rope_interleaved: bool,
    /// The leading dimensions of each head that RoPE rotates: all of them, except in models
    /// with a partial rotary factor (Phi-4-mini: 96 of 128); the rest pass through.
    pub rotary_dim: usize,
    /// One entry per layer, false where the layer applies no RoPE at all (SmolLM3's NoPE
    /// layers); None when every layer rotates.
    pub rope_layers: Option<Vec<bool>>,
    /// The context length the model was trained for.
    pub context_length: usize,
    pub sliding_window: Option<usize>,
    pub qkv_bias: bool,
    pub tie_word_embeddings: bool,
    pub gemma: Option<GemmaParams>,
}

impl ModelConfig {
    /// The sliding window a layer attends within: the model's, on every layer or (Gemma) on
    /// those its pattern marks sliding; None where it sees the whole context.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        let sliding = self
            .gemma
            .as_ref()
            .is_none_or(|g| g.sliding_layers.get(layer).copied().unwrap_or(false));
        self.sliding_window.filter(|_| sliding)
    }

    /// Bytes one position's key and value take in one layer's cache, stored as `kind`.
    pub fn kv_bytes_per_position(&self, kind: crate::CacheType) -> usize {
        2 * kind.bytes(self.n_kv_heads * self.head_dim)
    }

    /// Checks that the numbers are consistent before any layer is built
    /// (a zero head count would otherwise divide by zero deep inside the model).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("hidden size", self.hidden_size),
            ("feed-forward size", self.intermediate_size),
            ("layer count", self.n_layers),
            ("head count", self.n_heads),
            ("key-value head count", self.n_kv_heads),
            ("head dimension", self.head_dim),
            ("vocabulary size", self.vocab_size),
            ("context length", self.context_length),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(Error::malformed(format!("{what} is 0")));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::malformed(format!(
                "head count {} is not a multiple of the key-value head count {}",
                self.n_heads, self.n_kv_heads
            )));
        }
        if !self.rotary_dim.is_multiple_of(2)
            || self.rotary_dim == 0
            || self.rotary_dim > self.head_dim
        {
            return Err(Error::malformed(format!(
                "RoPE on {} of {} head dimensions; it needs an even number, at most all of them",
                self.rotary_dim, self.head_dim
            )));
        }
        // Bounds that keep a hostile header from asking for absurd allocations.
        if self.n_layers > 1024 || self.n_heads > 1024 || self.hidden_size > 1 << 17 {
            return Err(Error::malformed(format!(
                "implausible size: {} layers, {} heads, hidden size {}",
                self.n_layers, self.n_heads, self.hidden_size
            )));
        }
        if let Some(g) = &self.gemma {
            if g.sliding_layers.len() != self.n_layers {
                return Err(Error::malformed(
                    "sliding-window layer pattern length differs from the layer count",
                ));
            }
        }
        if self
            .rope_layers
            .as_ref()
            .is_some_and(|l| l.len() != self.n_layers)
        {
            return Err(Error::malformed(
                "the list of layers without RoPE differs in length from the layer count",
            ));
        }
        if let Some(lr) = &self.long_rope {
            lr.validate()?;
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(Error::malformed(format!(
                "rope base {} is not positive",
                self.rope_theta
            )));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(Error::malformed(
                "RMSNorm epsilon is negative or not finite",
            ));
        }
        Ok(())
    }
}
