//! Why a signature does not verify, and which files it does not match.

use std::{fmt, io, path::PathBuf};

use serde::Serialize;

use super::short;
use crate::error_kind::ErrorKind;

/// A file the signature does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum FileProblem {
    DigestMismatch {
        path: String,
        /// The resource name (`path`, or `path:start:end` in shards mode).
        resource: String,
        signed: String,
        actual: String,
    },
    SizeMismatch {
        path: String,
        signed: u64,
        actual: u64,
    },
    Missing {
        path: String,
    },
    Unsigned {
        path: String,
    },
    Symlink {
        path: String,
    },
    NotRegular {
        path: String,
    },
    Changed {
        path: String,
    },
}

impl FileProblem {
    pub fn path(&self) -> &str {
        match self {
            FileProblem::DigestMismatch { path, .. }
            | FileProblem::SizeMismatch { path, .. }
            | FileProblem::Missing { path }
            | FileProblem::Unsigned { path }
            | FileProblem::Symlink { path }
            | FileProblem::NotRegular { path }
            | FileProblem::Changed { path } => path,
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::DigestMismatch {
                path,
                resource,
                signed,
                actual,
            } => {
                let what = if resource == path {
                    String::new()
                } else {
                    format!(" (bytes {})", &resource[path.len() + 1..])
                };
                write!(
                    f,
                    "{path}: digest mismatch{what}: signed {signed}, found {actual}"
                )
            }
            FileProblem::SizeMismatch {
                path,
                signed,
                actual,
            } => write!(
                f,
                "{path}: size mismatch: signed {signed} bytes, found {actual}"
            ),
            FileProblem::Missing { path } => write!(f, "{path}: signed but missing"),
            FileProblem::Unsigned { path } => write!(
                f,
                "{path}: not covered by the signature (an unsigned extra file)"
            ),
            FileProblem::Symlink { path } => write!(
                f,
                "{path}: is a symlink and the signature does not allow symlinks"
            ),
            FileProblem::NotRegular { path } => {
                write!(f, "{path}: not a regular file or directory")
            }
            FileProblem::Changed { path } => write!(f, "{path}: changed while it was hashed"),
        }
    }
}

/// Why a signature does not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A key or certificate file that cannot be used.
    #[error("{}: {problem}", path.display())]
    Key { path: PathBuf, problem: String },
    #[error("{}: signature bundle not found", bundle.display())]
    MissingBundle { bundle: PathBuf },
    #[error("{}: not a valid OMS signature bundle: {problem}", bundle.display())]
    Malformed { bundle: PathBuf, problem: String },
    #[error("{}: {what}", bundle.display())]
    Unsupported { bundle: PathBuf, what: String },
    #[error("{}: signed with another key: the bundle names key {}, the key given is {}", bundle.display(), short(bundle_key), short(given_key))]
    WrongKey {
        bundle: PathBuf,
        bundle_key: String,
        given_key: String,
    },
    #[error("{}: the signature does not verify with {key} (altered signature or statement, or the wrong key)", bundle.display())]
    BadSignature { bundle: PathBuf, key: String },
    #[error("{}: certificate chain not trusted: {problem}", bundle.display())]
    Certificate { bundle: PathBuf, problem: String },
    #[error("{}: the signed statement is inconsistent: its subject digest is {recorded} but its resources hash to {computed}", bundle.display())]
    RootDigestMismatch {
        bundle: PathBuf,
        recorded: String,
        computed: String,
    },
    #[error("{}: the signature names root digest {signed}, expected {expected}", bundle.display())]
    SubjectMismatch {
        bundle: PathBuf,
        signed: String,
        expected: String,
    },
    #[error("{}: {}", bundle.display(), files_summary(problems))]
    Files {
        bundle: PathBuf,
        problems: Vec<FileProblem>,
    },
}

fn files_summary(p: &[FileProblem]) -> String {
    match p {
        [] => "files do not match".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

impl SignatureError {
    /// Bad keys and unsupported formats are for the user to fix (usage); everything else means
    /// the signature does not vouch for these files (integrity).
    pub fn kind(&self) -> ErrorKind {
        match self {
            SignatureError::Io { .. } => ErrorKind::Io,
            SignatureError::Key { .. } | SignatureError::Unsupported { .. } => ErrorKind::Usage,
            _ => ErrorKind::Integrity,
        }
    }

    /// The file problems, for a `Files` error.
    pub fn file_problems(&self) -> &[FileProblem] {
        match self {
            SignatureError::Files { problems, .. } => problems,
            _ => &[],
        }
    }
}
