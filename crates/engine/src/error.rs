//! Engine errors. Each variant says what went wrong and, where the user can act, what to do.

use std::fmt;

/// Broad class of an engine error, so callers can map it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The model file is malformed or uses something the engine does not support.
    Model,
    /// The request is invalid (empty prompt, prompt longer than the context, bad option).
    Request,
    /// Anything else at run time (device, I/O, numerics).
    Runtime,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported architecture `{name}`: candor runs {supported}")]
    UnsupportedArchitecture { name: String, supported: String },

    #[error("the model file is malformed: {0}")]
    Malformed(String),

    #[error("unsupported model: {0}")]
    Unsupported(String),

    #[error("no model weights found among the verified files: expected one .gguf file or a directory with config.json and *.safetensors")]
    NoWeights,

    #[error("chat template: {0}")]
    ChatTemplate(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("the prompt is empty: give some text to complete")]
    EmptyPrompt,

    #[error("the prompt has {tokens} tokens but the context holds {context}; shorten the prompt or raise --ctx-size (the model supports up to {max})")]
    PromptTooLong {
        tokens: usize,
        context: usize,
        max: usize,
    },

    #[error("the model needs about {needed_mib} MiB ({weights_mib} MiB of weights and {cache_mib} MiB of KV cache for {contexts}) but only {available_mib} MiB of memory is available; use a smaller --ctx-size{fewer} or a smaller model")]
    InsufficientMemory {
        needed_mib: u64,
        weights_mib: u64,
        cache_mib: u64,
        /// "a 4096-token context", or "4 contexts of 4096 tokens".
        contexts: String,
        /// ", fewer --parallel slots" where there are several.
        fewer: &'static str,
        available_mib: u64,
    },

    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// A constraint on the output that cannot be compiled or enforced; `origin` names where it
    /// came from (a request field, a command-line flag).
    #[error("{origin}: {message}")]
    Grammar { origin: String, message: String },

    #[error("device: {0}")]
    Device(String),

    #[error("the verified file `{path}` changed after it was verified ({why}); verify again")]
    ChangedAfterVerification { path: String, why: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnsupportedArchitecture { .. }
            | Error::Malformed(_)
            | Error::Unsupported(_)
            | Error::NoWeights
            | Error::ChatTemplate(_)
            | Error::Tokenizer(_) => ErrorKind::Model,
            Error::EmptyPrompt
            | Error::PromptTooLong { .. }
            | Error::InvalidOption(_)
            | Error::Grammar { .. } => ErrorKind::Request,
            Error::Device(_)
            | Error::InsufficientMemory { .. }
            | Error::ChangedAfterVerification { .. }
            | Error::Candle(_)
            | Error::Io(_) => ErrorKind::Runtime,
        }
    }

    pub(crate) fn malformed(msg: impl fmt::Display) -> Self {
        Error::Malformed(msg.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
