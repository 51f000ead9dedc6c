//! OpenSSF model signing (OMS) bundles: verify who vouches for a model directory.
//!
//! A bundle (`model.sig`, written by the PyPI tool `model-signing`) nests three layers: a Sigstore
//! bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`) holding the verification material
//! and a DSSE envelope, whose payload is an in-toto statement with predicate type
//! `https://model_signing/signature/v1.0`. The statement lists every signed resource (a file, or a
//! byte range of a file in `shards` mode) with its digest; its single subject carries the root
//! digest: sha256 over the raw resource digests in the order listed.
//!
//! [`verify_bundle`] checks the DSSE signature with a pinned EC public key (P-256, P-384, P-521)
//! or with the bundle's certificate chain up to trusted roots, then hashes every listed resource
//! in the model directory and refuses missing, changed and (unless allowed) unsigned extra files.
//! Keyless Sigstore bundles (Fulcio certificate + Rekor entry) are reported as unsupported.

mod bundle;
mod errors;
mod keys;
mod model_files;
mod signed_files;

use std::{collections::HashMap, fmt, path::Path};

use serde::Serialize;
use x509_cert::Certificate;

pub use bundle::pae;
use bundle::Serialization;
pub use errors::{FileProblem, SignatureError};
pub use keys::{parse_pem_certificates, CertSummary, EcKey};

use crate::files::FileIdentity;

/// Sigstore bundle media types that carry OMS signatures.
pub const BUNDLE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The model_signing 0.2 predicate, not verified here.
pub const PREDICATE_TYPE_V01: &str = "https://model_signing/Digests/v0.1";
/// Paths `model_signing` ignores by default, when signing and when verifying.
pub const GIT_PATHS: &[&str] = &[".git", ".gitattributes", ".github", ".gitignore"];
/// The default bundle file name.
pub const DEFAULT_BUNDLE_NAME: &str = "model.sig";

/// Bundles larger than this are refused before parsing.
const MAX_BUNDLE_BYTES: u64 = 256 << 20;
const MAX_WALK_ENTRIES: usize = 1_000_000;
const MAX_WALK_DEPTH: usize = 64;

/// What a signature must verify with.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyKey {
    /// A pinned EC public key (`model_signing verify key --public-key`).
    PublicKey(EcKey),
    /// Trusted root certificates: the bundle's leaf certificate must chain to one of them
    /// (`model_signing verify certificate --certificate-chain`).
    CertificateRoots(Vec<Certificate>),
}

impl VerifyKey {
    pub fn from_public_key_pem(pem: &str) -> std::result::Result<VerifyKey, String> {
        EcKey::from_pem(pem).map(VerifyKey::PublicKey)
    }

    pub fn from_ca_pem(pem: &str) -> std::result::Result<VerifyKey, String> {
        parse_pem_certificates(pem).map(VerifyKey::CertificateRoots)
    }

    /// Read a PEM public key file.
    pub fn load_public_key(path: &Path) -> Result<VerifyKey, SignatureError> {
        let text = read_small(path)?;
        Self::from_public_key_pem(&text).map_err(|problem| SignatureError::Key {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Read a PEM file of trusted root certificates.
    pub fn load_certificate_roots(path: &Path) -> Result<VerifyKey, SignatureError> {
        let text = read_small(path)?;
        Self::from_ca_pem(&text).map_err(|problem| SignatureError::Key {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// One line for messages.
    pub fn describe(&self) -> String {
        match self {
            VerifyKey::PublicKey(k) => format!("{} key {}", k.curve(), short(&k.hint())),
            VerifyKey::CertificateRoots(r) => match r.as_slice() {
                [one] => format!("root certificate '{}'", one.tbs_certificate.subject),
                many => format!("{} root certificates", many.len()),
            },
        }
    }
}

fn short(hex: &str) -> String {
    format!("sha256:{}", &hex[..hex.len().min(16)])
}

fn read_small(path: &Path) -> Result<String, SignatureError> {
    let io = |source| SignatureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let key_problem = |problem: &str| SignatureError::Key {
        path: path.to_path_buf(),
        problem: problem.into(),
    };
    if std::fs::metadata(path).map_err(io)?.len() > 1 << 20 {
        return Err(key_problem("larger than 1 MiB"));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    String::from_utf8(bytes).map_err(|_| key_problem("not a UTF-8 PEM file"))
}

/// How to verify beyond what the bundle records.
#[derive(Debug, Clone, Default)]
pub struct SignatureOptions {
    /// Accept files in the model directory that the signature does not cover
    /// (`model_signing verify --ignore-unsigned-files`). They are listed in the report.
    pub allow_unsigned_files: bool,
    /// More paths to ignore, relative to the model directory (a directory ignores what is in it).
    pub ignore_paths: Vec<String>,
    /// Check `.git`, `.gitattributes`, `.github` and `.gitignore` too (`--no-ignore-git-paths`).
    pub include_git_paths: bool,
    /// The root (subject) digest the signature must name, e.g. from a manifest.
    pub expected_subject_digest: Option<[u8; 32]>,
    /// Hashing threads; 0 = the number of CPUs.
    pub threads: usize,
    /// Whole-file sha256 digests already computed, by relative path, with the identity of the
    /// file they were computed from. In `files` mode a file whose identity is unchanged is not
    /// hashed again.
    pub known_digests: HashMap<String, ([u8; 32], FileIdentity)>,
}

/// How the bundle was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningMethod {
    Key,
    Certificate,
}

impl fmt::Display for SigningMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigningMethod::Key => "key",
            SigningMethod::Certificate => "certificate",
        })
    }
}

/// The key that verified the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerReport {
    pub curve: &'static str,
    /// sha256 of the canonical PEM of the public key (the OMS key hint).
    pub key_sha256: String,
    /// With the certificate method: the path from the signing certificate to the trusted root.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertSummary>,
}

/// The recorded serialization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SerializationReport {
    /// `files` or `shards`.
    pub method: String,
    pub hash_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_size: Option<u64>,
    pub allow_symlinks: bool,
    pub ignore_paths: Vec<String>,
}

