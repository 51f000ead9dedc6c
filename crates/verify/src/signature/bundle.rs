//! Reading a bundle: the Sigstore JSON, the DSSE envelope and its signature (checked with the
//! pinned key or the certificate chain), then the in-toto statement it signs. No model file is
//! read here.

use std::{collections::BTreeMap, io, path::Path};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_cert::{der::Decode, Certificate};

use super::{
    keys::{self, EcKey},
    SignatureError, SignerReport, SigningMethod, VerifyKey, BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES,
    PAYLOAD_TYPE, PREDICATE_TYPE, PREDICATE_TYPE_V01, STATEMENT_TYPE,
};

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    media_type: Option<String>,
    verification_material: Option<RawMaterial>,
    dsse_envelope: Option<RawEnvelope>,
    message_signature: Option<serde_json::Value>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    public_key: Option<RawPublicKey>,
    x509_certificate_chain: Option<RawChain>,
    certificate: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPublicKey {
    hint: Option<String>,
    raw_bytes: Option<String>,
}

#[derive(Clone, Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawCert>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<RawSig>,
}

#[derive(Clone, Deserialize)]
struct RawSig {
    sig: String,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    #[serde(rename = "_type")]
    type_: String,
    #[serde(default)]
    subject: Vec<RawSubject>,
    predicate_type: String,
    predicate: Option<RawPredicate>,
}

#[derive(Clone, Deserialize)]
struct RawSubject {
    #[serde(default)]
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Clone, Deserialize)]
struct RawPredicate {
    serialization: RawSerialization,
    resources: Vec<RawResource>,
}

#[derive(Clone, Deserialize)]
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

#[derive(Clone, Deserialize)]
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
pub(super) struct Statement {
    pub model_name: String,
    pub subject: [u8; 32],
    pub method: Serialization,
    pub hash_type: String,
    pub allow_symlinks: bool,
    pub ignore_paths: Vec<String>,
    pub resources: Vec<(String, [u8; 32])>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serialization {
    Files,
    Shards(u64),
}

/// A bundle whose signature verified, and the statement it signs.
pub(super) struct OpenedBundle {
    pub statement: Statement,
    pub method: SigningMethod,
    pub signer: SignerReport,
    pub warnings: Vec<String>,
}

/// Check the bundle's signature and statement; no model file is read.
pub(super) fn open(bundle_path: &Path, key: &VerifyKey) -> Result<OpenedBundle, SignatureError> {
    let bundle = bundle_path.to_path_buf();
    let raw = read_json(bundle_path)?;
    let material = check_media_type(&raw, bundle_path)?;
    let env = raw
        .dsse_envelope
        .ok_or_else(|| malformed(bundle_path, "no dsseEnvelope"))?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(malformed(
            bundle_path,
            format!(
                "payloadType '{}' (expected {PAYLOAD_TYPE})",
                env.payload_type
            ),
        ));
    }
    let payload =
        b64(&env.payload).ok_or_else(|| malformed(bundle_path, "payload is not base64"))?;
    let first = env
        .signatures
        .first()
        .ok_or_else(|| malformed(bundle_path, "the envelope holds no signature"))?;
    let signed = Signed {
        sig: b64(&first.sig),
        message: pae(&env.payload_type, &payload),
    };
    let mut warnings = Vec::new();
    let (method, signer) = match (key, material.public_key, material.x509_certificate_chain) {
        (VerifyKey::PublicKey(k), Some(pk), None) => {
            check_key(bundle_path, key, k, &pk, &signed, &mut warnings)?
        }
        (VerifyKey::CertificateRoots(roots), None, Some(chain)) => {
            check_chain(bundle_path, roots, &chain, &signed)?
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
                bundle_path,
                "verificationMaterial has both a publicKey and a certificate chain",
            ))
        }
        (_, None, None) => {
            return Err(malformed(
                bundle_path,
                "verificationMaterial has neither a publicKey nor a certificate chain",
            ))
        }
    };
    // Signed, so from here on only the signer could have written the statement.
    Ok(OpenedBundle {
        statement: statement(bundle_path, &payload)?,
        method,
        signer,
        warnings,
    })
}

