//! Building blocks shared by the architectures: linear layers, RMSNorm, RoPE, KV cache, attention.

use crate::config::{Llama3RopeScaling, ModelConfig};
use crate::error::Result;
use crate::kernels::{PackedMatrix, G};
use crate::weights::{Weight, Weights};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor, D};
use std::ops::Range;

/// A weight matrix: packed for candor's CPU kernels when they take its type (`kernels::takes`),
/// else candle's (kept quantized when the file stores it quantized).
#[derive(Debug, Clone)]
enum Matrix {
    Packed(PackedMatrix),
    Candle(QMatMul),
}

impl Matrix {
    /// Rows `rows` of a weight from the file (all of them, or one part of a fused matrix):
    /// packed straight from a GGUF's blocks when the kernels take it (no copy through
    /// candle), else candle's.
    fn load(
        w: &Weights,
        weight: Weight,
        layer: Option<usize>,
        rows: Range<usize>,
        device: &Device,
    ) -> Result<Self> {
        let stored = w.gguf_rows(weight, layer, rows.clone());
        // The file's pages under a matrix go once it lives in memory of its own: while packing,
        // stretch by stretch; after candle's copy (or the upload to a GPU), all at once.
        let release = |part: &[u8]| w.release(part);
        let packed = stored
            .filter(|_| device.is_cpu())
            .and_then(|(dtype, dims, data)| PackedMatrix::from_blocks(dtype, dims, data, &release));
        if let Some(f) = packed {
            return Ok(Matrix::Packed(f));
        }
        let m = Matrix::Candle(w.matmul(weight, layer, rows, device)?);
        if let Some((_, _, data)) = stored {
            w.release(data);
        }
        Ok(m)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Matrix::Packed(f) => x.to_dtype(DType::F32)?.contiguous()?.apply_op1_no_bwd(f)?,
            Matrix::Candle(w) => w.forward(x)?,
        })
    }

    fn packed(&self) -> Option<&PackedMatrix> {
        match self {
            Matrix::Packed(f) => Some(f),
            Matrix::Candle(_) => None,
        }
    }
}

/// `x W^T (+ b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Matrix,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn load(
        w: &Weights,
        weight: Weight,
        bias: Option<Weight>,
        layer: Option<usize>,
        dims: &[usize],
        device: &Device,
    ) -> Result<Self> {
        w.expect_shape(weight, layer, dims)?;
        let bias = match bias {
            Some(b) => {
                w.expect_shape(b, layer, &dims[..1])?;
                Some(w.tensor(b, layer, device)?)
            }
            None => None,
        };
        Ok(Self {
            weight: Matrix::load(w, weight, layer, 0..dims[0], device)?,
            bias,
        })
    }

    /// The projections stored one after another in a fused matrix (Phi-3's QKV and gate/up),
    /// `outs[i]` rows each of width `cols`, as separate layers.
    pub fn load_fused<const N: usize>(
        w: &Weights,
        weight: Weight,
        layer: Option<usize>,
        outs: [usize; N],
        cols: usize,
        device: &Device,
    ) -> Result<[Self; N]> {
        w.expect_shape(weight, layer, &[outs.iter().sum(), cols])?;
        let mut parts = Vec::with_capacity(N);
        let mut start = 0;
        for n in outs {
            parts.push(Self {
                weight: Matrix::load(w, weight, layer, start..start + n, device)?,
                bias: None,
            });
            start += n;
        }
        Ok(parts
            .try_into()
            .unwrap_or_else(|_| unreachable!("one part per size")))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.add_bias(self.weight.forward(x)?)
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Several projections of the same input (Q, K, V): on the CPU with few rows, one pass.
    pub fn forward_many(ls: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
        let fast: Option<Vec<&PackedMatrix>> = ls.iter().map(|l| l.weight.packed()).collect();
        if let Some(fast) = fast {
            if let Some(ys) = crate::kernels::forward_many(&fast, x)? {
                return ls.iter().zip(ys).map(|(l, y)| l.add_bias(y)).collect();
            }
        }
        ls.iter().map(|l| l.forward(x)).collect()
    }

    /// Gated feed-forward input: `act(gate(x)) * up(x)` (SwiGLU, GeGLU).
    pub fn gated(act: Gate, gate: &Linear, up: &Linear, x: &Tensor) -> Result<Tensor> {
        if let (Some(g), Some(u), None, None) = (
            gate.weight.packed(),
            up.weight.packed(),
            &gate.bias,
            &up.bias,
        ) {
            if let Some(y) = crate::kernels::gated(|v| act.group(v), g, u, x)? {
                return Ok(y);
            }
        }
        Ok((act.tensor(&gate.forward(x)?)? * up.forward(x)?)?)
    }
}

