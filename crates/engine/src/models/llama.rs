//! Llama-family decoder: Llama 2/3.x, SmolLM2, TinyLlama, Mistral (sliding window) and Qwen2
//! (biases on Q/K/V). Pre-norm blocks: RMSNorm → attention → residual, RMSNorm → SwiGLU → residual.

use crate::config::ModelConfig;
use crate::error::Result;
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
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let l = Some(i);
            let norm = |wt| RmsNorm::load(w, wt, l, h, cfg.rms_norm_eps, false, device);
            blocks.push(Block {
                attn_norm: norm(Weight::AttnNorm)?,
                q: Linear::load(
                    w,
                    Weight::AttnQ,
                    bias(Weight::AttnQBias),
                    l,
                    &[q_out, h],
                    device,
                )?,
                k: Linear::load(
                    w,
                    Weight::AttnK,
                    bias(Weight::AttnKBias),
                    l,
                    &[kv_out, h],
                    device,
                )?,
                v: Linear::load(
                    w,
                    Weight::AttnV,
                    bias(Weight::AttnVBias),
                    l,
                    &[kv_out, h],
                    device,
                )?,
                o: Linear::load(w, Weight::AttnOutput, None, l, &[h, q_out], device)?,
                ffn_norm: norm(Weight::FfnNorm)?,
                gate: Linear::load(
                    w,
                    Weight::FfnGate,
                    None,
                    l,
                    &[cfg.intermediate_size, h],
                    device,
                )?,
                up: Linear::load(
                    w,
                    Weight::FfnUp,
                    None,
                    l,
                    &[cfg.intermediate_size, h],
                    device,
                )?,
                down: Linear::load(
                    w,
                    Weight::FfnDown,
                    None,
                    l,
                    &[h, cfg.intermediate_size],
                    device,
                )?,
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
        let freq_factors = if w.contains(Weight::RopeFreqs, None) {
            let t = w.tensor(Weight::RopeFreqs, None, device)?;
            Some(t.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        let rope = Rope::new(
            cfg,
            cfg.rope_theta,
            1.0,
            freq_factors.as_deref(),
            max_positions,
            device,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            output,
            rope,
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
        for b in self.blocks.iter_mut() {
            let r = x.clone();
            let hn = b.attn_norm.forward(&x)?;
            let [q, k, v]: [Tensor; 3] = Linear::forward_many(&[&b.q, &b.k, &b.v], &hn)?
                .try_into()
                .map_err(|_| candle_core::Error::Msg("qkv".into()))?;
            let q = q.reshape((1, seq, nh, d))?.transpose(1, 2)?;
            let k = k.reshape((1, seq, nkv, d))?.transpose(1, 2)?;
            let v = v.reshape((1, seq, nkv, d))?.transpose(1, 2)?;
            let q = self.rope.apply(&q, pos)?;
            let k = self.rope.apply(&k, pos)?;
            let (k, v) = b.cache.append(&k, &v)?;
            let y = attention(&q, &k, &v, scale, None, mask.as_ref())?;
            let y = y.transpose(1, 2)?.reshape((1, seq, nh * d))?;
            x = (b.o.forward(&y)? + r)?;
            let r = x.clone();
            let hn = b.ffn_norm.forward(&x)?;
            let y = b
                .down
                .forward(&Linear::gated(Gate::Silu, &b.gate, &b.up, &hn)?)?;
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
