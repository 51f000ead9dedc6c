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

mod keys;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_cert::{der::Decode, Certificate};

pub use keys::{parse_pem_certificates, CertSummary, EcKey};

use crate::{
    error::{Error, ErrorKind, Result},
    files::FileIdentity,
    manifest::validate_rel_path,
};

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
const READ_SIZE: usize = 1 << 20;

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
    pub fn load_public_key(path: &Path) -> Result<VerifyKey> {
        let text = read_small(path)?;
        Self::from_public_key_pem(&text).map_err(|problem| {
            SignatureError::Key {
                path: path.to_path_buf(),
                problem,
            }
            .into()
        })
    }

    /// Read a PEM file of trusted root certificates.
    pub fn load_certificate_roots(path: &Path) -> Result<VerifyKey> {
        let text = read_small(path)?;
        Self::from_ca_pem(&text).map_err(|problem| {
            SignatureError::Key {
                path: path.to_path_buf(),
                problem,
            }
            .into()
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

fn read_small(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > 1 << 20 {
        return Err(SignatureError::Key {
            path: path.to_path_buf(),
            problem: "larger than 1 MiB".into(),
        }
        .into());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| {
        SignatureError::Key {
            path: path.to_path_buf(),
            problem: "not a UTF-8 PEM file".into(),
        }
        .into()
    })
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

// ---- bundle JSON -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    media_type: Option<String>,
    verification_material: Option<RawMaterial>,
    dsse_envelope: Option<RawEnvelope>,
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    public_key: Option<RawPublicKey>,
    x509_certificate_chain: Option<RawChain>,
    certificate: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPublicKey {
    hint: Option<String>,
    raw_bytes: Option<String>,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<RawSig>,
}

#[derive(Deserialize)]
struct RawSig {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    #[serde(rename = "_type")]
    type_: String,
    #[serde(default)]
    subject: Vec<RawSubject>,
    predicate_type: String,
    predicate: Option<RawPredicate>,
}

#[derive(Deserialize)]
struct RawSubject {
    #[serde(default)]
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawPredicate {
    serialization: RawSerialization,
    resources: Vec<RawResource>,
}

#[derive(Deserialize)]
struct RawSerialization {
    method: String,
    hash_type: String,
    #[serde(default)]
    allow_symlinks: bool,
    #[serde(default)]
    ignore_paths: Vec<String>,
    /// A protobuf Struct number: `model_signing` writes it as a float (`1000000000.0`).
    shard_size: Option<f64>,
}

#[derive(Deserialize)]
struct RawResource {
    name: String,
    algorithm: String,
    digest: String,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    let e = &base64::engine::general_purpose::STANDARD;
    e.decode(s.trim()).ok().or_else(|| {
        base64::engine::general_purpose::URL_SAFE
            .decode(s.trim())
            .ok()
    })
}

/// The DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// What the signed statement says, after its signature and root digest were checked.
struct Statement {
    model_name: String,
    subject: [u8; 32],
    method: Serialization,
    hash_type: String,
    allow_symlinks: bool,
    ignore_paths: Vec<String>,
    resources: Vec<(String, [u8; 32])>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serialization {
    Files,
    Shards(u64),
}

/// Check the bundle's signature and statement; no file is read.
fn open_bundle(
    bundle_path: &Path,
    key: &VerifyKey,
) -> std::result::Result<(Statement, SigningMethod, SignerReport, Vec<String>), SignatureError> {
    let bundle = bundle_path.to_path_buf();
    let malformed = |problem: String| SignatureError::Malformed {
        bundle: bundle.clone(),
        problem,
    };
    let meta = match std::fs::metadata(bundle_path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SignatureError::MissingBundle { bundle })
        }
        Err(e) => {
            return Err(SignatureError::Io {
                path: bundle,
                source: e,
            })
        }
    };
    if meta.len() > MAX_BUNDLE_BYTES {
        return Err(malformed(format!("larger than {MAX_BUNDLE_BYTES} bytes")));
    }
    let bytes = std::fs::read(bundle_path).map_err(|e| SignatureError::Io {
        path: bundle.clone(),
        source: e,
    })?;
    let raw: RawBundle =
        serde_json::from_slice(&bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let mut warnings = Vec::new();

    let media = raw.media_type.unwrap_or_default();
    if !BUNDLE_MEDIA_TYPES.contains(&media.as_str()) {
        if media.starts_with("application/vnd.dev.sigstore.bundle") {
            return Err(SignatureError::Unsupported {
                bundle,
                what: format!(
                    "Sigstore bundle version '{media}' is not supported (OMS writes {})",
                    BUNDLE_MEDIA_TYPES[0]
                ),
            });
        }
        return Err(malformed(format!(
            "mediaType '{media}' (expected {})",
            BUNDLE_MEDIA_TYPES[0]
        )));
    }
    let material = raw
        .verification_material
        .ok_or_else(|| malformed("no verificationMaterial".into()))?;
    if material.certificate.is_some() || !material.tlog_entries.is_empty() {
        return Err(SignatureError::Unsupported {
            bundle,
            what: "a keyless Sigstore signature (Fulcio certificate and Rekor transparency-log entry); \
                   candor verifies key- and certificate-signed OMS bundles only. Verify it with \
                   `model_signing verify sigstore --identity … --identity_provider …`"
                .into(),
        });
    }
    if raw.message_signature.is_some() {
        return Err(malformed(
            "a messageSignature bundle; OMS bundles carry a dsseEnvelope".into(),
        ));
    }
    let env = raw
        .dsse_envelope
        .ok_or_else(|| malformed("no dsseEnvelope".into()))?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(malformed(format!(
            "payloadType '{}' (expected {PAYLOAD_TYPE})",
            env.payload_type
        )));
    }
    let payload = b64(&env.payload).ok_or_else(|| malformed("payload is not base64".into()))?;
    let first = env
        .signatures
        .first()
        .ok_or_else(|| malformed("the envelope holds no signature".into()))?;
    let sig = b64(&first.sig);
    let message = pae(&env.payload_type, &payload);

    // The key, and the signature check.
    let (method, signer) = match (key, material.public_key, material.x509_certificate_chain) {
        (VerifyKey::PublicKey(k), Some(pk), None) => {
            let given = k.hint();
            match (pk.hint.as_deref(), pk.raw_bytes.as_deref()) {
                (Some(h), _) if !h.is_empty() => {
                    if !h.eq_ignore_ascii_case(&given) {
                        return Err(SignatureError::WrongKey {
                            bundle,
                            bundle_key: h.to_ascii_lowercase(),
                            given_key: given,
                        });
                    }
                }
                (_, Some(raw)) => {
                    warnings.push(
                        "the bundle uses the pre-1.1 verification material (publicKey.rawBytes); re-sign it with model_signing 1.1 or later".into(),
                    );
                    if let Some(other) = b64(raw).and_then(|d| EcKey::from_spki_der(&d).ok()) {
                        if other != *k {
                            return Err(SignatureError::WrongKey {
                                bundle,
                                bundle_key: other.hint(),
                                given_key: given,
                            });
                        }
                    }
                }
                _ => warnings.push("the bundle names no key hint".into()),
            }
            let ok = sig.as_deref().is_some_and(|s| k.verify(&message, s, k.hash()));
            if !ok {
                return Err(SignatureError::BadSignature {
                    bundle,
                    key: key.describe(),
                });
            }
            (
                SigningMethod::Key,
                SignerReport {
                    curve: k.curve(),
                    key_sha256: given,
                    certificates: Vec::new(),
                },
            )
        }
        (VerifyKey::CertificateRoots(roots), None, Some(chain)) => {
            let mut certs = Vec::new();
            for (i, c) in chain.certificates.iter().enumerate() {
                let der = b64(&c.raw_bytes)
                    .ok_or_else(|| malformed(format!("certificate {i} is not base64")))?;
                certs.push(
                    Certificate::from_der(&der)
                        .map_err(|e| malformed(format!("certificate {i}: {e}")))?,
                );
            }
            let (leaf_key, path) =
                keys::verify_chain(&certs, roots).map_err(|problem| SignatureError::Certificate {
                    bundle: bundle.clone(),
                    problem,
                })?;
            let ok = sig
                .as_deref()
                .is_some_and(|s| leaf_key.verify(&message, s, leaf_key.hash()));
            if !ok {
                return Err(SignatureError::BadSignature {
                    bundle,
                    key: format!(
                        "the signing certificate '{}'",
                        path.first().map(|c| c.subject.as_str()).unwrap_or("?")
                    ),
                });
            }
            (
                SigningMethod::Certificate,
                SignerReport {
                    curve: leaf_key.curve(),
                    key_sha256: leaf_key.hint(),
                    certificates: path,
                },
            )
        }
        (VerifyKey::PublicKey(_), None, Some(_)) => {
            return Err(SignatureError::Unsupported {
                bundle,
                what: "the bundle is signed with a certificate; verify it against the issuing CA (--certificate-chain CA.pem), not a public key".into(),
            })
        }
        (VerifyKey::CertificateRoots(_), Some(_), None) => {
            return Err(SignatureError::Unsupported {
                bundle,
                what: "the bundle is signed with a bare key; verify it with the public key (--public-key KEY.pub), not certificates".into(),
            })
        }
        (_, Some(_), Some(_)) => {
            return Err(malformed(
                "verificationMaterial has both a publicKey and a certificate chain".into(),
            ))
        }
        (_, None, None) => {
            return Err(malformed(
                "verificationMaterial has neither a publicKey nor a certificate chain".into(),
            ))
        }
    };

    // The statement (signed, so from here on only the signer could have written it).
    let st: RawStatement = serde_json::from_slice(&payload)
        .map_err(|e| malformed(format!("the statement is not valid: {e}")))?;
    if st.type_ != STATEMENT_TYPE {
        return Err(malformed(format!(
            "statement _type '{}' (expected {STATEMENT_TYPE})",
            st.type_
        )));
    }
    if st.predicate_type == PREDICATE_TYPE_V01 {
        return Err(SignatureError::Unsupported {
            bundle,
            what: format!("predicate type {PREDICATE_TYPE_V01} (model_signing 0.2) is not supported; re-sign the model with model_signing 1.0 or later"),
        });
    }
    if st.predicate_type != PREDICATE_TYPE {
        return Err(malformed(format!(
            "predicateType '{}' (expected {PREDICATE_TYPE})",
            st.predicate_type
        )));
    }
    let [subject] = st.subject.as_slice() else {
        return Err(malformed(format!(
            "the statement has {} subjects (expected one)",
            st.subject.len()
        )));
    };
    let subject_digest = subject
        .digest
        .get("sha256")
        .and_then(|d| parse_hex32(d))
        .ok_or_else(|| malformed("the subject has no valid sha256 digest".into()))?;
    let pred = st
        .predicate
        .ok_or_else(|| malformed("the statement has no predicate".into()))?;
    let ser = pred.serialization;
    let method_ = match ser.method.as_str() {
        "files" => Serialization::Files,
        "shards" => {
            let s = ser
                .shard_size
                .ok_or_else(|| malformed("shards serialization without shard_size".into()))?;
            if !(s >= 1.0 && s.fract() == 0.0 && s <= 9.0e15) {
                return Err(malformed(format!(
                    "shard_size {s} is not a positive integer"
                )));
            }
            Serialization::Shards(s as u64)
        }
        other => {
            return Err(SignatureError::Unsupported {
                bundle,
                what: format!("serialization method '{other}' (files and shards are supported)"),
            })
        }
    };
    if ser.hash_type != "sha256" {
        return Err(SignatureError::Unsupported {
            bundle,
            what: format!(
                "hash_type '{}'; candor verifies sha256 signatures (blake2 and blake3 are not supported)",
                ser.hash_type
            ),
        });
    }
    let mut root = Sha256::new();
    let mut resources = Vec::with_capacity(pred.resources.len());
    for r in pred.resources {
        let algorithm_ok = r.algorithm == ser.hash_type
            || (matches!(method_, Serialization::Shards(_))
                && r.algorithm.starts_with("sha256-sharded-"));
        if !algorithm_ok {
            return Err(malformed(format!(
                "resource '{}' has algorithm '{}' (the serialization says {})",
                r.name, r.algorithm, ser.hash_type
            )));
        }
        let d = parse_hex32(&r.digest).ok_or_else(|| {
            malformed(format!("resource '{}': bad digest '{}'", r.name, r.digest))
        })?;
        root.update(d);
        resources.push((r.name, d));
    }
    let computed: [u8; 32] = root.finalize().into();
    if computed != subject_digest {
        return Err(SignatureError::RootDigestMismatch {
            bundle,
            recorded: hex::encode(subject_digest),
            computed: hex::encode(computed),
        });
    }
    Ok((
        Statement {
            model_name: subject.name.clone(),
            subject: subject_digest,
            method: method_,
            hash_type: ser.hash_type,
            allow_symlinks: ser.allow_symlinks,
            ignore_paths: ser.ignore_paths,
            resources,
        },
        method,
        signer,
        warnings,
    ))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (s.len() == 64)
        .then(|| hex::decode_to_slice(s.to_ascii_lowercase(), &mut out).ok())
        .flatten()
        .map(|_| out)
}

/// A signed file and its signed byte ranges.
struct Listed {
    path: String,
    /// (resource name, start, end, digest); `files` mode has one range with `end = u64::MAX`.
    ranges: Vec<(String, u64, u64, [u8; 32])>,
}

/// Split the resources into files and ranges, in listed order.
fn listed_files(st: &Statement, bundle: &Path) -> std::result::Result<Vec<Listed>, SignatureError> {
    let malformed = |problem: String| SignatureError::Malformed {
        bundle: bundle.to_path_buf(),
        problem,
    };
    let mut out: Vec<Listed> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen = BTreeSet::new();
    for (name, d) in &st.resources {
        if !seen.insert(name.as_str()) {
            return Err(malformed(format!("resource '{name}' is listed twice")));
        }
        let (path, start, end) = match st.method {
            Serialization::Files => (name.as_str(), 0, u64::MAX),
            Serialization::Shards(_) => {
                let bad = || malformed(format!("shard resource '{name}' is not PATH:START:END"));
                let (rest, end) = name.rsplit_once(':').ok_or_else(bad)?;
                let (path, start) = rest.rsplit_once(':').ok_or_else(bad)?;
                let start: u64 = start.parse().map_err(|_| bad())?;
                let end: u64 = end.parse().map_err(|_| bad())?;
                if end <= start {
                    return Err(bad());
                }
                (path, start, end)
            }
        };
        validate_rel_path(path)
            .map_err(|why| malformed(format!("resource path '{path}': {why}")))?;
        let i = *index.entry(path.to_string()).or_insert_with(|| {
            out.push(Listed {
                path: path.to_string(),
                ranges: Vec::new(),
            });
            out.len() - 1
        });
        out[i].ranges.push((name.clone(), start, end, *d));
    }
    Ok(out)
}

/// `rel` is `ig` or lies under it.
fn is_ignored(rel: &str, ignores: &[String]) -> bool {
    ignores.iter().any(|ig| {
        rel == ig
            || (rel.len() > ig.len()
                && rel.starts_with(ig.as_str())
                && rel.as_bytes()[ig.len()] == b'/')
    })
}

fn normalize_ignore(p: &str) -> Option<String> {
    let mut s = p.trim();
    while let Some(r) = s.strip_prefix("./") {
        s = r;
    }
    let s = s.trim_end_matches('/');
    validate_rel_path(s).ok().map(|_| s.to_string())
}

/// Every non-ignored regular file under `root`, by relative path; symlinks, special files and
/// odd names go to `problems`.
fn walk(
    root: &Path,
    ignores: &[String],
    allow_symlinks: bool,
    problems: &mut Vec<FileProblem>,
) -> std::result::Result<Vec<String>, SignatureError> {
    let io_err = |path: &Path, e: io::Error| SignatureError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    let mut entries = 0usize;
    while let Some((dir, prefix, depth)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            entries += 1;
            if entries > MAX_WALK_ENTRIES {
                return Err(SignatureError::Unsupported {
                    bundle: root.to_path_buf(),
                    what: format!("the model directory holds more than {MAX_WALK_ENTRIES} entries"),
                });
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if is_ignored(&rel, ignores) {
                continue;
            }
            let mut ft = entry.file_type().map_err(|e| io_err(&entry.path(), e))?;
            if ft.is_symlink() {
                if !allow_symlinks {
                    problems.push(FileProblem::Symlink { path: rel });
                    continue;
                }
                match std::fs::metadata(entry.path()) {
                    Ok(m) => ft = m.file_type(),
                    Err(_) => {
                        problems.push(FileProblem::NotRegular { path: rel });
                        continue;
                    }
                }
            }
            if ft.is_dir() {
                if depth + 1 < MAX_WALK_DEPTH {
                    stack.push((entry.path(), rel, depth + 1));
                }
            } else if ft.is_file() {
                out.push(rel);
            } else if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device()
            {
                problems.push(FileProblem::NotRegular { path: rel });
            }
        }
    }
    out.sort();
    Ok(out)
}

enum Opened {
    File(File, FileIdentity),
    Problem(FileProblem),
}

/// Open `rel` under `root` without following symlinks unless allowed.
fn open_listed(root: &Path, rel: &str, allow_symlinks: bool) -> io::Result<Opened> {
    let p = rel.to_string();
    if !allow_symlinks {
        let mut cur = root.to_path_buf();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Ok(Opened::Problem(FileProblem::Symlink { path: p }))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Opened::Problem(FileProblem::Missing { path: p })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Opened::Problem(FileProblem::Missing { path: p }))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let full = root.join(rel);
    if !allow_symlinks {
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                return Ok(Opened::Problem(FileProblem::Symlink { path: p }))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Opened::Problem(FileProblem::Missing { path: p }))
            }
            Err(e) => return Err(e),
        }
    }
    let mut oo = OpenOptions::new();
    oo.read(true);
    let mut flags = libc::O_NONBLOCK;
    if !allow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    oo.custom_flags(flags);
    let file = match oo.open(&full) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Opened::Problem(FileProblem::Missing { path: p }))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Opened::Problem(FileProblem::Symlink { path: p }))
        }
        Err(e) => return Err(e),
    };
    let m = file.metadata()?;
    if !m.is_file() {
        return Ok(Opened::Problem(FileProblem::NotRegular { path: p }));
    }
    Ok(Opened::File(file, FileIdentity::of(&m)))
}

