//! What can be wrong with a manifest, and the line of the manifest it is on.

use std::{ops::Range, path::Path};

use serde::Serialize;
use toml::Spanned;

use super::{rules::parse_sha256, MAX_MANIFEST_BYTES, SCHEMA_VERSION};
use crate::error::{Error, Result};

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

/// The manifest text being parsed, to turn byte spans into line numbers in errors.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn err(&self, span: Option<Range<usize>>, problem: ManifestProblem) -> Error {
        Error::Manifest {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line(s.start)),
            problem,
        }
    }

    /// The line of the first `key =` in a table, for fields that carry no span of their own.
    pub(super) fn line_of_key(&self, table: &str, key: &str) -> Option<Range<usize>> {
        let mut in_table = false;
        let mut offset = 0;
        for l in self.text.split_inclusive('\n') {
            let t = l.trim();
            if t.starts_with('[') {
                in_table = t.trim_start_matches('[').trim_end_matches(']').trim() == table;
            } else if in_table {
                if let Some(rest) = t.strip_prefix(key) {
                    if rest.trim_start().starts_with('=') {
                        return Some(offset..offset);
                    }
                }
            }
            offset += l.len();
        }
        None
    }

    /// A sha256 field's digest; an error at its line when it is not 64 lowercase hex digits.
    pub(super) fn digest(&self, field: &Spanned<String>) -> Result<[u8; 32]> {
        parse_sha256(field.get_ref()).ok_or_else(|| {
            self.err(
                Some(field.span()),
                ManifestProblem::BadDigest(field.get_ref().clone()),
            )
        })
    }
}
