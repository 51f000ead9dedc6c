//! Gemma 2 and Gemma 3 (text): sandwich norms around attention and the MLP, GeGLU, local
//! sliding-window layers between global ones, embeddings scaled by sqrt(hidden_size).
//! Gemma 2: every other layer local, soft-capped attention scores. Gemma 3: five local layers
//! per global one with their own RoPE base, per-head Q/K RMSNorm.

use crate::config::{GemmaParams, ModelConfig, NormPlacement};
use crate::decoder::{
    forward_layers, logit_rows, DecoderLayer, LayerAttention, LayerSpec, LmHead, Loader,
};
use crate::error::{Error, Result};
use crate::layers::{Embedding, Gate, Rope};
use crate::sequence::SeqStep;
use crate::weights::Weights;
use candle_core::{Device, Tensor};

#[derive(Debug, Clone)]
pub struct Gemma {
    params: GemmaParams,
    embed: Embedding,
    /// sqrt(hidden_size), by which Gemma scales its embeddings.
    embed_scale: f64,
    layers: Vec<DecoderLayer>,
    head: LmHead,
    rope_local: Rope,
    rope_global: Rope,
    /// Per layer, the sliding window it attends within (None on the global layers).
    windows: Vec<Option<usize>>,
    device: Device,
}

impl Gemma {
    pub(crate) fn load(
        cfg: &ModelConfig,
        w: &Weights,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let params = cfg
            .gemma
            .clone()
            .ok_or_else(|| Error::malformed("Gemma parameters missing"))?;
        let ld = Loader {
            w,
            cfg,
            device,
            norm_offset: params.norm_weights_offset,
        };
        let spec = LayerSpec {
            norms: NormPlacement::Sandwich,
            gate: Gate::GeluTanh,
            attention_scale: 1.0 / params.query_pre_attn_scalar.sqrt(),
            attention_softcap: params.attn_logit_softcapping,
        };
        let (embed, layers) = ld.embedding_and_layers(&spec)?;
        let (local_base, global_base) = (params.rope_local_base_freq, cfg.rope_theta);
        let global_factor = params.rope_global_linear_factor;
        Ok(Self {
            head: LmHead::load(&ld, &embed)?,
            embed,
            embed_scale: (cfg.hidden_size as f64).sqrt(),
            layers,
            rope_local: Rope::new(cfg, local_base, 1.0, None, max_positions, device)?,
            rope_global: Rope::new(cfg, global_base, global_factor, None, max_positions, device)?,
            windows: (0..cfg.n_layers).map(|i| cfg.layer_window(i)).collect(),
            params,
            device: device.clone(),
        })
    }

    /// Runs each step's tokens after those its sequence has cached, extending the caches.
    /// Returns logits (n, vocab) for every row when `all_logits`, else for each step's last.
    pub fn forward(&self, steps: &mut [SeqStep], all_logits: bool) -> Result<Tensor> {
        let ids: Vec<u32> = steps.iter().flat_map(|s| s.ids).copied().collect();
        let x = (self.embed.forward(&ids, &self.device)? * self.embed_scale)?;
        let sliding_layers = &self.params.sliding_layers;
        let x = forward_layers(&self.layers, x, steps, |i| LayerAttention {
            rope: Some(if sliding_layers[i] {
                &self.rope_local
            } else {
                &self.rope_global
            }),
            window: self.windows[i],
        })?;
        let mut logits = self.head.forward(&x, logit_rows(steps, all_logits))?;
        if let Some(cap) = self.params.final_logit_softcapping {
            logits = crate::layers::softcap(logits, cap)?;
        }
        Ok(logits)
    }
}
