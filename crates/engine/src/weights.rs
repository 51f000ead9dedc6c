//! Where tensors come from: a GGUF file or safetensors shards, both read from verified bytes.
//!
//! Model code asks for weights by role (`Weight::AttnQ` of layer 3); this module maps the role
//! to the file's own naming (`blk.3.attn_q.weight` or `model.layers.3.self_attn.q_proj.weight`).

use crate::config::Architecture;
use crate::error::{Error, Result};
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
#[cfg(unix)]
use memmap2::UncheckedAdvice;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

/// A weight's role in a decoder block or around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    TokenEmbedding,
    OutputNorm,
    Output,
    /// Llama 3 RoPE frequency factors (GGUF only).
    RopeFreqs,
    /// Phi-3 LongRoPE factors for short and long contexts (GGUF only).
    RopeFactorsShort,
    RopeFactorsLong,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    /// Q, K and V in one matrix (Phi-3).
    AttnQkv,
    AttnOutput,
    AttnQNorm,
    AttnKNorm,
    PostAttnNorm,
    FfnNorm,
    PostFfnNorm,
    FfnGate,
    FfnUp,
    /// Gate and up in one matrix (Phi-3).
    FfnGateUp,
    FfnDown,
}

impl Weight {
    fn gguf_name(self, layer: Option<usize>) -> String {
        let base = match self {
            Weight::TokenEmbedding => return "token_embd.weight".into(),
            Weight::OutputNorm => return "output_norm.weight".into(),
            Weight::Output => return "output.weight".into(),
            Weight::RopeFreqs => return "rope_freqs.weight".into(),
            Weight::RopeFactorsShort => return "rope_factors_short.weight".into(),
            Weight::RopeFactorsLong => return "rope_factors_long.weight".into(),
            Weight::AttnNorm => "attn_norm.weight",
            Weight::AttnQ => "attn_q.weight",
            Weight::AttnK => "attn_k.weight",
            Weight::AttnV => "attn_v.weight",
            Weight::AttnQBias => "attn_q.bias",
            Weight::AttnKBias => "attn_k.bias",
            Weight::AttnVBias => "attn_v.bias",
            Weight::AttnQkv => "attn_qkv.weight",
            Weight::AttnOutput => "attn_output.weight",
            Weight::AttnQNorm => "attn_q_norm.weight",
            Weight::AttnKNorm => "attn_k_norm.weight",
            Weight::PostAttnNorm => "post_attention_norm.weight",
            Weight::FfnNorm => "ffn_norm.weight",
            Weight::PostFfnNorm => "post_ffw_norm.weight",
            Weight::FfnGate => "ffn_gate.weight",
            // llama.cpp keeps Phi-3's fused gate/up under the up projection's name.
            Weight::FfnUp | Weight::FfnGateUp => "ffn_up.weight",
            Weight::FfnDown => "ffn_down.weight",
        };
        format!("blk.{}.{base}", layer.unwrap_or(0))
    }

    fn hf_name(self, arch: Architecture, layer: Option<usize>) -> String {
        let base = match self {
            Weight::TokenEmbedding => return "model.embed_tokens.weight".into(),
            Weight::OutputNorm => return "model.norm.weight".into(),
            Weight::Output => return "lm_head.weight".into(),
            Weight::RopeFreqs => return "rope_freqs.weight".into(),
            Weight::RopeFactorsShort => return "rope_factors_short.weight".into(),
            Weight::RopeFactorsLong => return "rope_factors_long.weight".into(),
            Weight::AttnNorm => "input_layernorm.weight",
            Weight::AttnQ => "self_attn.q_proj.weight",
            Weight::AttnK => "self_attn.k_proj.weight",
            Weight::AttnV => "self_attn.v_proj.weight",
            Weight::AttnQBias => "self_attn.q_proj.bias",
            Weight::AttnKBias => "self_attn.k_proj.bias",
            Weight::AttnVBias => "self_attn.v_proj.bias",
            Weight::AttnQkv => "self_attn.qkv_proj.weight",
            Weight::AttnOutput => "self_attn.o_proj.weight",
            Weight::AttnQNorm => "self_attn.q_norm.weight",
            Weight::AttnKNorm => "self_attn.k_norm.weight",
            // Llama calls its pre-FFN norm `post_attention_layernorm`; Gemma 2/3 use that name
            // for the norm after attention and has a separate `pre_feedforward_layernorm`.
            Weight::PostAttnNorm => "post_attention_layernorm.weight",
            Weight::FfnNorm if matches!(arch, Architecture::Gemma2 | Architecture::Gemma3) => {
                "pre_feedforward_layernorm.weight"
            }
            Weight::FfnNorm => "post_attention_layernorm.weight",
            Weight::PostFfnNorm => "post_feedforward_layernorm.weight",
            Weight::FfnGate => "mlp.gate_proj.weight",
            Weight::FfnUp => "mlp.up_proj.weight",
            Weight::FfnGateUp => "mlp.gate_up_proj.weight",
            Weight::FfnDown => "mlp.down_proj.weight",
        };
        format!("model.layers.{}.{base}", layer.unwrap_or(0))
    }
}

