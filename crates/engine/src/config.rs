//! Hyperparameters, read from the model file (GGUF metadata or config.json), never assumed.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use serde::Deserialize;

/// The architectures candor runs. Their decoder layers are built from the same sublayers
/// (`decoder`); Llama, Mistral, Qwen2/3, OLMo 2 and Phi-3 share one model file
/// (`models::llama`), Gemma 2 and 3 have their own (`models::gemma`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Olmo2,
    Phi3,
    Gemma2,
    Gemma3,
}

pub const SUPPORTED: &str =
    "llama (Llama 2/3.x, SmolLM2, TinyLlama), mistral, qwen2, qwen3, olmo2, phi3, gemma2, gemma3";

impl Architecture {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "llama" | "LlamaForCausalLM" => Self::Llama,
            "mistral" | "MistralForCausalLM" => Self::Mistral,
            "qwen2" | "Qwen2ForCausalLM" => Self::Qwen2,
            "qwen3" | "Qwen3ForCausalLM" => Self::Qwen3,
            "olmo2" | "Olmo2ForCausalLM" => Self::Olmo2,
            "phi3" | "Phi3ForCausalLM" => Self::Phi3,
            "gemma2" | "Gemma2ForCausalLM" => Self::Gemma2,
            "gemma3" | "gemma3_text" | "Gemma3ForCausalLM" => Self::Gemma3,
            other => {
                return Err(Error::UnsupportedArchitecture {
                    name: other.to_string(),
                    supported: SUPPORTED.to_string(),
                })
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Olmo2 => "olmo2",
            Self::Phi3 => "phi3",
            Self::Gemma2 => "gemma2",
            Self::Gemma3 => "gemma3",
        }
    }

    /// The RMSNorm this family applies to queries and keys before RoPE, if any.
    pub fn qk_norm(self) -> Option<QkNorm> {
        match self {
            Self::Qwen3 | Self::Gemma3 => Some(QkNorm::PerHead),
            Self::Olmo2 => Some(QkNorm::Whole),
            Self::Llama | Self::Mistral | Self::Qwen2 | Self::Phi3 | Self::Gemma2 => None,
        }
    }

    /// Where a layer's RMSNorms sit around its attention and MLP.
    pub fn norm_placement(self) -> NormPlacement {
        match self {
            Self::Olmo2 => NormPlacement::Post,
            Self::Gemma2 | Self::Gemma3 => NormPlacement::Sandwich,
            Self::Llama | Self::Mistral | Self::Qwen2 | Self::Qwen3 | Self::Phi3 => {
                NormPlacement::Pre
            }
        }
    }

    /// Whether Q/K/V are stored as one matrix and gate/up as another (Phi-3).
    pub fn fused_projections(self) -> bool {
        self == Self::Phi3
    }
}

/// Where a query/key RMSNorm applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// Over each head's `head_dim` values (Qwen3, Gemma 3).
    PerHead,
    /// Over the whole projection, all heads at once (OLMo 2).
    Whole,
}

/// Where a decoder layer's RMSNorms sit around each sublayer (attention, MLP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// On the sublayer's input (Llama and most others).
    Pre,
    /// On the sublayer's output, before the residual add (OLMo 2).
    Post,
    /// On both (Gemma 2 and 3).
    Sandwich,
}

/// Llama 3.x frequency-dependent RoPE scaling (`rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Phi-3's LongRoPE: every rotary frequency divided by a factor of its own, from one list for
/// contexts up to the trained length and another for longer ones (chosen by the context size,
/// as llama.cpp does), and cos/sin multiplied by `attn_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    pub original_context: usize,
    pub attn_factor: f64,
    /// (short, long) from config.json; a GGUF file stores them as tensors instead.
    pub factors: Option<(Vec<f32>, Vec<f32>)>,
}

impl LongRope {
    /// Refuses numbers that would turn every rotation into NaN or infinity.
    pub fn validate(&self) -> Result<()> {
        if !(self.attn_factor.is_finite() && self.attn_factor > 0.0) || self.original_context == 0 {
            return Err(Error::malformed(format!(
                "LongRoPE: attention factor {} and trained length {} must be positive",
                self.attn_factor, self.original_context
            )));
        }
        if let Some((short, long)) = &self.factors {
            check_rope_factors(short)?;
            check_rope_factors(long)?;
        }
        Ok(())
    }
}

