//! Gemma 2 and Gemma 3 (text): sandwich norms around attention and the MLP, GeGLU, local
//! sliding-window layers between global ones, embeddings scaled by sqrt(hidden_size).
//! Gemma 2: every other layer local, soft-capped attention scores. Gemma 3: five local layers
//! per global one with their own RoPE base, per-head Q/K RMSNorm.

use crate::config::{GemmaParams, ModelConfig, QkNorm};
use crate::error::{Error, Result};
use crate::layers::{attention, attention_mask, Embedding, Gate, KvCache, Linear, RmsNorm, Rope};
use crate::weights::{Weight, Weights};
use candle_core::{Device, Tensor};

#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Gemma 3's per-head query and key norms.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    post_ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    sliding: bool,
    cache: KvCache,
}

#[derive(Debug, Clone)]
pub struct Gemma {
    cfg: ModelConfig,
    params: GemmaParams,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Linear,
    rope_local: Rope,
    rope_global: Rope,
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
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.n_heads * d, cfg.n_kv_heads * d);
        let off = params.norm_weights_offset;
        let eps = cfg.rms_norm_eps;
        let embed = Embedding::load(w, cfg.vocab_size, h, device)?;
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let l = Some(i);
            let norm = |wt, dim| RmsNorm::load(w, wt, l, dim, eps, off, device);
            let ff = cfg.intermediate_size;
            blocks.push(Block {
                attn_norm: norm(Weight::AttnNorm, h)?,
                q: Linear::load(w, Weight::AttnQ, None, l, &[q_out, h], device)?,
                k: Linear::load(w, Weight::AttnK, None, l, &[kv_out, h], device)?,
                v: Linear::load(w, Weight::AttnV, None, l, &[kv_out, h], device)?,
                o: Linear::load(w, Weight::AttnOutput, None, l, &[h, q_out], device)?,
                qk_norm: match cfg.arch.qk_norm() {
                    Some(QkNorm::PerHead) => {
                        Some((norm(Weight::AttnQNorm, d)?, norm(Weight::AttnKNorm, d)?))
                    }
                    _ => None,
                },
                post_attn_norm: norm(Weight::PostAttnNorm, h)?,
                ffn_norm: norm(Weight::FfnNorm, h)?,
                post_ffn_norm: norm(Weight::PostFfnNorm, h)?,
                gate: Linear::load(w, Weight::FfnGate, None, l, &[ff, h], device)?,
                up: Linear::load(w, Weight::FfnUp, None, l, &[ff, h], device)?,
                down: Linear::load(w, Weight::FfnDown, None, l, &[h, ff], device)?,
                sliding: params.sliding_layers[i],
                cache: KvCache::default(),
            });
        }
        let norm = RmsNorm::load(w, Weight::OutputNorm, None, h, eps, off, device)?;
        let output = if !cfg.tie_word_embeddings && w.contains(Weight::Output, None) {
            Linear::load(w, Weight::Output, None, None, &[cfg.vocab_size, h], device)?
        } else {
            embed.as_linear()
        };
        let rope_local = Rope::new(
            cfg,
            params.rope_local_base_freq,
            1.0,
            None,
            max_positions,
            device,
        )?;
        let rope_global = Rope::new(
            cfg,
            cfg.rope_theta,
            params.rope_global_linear_factor,
            None,
            max_positions,
            device,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            params,
            embed,
            blocks,
            norm,
            output,
            rope_local,
            rope_global,
            device: device.clone(),
        })
    }

    pub fn forward(&mut self, ids: &[u32], pos: usize, all_logits: bool) -> Result<Tensor> {
        let seq = ids.len();
        let mut x =
            (self.embed.forward(ids, &self.device)? * (self.cfg.hidden_size as f64).sqrt())?;
        let global_mask = attention_mask(seq, pos, None, &self.device)?;
        let local_mask = attention_mask(seq, pos, self.cfg.sliding_window, &self.device)?;
        let (nh, nkv, d) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim);
        let scale = 1.0 / self.params.query_pre_attn_scalar.sqrt();
        for b in self.blocks.iter_mut() {
            let (rope, mask) = if b.sliding {
                (&self.rope_local, local_mask.as_ref())
            } else {
                (&self.rope_global, global_mask.as_ref())
            };
            let r = x.clone();
            let hn = b.attn_norm.forward(&x)?;
            let [q, k, v]: [Tensor; 3] = Linear::forward_many(&[&b.q, &b.k, &b.v], &hn)?
                .try_into()
                .map_err(|_| candle_core::Error::Msg("qkv".into()))?;
            let mut q = q.reshape((1, seq, nh, d))?;
            let mut k = k.reshape((1, seq, nkv, d))?;
            let v = v.reshape((1, seq, nkv, d))?.transpose(1, 2)?;
            if let Some((qn, kn)) = &b.qk_norm {
                (q, k) = (qn.forward(&q)?, kn.forward(&k)?);
            }
            let q = rope.apply(&q.transpose(1, 2)?, pos)?;
            let k = rope.apply(&k.transpose(1, 2)?, pos)?;
            let (k, v) = b.cache.append(&k, &v)?;
            let y = attention(&q, &k, &v, scale, self.params.attn_logit_softcapping, mask)?;
            let y = y.transpose(1, 2)?.reshape((1, seq, nh * d))?;
            let y = b.post_attn_norm.forward(&b.o.forward(&y)?)?;
            x = (y + r)?;
            let r = x.clone();
            let hn = b.ffn_norm.forward(&x)?;
            let y = b
                .down
                .forward(&Linear::gated(Gate::GeluTanh, &b.gate, &b.up, &hn)?)?;
            x = (b.post_ffn_norm.forward(&y)? + r)?;
        }
        let x = if all_logits {
            x
        } else {
            x.narrow(1, seq - 1, 1)?
        };
        let x = self.norm.forward(&x)?;
        let mut logits = self.output.forward(&x)?.squeeze(0)?;
        if let Some(cap) = self.params.final_logit_softcapping {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        Ok(logits)
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