/// Tensors of one model, read from verified bytes.
pub(crate) enum Weights<'a> {
    /// One file, or the parts of a split model in order; each tensor is in one part.
    Gguf(Vec<GgufPart<'a>>),
    Safetensors {
        arch: Architecture,
        shards: Vec<SafeTensors<'a>>,
        /// tensor name -> shard index
        index: HashMap<String, usize>,
    },
}

/// A GGUF file: its parsed header and its bytes.
pub(crate) struct GgufPart<'a> {
    pub content: &'a gguf_file::Content,
    /// The file, mapped: its pages are handed back as each matrix is packed
    /// ([`Weights::release`]), so the weights are held once, not mapped and packed.
    pub map: &'a Mmap,
}

impl<'a> Weights<'a> {
    pub fn safetensors(arch: Architecture, shard_bytes: &[&'a [u8]]) -> Result<Self> {
        let mut shards = Vec::with_capacity(shard_bytes.len());
        let mut index = HashMap::new();
        for (i, bytes) in shard_bytes.iter().enumerate() {
            let st = SafeTensors::deserialize(bytes)
                .map_err(|e| Error::malformed(format!("safetensors: {e}")))?;
            for name in st.names() {
                if index.insert(name.to_string(), i).is_some() {
                    return Err(Error::malformed(format!(
                        "tensor `{name}` appears in more than one shard"
                    )));
                }
            }
            shards.push(st);
        }
        Ok(Weights::Safetensors {
            arch,
            shards,
            index,
        })
    }

    /// Bytes the weights occupy once loaded: quantized tensors stay as stored, float tensors
    /// are held as f32.
    pub fn loaded_bytes(&self) -> u64 {
        match self {
            Weights::Gguf(parts) => gguf_infos(parts)
                .map(|t| {
                    let elems = t.shape.elem_count() as u64;
                    match t.ggml_dtype {
                        GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => elems * 4,
                        d => elems / d.block_size() as u64 * d.type_size() as u64,
                    }
                })
                .sum(),
            Weights::Safetensors { shards, .. } => shards
                .iter()
                .flat_map(|s| s.tensors())
                .map(|(_, v)| v.shape().iter().product::<usize>() as u64 * 4)
                .sum(),
        }
    }

    /// The file format's name, as reported.
    pub fn format(&self) -> &'static str {
        match self {
            Weights::Gguf(_) => "gguf",
            Weights::Safetensors { .. } => "safetensors",
        }
    }

    /// Values in all tensors.
    pub fn parameters(&self) -> u64 {
        match self {
            Weights::Gguf(parts) => gguf_infos(parts).map(|t| t.shape.elem_count() as u64).sum(),
            Weights::Safetensors { shards, .. } => shards
                .iter()
                .flat_map(|s| s.tensors())
                .map(|(_, v)| v.shape().iter().product::<usize>() as u64)
                .sum(),
        }
    }