fn malformed(bundle: &Path, problem: impl Into<String>) -> SignatureError {
    SignatureError::Malformed {
        bundle: bundle.to_path_buf(),
        problem: problem.into(),
    }
}

/// The bundle's JSON, read within `MAX_BUNDLE_BYTES`.
fn read_json(bundle_path: &Path) -> Result<RawBundle, SignatureError> {
    let bundle = bundle_path.to_path_buf();
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
        return Err(malformed(
            bundle_path,
            format!("larger than {MAX_BUNDLE_BYTES} bytes"),
        ));
    }
    let bytes = std::fs::read(bundle_path).map_err(|e| SignatureError::Io {
        path: bundle,
        source: e,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(bundle_path, format!("not JSON: {e}")))
}

/// An OMS bundle: the media type, verification material for a key or a certificate chain (not
/// keyless Sigstore), a DSSE envelope.
fn check_media_type(raw: &RawBundle, bundle_path: &Path) -> Result<RawMaterial, SignatureError> {
    let bundle = bundle_path.to_path_buf();
    let media = raw.media_type.clone().unwrap_or_default();
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
        return Err(malformed(
            bundle_path,
            format!("mediaType '{media}' (expected {})", BUNDLE_MEDIA_TYPES[0]),
        ));
    }
    let material = raw
        .verification_material
        .clone()
        .ok_or_else(|| malformed(bundle_path, "no verificationMaterial"))?;
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
            bundle_path,
            "a messageSignature bundle; OMS bundles carry a dsseEnvelope",
        ));
    }
    Ok(material)
}

/// The envelope's first signature and the bytes it signs (DSSE's pre-authentication encoding).
struct Signed {
    sig: Option<Vec<u8>>,
    message: Vec<u8>,
}

impl Signed {
    /// Whether the signature is there and `key` verifies it over the message.
    fn verified_by(&self, key: &EcKey) -> bool {
        self.sig
            .as_deref()
            .is_some_and(|s| key.verify(&self.message, s, key.hash()))
    }
}

/// A bundle signed with a bare key: the key it names must be the pinned one, and verify.
fn check_key(
    bundle_path: &Path,
    key: &VerifyKey,
    k: &EcKey,
    pk: &RawPublicKey,
    signed: &Signed,
    warnings: &mut Vec<String>,
) -> Result<(SigningMethod, SignerReport), SignatureError> {
    let bundle = bundle_path.to_path_buf();
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
    if !signed.verified_by(k) {
        return Err(SignatureError::BadSignature {
            bundle,
            key: key.describe(),
        });
    }
    let signer = SignerReport {
        curve: k.curve(),
        key_sha256: given,
        certificates: Vec::new(),
    };
    Ok((SigningMethod::Key, signer))
}

/// A bundle signed with a certificate: its chain must lead to a trusted root, and the leaf's
/// key verify.
fn check_chain(
    bundle_path: &Path,
    roots: &[Certificate],
    chain: &RawChain,
    signed: &Signed,
) -> Result<(SigningMethod, SignerReport), SignatureError> {
    let mut certs = Vec::new();
    for (i, c) in chain.certificates.iter().enumerate() {
        let der = b64(&c.raw_bytes)
            .ok_or_else(|| malformed(bundle_path, format!("certificate {i} is not base64")))?;
        certs.push(
            Certificate::from_der(&der)
                .map_err(|e| malformed(bundle_path, format!("certificate {i}: {e}")))?,
        );
    }
    let (leaf_key, path) =
        keys::verify_chain(&certs, roots).map_err(|problem| SignatureError::Certificate {
            bundle: bundle_path.to_path_buf(),
            problem,
        })?;
    if !signed.verified_by(&leaf_key) {
        return Err(SignatureError::BadSignature {
            bundle: bundle_path.to_path_buf(),
            key: format!(
                "the signing certificate '{}'",
                path.first().map(|c| c.subject.as_str()).unwrap_or("?")
            ),
        });
    }
    let signer = SignerReport {
        curve: leaf_key.curve(),
        key_sha256: leaf_key.hint(),
        certificates: path,
    };
    Ok((SigningMethod::Certificate, signer))
}

