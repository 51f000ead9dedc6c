use std::{io, path::PathBuf};

use crate::{
    formats::FormatError, manifest::ManifestProblem, policy::PolicyProblem,
    signature::SignatureError,
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class of an error or a finding, which the CLI maps to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Hash or size mismatch, missing or extra file, unsafe file, file changed after verification.
    Integrity,
    /// Refused by license, openness or policy (also: unlisted model, license not accepted).
    Refused,
    /// Malformed or unsupported model file.
    Malformed,
    /// Anything the environment did wrong (I/O).
    Io,
    /// A bad manifest, policy or argument: the user has something to fix before we can judge.
    Usage,
}

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
