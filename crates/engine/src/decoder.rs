//! The decoder layer every architecture is built from: an attention sublayer and a gated MLP,
//! each with its residual connection and RMSNorms. What differs between families is a few
//! values (`LayerSpec`, `NormPlacement`, `QkNorm`), not the code that runs.

use crate::config::{ModelConfig, NormPlacement, QkNorm};
use crate::error::Result;
use crate::kernels;
use crate::kv_cache::KvCache;
use crate::layers::{attention, attention_mask, Embedding, Gate, Linear, RmsNorm, Rope};
use crate::sequence::SeqStep;
use crate::weights::{Weight, Weights};
use candle_core::{Device, Tensor};

/// What every sublayer loads from: the file's weights, the model's shape, the device, and how
/// the file stores RMSNorm weights.
pub struct Loader<'a> {
    pub w: &'a Weights<'a>,
    pub cfg: &'a ModelConfig,
    pub device: &'a Device,
    /// Add 1 to stored norm weights (Gemma's safetensors store `w` for `x * (1 + w)`).
    pub norm_offset: bool,
}

impl Loader<'_> {
    /// The token embedding and every decoder layer, the layers differing from other families'
    /// as `spec` says.
    pub fn embedding_and_layers(&self, spec: &LayerSpec) -> Result<(Embedding, Vec<DecoderLayer>)> {
        let cfg = self.cfg;
        let embed = Embedding::load(self.w, cfg.vocab_size, cfg.hidden_size, self.device)?;
        let layers = (0..cfg.n_layers)
            .map(|i| DecoderLayer::load(self, i, spec))
            .collect::<Result<_>>()?;
        Ok((embed, layers))
    }

    fn linear(&self, weight: Weight, layer: usize, dims: [usize; 2]) -> Result<Linear> {
        Linear::load(self.w, weight, None, Some(layer), &dims, self.device)
    }

    pub fn norm(&self, weight: Weight, layer: Option<usize>, dim: usize) -> Result<RmsNorm> {
        let eps = self.cfg.rms_norm_eps;
        RmsNorm::load(
            self.w,
            weight,
            layer,
            dim,
            eps,
            self.norm_offset,
            self.device,
        )
    }
}

/// How one family's decoder layer differs from another's.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub norms: NormPlacement,
    pub gate: Gate,
    /// Multiplies the attention scores (1/√head_dim, or Gemma's query_pre_attn_scalar).
    pub attention_scale: f64,
    /// Gemma 2's `cap·tanh(scores/cap)` on the attention scores.
    pub attention_softcap: Option<f64>,
}

/// Where one sequence's rows of a step sit in one layer: how many of the step's rows are its,
/// its cache, the first row's position, the rotation (none in SmolLM3's NoPE layers) and how
/// its rows see the cache.
struct Part<'a> {
    rows: usize,
    cache: &'a mut KvCache,
    pos: usize,
    rope: Option<&'a Rope>,
    sees: Sees<'a>,
}

/// Which cached positions a row attends to, in the form its attention takes.
enum Sees<'a> {
    /// The CPU kernel's: up to its own position, within the window if there is one.
    Window(Option<usize>),
    /// candle's: an additive mask over the cache (None: nothing masked).
    Mask(Option<&'a Tensor>),
}

/// How one layer attends: with RoPE or not, and within a sliding window or over the whole
/// cache.
pub struct LayerAttention<'a> {
    pub rope: Option<&'a Rope>,
    pub window: Option<usize>,
}