    fn name(&self, w: Weight, layer: Option<usize>) -> String {
        match self {
            Weights::Gguf { .. } => w.gguf_name(layer),
            Weights::Safetensors { arch, .. } => w.hf_name(*arch, layer),
        }
    }

    pub fn contains(&self, w: Weight, layer: Option<usize>) -> bool {
        let name = self.name(w, layer);
        match self {
            Weights::Gguf(parts) => gguf_find(parts, &name).is_some(),
            Weights::Safetensors { index, .. } => index.contains_key(&name),
        }
    }

    /// Rows `rows` of a weight as a matrix multiplication operand, kept quantized when the
    /// file is.
    pub fn matmul(
        &self,
        w: Weight,
        layer: Option<usize>,
        rows: Range<usize>,
        device: &Device,
    ) -> Result<QMatMul> {
        let name = self.name(w, layer);
        match self {
            Weights::Gguf { .. } => {
                let (dtype, (n, k), data) = self
                    .gguf_rows(w, layer, rows)
                    .ok_or_else(|| Error::malformed(format!("tensor `{name}` is missing")))?;
                let q = qtensor_from_ggml(dtype, data, vec![n, k], device)?;
                Ok(QMatMul::from_arc(Arc::new(q))?)
            }
            Weights::Safetensors { .. } => {
                // Only the rows asked for are read and converted (a fused matrix is loaded
                // part by part, not whole once per part).
                let view = self.st_view(&name)?;
                let (n, k) = match view.shape() {
                    [n, k] if rows.end <= *n => (*n, *k),
                    dims => {
                        return Err(Error::malformed(format!(
                            "tensor `{name}` of shape {dims:?} has no rows {rows:?}"
                        )))
                    }
                };
                let row_bytes = view.data().len() / n.max(1);
                let data = &view.data()[rows.start * row_bytes..rows.end * row_bytes];
                let dtype = DType::try_from(view.dtype())?;
                let t = Tensor::from_raw_buffer(data, dtype, &[rows.len(), k], device)?;
                Ok(QMatMul::Tensor(t.to_dtype(DType::F32)?))
            }
        }
    }

    /// Whether some matrix is stored in a quantized type candor's kernels do not take, so
    /// that candle multiplies it (on its own thread pool).
    pub fn needs_candle_quantized_matmul(&self) -> bool {
        let Weights::Gguf(parts) = self else {
            return false;
        };
        gguf_infos(parts).any(|t| {
            let float = matches!(
                t.ggml_dtype,
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
            );
            t.shape.rank() == 2 && !float && !crate::kernels::takes(t.ggml_dtype)
        })
    }

    /// Rows `rows` of a GGUF matrix as stored, straight from the verified bytes: (type,
    /// (rows, cols), bytes). None for safetensors, a missing tensor, a tensor that is not 2-D
    /// or rows past its end.
    pub fn gguf_rows(
        &self,
        w: Weight,
        layer: Option<usize>,
        rows: Range<usize>,
    ) -> Option<(GgmlDType, (usize, usize), &[u8])> {
        let Weights::Gguf(parts) = self else {
            return None;
        };
        let (part, info) = gguf_find(parts, &self.name(w, layer))?;
        let (content, bytes): (_, &[u8]) = (part.content, part.map);
        let dims = info.shape.dims2().ok()?;
        let (bs, ts) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        let elems = info.shape.elem_count();
        if bs == 0 || !elems.is_multiple_of(bs) {
            return None;
        }
        let start = usize::try_from(content.tensor_data_offset.checked_add(info.offset)?).ok()?;
        let len = (elems / bs).checked_mul(ts)?;
        let data = bytes.get(start..start.checked_add(len)?)?;
        // Rows are whole blocks (a row of k values is k/bs blocks), so a row range is a byte range.
        let (n, k) = dims;
        if rows.end > n || rows.start > rows.end || !k.is_multiple_of(bs) {
            return None;
        }
        let row_bytes = k / bs * ts;
        let data = &data[rows.start * row_bytes..rows.end * row_bytes];
        Some((info.ggml_dtype, (rows.len(), k), data))
    }