/// RoPE frequency divisors must be finite and positive.
pub fn check_rope_factors(f: &[f32]) -> Result<()> {
    match f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        Some(x) => Err(Error::malformed(format!(
            "RoPE frequency factor {x} is not a positive number"
        ))),
        None => Ok(()),
    }
}

/// Gemma 2 and 3 specifics.
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
    /// The context length the model was trained for.
    pub context_length: usize,
    pub sliding_window: Option<usize>,
    pub qkv_bias: bool,
    pub tie_word_embeddings: bool,
    pub gemma: Option<GemmaParams>,
}

impl ModelConfig {
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
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::malformed(format!(
                "head dimension {} is odd; RoPE needs pairs",
                self.head_dim
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

    /// Reads the hyperparameters of a GGUF file from its metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let md = Metadata(ct);
        let arch_name = md.string("general.architecture")?;
        let arch = Architecture::parse(&arch_name)?;
        let a = arch_name.as_str();
        let hidden_size = md.usize(&format!("{a}.embedding_length"))?;
        let n_heads = md.usize(&format!("{a}.attention.head_count"))?;
        let n_kv_heads = md
            .usize_opt(&format!("{a}.attention.head_count_kv"))?
            .unwrap_or(n_heads);
        let head_dim = match md.usize_opt(&format!("{a}.attention.key_length"))? {
            Some(d) => d,
            None if n_heads > 0 => hidden_size / n_heads,
            None => 0,
        };
        let n_layers = md.usize(&format!("{a}.block_count"))?;
        let vocab_size = match ct.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims().first().copied().unwrap_or(0),
            None => return Err(Error::malformed("tensor `token_embd.weight` is missing")),
        };
        let sliding_window = md.usize_opt(&format!("{a}.attention.sliding_window"))?;
        let rope_theta = md
            .f64_opt(&format!("{a}.rope.freq_base"))?
            .unwrap_or(10_000.0);
        let rope_dims = md.usize_opt(&format!("{a}.rope.dimension_count"))?;
        if rope_dims.is_some_and(|r| r != head_dim) {
            return Err(Error::Unsupported(format!(
                "RoPE on {} of {head_dim} head dimensions (partial rotary)",
                rope_dims.unwrap_or(0)
            )));
        }
        let long_rope = if ct.tensor_infos.contains_key("rope_factors_long.weight") {
            Some(LongRope {
                original_context: md.usize(&format!("{a}.rope.scaling.original_context_length"))?,
                attn_factor: md
                    .f64_opt(&format!("{a}.rope.scaling.attn_factor"))?
                    .unwrap_or(1.0),
                factors: None,
            })
        } else {
            None
        };
        let gemma = if matches!(arch, Architecture::Gemma2 | Architecture::Gemma3) {
            let gemma2 = arch == Architecture::Gemma2;
            let linear = match md.string_opt(&format!("{a}.rope.scaling.type"))?.as_deref() {
                Some("linear") => md
                    .f64_opt(&format!("{a}.rope.scaling.factor"))?
                    .unwrap_or(1.0),
                _ => 1.0,
            };
            // llama.cpp's conventions, which GGUF conversions rely on: Gemma 2 alternates
            // sliding and global layers and scales queries by head_dim^-1/2 except in its 27B
            // model (46 layers: (hidden/heads)^-1/2); Gemma 3 makes every sixth layer global
            // and its local layers use a RoPE base of 10k. Either may name its own pattern
            // and local base.
            let every = if gemma2 { 2 } else { 6 };
            let key = format!("{a}.attention.sliding_window_pattern");
            let sliding_layers = match md.sliding_pattern_opt(&key, n_layers)? {
                Some(p) => p,
                None => (0..n_layers).map(|i| (i + 1) % every != 0).collect(),
            };
            let query_pre_attn_scalar = if gemma2 && n_layers == 46 && n_heads > 0 {
                (hidden_size / n_heads) as f64
            } else {
                head_dim as f64
            };
            let local_base = md.f64_opt(&format!("{a}.rope.freq_base_swa"))?;
            Some(GemmaParams {
                query_pre_attn_scalar,
                rope_local_base_freq: local_base.unwrap_or(if gemma2 {
                    rope_theta
                } else {
                    10_000.0
                }),
                rope_global_linear_factor: linear,
                sliding_layers,
                final_logit_softcapping: md.f64_opt(&format!("{a}.final_logit_softcapping"))?,
                attn_logit_softcapping: md.f64_opt(&format!("{a}.attn_logit_softcapping"))?,
                norm_weights_offset: false,
            })
        } else {
            None
        };
        let cfg = Self {
            arch,
            hidden_size,
            intermediate_size: md.usize(&format!("{a}.feed_forward_length"))?,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: md
                .f64_opt(&format!("{a}.attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-5),
            rope_theta,
            // llama.cpp stores Llama 3 scaling as the `rope_freqs.weight` tensor instead.
            rope_scaling: None,
            long_rope,
            rope_interleaved: matches!(arch, Architecture::Llama | Architecture::Mistral),
            context_length: md
                .usize_opt(&format!("{a}.context_length"))?
                .unwrap_or(2048),
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

    /// Reads the hyperparameters of a Hugging Face model from its config.json.
    pub fn from_hf_json(json: &[u8]) -> Result<Self> {
        let raw: HfConfig = serde_json::from_slice(json)
            .map_err(|e| Error::malformed(format!("config.json: {e}")))?;
        let arch = raw.architecture()?;
        let n_heads = raw.num_attention_heads;
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size.checked_div(n_heads).unwrap_or(0));
        raw.check_full_rotary()?;
        let rope_theta = raw.rope_theta();
        let scaling = HfRopeScaling::of(&raw);
        let (rope_scaling, long_rope) = scaling.read(&raw, arch, head_dim)?;
        let gemma = matches!(arch, Architecture::Gemma2 | Architecture::Gemma3)
            .then(|| raw.gemma_params(arch, head_dim, rope_theta, &scaling));
        let cfg = Self {
            arch,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            n_layers: raw.num_hidden_layers,
            n_heads,
            n_kv_heads: raw.num_key_value_heads.unwrap_or(n_heads),
            head_dim,
            vocab_size: raw.vocab_size,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            long_rope,
            rope_interleaved: false,
            context_length: raw.max_position_embeddings.unwrap_or(2048),
            sliding_window: raw.sliding_window(arch),
            qkv_bias: arch == Architecture::Qwen2 || raw.attention_bias == Some(true),
            tie_word_embeddings: raw
                .tie_word_embeddings
                .unwrap_or(matches!(arch, Architecture::Gemma2 | Architecture::Gemma3)),
            gemma,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl HfConfig {
    fn architecture(&self) -> Result<Architecture> {
        let name = self
            .model_type
            .clone()
            .or_else(|| self.architectures.as_ref().and_then(|a| a.first().cloned()))
            .ok_or_else(|| Error::malformed("config.json names no model_type"))?;
        Architecture::parse(&name)
    }

    /// Refuses RoPE on part of each head, which no model here implements.
    fn check_full_rotary(&self) -> Result<()> {
        let rotary = self.partial_rotary_factor.or_else(|| {
            self.rope_parameters
                .as_ref()
                .and_then(|p| p.get("partial_rotary_factor"))
                .and_then(|v| v.as_f64())
        });
        match rotary {
            Some(f) if f != 1.0 => Err(Error::Unsupported(format!(
                "RoPE on part of each head (partial_rotary_factor {f})"
            ))),
            _ => Ok(()),
        }
    }

    /// transformers 5 nests rope settings under `rope_parameters` (per attention type for
    /// Gemma 3); older files keep them at the top level. Both are read, the explicit top-level
    /// value first.
    fn rope_theta(&self) -> f64 {
        let params = self.rope_parameters.as_ref();
        self.rope_theta
            .or_else(|| {
                params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|v| v.as_f64())
            })
            .or_else(|| {
                params
                    .and_then(|p| p.get("full_attention"))
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|v| v.as_f64())
            })
            .unwrap_or(10_000.0)
    }

    fn sliding_window(&self, arch: Architecture) -> Option<usize> {
        match arch {
            Architecture::Mistral | Architecture::Gemma2 | Architecture::Gemma3 => {
                self.sliding_window
            }
            Architecture::Qwen2 if self.use_sliding_window == Some(true) => self.sliding_window,
            _ => None,
        }
    }

    fn gemma_params(
        &self,
        arch: Architecture,
        head_dim: usize,
        rope_theta: f64,
        scaling: &HfRopeScaling,
    ) -> GemmaParams {
        let n = self.num_hidden_layers;
        // Gemma 2 alternates sliding and global layers; Gemma 3 has five sliding per global.
        let every = if arch == Architecture::Gemma2 { 2 } else { 6 };
        let sliding_layers = match &self.layer_types {
            Some(types) => types.iter().map(|t| t == "sliding_attention").collect(),
            None => {
                let pattern = self.sliding_window_pattern.unwrap_or(every).max(1);
                (0..n).map(|i| (i + 1) % pattern != 0).collect()
            }
        };
        let local_base = self
            .rope_local_base_freq
            .or_else(|| {
                self.rope_parameters
                    .as_ref()
                    .and_then(|p| p.get("sliding_attention"))
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|v| v.as_f64())
            })
            .unwrap_or(if arch == Architecture::Gemma2 {
                rope_theta
            } else {
                10_000.0
            });
        let linear = if scaling.kind == "linear" {
            scaling.num("factor").unwrap_or(1.0)
        } else {
            1.0
        };
        GemmaParams {
            query_pre_attn_scalar: self.query_pre_attn_scalar.unwrap_or(head_dim as f64),
            rope_local_base_freq: local_base,
            rope_global_linear_factor: linear,
            sliding_layers,
            final_logit_softcapping: self.final_logit_softcapping,
            attn_logit_softcapping: self.attn_logit_softcapping,
            norm_weights_offset: true,
        }
    }
}

/// config.json's RoPE scaling: `rope_scaling`, or the scaling inside `rope_parameters` (its
/// `full_attention` part for Gemma 3).
struct HfRopeScaling<'a> {
    json: Option<&'a serde_json::Value>,
    /// `rope_type` (or the older `type`); "default" when there is none.
    kind: &'a str,
}

impl<'a> HfRopeScaling<'a> {
    fn of(raw: &'a HfConfig) -> Self {
        let json = raw.rope_scaling.as_ref().or_else(|| {
            raw.rope_parameters.as_ref().and_then(|p| {
                if p.get("rope_type").is_some() {
                    Some(p)
                } else {
                    p.get("full_attention")
                }
            })
        });
        let kind = json
            .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        Self { json, kind }
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.json.and_then(|s| s.get(key)).and_then(|v| v.as_f64())
    }

    /// Llama 3 scaling or Phi-3's LongRoPE, whichever the file asks for; Gemma 3's linear
    /// scaling is read with its other parameters.
    fn read(
        &self,
        raw: &HfConfig,
        arch: Architecture,
        head_dim: usize,
    ) -> Result<(Option<Llama3RopeScaling>, Option<LongRope>)> {
        Ok(match self.kind {
            "default" => (None, None),
            "longrope" | "su" => (None, Some(self.long_rope(raw, head_dim)?)),
            "llama3" => (
                Some(Llama3RopeScaling {
                    factor: self.num("factor").unwrap_or(1.0),
                    low_freq_factor: self.num("low_freq_factor").unwrap_or(1.0),
                    high_freq_factor: self.num("high_freq_factor").unwrap_or(4.0),
                    original_max_position_embeddings: self
                        .num("original_max_position_embeddings")
                        .unwrap_or(8192.0)
                        as usize,
                }),
                None,
            ),
            "linear" if arch == Architecture::Gemma3 => (None, None),
            other => {
                return Err(Error::Unsupported(format!(
                    "RoPE scaling type `{other}` (supported: default, llama3, longrope{})",
                    if arch == Architecture::Gemma3 {
                        ", linear"
                    } else {
                        ""
                    }
                )))
            }
        })
    }

    fn long_rope(&self, raw: &HfConfig, head_dim: usize) -> Result<LongRope> {
        let list = |key: &str| -> Result<Vec<f32>> {
            self.json
                .and_then(|s| s.get(key))
                .and_then(|v| v.as_array())
                .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect())
                .ok_or_else(|| Error::malformed(format!("LongRoPE `{key}` is missing")))
        };
        let (short, long) = (list("short_factor")?, list("long_factor")?);
        if short.len() != head_dim / 2 || long.len() != head_dim / 2 {
            return Err(Error::malformed(format!(
                "LongRoPE factors: {} short and {} long, expected {} each",
                short.len(),
                long.len(),
                head_dim / 2
            )));
        }
        let max = raw.max_position_embeddings.unwrap_or(2048);
        let original = raw
            .original_max_position_embeddings
            .or_else(|| {
                self.num("original_max_position_embeddings")
                    .map(|v| v as usize)
            })
            .unwrap_or(max);
        // transformers' default: sqrt(1 + ln(scale) / ln(original)) for scale > 1.
        let scale = self
            .num("factor")
            .unwrap_or(max as f64 / original.max(1) as f64);
        let attn_factor = self
            .num("attention_factor")
            .unwrap_or(if scale > 1.0 && original > 1 {
                (1.0 + scale.ln() / (original as f64).ln()).sqrt()
            } else {
                1.0
            });
        Ok(LongRope {
            original_context: original,
            attn_factor,
            factors: Some((short, long)),
        })
    }
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    original_max_position_embeddings: Option<usize>,
    partial_rotary_factor: Option<f64>,
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    attention_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    // Gemma 3
    query_pre_attn_scalar: Option<f64>,
    rope_local_base_freq: Option<f64>,
    layer_types: Option<Vec<String>>,
    sliding_window_pattern: Option<usize>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
}

/// Typed access to GGUF metadata with errors that name the key.
pub(crate) struct Metadata<'a>(pub &'a gguf_file::Content);