/// sha256 of bytes `start..end` of `file`; `None` if the file ends early.
fn sha256_range(file: &File, start: u64, end: u64) -> io::Result<Option<[u8; 32]>> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; READ_SIZE.min((end - start) as usize).max(1)];
    let mut off = start;
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        match file.read_at(&mut buf[..want], off) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                h.update(&buf[..n]);
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(h.finalize().into()))
}

/// The ranges `model_signing` cuts a file of `size` bytes into (none for an empty file).
fn shard_layout(size: u64, shard: u64) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + shard).min(size);
        v.push((start, end));
        start = end;
    }
    v
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
) -> Result<SignatureReport> {
    verify_bundle_inner(bundle_path, model_dir, key, opts).map_err(Error::from)
}

fn verify_bundle_inner(
    bundle_path: &Path,
    model_dir: &Path,
    key: &VerifyKey,
    opts: &SignatureOptions,
) -> std::result::Result<SignatureReport, SignatureError> {
    let bundle = bundle_path.to_path_buf();
    let meta = std::fs::metadata(model_dir).map_err(|e| SignatureError::Io {
        path: model_dir.to_path_buf(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(SignatureError::Unsupported {
            bundle,
            what: format!(
                "{} is a file; pass the model directory the signature was made over",
                model_dir.display()
            ),
        });
    }
    let (st, method, signer, mut warnings) = open_bundle(bundle_path, key)?;
    if let Some(expected) = opts.expected_subject_digest {
        if expected != st.subject {
            return Err(SignatureError::SubjectMismatch {
                bundle,
                signed: hex::encode(st.subject),
                expected: hex::encode(expected),
            });
        }
    }
    let listed = listed_files(&st, bundle_path)?;
    let root = model_dir.canonicalize().map_err(|e| SignatureError::Io {
        path: model_dir.to_path_buf(),
        source: e,
    })?;

    // What not to look at.
    let mut ignores: Vec<String> = st
        .ignore_paths
        .iter()
        .chain(opts.ignore_paths.iter())
        .filter_map(|p| normalize_ignore(p))
        .collect();
    if !opts.include_git_paths {
        ignores.extend(GIT_PATHS.iter().map(|s| s.to_string()));
    }
    if let Ok(b) = bundle_path.canonicalize() {
        if let Ok(rel) = b.strip_prefix(&root) {
            if let Some(r) = rel.to_str().and_then(normalize_ignore) {
                ignores.push(r);
            }
        }
    }

    let mut problems = Vec::new();
    let on_disk = walk(&root, &ignores, st.allow_symlinks, &mut problems)?;
    let listed_set: BTreeSet<&str> = listed.iter().map(|l| l.path.as_str()).collect();
    let mut unsigned = Vec::new();
    for p in &on_disk {
        if listed_set.contains(p.as_str()) {
            continue;
        }
        if opts.allow_unsigned_files {
            unsigned.push(p.clone());
        } else if matches!(st.method, Serialization::Shards(_))
            && std::fs::metadata(root.join(p)).is_ok_and(|m| m.len() == 0)
        {
            // `model_signing` cuts an empty file into no shards: nothing to sign or check.
        } else {
            problems.push(FileProblem::Unsigned { path: p.clone() });
        }
    }
    // Problems from the walk about paths that are listed are reported again below.
    problems.retain(|p| !listed_set.contains(p.path()));

    // Open the listed files and plan the hashing.
    struct Job {
        file: usize,
        resource: String,
        start: u64,
        end: u64,
        signed: [u8; 32],
    }
    let mut opened: Vec<Option<(File, FileIdentity)>> = Vec::with_capacity(listed.len());
    let mut jobs = Vec::new();
    let mut files = Vec::with_capacity(listed.len());
    let mut known_ok: Vec<Option<[u8; 32]>> = vec![None; listed.len()];
    for (i, l) in listed.iter().enumerate() {
        let o = open_listed(&root, &l.path, st.allow_symlinks).map_err(|e| SignatureError::Io {
            path: root.join(&l.path),
            source: e,
        })?;
        let (file, id) = match o {
            Opened::File(f, id) => (f, id),
            Opened::Problem(p) => {
                problems.push(p);
                opened.push(None);
                continue;
            }
        };
        let size = id.size;
        match st.method {
            Serialization::Files => {
                let (name, _, _, signed) = &l.ranges[0];
                if let Some((d, kid)) = opts.known_digests.get(&l.path) {
                    if *kid == id {
                        known_ok[i] = Some(*d);
                        if d != signed {
                            problems.push(FileProblem::DigestMismatch {
                                path: l.path.clone(),
                                resource: name.clone(),
                                signed: hex::encode(signed),
                                actual: hex::encode(d),
                            });
                        }
                    }
                }
                if known_ok[i].is_none() {
                    jobs.push(Job {
                        file: i,
                        resource: name.clone(),
                        start: 0,
                        end: size,
                        signed: *signed,
                    });
                }
                files.push(SignedFile {
                    path: l.path.clone(),
                    size,
                    sha256: Some(hex::encode(signed)),
                    shards: None,
                });
            }
            Serialization::Shards(shard) => {
                let mut got: Vec<(u64, u64)> = l.ranges.iter().map(|r| (r.1, r.2)).collect();
                got.sort_unstable();
                let want = shard_layout(size, shard);
                if got != want {
                    let signed_size = got.iter().map(|r| r.1).max().unwrap_or(0);
                    if signed_size != size {
                        problems.push(FileProblem::SizeMismatch {
                            path: l.path.clone(),
                            signed: signed_size,
                            actual: size,
                        });
                    } else {
                        return Err(SignatureError::Malformed {
                            bundle,
                            problem: format!(
                                "the shards of '{}' do not cut it into {shard}-byte ranges",
                                l.path
                            ),
                        });
                    }
                    opened.push(None);
                    continue;
                }
                for (name, start, end, signed) in &l.ranges {
                    jobs.push(Job {
                        file: i,
                        resource: name.clone(),
                        start: *start,
                        end: *end,
                        signed: *signed,
                    });
                }
                files.push(SignedFile {
                    path: l.path.clone(),
                    size,
                    sha256: None,
                    shards: Some(l.ranges.len()),
                });
            }
        }
        opened.push(Some((file, id)));
    }

    // Hash in parallel; results land in listed order.
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    };
    let results = crate::hashing::parallel_map(&jobs, threads, |job| {
        let (f, _) = opened[job.file].as_ref().expect("opened");
        sha256_range(f, job.start, job.end)
    });
    let mut changed = BTreeSet::new();
    for (job, r) in jobs.iter().zip(results) {
        let path = &listed[job.file].path;
        match r.unwrap_or_else(|| Err(io::Error::other("hashing thread panicked"))) {
            Ok(Some(d)) if d == job.signed => {}
            Ok(Some(d)) => problems.push(FileProblem::DigestMismatch {
                path: path.clone(),
                resource: job.resource.clone(),
                signed: hex::encode(job.signed),
                actual: hex::encode(d),
            }),
            Ok(None) => {
                changed.insert(job.file);
            }
            Err(e) => {
                return Err(SignatureError::Io {
                    path: root.join(path),
                    source: e,
                })
            }
        }
    }
    // A file must not change while it is hashed.
    let mut identities = Vec::new();
    for (i, o) in opened.iter().enumerate() {
        let Some((f, id)) = o else { continue };
        let now = f.metadata().map(|m| FileIdentity::of(&m));
        if changed.contains(&i) || now.map(|n| n != *id).unwrap_or(true) {
            problems.push(FileProblem::Changed {
                path: listed[i].path.clone(),
            });
        }
        identities.push((listed[i].path.clone(), *id));
    }

    if !problems.is_empty() {
        // Listed order first, then the rest by path; one line per problem.
        let order: HashMap<&str, usize> = listed
            .iter()
            .enumerate()
            .map(|(i, l)| (l.path.as_str(), i))
            .collect();
        problems.sort_by(|a, b| {
            let ka = order.get(a.path()).copied().unwrap_or(usize::MAX);
            let kb = order.get(b.path()).copied().unwrap_or(usize::MAX);
            ka.cmp(&kb).then_with(|| a.path().cmp(b.path()))
        });
        problems.dedup();
        return Err(SignatureError::Files { bundle, problems });
    }
    if st.model_name.is_empty() {
        warnings.push("the statement's subject has no name".into());
    }
    Ok(SignatureReport {
        format: "oms-1.0",
        bundle: bundle_path.display().to_string(),
        method,
        signer,
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
        files,
        unsigned_files: unsigned,
        warnings,
        identities,
    })
}
