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
        let rotary_dim = raw.rotary_dim(arch, head_dim)?;
        let rope_theta = raw.rope_theta();
        let scaling = HfRopeScaling::of(&raw);
        let (rope_scaling, long_rope) = scaling.read(&raw, arch, rotary_dim)?;
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
            rotary_dim,
            rope_layers: raw.rope_layers(arch)?,
            context_length: raw.max_position_embeddings.unwrap_or(2048),
            sliding_window: raw.sliding_window(arch),
            qkv_bias: arch == Architecture::Qwen2 || raw.attention_bias == Some(true),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(matches!(
                arch,
                Architecture::Gemma2 | Architecture::Gemma3 | Architecture::SmolLM3
            )),
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

    /// The head dimensions RoPE rotates: `partial_rotary_factor` of them (truncated, as
    /// transformers does), which only Phi-3's implementation honours; other families refuse
    /// a factor below 1 rather than run it wrongly.
    fn rotary_dim(&self, arch: Architecture, head_dim: usize) -> Result<usize> {
        let factor = self.partial_rotary_factor.or_else(|| {
            self.rope_parameters
                .as_ref()
                .and_then(|p| p.get("partial_rotary_factor"))
                .and_then(|v| v.as_f64())
        });
        match factor {
            None | Some(1.0) => Ok(head_dim),
            Some(f) if arch == Architecture::Phi3 && f > 0.0 && f < 1.0 => {
                Ok((head_dim as f64 * f) as usize)
            }
            Some(f) => Err(Error::Unsupported(format!(
                "RoPE on part of each head (partial_rotary_factor {f}) in a {} model",
                arch.name()
            ))),
        }
    }

    /// SmolLM3's layers without RoPE: `no_rope_layers` (1 = rotates, 0 = not), else every
    /// `no_rope_layer_interval`-th layer (default 4), as transformers builds the list.
    fn rope_layers(&self, arch: Architecture) -> Result<Option<Vec<bool>>> {
        if arch != Architecture::SmolLM3 {
            return Ok(None);
        }
        if self.use_sliding_window == Some(true) && self.sliding_window.is_some() {
            return Err(Error::Unsupported(
                "SmolLM3 with a sliding window on its layers without RoPE".into(),
            ));
        }
        if let Some(list) = &self.no_rope_layers {
            return Ok(Some(list.iter().map(|&r| r != 0).collect()));
        }
        let every = self.no_rope_layer_interval.unwrap_or(4);
        if every == 0 {
            return Err(Error::malformed("config.json: no_rope_layer_interval is 0"));
        }
        Ok(Some(
            (0..self.num_hidden_layers)
                .map(|i| (i + 1) % every != 0)
                .collect(),
        ))
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
        rotary_dim: usize,
    ) -> Result<(Option<Llama3RopeScaling>, Option<LongRope>)> {
        Ok(match self.kind {
            "default" => (None, None),
            "longrope" | "su" => (None, Some(self.long_rope(raw, rotary_dim)?)),
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

    fn long_rope(&self, raw: &HfConfig, rotary_dim: usize) -> Result<LongRope> {
        let list = |key: &str| -> Result<Vec<f32>> {
            self.json
                .and_then(|s| s.get(key))
                .and_then(|v| v.as_array())
                .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect())
                .ok_or_else(|| Error::malformed(format!("LongRoPE `{key}` is missing")))
        };
        let (short, long) = (list("short_factor")?, list("long_factor")?);
        if short.len() != rotary_dim / 2 || long.len() != rotary_dim / 2 {
            return Err(Error::malformed(format!(
                "LongRoPE factors: {} short and {} long, expected {} each",
                short.len(),
                long.len(),
                rotary_dim / 2
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
    // SmolLM3
    no_rope_layers: Option<Vec<u8>>,
    no_rope_layer_interval: Option<usize>,
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

    fn config(json: &str) -> Result<ModelConfig> {
        ModelConfig::from_hf_json(json.as_bytes())
    }

    /// Phi-4 (14B): Phi-3's layers, whole-head RoPE, no scaling, a 100k vocabulary.
    #[test]
    fn phi4_loads_with_full_rotary() {
        let cfg = config(
            r#"{"model_type": "phi3", "hidden_size": 5120, "intermediate_size": 17920,
                "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 10,
                "vocab_size": 100352, "max_position_embeddings": 16384, "rope_theta": 250000.0,
                "rope_scaling": null, "partial_rotary_factor": null, "sliding_window": null,
                "tie_word_embeddings": false}"#,
        )
        .unwrap();
        assert_eq!((cfg.head_dim, cfg.rotary_dim), (128, 128));
        assert!(cfg.long_rope.is_none() && !cfg.tie_word_embeddings);
    }

    /// Phi-4-mini: RoPE on 96 of 128 dimensions, LongRoPE lists of 48, tied embeddings.
    #[test]
    fn phi4_mini_partial_rotary_and_longrope() {
        let list = format!("[{}]", vec!["1.0"; 48].join(","));
        let cfg = config(&format!(
            r#"{{"model_type": "phi3", "hidden_size": 3072, "intermediate_size": 8192,
                "num_hidden_layers": 32, "num_attention_heads": 24, "num_key_value_heads": 8,
                "vocab_size": 200064, "max_position_embeddings": 131072,
                "original_max_position_embeddings": 4096, "partial_rotary_factor": 0.75,
                "rope_scaling": {{"type": "longrope", "short_factor": {list}, "long_factor": {list}}},
                "tie_word_embeddings": true}}"#
        ))
        .unwrap();
        assert_eq!((cfg.head_dim, cfg.rotary_dim), (128, 96));
        assert_eq!(cfg.long_rope.unwrap().original_context, 4096);
        assert!(cfg.tie_word_embeddings);
        // Lists sized for whole heads (64) do not fit a 96-dimension rotation.
        let long = format!("[{}]", vec!["1.0"; 64].join(","));
        let wrong = config(&format!(
            r#"{{"model_type": "phi3", "hidden_size": 3072, "intermediate_size": 8192,
                "num_hidden_layers": 32, "num_attention_heads": 24, "vocab_size": 200064,
                "partial_rotary_factor": 0.75,
                "rope_scaling": {{"type": "longrope", "short_factor": {long}, "long_factor": {long}}}}}"#
        ));
        assert!(matches!(wrong, Err(Error::Malformed(_))), "{wrong:?}");
    }

    /// Only Phi-3's implementation rotates part of a head; elsewhere the factor is refused.
    #[test]
    fn partial_rotary_outside_phi3_is_refused() {
        let cfg = config(
            r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
                "partial_rotary_factor": 0.5}"#,
        );
        assert!(matches!(cfg, Err(Error::Unsupported(_))), "{cfg:?}");
    }

    fn smollm3(extra: &str) -> Result<ModelConfig> {
        config(&format!(
            r#"{{"model_type": "smollm3", "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 8, "num_attention_heads": 4, "vocab_size": 100{extra}}}"#
        ))
    }

    #[test]
    fn smollm3_no_rope_layers() {
        // transformers' default: every fourth layer without RoPE.
        let every4 = [true, true, true, false, true, true, true, false];
        let cfg = smollm3("").unwrap();
        assert_eq!(cfg.rope_layers.as_deref(), Some(&every4[..]));
        assert!(cfg.tie_word_embeddings);
        let cfg = smollm3(r#", "no_rope_layer_interval": 2"#).unwrap();
        let every2: Vec<bool> = (0..8).map(|i| i % 2 == 0).collect();
        assert_eq!(cfg.rope_layers, Some(every2));
        // An explicit list wins over the interval.
        let cfg = smollm3(r#", "no_rope_layers": [0,1,1,1,1,1,1,1], "no_rope_layer_interval": 4"#)
            .unwrap();
        let first: Vec<bool> = (0..8).map(|i| i != 0).collect();
        assert_eq!(cfg.rope_layers, Some(first));
        // A list of the wrong length, an interval of 0 and the sliding-window variant are refused.
        for bad in [
            r#", "no_rope_layers": [1, 1, 0]"#,
            r#", "no_rope_layer_interval": 0"#,
        ] {
            assert!(matches!(smollm3(bad), Err(Error::Malformed(_))), "{bad}");
        }
        let sliding = smollm3(r#", "use_sliding_window": true, "sliding_window": 4096"#);
        assert!(matches!(sliding, Err(Error::Unsupported(_))), "{sliding:?}");
    }
}
