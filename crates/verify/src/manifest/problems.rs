//! What can be wrong with a manifest (the file and line are the error's, see `context.rs`).

use serde::Serialize;

use super::limits::{MAX_MANIFEST_BYTES, SCHEMA_VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathProblem {
    #[error("empty path")]
    Empty,
    #[error("absolute path")]
    Absolute,
    #[error("contains '..'")]
    DotDot,
    #[error("contains a '.' component")]
    Dot,
    #[error("contains a backslash")]
    Backslash,
    #[error("contains a control character")]
    ControlChar,
    #[error("contains an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("longer than 1024 bytes")]
    TooLong,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    #[error("{0}")]
    Syntax(String),
    #[error("larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("not UTF-8")]
    NotUtf8,
    #[error("manifest id '{0}' must be lowercase letters, digits, '.', '_' or '-'")]
    BadId(String),
    #[error("unsupported schema_version {0} (this candor reads {SCHEMA_VERSION})")]
    UnsupportedSchemaVersion(u32),
    #[error("sha256 '{0}' is not 64 lowercase hex digits")]
    BadDigest(String),
    #[error("path '{path}': {why}")]
    BadPath { path: String, why: PathProblem },
    #[error("path '{0}' is listed twice (paths compare case-insensitively)")]
    DuplicatePath(String),
    #[error("revision '{0}' is not a 40-hex commit id")]
    BadRevision(String),
    #[error("source kind '{kind}': {message}")]
    BadSource { kind: String, message: String },
    #[error("no [[files]] listed")]
    NoFiles,
    #[error("weights file '{0}' must have format gguf or safetensors")]
    BadWeightsFormat(String),
    #[error("license spdx '{0}' is not an SPDX expression (use LicenseRef-… for custom licenses)")]
    BadSpdx(String),
    #[error("field '{0}' must not be empty")]
    EmptyField(&'static str),
    #[error("root_digest {recorded} does not match the listed files ({computed})")]
    RootDigestMismatch { recorded: String, computed: String },
    #[error("[signature]: {0}")]
    BadSignature(String),
    #[error("{field} entry '{value}' is blank or repeated")]
    BadSourceNote { field: &'static str, value: String },
    #[error("size_sources of '{0}' is empty: list where the size was seen, or leave it out")]
    EmptySizeSources(String),
    #[error("no [{0}] table and no profile: write the table, or name a family profile with `profile = \"<name>\"`")]
    MissingTable(&'static str),
    #[error("names profile '{profile}' and also has a [{table}] table; the profile supplies it, so keep one or the other")]
    ProfileWithInline {
        profile: String,
        table: &'static str,
    },
    #[error("profile name '{0}' must be lowercase letters, digits, '.', '_' or '-'")]
    BadProfileName(String),
    #[error("profile '{name}' not found (looked for {looked_in}); add the profile, or write [license] and [openness] in the manifest instead")]
    ProfileNotFound { name: String, looked_in: String },
    #[error("profile: {0}")]
    ProfileUnreadable(String),
    #[error("profile '{name}' ({at}): {message}")]
    Profile {
        name: String,
        at: String,
        message: String,
    },
    #[error("[hub]: {0}")]
    BadHub(String),
}
