//! The hyperparameters of a Hugging Face model, from its config.json (transformers 4 and 5
//! conventions both).

use super::{Architecture, GemmaParams, Llama3RopeScaling, LongRope, ModelConfig};
use crate::error::{Error, Result};
use serde::Deserialize;

impl ModelConfig {
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