/// The activation on a gated feed-forward layer's gate projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `x·σ(x)` (Llama, Mistral, Qwen2).
    Silu,
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
}

impl Gate {
    /// One group of outputs of the fused kernel, in vector form (see `kernels::activation`):
    /// candle's function to rounding, not its libm calls.
    pub(crate) fn group(self, v: &[f32; G]) -> [f32; G] {
        match self {
            Gate::Silu => crate::kernels::activation::silu(v),
            Gate::GeluTanh => crate::kernels::activation::gelu_tanh(v),
        }
    }

    fn tensor(self, t: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Gate::Silu => candle_nn::ops::silu(t)?,
            Gate::GeluTanh => t.gelu()?,
        })
    }
}

/// Token embeddings, which tied models also use as the output projection.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Matrix,
}

impl Embedding {
    pub fn load(w: &Weights, vocab: usize, hidden: usize, device: &Device) -> Result<Self> {
        w.expect_shape(Weight::TokenEmbedding, None, &[vocab, hidden])?;
        Ok(Self {
            table: Matrix::load(w, Weight::TokenEmbedding, None, 0..vocab, device)?,
        })
    }

    /// The embeddings of `ids`: (1, ids.len(), hidden).
    pub fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        Ok(match &self.table {
            Matrix::Packed(f) => {
                Tensor::from_vec(f.embedding(ids)?, (1, ids.len(), f.cols()), device)?
            }
            Matrix::Candle(w) => w.embedding(&Tensor::new(ids, device)?.unsqueeze(0)?)?,
        })
    }

    /// The same matrix as the output projection (tied embeddings).
    pub fn as_linear(&self) -> Linear {
        Linear {
            weight: self.table.clone(),
            bias: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// `offset` adds 1 to the stored weight (Gemma's safetensors store `w` for `x * (1 + w)`).
    pub fn load(
        w: &Weights,
        weight: Weight,
        layer: Option<usize>,
        dim: usize,
        eps: f64,
        offset: bool,
        device: &Device,
    ) -> Result<Self> {
        w.expect_shape(weight, layer, &[dim])?;
        let mut t = w.tensor(weight, layer, device)?;
        if offset {
            t = (t + 1.0)?;
        }
        Ok(Self {
            weight: t,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

/// Precomputed RoPE tables for positions `0..max_positions`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
    /// The leading dimensions of each head that rotate; the others pass through.
    dims: usize,
}

impl Rope {
    pub fn new(
        cfg: &ModelConfig,
        base: f64,
        linear_factor: f64,
        freq_factors: Option<&[f32]>,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let dims = cfg.rotary_dim;
        let half = dims / 2;
        // Computed in f32 like llama.cpp and candle, so quantized runs match them token for token.
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| (1.0 / (base as f32).powf(2.0 * i as f32 / dims as f32)) as f64)
            .collect();
        if let Some(s) = &cfg.rope_scaling {
            llama3_scale(&mut inv_freq, s);
        }
        if let Some(f) = freq_factors {
            for (x, f) in inv_freq.iter_mut().zip(f) {
                *x /= *f as f64;
            }
        }
        let inv_freq: Vec<f32> = inv_freq
            .iter()
            .map(|x| (x / linear_factor) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let t = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = t.matmul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            interleaved: cfg.rope_interleaved,
            dims,
        })
    }

    /// The same rotation with cos and sin multiplied by `factor` (LongRoPE's attention
    /// factor, which scales queries and keys alike).
    pub fn scaled(self, factor: f64) -> Result<Self> {
        if factor == 1.0 {
            return Ok(self);
        }
        Ok(Self {
            cos: (self.cos * factor)?,
            sin: (self.sin * factor)?,
            ..self
        })
    }

    /// Rotates in place rows of `heads` heads each (row by row, head by head, `head_dim` values
    /// a head), the first row at position `pos`: [`Self::apply`]'s arithmetic (candle's CPU
    /// rope, so the same bits) on the tables where they lie, without a tensor per step.
    pub(crate) fn rotate_rows(
        &self,
        x: &mut [f32],
        pos: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        let half = self.dims / 2;
        if half == 0 || x.is_empty() {
            return Ok(());
        }
        let rows = x.len() / (heads * head_dim);
        let (cos, cos_layout) = self.cos.storage_and_layout();
        let (sin, sin_layout) = self.sin.storage_and_layout();
        fn table<'t>(
            t: &'t candle_core::Storage,
            l: &candle_core::Layout,
            positions: std::ops::Range<usize>,
            half: usize,
        ) -> candle_core::Result<&'t [f32]> {
            let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(t)), Some((a, b))) =
                (t, l.contiguous_offsets())
            else {
                candle_core::bail!("RoPE tables in CPU memory are needed to rotate in place")
            };
            match t[a..b].get(positions.start * half..positions.end * half) {
                Some(t) => Ok(t),
                None => candle_core::bail!(
                    "position {} is past the {} RoPE was built for",
                    positions.end,
                    (b - a) / half
                ),
            }
        }
        let positions = pos..pos + rows;
        let cos = table(&cos, cos_layout, positions.clone(), half)?;
        let sin = table(&sin, sin_layout, positions, half)?;
        for (row, (cos, sin)) in x
            .chunks_exact_mut(heads * head_dim)
            .zip(cos.chunks_exact(half).zip(sin.chunks_exact(half)))
        {
            for head in row.chunks_exact_mut(head_dim) {
                let turn = |a: f32, b: f32, c: f32, s: f32| (a * c - b * s, a * s + b * c);
                if self.interleaved {
                    for (pair, (&c, &s)) in head[..self.dims]
                        .chunks_exact_mut(2)
                        .zip(cos.iter().zip(sin))
                    {
                        (pair[0], pair[1]) = turn(pair[0], pair[1], c, s);
                    }
                } else {
                    let (lo, hi) = head[..self.dims].split_at_mut(half);
                    for ((a, b), (&c, &s)) in lo.iter_mut().zip(hi).zip(cos.iter().zip(sin)) {
                        (*a, *b) = turn(*a, *b, c, s);
                    }
                }
            }
        }
        Ok(())
    }

    /// Rotates `x` of shape (batch, heads, seq, head_dim) whose first row sits at `pos`.
    pub fn apply(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let (seq, head_dim) = (x.dim(2)?, x.dim(3)?);
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let rotate = |x: &Tensor| -> Result<Tensor> {
            let x = x.contiguous()?;
            Ok(if self.interleaved {
                candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
            } else {
                candle_nn::rotary_emb::rope(&x, &cos, &sin)?
            })
        };
        if self.dims == head_dim {
            return rotate(x);
        }
        let rotated = rotate(&x.narrow(3, 0, self.dims)?)?;
        let rest = x.narrow(3, self.dims, head_dim - self.dims)?;
        Ok(Tensor::cat(&[rotated, rest], 3)?)
    }
}

