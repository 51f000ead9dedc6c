//! candor-engine: runs Llama-family language models with candle, from verified files only.
//!
//! - [`model`]: loading a model from the verifier's handles, and the forward pass entry point.
//! - [`generate`]: streaming text generation with stop conditions.
//! - [`grammar`]: constrained decoding (JSON Schema, regex, Lark) with llguidance.
//! - [`tools`]: tool definitions in the prompt, calls constrained and parsed per model family.
//! - [`perplexity`]: scoring a text.
//! - [`sampling`]: choosing tokens from logits.
//! - [`sequence`]: one sequence's tokens and KV cache; several share a forward pass.
//! - [`kv_cache`]: one layer's keys and values, in f32, f16 or q8_0.
//! - [`tokenizer`]: tokenizer.json, or one built from GGUF metadata.
//! - [`chat`]: chat templates, rendered in a sandbox.
//! - [`config`]: hyperparameters read from the file.
//! - [`models`]: one file per architecture.
//! - `kernels` (private): CPU matmul kernels over weights repacked at load; `layers`: the
//!   building blocks the architectures share; `decoder`: the attention and MLP sublayers and
//!   the decoder layer every architecture is made of; `pool`: the threads a forward pass runs
//!   on; `weights`: tensors by role.

pub mod chat;
pub mod config;
mod decoder;
pub mod error;
pub mod generate;
pub mod grammar;
// The SIMD kernels are the one place unsafe code lives (target-feature intrinsics, raw pointers).
#[allow(unsafe_code)]
mod kernels;
pub mod kv_cache;
mod layers;
pub mod model;
pub mod models;
pub mod perplexity;
mod pool;
pub mod sampling;
pub mod sequence;
pub mod serving;
pub mod tokenizer;
pub mod tools;
mod weights;

pub use chat::{ChatTemplate, FunctionCall, Message, ToolCall};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, ErrorKind, Result};
pub use generate::{
    Completion, FinishReason, GenerateParams, Piece, Reasoning, ScoredToken, TokenLogprob,
};
pub use grammar::{Grammar, GrammarKind};
pub use kernels::bandwidth::read_bandwidth as memory_read_bandwidth;
pub use kernels::instruction_sets as kernel_instruction_sets;
pub use kv_cache::CacheType;
pub use model::{DeviceKind, LoadOptions, LoadedModelInfo, Model};
pub use perplexity::Perplexity;
pub use sampling::SamplingParams;
pub use sequence::{SeqStep, Sequence};
pub use tools::{Tool, ToolChoice, ToolFormat, Tools};
