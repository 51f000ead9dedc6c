//! Llama-family decoder: Llama 2/3.x, SmolLM2, TinyLlama, Mistral (sliding window), Qwen2
//! (biases on Q/K/V), Qwen3 (RMSNorm on each query and key head), OLMo 2 (RMSNorm on the
//! whole query and key projections; norms on the sublayers' outputs instead of their inputs)
//! and Phi-3 (Q/K/V and gate/up stored fused, split at load; LongRoPE).
//! Blocks: RMSNorm → attention → residual, RMSNorm → SwiGLU → residual; OLMo 2:
//! attention → RMSNorm → residual, SwiGLU → RMSNorm → residual.

use crate::config::{check_rope_factors, ModelConfig, QkNorm};
use crate::error::{Error, Result};
use crate::layers::{attention, attention_mask, Embedding, Gate, KvCache, Linear, RmsNorm, Rope};
use crate::weights::{Weight, Weights};
use candle_core::{Device, Tensor};

#[derive(Debug, Clone)]
struct Block {
    /// Before attention, or after it where the family normalizes outputs (`norms_after`).
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    /// Query and key RMSNorms (`ModelConfig::arch.qk_norm()`).
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    o: Linear,
    /// Before the MLP, or after it (`norms_after`).
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    cache: KvCache,
}

#[derive(Debug, Clone)]
pub struct Llama {
    cfg: ModelConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Linear,
    rope: Rope,
    norms_after: bool,
    device: Device,
}