/// Llama 3.x: keep high frequencies, divide low ones by `factor`, blend in between.
fn llama3_scale(inv_freq: &mut [f64], s: &Llama3RopeScaling) {
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_wavelen = old_ctx / s.low_freq_factor;
    let high_wavelen = old_ctx / s.high_freq_factor;
    for f in inv_freq.iter_mut() {
        let wavelen = 2.0 * std::f64::consts::PI / *f;
        if wavelen < high_wavelen {
            // unchanged
        } else if wavelen > low_wavelen {
            *f /= s.factor;
        } else {
            let smooth =
                (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
        }
    }
}

/// Additive attention mask for `seq` queries starting at `pos` over `pos + seq` keys:
/// causal, and limited to the last `window` keys when the layer has a sliding window.
/// Returns None when nothing would be masked.
pub fn attention_mask(
    seq: usize,
    pos: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let total = pos + seq;
    let windowed = window.is_some_and(|w| total > w);
    if seq == 1 && !windowed {
        return Ok(None);
    }
    let mut mask = Vec::with_capacity(seq * total);
    for i in 0..seq {
        let q = pos + i;
        for k in 0..total {
            let visible = k <= q && window.is_none_or(|w| q - k < w);
            mask.push(if visible { 0f32 } else { f32::NEG_INFINITY });
        }
    }
    Ok(Some(Tensor::from_vec(mask, (1, 1, seq, total), device)?))
}

/// Query rows per attention block of a prompt. Each block attends only to the keys up to its
/// last query, so the masked-out upper triangle of a long causal prompt is never computed
/// (7/16 of the attention work of a 512-token prompt).
const QUERY_BLOCK: usize = 64;

/// Scaled dot-product attention with grouped-query heads.
/// q: (b, n_heads, seq, d); k, v: (b, n_kv_heads, total, d); the queries are the last `seq`
/// positions and `mask` is `attention_mask`'s.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    softcap: Option<f64>,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (seq, total) = (q.dim(2)?, k.dim(2)?);
    let Some(mask) = mask.filter(|_| seq > QUERY_BLOCK) else {
        return attention_block(q, k, v, scale, softcap, mask);
    };
    let pos = total - seq;
    let mut ys = Vec::with_capacity(seq.div_ceil(QUERY_BLOCK));
    for start in (0..seq).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(seq - start);
        // The causal mask hides every key after the block's last query.
        let keys = pos + start + rows;
        let mask = mask.narrow(2, start, rows)?.narrow(3, 0, keys)?;
        ys.push(attention_block(
            &q.narrow(2, start, rows)?,
            &k.narrow(2, 0, keys)?,
            &v.narrow(2, 0, keys)?,
            scale,
            softcap,
            Some(&mask),
        )?);
    }
    Ok(Tensor::cat(&ys, 2)?)
}

