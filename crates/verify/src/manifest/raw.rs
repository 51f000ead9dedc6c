//! The manifest as read from TOML, with the spans that errors turn into line numbers. Every table
//! refuses unknown fields.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Attestation, FileFormat, FileRole, ModelInfo};
use crate::{license::License, openness::Openness};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) schema_version: Spanned<u32>,
    #[serde(default)]
    pub(super) attestation: Option<Attestation>,
    #[serde(default)]
    pub(super) hf_repos_revision_unknown: Vec<Spanned<String>>,
    /// A family profile under `families/` that supplies `[license]` and `[openness]`.
    #[serde(default)]
    pub(super) profile: Option<Spanned<String>>,
    pub(super) model: ModelInfo,
    #[serde(default)]
    pub(super) sources: Vec<RawSource>,
    #[serde(default)]
    pub(super) files: Vec<RawFile>,
    #[serde(default)]
    pub(super) license: Option<Spanned<License>>,
    #[serde(default)]
    pub(super) openness: Option<Spanned<Openness>>,
    #[serde(default)]
    pub(super) integrity: Option<RawIntegrity>,
    #[serde(default)]
    pub(super) signature: Option<RawSignature>,
    #[serde(default)]
    pub(super) hub: Option<Spanned<RawHub>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHub {
    pub(super) repo: Spanned<String>,
    pub(super) commit: Spanned<String>,
    #[serde(default)]
    pub(super) sha256_fetched: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignature {
    pub(super) format: Option<Spanned<String>>,
    pub(super) path: Spanned<String>,
    pub(super) method: Option<Spanned<String>>,
    pub(super) public_key_pem: Option<Spanned<String>>,
    pub(super) key_hint: Option<Spanned<String>>,
    pub(super) ca_chain_pem: Option<Spanned<String>>,
    pub(super) expect_subject_digest: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: Spanned<String>,
    pub(super) size: u64,
    pub(super) sha256: Spanned<String>,
    pub(super) role: FileRole,
    pub(super) format: FileFormat,
    #[serde(default)]
    pub(super) hash_sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) size_sources: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) kind: Spanned<String>,
    pub(super) repo: Option<String>,
    pub(super) revision: Option<Spanned<String>>,
    pub(super) package: Option<String>,
    pub(super) version: Option<String>,
    pub(super) members: Option<BTreeMap<String, String>>,
    pub(super) file: Option<String>,
    pub(super) parts: Option<Vec<RawPart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPart {
    pub(super) package: String,
    pub(super) version: String,
    pub(super) member: String,
    pub(super) size: u64,
    pub(super) sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegrity {
    pub(super) root_digest: Spanned<String>,
}

/// A family profile: the license and openness shared by every manifest of one model family and
/// version (`families/<name>.toml`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) schema_version: Spanned<u32>,
    /// Display name of the family and version ("Llama 3.2").
    pub(super) family: Spanned<String>,
    pub(super) license: License,
    pub(super) openness: Openness,
}
