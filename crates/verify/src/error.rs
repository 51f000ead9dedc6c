use std::{io, path::PathBuf};

// Only the leaf files that define each module's problems, none of which imports this one.
use crate::{
    formats::FormatError, manifest::problems::ManifestProblem, policy::problem::PolicyProblem,
    signature::SignatureError,
};

pub use crate::error_kind::ErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest that does not parse or breaks a schema rule; `line` is 1-based.
    #[error("manifest {}{}: {problem}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Manifest {
        path: PathBuf,
        line: Option<usize>,
        problem: ManifestProblem,
    },

    #[error("no manifest named '{id}' in {}", dir.display())]
    ManifestNotFound { id: String, dir: PathBuf },

    /// A policy file that does not parse or holds an empty or unknown value (fails closed).
    #[error("policy {}{}: {problem}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Policy {
        path: PathBuf,
        line: Option<usize>,
        problem: PolicyProblem,
    },

    /// A header validator rejected a file (direct use of `formats`).
    #[error("{}: {source}", path.display())]
    Format { path: PathBuf, source: FormatError },

    /// A verified file was modified or replaced after it was hashed.
    #[error("{}: changed since it was verified ({what})", path.display())]
    FileChanged { path: PathBuf, what: &'static str },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("{0}")]
    Usage(String),

    /// An OpenSSF model-signing bundle that does not verify (direct use of `signature`).
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Manifest { .. } | Error::ManifestNotFound { .. } | Error::Policy { .. } => {
                ErrorKind::Usage
            }
            Error::Usage(_) => ErrorKind::Usage,
            Error::FileChanged { .. } => ErrorKind::Integrity,
            Error::Format { .. } => ErrorKind::Malformed,
            Error::Io { .. } => ErrorKind::Io,
            Error::Signature(e) => e.kind(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
