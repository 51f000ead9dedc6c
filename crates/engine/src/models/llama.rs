//! Llama-family decoder: Llama 2/3.x, SmolLM2, TinyLlama, Mistral (sliding window), Qwen2
//! (biases on Q/K/V), Qwen3 (RMSNorm on each query and key head), OLMo 2 (RMSNorm on the
//! whole query and key projections; norms on the sublayers' outputs instead of their inputs),
//! Phi-3 (Q/K/V and gate/up stored fused, split at load; LongRoPE; RoPE on part of each head
//! in Phi-4-mini) and SmolLM3 (no RoPE on every fourth layer).
//! Layers: RMSNorm → attention → residual, RMSNorm → SwiGLU → residual; OLMo 2:
//! attention → RMSNorm → residual, SwiGLU → RMSNorm → residual.

use crate::config::{check_rope_factors, ModelConfig};
use crate::decoder::{
    forward_layers, logit_rows, DecoderLayer, LayerAttention, LayerSpec, LmHead, Loader,
};
use crate::error::{Error, Result};
use crate::layers::{Embedding, Gate, Rope};
use crate::sequence::SeqStep;
use crate::weights::{Weight, Weights};
use candle_core::{Device, Tensor};

#[derive(Debug, Clone)]
pub struct Llama {
    embed: Embedding,
    layers: Vec<DecoderLayer>,
    head: LmHead,
    rope: Rope,
    /// Per layer, whether it applies RoPE (SmolLM3 skips it on some); None: all do.
    rope_layers: Option<Vec<bool>>,
    /// Per layer, the sliding window it attends within, if any.
    windows: Vec<Option<usize>>,
    device: Device,
}

impl Llama {
    pub(crate) fn load(
        cfg: &ModelConfig,
        w: &Weights,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let ld = Loader {
            w,
            cfg,
            device,
            norm_offset: false,
        };
        let spec = LayerSpec {
            norms: cfg.arch.norm_placement(),
            gate: Gate::Silu,
            attention_scale: 1.0 / (cfg.head_dim as f64).sqrt(),
            attention_softcap: None,
        };
        let (embed, layers) = ld.embedding_and_layers(&spec)?;
        Ok(Self {
            head: LmHead::load(&ld, &embed)?,
            embed,
            layers,
            rope: rope(cfg, w, max_positions, device)?,
            rope_layers: cfg.rope_layers.clone(),
            windows: (0..cfg.n_layers).map(|i| cfg.layer_window(i)).collect(),
            device: device.clone(),
        })
    }

    /// Runs each step's tokens after those its sequence has cached, extending the caches.
    /// Returns logits (n, vocab) for every row when `all_logits`, else for each step's last.
    pub fn forward(&self, steps: &mut [SeqStep], all_logits: bool) -> Result<Tensor> {
        let ids: Vec<u32> = steps.iter().flat_map(|s| s.ids).copied().collect();
        let x = self.embed.forward(&ids, &self.device)?;
        let x = forward_layers(&self.layers, x, steps, |i| {
            let rotates = self.rope_layers.as_ref().is_none_or(|r| r[i]);
            LayerAttention {
                rope: rotates.then_some(&self.rope),
                window: self.windows[i],
            }
        })?;
        self.head.forward(&x, logit_rows(steps, all_logits))
    }
}

/// The rotation, with the frequency factors the file brings: Phi-3's LongRoPE lists (short or
/// long by the context size) or llama.cpp's Llama 3 `rope_freqs` tensor.
fn rope(cfg: &ModelConfig, w: &Weights, max_positions: usize, device: &Device) -> Result<Rope> {
    let vector = |wt| -> Result<Vec<f32>> {
        Ok(w.tensor(wt, None, device)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    };
    let (freq_factors, attn_factor) = match &cfg.long_rope {
        Some(lr) => {
            let long = max_positions > lr.original_context;
            let factors = match (&lr.factors, long) {
                (Some((short, _)), false) => short.clone(),
                (Some((_, long)), true) => long.clone(),
                (None, false) => vector(Weight::RopeFactorsShort)?,
                (None, true) => vector(Weight::RopeFactorsLong)?,
            };
            (Some(factors), lr.attn_factor)
        }
        None if w.contains(Weight::RopeFreqs, None) => (Some(vector(Weight::RopeFreqs)?), 1.0),
        None => (None, 1.0),
    };
    if let Some(f) = &freq_factors {
        let half = cfg.rotary_dim / 2;
        if f.len() != half {
            return Err(Error::malformed(format!(
                "RoPE frequency factors: {} values, expected {half}",
                f.len(),
            )));
        }
        check_rope_factors(f)?;
    }
    let factors = freq_factors.as_deref();
    Rope::new(cfg, cfg.rope_theta, 1.0, factors, max_positions, device)?.scaled(attn_factor)
}
