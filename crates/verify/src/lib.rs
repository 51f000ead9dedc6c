//! candor-verify decides, before an engine reads a byte, whether a model is what its publisher
//! published, under which terms, and how open it really is.
//!
//! The only way to get at a model's bytes through this crate is [`verify`], which returns the
//! opened and hashed file handles ([`VerifiedFile`]); a file swapped on disk after hashing is never
//! the one handed over.

#![forbid(unsafe_code)]

/// Recorded acceptances of must-accept licenses (Gemma, Llama).
pub mod acceptance;
/// The verification cache: file identity + manifest digest -> verified sha256.
pub mod cache;
/// Error type.
pub mod error;
/// The classes of errors and findings, which the CLI maps to exit codes.
pub mod error_kind;
/// Opening model files safely (no symlink escapes, FIFOs or devices).
pub mod files;
/// What a file is from its name (role, format, refused), and the walk that finds model files.
pub mod filetypes;
/// Strict structural validators for GGUF and safetensors headers, and format detection.
pub mod formats;
/// Streamed, parallel sha256 with progress reporting.
pub mod hashing;
/// License identifiers and their comparison with what a model declares.
pub mod license;
/// The manifest schema and its strict loader.
pub mod manifest;
/// `candor manifest import`: a manifest from what a Hugging Face repo publishes at a commit.
pub mod manifest_import;
/// `candor manifest init`: a self-attested manifest written from local files.
pub mod manifest_init;
/// Model-card (README.md) YAML front matter, read within bounds.
pub mod model_card;
/// Openness levels, component grades and the rules that tie them together.
pub mod openness;
/// `verify`, stage by stage: select, open, hash, signatures, headers, declared terms, openness,
/// policy, acceptance, report.
pub mod pipeline;
/// The user's policy file.
pub mod policy;
/// Human-readable and JSON reports.
pub mod report;
/// OpenSSF model-signing (OMS) bundles: DSSE signatures over in-toto statements of the files.
pub mod signature;

pub use acceptance::AcceptanceStore;
pub use cache::VerifyCache;
pub use error::{Error, ErrorKind, Result};
pub use files::VerifiedFile;
pub use hashing::{sha256_file, NoProgress, Progress, Sha256Writer};
pub use manifest::{
    find_manifest, manifests_in_dir, manifests_in_dir_with, Manifest, Profiles, Source,
};
pub use openness::Level;
pub use pipeline::{verify, SignatureCheck, Verdict, Verification, VerifyOptions};
pub use policy::Policy;
pub use report::{Outcome, Reason, Report};
pub use signature::{verify_bundle, SignatureOptions, SignatureReport, VerifyKey};