/// The in-toto statement: its type, OMS predicate, one subject, the serialization and every
/// resource, whose digests must hash to the subject's.
fn statement(bundle_path: &Path, payload: &[u8]) -> Result<Statement, SignatureError> {
    let bundle = bundle_path.to_path_buf();
    let bad = |problem: String| malformed(bundle_path, problem);
    let st: RawStatement = serde_json::from_slice(payload)
        .map_err(|e| bad(format!("the statement is not valid: {e}")))?;
    if st.type_ != STATEMENT_TYPE {
        return Err(bad(format!(
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
        return Err(bad(format!(
            "predicateType '{}' (expected {PREDICATE_TYPE})",
            st.predicate_type
        )));
    }
    let [subject] = st.subject.as_slice() else {
        return Err(bad(format!(
            "the statement has {} subjects (expected one)",
            st.subject.len()
        )));
    };
    let subject_digest = subject
        .digest
        .get("sha256")
        .and_then(|d| parse_hex32(d))
        .ok_or_else(|| bad("the subject has no valid sha256 digest".into()))?;
    let pred = st
        .predicate
        .ok_or_else(|| bad("the statement has no predicate".into()))?;
    let ser = pred.serialization;
    let method = serialization(bundle_path, &ser)?;
    let mut root = Sha256::new();
    let mut resources = Vec::with_capacity(pred.resources.len());
    for r in pred.resources {
        let algorithm_ok = r.algorithm == ser.hash_type
            || (matches!(method, Serialization::Shards(_))
                && r.algorithm.starts_with("sha256-sharded-"));
        if !algorithm_ok {
            return Err(bad(format!(
                "resource '{}' has algorithm '{}' (the serialization says {})",
                r.name, r.algorithm, ser.hash_type
            )));
        }
        let d = parse_hex32(&r.digest)
            .ok_or_else(|| bad(format!("resource '{}': bad digest '{}'", r.name, r.digest)))?;
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
    Ok(Statement {
        model_name: subject.name.clone(),
        subject: subject_digest,
        method,
        hash_type: ser.hash_type,
        allow_symlinks: ser.allow_symlinks,
        ignore_paths: ser.ignore_paths,
        resources,
    })
}

/// `files` or `shards` (with a positive integer shard size), over sha256.
fn serialization(
    bundle_path: &Path,
    ser: &RawSerialization,
) -> Result<Serialization, SignatureError> {
    let method = match ser.method.as_str() {
        "files" => Serialization::Files,
        "shards" => {
            let s = ser
                .shard_size
                .ok_or_else(|| malformed(bundle_path, "shards serialization without shard_size"))?;
            if !(s >= 1.0 && s.fract() == 0.0 && s <= 9.0e15) {
                return Err(malformed(
                    bundle_path,
                    format!("shard_size {s} is not a positive integer"),
                ));
            }
            Serialization::Shards(s as u64)
        }
        other => {
            return Err(SignatureError::Unsupported {
                bundle: bundle_path.to_path_buf(),
                what: format!("serialization method '{other}' (files and shards are supported)"),
            })
        }
    };
    if ser.hash_type != "sha256" {
        return Err(SignatureError::Unsupported {
            bundle: bundle_path.to_path_buf(),
            what: format!(
                "hash_type '{}'; candor verifies sha256 signatures (blake2 and blake3 are not supported)",
                ser.hash_type
            ),
        });
    }
    Ok(method)
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (s.len() == 64)
        .then(|| hex::decode_to_slice(s.to_ascii_lowercase(), &mut out).ok())
        .flatten()
        .map(|_| out)
}