fn attention_block(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    softcap: Option<f64>,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, nh, seq, d) = q.dims4()?;
    let (nkv, total) = (k.dim(1)?, k.dim(2)?);
    // The query heads that share a key/value head form one batch of n_rep·seq rows, so K and
    // V are read in place from the cache instead of being repeated per head.
    let n_rep = nh / nkv;
    let q = q.contiguous()?.reshape((b, nkv, n_rep * seq, d))?;
    let att = (q.matmul(&k.t()?)? * scale)?;
    let mut att = att.reshape((b, nh, seq, total))?;
    if let Some(cap) = softcap {
        att = ((att / cap)?.tanh()? * cap)?;
    }
    if let Some(m) = mask {
        att = att.broadcast_add(m)?;
    }
    let att = candle_nn::ops::softmax_last_dim(&att)?;
    let y = att.reshape((b, nkv, n_rep * seq, total))?.matmul(v)?;
    Ok(y.reshape((b, nh, seq, d))?)
}

/// Gemma 2's soft cap `cap·tanh(x/cap)`: on the CPU in place with a vector `tanh`
/// (`kernels::activation::softcap`), elsewhere through candle's ops.
pub fn softcap(x: Tensor, cap: f64) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return Ok(((x / cap)?.tanh()? * cap)?);
    }
    let shape = x.shape().clone();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    crate::kernels::activation::softcap(&mut v, cap as f32);
    Ok(Tensor::from_vec(v, shape, x.device())?)
}

/// Numerically stable log-softmax over the last dimension.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(x, D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(shape: (usize, usize, usize, usize), seed: u32) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let v: Vec<f32> = (0..n as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The block-by-block prompt path against one block over every key, with the keys after
    /// the cached ones, grouped-query heads, a sliding window and a soft cap.
    #[test]
    fn blocked_attention_equals_one_block() {
        let (heads, kv_heads, d) = (4, 2, 16);
        for (pos, seq, window, softcap) in [
            (0, 150, None, None),
            (37, 129, None, Some(50.0)),
            (5, 200, Some(48), None),
            (0, QUERY_BLOCK + 1, None, None),
        ] {
            let total = pos + seq;
            let q = noise((1, heads, seq, d), 1);
            let k = noise((1, kv_heads, total, d), 2);
            let v = noise((1, kv_heads, total, d), 3);
            let mask = attention_mask(seq, pos, window, &Device::Cpu).unwrap();
            let want = attention_block(&q, &k, &v, 0.25, softcap, mask.as_ref()).unwrap();
            let got = attention(&q, &k, &v, 0.25, softcap, mask.as_ref()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                diff.to_scalar::<f32>().unwrap() <= 1e-6,
                "pos {pos} seq {seq}"
            );
        }
    }

    /// Rotating rows in place gives `Rope::apply`'s bits, for both pairings, partial rotation
    /// and a first position past zero; a position past the tables is an error, not a panic.
    #[test]
    fn rotate_rows_equals_apply() {
        let (heads, d, rows, positions) = (3, 16, 5, 40);
        let table = |seed| {
            noise((1, 1, positions, 8), seed)
                .reshape((positions, 8))
                .unwrap()
        };
        for (interleaved, dims) in [(false, 16), (true, 16), (false, 12), (true, 12)] {
            let half = dims / 2;
            let rope = Rope {
                cos: table(7).narrow(1, 0, half).unwrap().contiguous().unwrap(),
                sin: table(8).narrow(1, 0, half).unwrap().contiguous().unwrap(),
                interleaved,
                dims,
            };
            for pos in [0, 9, positions - rows] {
                let x = noise((1, rows, heads, d), 9);
                let want = rope.apply(&x.transpose(1, 2).unwrap(), pos).unwrap();
                let want: Vec<f32> = want
                    .transpose(1, 2)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let mut got: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                rope.rotate_rows(&mut got, pos, heads, d).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "interleaved {interleaved} dims {dims} pos {pos}"
                );
            }
            let mut past = vec![0f32; rows * heads * d];
            assert!(rope
                .rotate_rows(&mut past, positions - rows + 1, heads, d)
                .is_err());
        }
    }
}