    /// Hands the mapped pages under `part` (bytes from [`Weights::gguf_rows`]) back to the
    /// system once they are copied out. The map stays valid: a later read of those bytes
    /// faults them in again from the file. Without this the whole file would stay resident
    /// next to the packed copy until loading ends, doubling peak memory.
    #[allow(unsafe_code)] // madvise
    pub fn release(&self, part: &[u8]) {
        let Weights::Gguf(parts) = self else {
            return;
        };
        let within = |map: &Mmap| {
            let offset = (part.as_ptr() as usize).checked_sub(map.as_ptr() as usize)?;
            (offset + part.len() <= map.len()).then_some(offset)
        };
        let Some((map, offset)) = parts.iter().find_map(|p| Some((p.map, within(p.map)?))) else {
            return;
        };
        // SAFETY: MADV_DONTNEED on a read-only file mapping drops the pages from memory, not
        // from the file: no Rust reference sees different bytes, since every read refaults the
        // same (verified, unchanged) file contents. Whole pages are dropped, at most one page
        // beyond `part` at each end, which costs a refault and nothing else.
        #[cfg(unix)]
        let _ =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, part.len()) };
        #[cfg(not(unix))]
        let _ = offset;
    }

    /// A weight as a dense f32 tensor (norms, biases, small vectors).
    pub fn tensor(&self, w: Weight, layer: Option<usize>, device: &Device) -> Result<Tensor> {
        let name = self.name(w, layer);
        let t = match self {
            Weights::Gguf(parts) => {
                let (part, _) = gguf_find(parts, &name)
                    .ok_or_else(|| Error::malformed(format!("tensor `{name}` is missing")))?;
                part.content
                    .tensor(&mut Cursor::new(&part.map[..]), &name, device)
                    .map_err(|e| missing_or(e, &name))?
                    .dequantize(device)?
            }
            Weights::Safetensors { .. } => self.st_view(&name)?.load(device)?,
        };
        Ok(t.to_dtype(DType::F32)?)
    }

    /// A safetensors tensor by its file name.
    fn st_view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>> {
        let Weights::Safetensors { shards, index, .. } = self else {
            return Err(Error::malformed(format!(
                "tensor `{name}` is not in a safetensors file"
            )));
        };
        let shard = index
            .get(name)
            .ok_or_else(|| Error::malformed(format!("tensor `{name}` is missing")))?;
        shards[*shard]
            .tensor(name)
            .map_err(|e| Error::malformed(format!("tensor `{name}`: {e}")))
    }

    /// Checks a tensor's shape before its data is used, so a file that disagrees with its
    /// own hyperparameters is refused instead of failing deep in a matmul.
    pub fn expect_shape(&self, w: Weight, layer: Option<usize>, dims: &[usize]) -> Result<()> {
        let name = self.name(w, layer);
        let actual: Vec<usize> = match self {
            Weights::Gguf(parts) => match gguf_find(parts, &name) {
                Some((_, info)) => info.shape.dims().to_vec(),
                None => return Err(Error::malformed(format!("tensor `{name}` is missing"))),
            },
            Weights::Safetensors { .. } => self.st_view(&name)?.shape().to_vec(),
        };
        if actual != dims {
            return Err(Error::malformed(format!(
                "tensor `{name}` has shape {actual:?}, the hyperparameters imply {dims:?}"
            )));
        }
        Ok(())
    }
}

/// The part holding tensor `name`, and its entry there.
fn gguf_find<'p, 'a>(
    parts: &'p [GgufPart<'a>],
    name: &str,
) -> Option<(&'p GgufPart<'a>, &'a gguf_file::TensorInfo)> {
    parts
        .iter()
        .find_map(|p| Some((p, p.content.tensor_infos.get(name)?)))
}

/// Every tensor of every part.
fn gguf_infos<'p, 'a>(
    parts: &'p [GgufPart<'a>],
) -> impl Iterator<Item = &'a gguf_file::TensorInfo> + 'p {
    parts.iter().flat_map(|p| p.content.tensor_infos.values())
}

fn missing_or(e: candle_core::Error, name: &str) -> Error {
    Error::malformed(format!("tensor `{name}`: {e}"))
}