/// Runs `x` (1, rows, hidden), the rows of every step one after the other, through `layers`.
/// Matrix products take all rows at once (one pass over each weight matrix for the whole
/// batch); attention runs per sequence over its own cache.
pub fn forward_layers<'r>(
    layers: &[DecoderLayer],
    mut x: Tensor,
    steps: &mut [SeqStep],
    plan: impl Fn(usize) -> LayerAttention<'r>,
) -> Result<Tensor> {
    let kernel = kernels::attention::takes(&x);
    // candle's attention takes masks: one per sequence for each window the layers use, made
    // when a layer first needs it.
    let mut masks: Vec<(Option<usize>, Vec<Option<Tensor>>)> = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let how = plan(i);
        if !kernel && !masks.iter().any(|(w, _)| *w == how.window) {
            let per_sequence = steps
                .iter()
                .map(|s| attention_mask(s.ids.len(), s.seq.len(), how.window, x.device()))
                .collect::<Result<Vec<_>>>()?;
            masks.push((how.window, per_sequence));
        }
        let layer_masks = masks.iter().find(|(w, _)| *w == how.window);
        let mut parts: Vec<Part> = steps
            .iter_mut()
            .enumerate()
            .map(|(j, s)| Part {
                rows: s.ids.len(),
                pos: s.seq.len(),
                cache: &mut s.seq.layers[i],
                rope: how.rope,
                sees: match layer_masks {
                    Some((_, m)) => Sees::Mask(m[j].as_ref()),
                    None => Sees::Window(how.window),
                },
            })
            .collect();
        x = layer.forward(&x, &mut parts)?;
    }
    Ok(x)
}

/// The rows whose logits a step wants: every row when `all_logits`, else each sequence's last.
/// None: every row.
pub fn logit_rows(steps: &[SeqStep], all_logits: bool) -> Option<Vec<u32>> {
    if all_logits {
        return None;
    }
    let mut end = 0;
    Some(
        steps
            .iter()
            .map(|s| {
                end += s.ids.len();
                (end - 1) as u32
            })
            .collect(),
    )
}

/// The query and key RMSNorms applied before RoPE.
#[derive(Debug, Clone)]
enum QkNorms {
    None,
    /// Over each head (Qwen3, Gemma 3).
    PerHead {
        q: RmsNorm,
        k: RmsNorm,
    },
    /// Over the whole projection, all heads at once (OLMo 2).
    Whole {
        q: RmsNorm,
        k: RmsNorm,
    },
}

impl QkNorms {
    fn load(ld: &Loader, layer: usize) -> Result<Self> {
        let cfg = ld.cfg;
        let norms = |q_dim, k_dim| -> Result<(RmsNorm, RmsNorm)> {
            Ok((
                ld.norm(Weight::AttnQNorm, Some(layer), q_dim)?,
                ld.norm(Weight::AttnKNorm, Some(layer), k_dim)?,
            ))
        };
        Ok(match cfg.arch.qk_norm() {
            None => QkNorms::None,
            Some(QkNorm::PerHead) => {
                let (q, k) = norms(cfg.head_dim, cfg.head_dim)?;
                QkNorms::PerHead { q, k }
            }
            Some(QkNorm::Whole) => {
                let (q, k) = norms(cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim)?;
                QkNorms::Whole { q, k }
            }
        })
    }

    /// Normalizes the (1, seq, heads·head_dim) projections and splits them into heads:
    /// (1, seq, heads, head_dim).
    fn split_heads(
        &self,
        q: Tensor,
        k: Tensor,
        (heads, kv_heads, d): (usize, usize, usize),
    ) -> Result<(Tensor, Tensor)> {
        let seq = q.dim(1)?;
        let (q, k) = match self {
            QkNorms::Whole { q: qn, k: kn } => (qn.forward(&q)?, kn.forward(&k)?),
            _ => (q, k),
        };
        let q = q.reshape((1, seq, heads, d))?;
        let k = k.reshape((1, seq, kv_heads, d))?;
        Ok(match self {
            QkNorms::PerHead { q: qn, k: kn } => (qn.forward(&q)?, kn.forward(&k)?),
            _ => (q, k),
        })
    }
}

