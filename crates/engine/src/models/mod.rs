//! One file per architecture: its weights and its `forward`.

pub mod gemma3;
pub mod llama;