impl Llama {
    pub(crate) fn load(
        cfg: &ModelConfig,
        w: &Weights,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.n_heads * d, cfg.n_kv_heads * d);
        let embed = Embedding::load(w, cfg.vocab_size, h, device)?;
        let bias = |b: Weight| cfg.qkv_bias.then_some(b);
        let after = cfg.arch.norms_after();
        let (attn_norm, ffn_norm) = if after {
            (Weight::PostAttnNorm, Weight::PostFfnNorm)
        } else {
            (Weight::AttnNorm, Weight::FfnNorm)
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let l = Some(i);
            let norm_of = |wt, dim| RmsNorm::load(w, wt, l, dim, cfg.rms_norm_eps, false, device);
            let norm = |wt| norm_of(wt, h);
            let qk_norm = match cfg.arch.qk_norm() {
                None => None,
                Some(QkNorm::PerHead) => Some((
                    norm_of(Weight::AttnQNorm, d)?,
                    norm_of(Weight::AttnKNorm, d)?,
                )),
                Some(QkNorm::Whole) => Some((
                    norm_of(Weight::AttnQNorm, q_out)?,
                    norm_of(Weight::AttnKNorm, kv_out)?,
                )),
            };
            let ff = cfg.intermediate_size;
            let [q, k, v] = if cfg.arch.fused_projections() {
                Linear::load_fused(w, Weight::AttnQkv, l, [q_out, kv_out, kv_out], h, device)?
            } else {
                let proj = |wt, b, out| Linear::load(w, wt, bias(b), l, &[out, h], device);
                [
                    proj(Weight::AttnQ, Weight::AttnQBias, q_out)?,
                    proj(Weight::AttnK, Weight::AttnKBias, kv_out)?,
                    proj(Weight::AttnV, Weight::AttnVBias, kv_out)?,
                ]
            };
            let [gate, up] = if cfg.arch.fused_projections() {
                Linear::load_fused(w, Weight::FfnGateUp, l, [ff, ff], h, device)?
            } else {
                [
                    Linear::load(w, Weight::FfnGate, None, l, &[ff, h], device)?,
                    Linear::load(w, Weight::FfnUp, None, l, &[ff, h], device)?,
                ]
            };
            blocks.push(Block {
                attn_norm: norm(attn_norm)?,
                q,
                k,
                v,
                qk_norm,
                o: Linear::load(w, Weight::AttnOutput, None, l, &[h, q_out], device)?,
                ffn_norm: norm(ffn_norm)?,
                gate,
                up,
                down: Linear::load(w, Weight::FfnDown, None, l, &[h, ff], device)?,
                cache: KvCache::default(),
            });
        }
        let norm = RmsNorm::load(
            w,
            Weight::OutputNorm,
            None,
            h,
            cfg.rms_norm_eps,
            false,
            device,
        )?;
        let output = if !cfg.tie_word_embeddings && w.contains(Weight::Output, None) {
            Linear::load(w, Weight::Output, None, None, &[cfg.vocab_size, h], device)?
        } else {
            embed.as_linear()
        };
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
            if f.len() != d / 2 {
                return Err(Error::malformed(format!(
                    "RoPE frequency factors: {} values, expected {}",
                    f.len(),
                    d / 2
                )));
            }
            check_rope_factors(f)?;
        }
        let rope = Rope::new(
            cfg,
            cfg.rope_theta,
            1.0,
            freq_factors.as_deref(),
            max_positions,
            device,
        )?
        .scaled(attn_factor)?;
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            output,
            rope,
            norms_after: after,
            device: device.clone(),
        })
    }

    /// Runs `ids` (one sequence) whose first token sits at position `pos`, extending the cache.
    /// Returns logits for every position when `all_logits`, else for the last one: (n, vocab).
    pub fn forward(&mut self, ids: &[u32], pos: usize, all_logits: bool) -> Result<Tensor> {
        let seq = ids.len();
        let mut x = self.embed.forward(ids, &self.device)?;
        let mask = attention_mask(seq, pos, self.cfg.sliding_window, &self.device)?;
        let (nh, nkv, d) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim);
        let scale = 1.0 / (d as f64).sqrt();
        let after = self.norms_after;
        for b in self.blocks.iter_mut() {
            let r = x.clone();
            let hn = if after { x } else { b.attn_norm.forward(&x)? };
            let [mut q, mut k, v]: [Tensor; 3] = Linear::forward_many(&[&b.q, &b.k, &b.v], &hn)?
                .try_into()
                .map_err(|_| candle_core::Error::Msg("qkv".into()))?;
            if let (Some((qn, kn)), Some(QkNorm::Whole)) = (&b.qk_norm, self.cfg.arch.qk_norm()) {
                (q, k) = (qn.forward(&q)?, kn.forward(&k)?);
            }
            let mut q = q.reshape((1, seq, nh, d))?;
            let mut k = k.reshape((1, seq, nkv, d))?;
            if let (Some((qn, kn)), Some(QkNorm::PerHead)) = (&b.qk_norm, self.cfg.arch.qk_norm()) {
                (q, k) = (qn.forward(&q)?, kn.forward(&k)?);
            }
            let q = self.rope.apply(&q.transpose(1, 2)?, pos)?;
            let k = self.rope.apply(&k.transpose(1, 2)?, pos)?;
            let v = v.reshape((1, seq, nkv, d))?.transpose(1, 2)?;
            let (k, v) = b.cache.append(&k, &v)?;
            let y = attention(&q, &k, &v, scale, None, mask.as_ref())?;
            let y = y.transpose(1, 2)?.reshape((1, seq, nh * d))?;
            let y = b.o.forward(&y)?;
            let y = if after { b.attn_norm.forward(&y)? } else { y };
            x = (y + r)?;
            let r = x.clone();
            let hn = if after { x } else { b.ffn_norm.forward(&x)? };
            let y = b
                .down
                .forward(&Linear::gated(Gate::Silu, &b.gate, &b.up, &hn)?)?;
            let y = if after { b.ffn_norm.forward(&y)? } else { y };
            x = (y + r)?;
        }
        let x = if all_logits {
            x
        } else {
            x.narrow(1, seq - 1, 1)?
        };
        let x = self.norm.forward(&x)?;
        Ok(self.output.forward(&x)?.squeeze(0)?)
    }

    /// Forgets cached positions from `len` on.
    pub fn truncate_cache(&mut self, len: usize) {
        for b in self.blocks.iter_mut() {
            b.cache.truncate(len);
        }
    }

    pub fn cache_len(&self) -> usize {
        self.blocks.first().map_or(0, |b| b.cache.len())
    }
}
