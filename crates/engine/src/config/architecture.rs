//! The architectures candor runs and the few traits that tell their decoder layers apart.

use crate::error::{Error, Result};

/// The architectures candor runs. Their decoder layers are built from the same sublayers
/// (`decoder`); Llama, Mistral, Qwen2/3, OLMo 2, Phi-3 and SmolLM3 share one model file
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
    /// Llama's layers, with RoPE skipped on some of them (every fourth by default).
    SmolLM3,
}

pub const SUPPORTED: &str =
    "llama (Llama 2/3.x, SmolLM2, TinyLlama), mistral, qwen2, qwen3, olmo2, phi3, gemma2, gemma3, smollm3";

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
            "smollm3" | "SmolLM3ForCausalLM" => Self::SmolLM3,
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
            Self::SmolLM3 => "smollm3",
        }
    }

    /// The RMSNorm this family applies to queries and keys before RoPE, if any.
    pub fn qk_norm(self) -> Option<QkNorm> {
        match self {
            Self::Qwen3 | Self::Gemma3 => Some(QkNorm::PerHead),
            Self::Olmo2 => Some(QkNorm::Whole),
            Self::Llama
            | Self::Mistral
            | Self::Qwen2
            | Self::Phi3
            | Self::Gemma2
            | Self::SmolLM3 => None,
        }
    }

    /// Where a layer's RMSNorms sit around its attention and MLP.
    pub fn norm_placement(self) -> NormPlacement {
        match self {
            Self::Olmo2 => NormPlacement::Post,
            Self::Gemma2 | Self::Gemma3 => NormPlacement::Sandwich,
            Self::Llama
            | Self::Mistral
            | Self::Qwen2
            | Self::Qwen3
            | Self::Phi3
            | Self::SmolLM3 => NormPlacement::Pre,
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
