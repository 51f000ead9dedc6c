//! One file per architecture: its weights and its `forward`.

pub mod gemma;
pub mod llama;