/// Self-attention: Q/K/V projections, optional Q/K norms, RoPE, the KV cache, grouped-query
/// attention and the output projection.
#[derive(Debug, Clone)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    qk_norm: QkNorms,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    fn load(ld: &Loader, layer: usize, spec: &LayerSpec) -> Result<Self> {
        let cfg = ld.cfg;
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.n_heads * d, cfg.n_kv_heads * d);
        let l = Some(layer);
        let [q, k, v] = if cfg.arch.fused_projections() {
            Linear::load_fused(
                ld.w,
                Weight::AttnQkv,
                l,
                [q_out, kv_out, kv_out],
                h,
                ld.device,
            )?
        } else {
            let bias = |b: Weight| cfg.qkv_bias.then_some(b);
            let proj = |wt, b, out| Linear::load(ld.w, wt, bias(b), l, &[out, h], ld.device);
            [
                proj(Weight::AttnQ, Weight::AttnQBias, q_out)?,
                proj(Weight::AttnK, Weight::AttnKBias, kv_out)?,
                proj(Weight::AttnV, Weight::AttnVBias, kv_out)?,
            ]
        };
        Ok(Self {
            q,
            k,
            v,
            qk_norm: QkNorms::load(ld, layer)?,
            o: ld.linear(Weight::AttnOutput, layer, [h, q_out])?,
            heads: cfg.n_heads,
            kv_heads: cfg.n_kv_heads,
            head_dim: d,
            scale: spec.attention_scale,
            softcap: spec.attention_softcap,
        })
    }

    /// Attends from `x` (1, rows, hidden): the projections take every row at once, then each
    /// part's rows extend its own cache and attend over it (on the CPU kernel, all parts in one
    /// call).
    fn forward(&self, x: &Tensor, parts: &mut [Part]) -> Result<Tensor> {
        let [q, k, v]: [Tensor; 3] = Linear::forward_many(&[&self.q, &self.k, &self.v], x)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("qkv".into()))?;
        let y = match parts.first().map(|p| &p.sees) {
            Some(&Sees::Window(window)) => {
                let queries = self.cache_keys_on_kernel(q, k, v, parts)?;
                let y = self.attend_on_kernel(&queries, parts, window);
                Tensor::from_vec(y, (1, x.dim(1)?, self.heads * self.head_dim), x.device())?
            }
            _ => {
                let mut ys = Vec::with_capacity(parts.len());
                let mut start = 0;
                for p in parts.iter_mut() {
                    let rows = |t: &Tensor| t.narrow(1, start, p.rows);
                    let q = self.cache_keys(rows(&q)?, rows(&k)?, rows(&v)?, p)?;
                    ys.push(self.attend_on_candle(&q, p)?);
                    start += p.rows;
                }
                match ys.len() {
                    1 => ys.remove(0),
                    _ => Tensor::cat(&ys, 1)?,
                }
            }
        };
        self.o.forward(&y)
    }

    /// One sequence's (1, seq, ·) projections: queries and keys normalized and rotated, keys
    /// and values appended to its cache; returns the queries, (1, heads, seq, head_dim).
    fn cache_keys(&self, q: Tensor, k: Tensor, v: Tensor, at: &mut Part) -> Result<Tensor> {
        let seq = q.dim(1)?;
        let (nh, nkv, d) = (self.heads, self.kv_heads, self.head_dim);
        let (q, k) = self.qk_norm.split_heads(q, k, (nh, nkv, d))?;
        let (q, k) = (q.transpose(1, 2)?, k.transpose(1, 2)?);
        let (q, k) = match at.rope {
            Some(rope) => (rope.apply(&q, at.pos)?, rope.apply(&k, at.pos)?),
            None => (q, k),
        };
        let v = v.reshape((1, seq, nkv, d))?.transpose(1, 2)?;
        at.cache.append(&k, &v)?;
        Ok(q)
    }

    /// [`Self::cache_keys`] for every part at once on the CPU kernel's path: the projections'
    /// rows normalized together, then rotated and appended to each part's cache in one pass
    /// over host buffers (no tensor per part: in a step of eight decoding sequences those
    /// small operations took a seventh of the layers' time). Returns every part's queries one
    /// after the other, (rows, heads, head_dim).
    fn cache_keys_on_kernel(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        parts: &mut [Part],
    ) -> Result<Vec<f32>> {
        let (nh, nkv, d) = (self.heads, self.kv_heads, self.head_dim);
        let (q, k) = self.qk_norm.split_heads(q, k, (nh, nkv, d))?;
        let host = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (mut q, mut k, v) = (host(q)?, host(k)?, host(v)?);
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let mut start = 0;
        for p in parts.iter_mut() {
            let span = |heads: usize| start * heads * d..(start + p.rows) * heads * d;
            if let Some(rope) = p.rope {
                rope.rotate_rows(&mut q[span(nh)], p.pos, nh, d)?;
                rope.rotate_rows(&mut k[span(nkv)], p.pos, nkv, d)?;
            }
            // The cache takes (kv_heads, rows, head_dim).
            heads_first(&k[span(nkv)], nkv, d, &mut keys);
            heads_first(&v[span(nkv)], nkv, d, &mut values);
            p.cache.append_rows(&keys, &values, [nkv, p.rows, d])?;
            start += p.rows;
        }
        Ok(q)
    }

    /// Every part's queries (`queries`: their rows one after the other, as
    /// [`Self::cache_keys_on_kernel`] returns them) over its cache on the CPU kernel; (rows,
    /// heads·head_dim).
    fn attend_on_kernel(&self, queries: &[f32], parts: &[Part], window: Option<usize>) -> Vec<f32> {
        let row = self.heads * self.head_dim;
        let mut start = 0;
        let parts = parts
            .iter()
            .map(|p| {
                let q = &queries[start * row..(start + p.rows) * row];
                start += p.rows;
                kernels::attention::Part {
                    q,
                    cache: p.cache.kernel_view().expect("appended for the kernel"),
                    pos: p.pos,
                }
            })
            .collect::<Vec<_>>();
        let shape = kernels::attention::Heads {
            heads: self.heads,
            kv_heads: self.kv_heads,
            dim: self.head_dim,
        };
        let scoring = kernels::attention::Scoring {
            scale: self.scale as f32,
            softcap: self.softcap.map(|c| c as f32),
            window,
        };
        kernels::attention::attend_parts(&parts, shape, scoring)
    }

    /// One part's queries over its cache through candle's matrix products, with its mask;
    /// (1, seq, heads·head_dim).
    fn attend_on_candle(&self, q: &Tensor, at: &Part) -> Result<Tensor> {
        let Sees::Mask(mask) = at.sees else {
            unreachable!("a layer's parts all attend one way")
        };
        let (_, nh, seq, d) = q.dims4()?;
        let (k, v) = at.cache.history()?;
        let y = attention(q, &k, &v, self.scale, self.softcap, mask)?;
        Ok(y.transpose(1, 2)?.reshape((1, seq, nh * d))?)
    }
}

