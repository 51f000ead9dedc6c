//! The hyperparameters of a GGUF file, from its metadata keys (llama.cpp's names and defaults).

use super::{Architecture, GemmaParams, LongRope, Metadata, ModelConfig};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;

/// llama.cpp's SmolLM3: RoPE is skipped on every fourth layer (its GGUF files carry no key for
/// it; llama.cpp fixes the interval).
const SMOLLM3_NO_ROPE_INTERVAL: usize = 4;

/// The sizes every architecture's keys give, read once and passed to the helpers below.
struct Shape {
    hidden_size: usize,
    n_heads: usize,
    head_dim: usize,
    n_layers: usize,
    rope_theta: f64,
}

impl ModelConfig {
    /// Reads the hyperparameters of a GGUF file from its metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let md = Metadata(ct);
        let arch_name = md.string("general.architecture")?;
        let arch = Architecture::parse(&arch_name)?;
        let a = arch_name.as_str();
        let key = |k: &str| format!("{a}.{k}");
        let hidden_size = md.usize(&key("embedding_length"))?;
        let n_heads = md.usize(&key("attention.head_count"))?;
        let n_kv_heads = md
            .usize_opt(&key("attention.head_count_kv"))?
            .unwrap_or(n_heads);
        let head_dim = match md.usize_opt(&key("attention.key_length"))? {
            Some(d) => d,
            None if n_heads > 0 => hidden_size / n_heads,
            None => 0,
        };
        let shape = Shape {
            hidden_size,
            n_heads,
            head_dim,
            n_layers: md.usize(&key("block_count"))?,
            rope_theta: md.f64_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0),
        };
        let vocab_size = match ct.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims().first().copied().unwrap_or(0),
            None => return Err(Error::malformed("tensor `token_embd.weight` is missing")),
        };
        let sliding_window = md.usize_opt(&key("attention.sliding_window"))?;
        let long_rope = if ct.tensor_infos.contains_key("rope_factors_long.weight") {
            Some(LongRope {
                original_context: md.usize(&key("rope.scaling.original_context_length"))?,
                attn_factor: md.f64_opt(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0),
                factors: None,
            })
        } else {
            None
        };
        let gemma = matches!(arch, Architecture::Gemma2 | Architecture::Gemma3)
            .then(|| gemma_params(&md, arch, a, &shape))
            .transpose()?;
        let n_layers = shape.n_layers;
        let cfg = Self {
            arch,
            hidden_size,
            intermediate_size: md.usize(&key("feed_forward_length"))?,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: md
                .f64_opt(&key("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-5),
            rope_theta: shape.rope_theta,
            // llama.cpp stores Llama 3 scaling as the `rope_freqs.weight` tensor instead.
            rope_scaling: None,
            long_rope,
            // llama.cpp's converter permutes Q/K of the Llama-derived families.
            rope_interleaved: matches!(
                arch,
                Architecture::Llama | Architecture::Mistral | Architecture::SmolLM3
            ),
            rotary_dim: md
                .usize_opt(&key("rope.dimension_count"))?
                .unwrap_or(head_dim),
            rope_layers: (arch == Architecture::SmolLM3).then(|| {
                (0..n_layers)
                    .map(|i| (i + 1) % SMOLLM3_NO_ROPE_INTERVAL != 0)
                    .collect()
            }),
            context_length: md.usize_opt(&key("context_length"))?.unwrap_or(2048),
            sliding_window: match arch {
                Architecture::Mistral | Architecture::Gemma2 | Architecture::Gemma3 => {
                    sliding_window
                }
                _ => None,
            },
            qkv_bias: ct.tensor_infos.contains_key("blk.0.attn_q.bias"),
            tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
            gemma,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Gemma 2 and 3, following llama.cpp's conventions, which GGUF conversions rely on: Gemma 2
/// alternates sliding and global layers and scales queries by head_dim^-1/2 except in its 27B
/// model (46 layers: (hidden/heads)^-1/2); Gemma 3 makes every sixth layer global and its local
/// layers use a RoPE base of 10k. Either may name its own pattern and local base.
fn gemma_params(md: &Metadata, arch: Architecture, a: &str, s: &Shape) -> Result<GemmaParams> {
    let gemma2 = arch == Architecture::Gemma2;
    let linear = match md.string_opt(&format!("{a}.rope.scaling.type"))?.as_deref() {
        Some("linear") => md
            .f64_opt(&format!("{a}.rope.scaling.factor"))?
            .unwrap_or(1.0),
        _ => 1.0,
    };
    let every = if gemma2 { 2 } else { 6 };
    let key = format!("{a}.attention.sliding_window_pattern");
    let sliding_layers = match md.sliding_pattern_opt(&key, s.n_layers)? {
        Some(p) => p,
        None => (0..s.n_layers).map(|i| (i + 1) % every != 0).collect(),
    };
    let query_pre_attn_scalar = if gemma2 && s.n_layers == 46 && s.n_heads > 0 {
        (s.hidden_size / s.n_heads) as f64
    } else {
        s.head_dim as f64
    };
    let local_base = md.f64_opt(&format!("{a}.rope.freq_base_swa"))?;
    Ok(GemmaParams {
        query_pre_attn_scalar,
        rope_local_base_freq: local_base.unwrap_or(if gemma2 { s.rope_theta } else { 10_000.0 }),
        rope_global_linear_factor: linear,
        sliding_layers,
        final_logit_softcapping: md.f64_opt(&format!("{a}.final_logit_softcapping"))?,
        attn_logit_softcapping: md.f64_opt(&format!("{a}.attn_logit_softcapping"))?,
        norm_weights_offset: false,
    })
}