impl Metadata<'_> {
    fn get(&self, key: &str) -> Option<&gguf_file::Value> {
        self.0.metadata.get(key)
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.string_opt(key)?
            .ok_or_else(|| Error::malformed(format!("metadata key `{key}` is missing")))
    }

    pub fn string_opt(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(gguf_file::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(Error::malformed(format!(
                "metadata key `{key}` should be a string, found {:?}",
                v.value_type()
            ))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| Error::malformed(format!("metadata key `{key}` is missing")))
    }

    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        use gguf_file::Value as V;
        let v = match self.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: i128 = match v {
            V::U8(x) => *x as i128,
            V::I8(x) => *x as i128,
            V::U16(x) => *x as i128,
            V::I16(x) => *x as i128,
            V::U32(x) => *x as i128,
            V::I32(x) => *x as i128,
            V::U64(x) => *x as i128,
            V::I64(x) => *x as i128,
            _ => {
                return Err(Error::malformed(format!(
                    "metadata key `{key}` should be an integer, found {:?}",
                    v.value_type()
                )))
            }
        };
        usize::try_from(n)
            .map(Some)
            .map_err(|_| Error::malformed(format!("metadata key `{key}` is out of range: {n}")))
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        use gguf_file::Value as V;
        Ok(match self.get(key) {
            None => None,
            Some(V::F32(x)) => Some(*x as f64),
            Some(V::F64(x)) => Some(*x),
            Some(v) => match self.usize_opt(key) {
                Ok(Some(n)) => Some(n as f64),
                _ => {
                    return Err(Error::malformed(format!(
                        "metadata key `{key}` should be a number, found {:?}",
                        v.value_type()
                    )))
                }
            },
        })
    }

    /// llama.cpp's sliding-window pattern: one bool per layer, or a period n (every n-th
    /// layer global).
    pub fn sliding_pattern_opt(&self, key: &str, n_layers: usize) -> Result<Option<Vec<bool>>> {
        use gguf_file::Value as V;
        let bad = || {
            Error::malformed(format!(
                "metadata key `{key}` is not a sliding-window pattern"
            ))
        };
        match self.get(key) {
            None => Ok(None),
            Some(V::Array(items)) => {
                let p: Option<Vec<bool>> = items
                    .iter()
                    .map(|v| match v {
                        V::Bool(b) => Some(*b),
                        _ => None,
                    })
                    .collect();
                match p {
                    Some(p) if p.len() == n_layers => Ok(Some(p)),
                    _ => Err(bad()),
                }
            }
            Some(_) => match self.usize_opt(key)? {
                Some(n) if n > 0 => Ok(Some((0..n_layers).map(|i| (i + 1) % n != 0).collect())),
                _ => Err(bad()),
            },
        }
    }

    pub fn u32_array_opt(&self, key: &str) -> Result<Option<Vec<u32>>> {
        match self.get(key) {
            None => Ok(None),
            Some(gguf_file::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    gguf_file::Value::I32(x) => u32::try_from(*x).ok(),
                    gguf_file::Value::U32(x) => Some(*x),
                    gguf_file::Value::U8(x) => Some(*x as u32),
                    gguf_file::Value::I8(x) => u32::try_from(*x).ok(),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| {
                    Error::malformed(format!(
                        "metadata key `{key}` holds a non-integer or negative value"
                    ))
                }),
            Some(_) => Err(Error::malformed(format!(
                "metadata key `{key}` should be an array"
            ))),
        }
    }

    pub fn string_array_opt(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(gguf_file::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    gguf_file::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| {
                    Error::malformed(format!("metadata key `{key}` holds a non-string value"))
                }),
            Some(_) => Err(Error::malformed(format!(
                "metadata key `{key}` should be an array"
            ))),
        }
    }

    pub fn f32_array_opt(&self, key: &str) -> Result<Option<Vec<f32>>> {
        match self.get(key) {
            None => Ok(None),
            Some(gguf_file::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    gguf_file::Value::F32(x) => Some(*x),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| {
                    Error::malformed(format!("metadata key `{key}` holds a non-float value"))
                }),
            Some(_) => Err(Error::malformed(format!(
                "metadata key `{key}` should be an array"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phi3(rope: &str) -> Result<ModelConfig> {
        let json = format!(
            r#"{{"model_type": "phi3", "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                "vocab_size": 100, "max_position_embeddings": 256,
                "original_max_position_embeddings": 64, "rope_scaling": {rope}}}"#
        );
        ModelConfig::from_hf_json(json.as_bytes())
    }

    #[test]
    fn longrope_from_config_json() {
        let short = "[1,1,1,1,1,1,1,2]";
        let cfg = phi3(&format!(
            r#"{{"type": "longrope", "short_factor": {short}, "long_factor": {short}}}"#
        ))
        .unwrap();
        let lr = cfg.long_rope.expect("LongRoPE");
        assert_eq!(lr.original_context, 64);
        // transformers' default for 256 / 64 positions: sqrt(1 + ln 4 / ln 64).
        assert!((lr.attn_factor - (1.0f64 + 4f64.ln() / 64f64.ln()).sqrt()).abs() < 1e-12);
        assert_eq!(lr.factors.unwrap().0.len(), 8);
    }

    #[test]
    fn bad_longrope_is_refused_not_run() {
        let ok = "[1,1,1,1,1,1,1,1]";
        for rope in [
            // Too few factors for head_dim 16.
            r#"{"type": "longrope", "short_factor": [1,1], "long_factor": [1,1]}"#.to_string(),
            // A zero factor would divide a frequency by zero.
            format!(
                r#"{{"type": "longrope", "short_factor": [1,1,1,1,1,1,1,0], "long_factor": {ok}}}"#
            ),
            // A negative attention factor.
            format!(
                r#"{{"type": "longrope", "short_factor": {ok}, "long_factor": {ok}, "attention_factor": -1}}"#
            ),
            // A missing list.
            format!(r#"{{"type": "longrope", "short_factor": {ok}}}"#),
        ] {
            assert!(
                matches!(phi3(&rope), Err(Error::Malformed(_))),
                "{rope}: {:?}",
                phi3(&rope)
            );
        }
    }
}