/// One file the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedFile {
    pub path: String,
    pub size: u64,
    /// The whole file's sha256 (`files` mode only; in `shards` mode ranges are signed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Number of signed byte ranges (`shards` mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
}

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    pub format: &'static str,
    pub bundle: String,
    pub method: SigningMethod,
    pub signer: SignerReport,
    /// The subject name: the signed directory's base name.
    pub model_name: String,
    /// The root digest the statement's subject carries (checked against the resources).
    pub subject_digest: String,
    pub serialization: SerializationReport,
    pub resources: usize,
    pub files: Vec<SignedFile>,
    /// Files found in the directory that the signature does not cover, accepted because unsigned
    /// files were allowed.
    pub unsigned_files: Vec<String>,
    pub warnings: Vec<String>,
    /// Identity of every signed file as it was hashed.
    #[serde(skip)]
    pub identities: Vec<(String, FileIdentity)>,
}

impl SignatureReport {
    /// The whole-file sha256 the signature names for `path` (`files` mode).
    pub fn file_sha256(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.sha256.as_deref())
    }

    pub fn covers(&self, path: &str) -> bool {
        self.files.iter().any(|f| f.path == path)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let who = match self.signer.certificates.first() {
            Some(c) => format!(
                "certificate '{}' ({} key {})",
                c.subject,
                self.signer.curve,
                short(&self.signer.key_sha256)
            ),
            None => format!(
                "{} key {}",
                self.signer.curve,
                short(&self.signer.key_sha256)
            ),
        };
        format!(
            "{} signed by {who}: {} mode, {} resources in {} files",
            self.format,
            self.serialization.method,
            self.resources,
            self.files.len()
        )
    }
}

/// Verify the OMS bundle at `bundle_path` for the model directory `model_dir`.
///
/// Checks the DSSE signature with `key`, the in-toto statement (predicate type, one subject whose
/// digest is the root digest of the listed resources), then hashes every listed resource on disk
/// in the listed order and compares. Files under the recorded ignore paths (and the git paths, and
/// the bundle itself when it lies in the directory) are not looked at; any other file the
/// signature does not cover is an error unless `opts.allow_unsigned_files`. Symlinks are refused
/// unless the signer recorded `allow_symlinks = true`.
pub fn verify_bundle(
    bundle_path: &Path,
    model_dir: &Path,
    key: &VerifyKey,
    opts: &SignatureOptions,
) -> Result<SignatureReport, SignatureError> {
    let bundle = bundle_path.to_path_buf();
    let io_error = |source| SignatureError::Io {
        path: model_dir.to_path_buf(),
        source,
    };
    if !std::fs::metadata(model_dir).map_err(io_error)?.is_dir() {
        return Err(SignatureError::Unsupported {
            bundle,
            what: format!(
                "{} is a file; pass the model directory the signature was made over",
                model_dir.display()
            ),
        });
    }
    let opened = bundle::open(bundle_path, key)?;
    let st = opened.statement;
    if let Some(expected) = opts.expected_subject_digest.filter(|e| *e != st.subject) {
        return Err(SignatureError::SubjectMismatch {
            bundle,
            signed: hex::encode(st.subject),
            expected: hex::encode(expected),
        });
    }
    let listed = model_files::listed_files(&st, bundle_path)?;
    let root = model_dir.canonicalize().map_err(io_error)?;
    let ignores = model_files::ignores(&st, opts, bundle_path, &root);
    let mut problems = Vec::new();
    let unsigned = model_files::unsigned(&root, &st, &listed, &ignores, opts, &mut problems)?;
    let signed = signed_files::Signed {
        root: &root,
        statement: &st,
        listed: &listed,
        opts,
        bundle: &bundle,
    };
    let checked = signed_files::check(&signed, &mut problems)?;
    if !problems.is_empty() {
        return Err(SignatureError::Files {
            bundle,
            problems: signed_files::in_listed_order(problems, &listed),
        });
    }
    let mut warnings = opened.warnings;
    if st.model_name.is_empty() {
        warnings.push("the statement's subject has no name".into());
    }
    Ok(SignatureReport {
        format: "oms-1.0",
        bundle: bundle_path.display().to_string(),
        method: opened.method,
        signer: opened.signer,
        model_name: st.model_name,
        subject_digest: hex::encode(st.subject),
        serialization: SerializationReport {
            method: match st.method {
                Serialization::Files => "files".into(),
                Serialization::Shards(_) => "shards".into(),
            },
            hash_type: st.hash_type,
            shard_size: match st.method {
                Serialization::Files => None,
                Serialization::Shards(s) => Some(s),
            },
            allow_symlinks: st.allow_symlinks,
            ignore_paths: st.ignore_paths,
        },
        resources: st.resources.len(),
        files: checked.files,
        unsigned_files: unsigned,
        warnings,
        identities: checked.identities,
    })
}