/// `x`, rows of `heads` heads of `d` values, written into `out` head by head: (heads, rows, d).
fn heads_first(x: &[f32], heads: usize, d: usize, out: &mut Vec<f32>) {
    out.clear();
    for h in 0..heads {
        for row in x.chunks_exact(heads * d) {
            out.extend_from_slice(&row[h * d..][..d]);
        }
    }
}

/// Gated feed-forward: `down(act(gate(x)) · up(x))` (SwiGLU, GeGLU), on the fused kernel
/// where the weights allow it.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Gate,
}

impl GatedMlp {
    fn load(ld: &Loader, layer: usize, act: Gate) -> Result<Self> {
        let (h, ff) = (ld.cfg.hidden_size, ld.cfg.intermediate_size);
        let [gate, up] = if ld.cfg.arch.fused_projections() {
            Linear::load_fused(ld.w, Weight::FfnGateUp, Some(layer), [ff, ff], h, ld.device)?
        } else {
            [
                ld.linear(Weight::FfnGate, layer, [ff, h])?,
                ld.linear(Weight::FfnUp, layer, [ff, h])?,
            ]
        };
        Ok(Self {
            gate,
            up,
            down: ld.linear(Weight::FfnDown, layer, [h, ff])?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = Linear::gated(self.act, &self.gate, &self.up, x)?;
        self.down.forward(&y)
    }
}

/// The RMSNorms around one sublayer and its residual connection.
#[derive(Debug, Clone)]
struct Residual {
    /// On the sublayer's input.
    before: Option<RmsNorm>,
    /// On its output, before the add.
    after: Option<RmsNorm>,
}

impl Residual {
    fn load(
        ld: &Loader,
        layer: usize,
        placement: NormPlacement,
        [before, after]: [Weight; 2],
    ) -> Result<Self> {
        let h = ld.cfg.hidden_size;
        let norm = |wt| ld.norm(wt, Some(layer), h);
        let (pre, post) = match placement {
            NormPlacement::Pre => (true, false),
            NormPlacement::Post => (false, true),
            NormPlacement::Sandwich => (true, true),
        };
        Ok(Self {
            before: pre.then(|| norm(before)).transpose()?,
            after: post.then(|| norm(after)).transpose()?,
        })
    }

    /// `x + after(f(before(x)))`.
    fn apply(&self, x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let y = match &self.before {
            Some(n) => f(&n.forward(x)?)?,
            None => f(x)?,
        };
        let y = match &self.after {
            Some(n) => n.forward(&y)?,
            None => y,
        };
        Ok((y + x)?)
    }
}

/// One decoder layer: attention, then the MLP, each around a residual connection.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    attn_residual: Residual,
    attn: Attention,
    mlp_residual: Residual,
    mlp: GatedMlp,
}

impl DecoderLayer {
    pub fn load(ld: &Loader, layer: usize, spec: &LayerSpec) -> Result<Self> {
        let attn_norms = [Weight::AttnNorm, Weight::PostAttnNorm];
        let mlp_norms = [Weight::FfnNorm, Weight::PostFfnNorm];
        Ok(Self {
            attn_residual: Residual::load(ld, layer, spec.norms, attn_norms)?,
            attn: Attention::load(ld, layer, spec)?,
            mlp_residual: Residual::load(ld, layer, spec.norms, mlp_norms)?,
            mlp: GatedMlp::load(ld, layer, spec.gate)?,
        })
    }

    fn forward(&self, x: &Tensor, parts: &mut [Part]) -> Result<Tensor> {
        let x = self
            .attn_residual
            .apply(x, |h| self.attn.forward(h, parts))?;
        self.mlp_residual.apply(&x, |h| self.mlp.forward(h))
    }
}

/// The end of every decoder: the final RMSNorm and the output projection (the embedding
/// matrix where the model ties them).
#[derive(Debug, Clone)]
pub struct LmHead {
    norm: RmsNorm,
    output: Linear,
}

impl LmHead {
    pub fn load(ld: &Loader, embed: &Embedding) -> Result<Self> {
        let cfg = ld.cfg;
        let h = cfg.hidden_size;
        let output = if !cfg.tie_word_embeddings && ld.w.contains(Weight::Output, None) {
            let dims = [cfg.vocab_size, h];
            Linear::load(ld.w, Weight::Output, None, None, &dims, ld.device)?
        } else {
            embed.as_linear()
        };
        Ok(Self {
            norm: ld.norm(Weight::OutputNorm, None, h)?,
            output,
        })
    }

    /// Logits (n, vocab) of the rows of `x` (1, rows, hidden) that `rows` names ([`logit_rows`]);
    /// None: every row.
    pub fn forward(&self, x: &Tensor, rows: Option<Vec<u32>>) -> Result<Tensor> {
        let x = match rows {
            None => x.clone(),
            Some(r) if r.len() == 1 => x.narrow(1, r[0] as usize, 1)?,
            Some(r) => {
                let n = r.len();
                x.index_select(&Tensor::from_vec(r, n, x.device())?, 1)?
            }
        };
        let x = self.norm.forward(&x)?;
        Ok(self.output.forward(&x)?.squeeze(0)?)
    }
}
