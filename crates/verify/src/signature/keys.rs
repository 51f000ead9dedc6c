//! Elliptic-curve public keys, DSSE signature checks and X.509 chains for OMS bundles.
//!
//! OMS signs with EC keys only (P-256, P-384, P-521); the hash follows the curve: SHA-256,
//! SHA-384, SHA-512 (`model_signing/_signing/sign_ec_key.py:get_ec_key_hash`).

use std::time::Duration;

use ecdsa::signature::hazmat::PrehashVerifier;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::{
    der::{oid::ObjectIdentifier, Decode, Encode},
    ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage},
    Certificate,
};

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const KP_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

/// Longest certificate path we follow (leaf, intermediates, root).
const MAX_CHAIN: usize = 8;

/// An EC public key of a curve OMS signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::PublicKey),
}

/// Which hash an ECDSA signature was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }
}

impl EcKey {
    /// A DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<EcKey, String> {
        if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            return Ok(EcKey::P256(k.into()));
        }
        if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
            return Ok(EcKey::P384(k.into()));
        }
        if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
            return Ok(EcKey::P521(k));
        }
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a SubjectPublicKeyInfo public key: {e}"))?;
        let alg = spki.algorithm.oid;
        Err(if alg == ID_RSA {
            "an RSA key; OpenSSF model signing uses EC keys only (P-256, P-384, P-521)".into()
        } else if alg == ID_ED25519 {
            "an Ed25519 key; OpenSSF model signing uses EC keys only (P-256, P-384, P-521)".into()
        } else if alg == ID_EC_PUBLIC_KEY {
            "an EC key on an unsupported curve (P-256, P-384 and P-521 are supported)".into()
        } else {
            format!("a key of unsupported type {alg} (EC P-256, P-384 or P-521 expected)")
        })
    }

    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl ec -pubout` writes it.
    pub fn from_pem(pem: &str) -> Result<EcKey, String> {
        let (label, doc) = x509_cert::spki::Document::from_pem(pem.trim_start())
            .map_err(|e| format!("not a PEM public key: {e}"))?;
        if label != "PUBLIC KEY" {
            return Err(format!(
                "PEM block is '{label}', expected 'PUBLIC KEY' (extract it with `openssl ec -in KEY -pubout`)"
            ));
        }
        EcKey::from_spki_der(doc.as_bytes())
    }

    pub fn curve(&self) -> &'static str {
        match self {
            EcKey::P256(_) => "P-256",
            EcKey::P384(_) => "P-384",
            EcKey::P521(_) => "P-521",
        }
    }

    /// The hash OMS pairs with this curve.
    pub(crate) fn hash(&self) -> Hash {
        match self {
            EcKey::P256(_) => Hash::Sha256,
            EcKey::P384(_) => Hash::Sha384,
            EcKey::P521(_) => Hash::Sha512,
        }
    }

    /// The canonical PEM (LF line endings, 64 columns, trailing newline), as Python's
    /// `cryptography` writes it.
    pub fn canonical_pem(&self) -> String {
        let r = match self {
            EcKey::P256(k) => p256::PublicKey::from(k).to_public_key_pem(LineEnding::LF),
            EcKey::P384(k) => p384::PublicKey::from(k).to_public_key_pem(LineEnding::LF),
            EcKey::P521(k) => k.to_public_key_pem(LineEnding::LF),
        };
        r.unwrap_or_default()
    }

    /// The OMS key hint: lowercase hex sha256 of the canonical PEM.
    pub fn hint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_pem().as_bytes()))
    }

    /// Verify a DER ECDSA signature over `msg` hashed with `hash`.
    pub(crate) fn verify(&self, msg: &[u8], der_sig: &[u8], hash: Hash) -> bool {
        let prehash = hash.digest(msg);
        match self {
            EcKey::P256(k) => p256::ecdsa::Signature::from_der(der_sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            EcKey::P384(k) => p384::ecdsa::Signature::from_der(der_sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            EcKey::P521(k) => {
                let Ok(s) = p521::ecdsa::Signature::from_der(der_sig) else {
                    return false;
                };
                let Ok(vk) = p521::ecdsa::VerifyingKey::from_affine(*k.as_affine()) else {
                    return false;
                };
                vk.verify_prehash(&prehash, &s).is_ok()
            }
        }
    }
}

/// What a report says about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// sha256 of the DER certificate, lowercase hex.
    pub sha256: String,
}

impl CertSummary {
    pub(crate) fn of(c: &Certificate) -> CertSummary {
        CertSummary {
            subject: c.tbs_certificate.subject.to_string(),
            issuer: c.tbs_certificate.issuer.to_string(),
            sha256: c
                .to_der()
                .map(|d| hex::encode(Sha256::digest(d)))
                .unwrap_or_default(),
        }
    }
}

/// Parse every certificate in a PEM file (trust anchors).
pub fn parse_pem_certificates(pem: &str) -> Result<Vec<Certificate>, String> {
    let certs = Certificate::load_pem_chain(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate list: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(certs)
}

fn unix(t: x509_cert::time::Time) -> Duration {
    t.to_unix_duration()
}

/// Check that `child` was signed by `issuer`'s key.
fn signed_by(child: &Certificate, issuer: &Certificate) -> Result<bool, String> {
    if child.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Ok(false);
    }
    let hash = match child.signature_algorithm.oid {
        o if o == ECDSA_SHA256 => Hash::Sha256,
        o if o == ECDSA_SHA384 => Hash::Sha384,
        o if o == ECDSA_SHA512 => Hash::Sha512,
        o => {
            return Err(format!(
                "certificate '{}' is signed with algorithm {o}; only ECDSA (SHA-256/384/512) chains are supported",
                child.tbs_certificate.subject
            ))
        }
    };
    let spki = issuer
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = EcKey::from_spki_der(&spki).map_err(|e| {
        format!(
            "issuer certificate '{}' holds {e}",
            issuer.tbs_certificate.subject
        )
    })?;
    let tbs = child.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let Some(sig) = child.signature.as_bytes() else {
        return Ok(false);
    };
    Ok(key.verify(&tbs, sig, hash))
}

fn valid_at(c: &Certificate, t: Duration) -> Result<(), String> {
    let v = &c.tbs_certificate.validity;
    if t < unix(v.not_before) || t > unix(v.not_after) {
        return Err(format!(
            "certificate '{}' is not valid at the signing time ({} to {})",
            c.tbs_certificate.subject, v.not_before, v.not_after
        ));
    }
    Ok(())
}

/// A CA certificate must say it is one and may sign certificates.
fn check_ca(c: &Certificate, below: usize, anchor: bool) -> Result<(), String> {
    let name = &c.tbs_certificate.subject;
    match c.tbs_certificate.get::<BasicConstraints>() {
        Ok(Some((_, bc))) => {
            if !bc.ca {
                return Err(format!(
                    "certificate '{name}' issues certificates but is not a CA (basicConstraints cA is false)"
                ));
            }
            if let Some(n) = bc.path_len_constraint {
                if below > n as usize {
                    return Err(format!(
                        "certificate '{name}' allows {n} intermediate(s) below it; the chain has {below}"
                    ));
                }
            }
        }
        Ok(None) if anchor => {}
        Ok(None) => {
            return Err(format!(
                "intermediate certificate '{name}' has no basicConstraints"
            ))
        }
        Err(e) => return Err(format!("certificate '{name}': bad basicConstraints: {e}")),
    }
    if let Ok(Some((_, ku))) = c.tbs_certificate.get::<KeyUsage>() {
        if !ku.key_cert_sign() {
            return Err(format!(
                "certificate '{name}' may not sign certificates (keyUsage lacks keyCertSign)"
            ));
        }
    }
    Ok(())
}

/// Verify the bundle's chain (leaf first, then untrusted intermediates) up to one of `roots`,
/// at the leaf's notBefore time (what `model_signing` does, so signatures outlive their
/// certificates). Returns the leaf's key and the path used, leaf first.
pub(crate) fn verify_chain(
    chain: &[Certificate],
    roots: &[Certificate],
) -> Result<(EcKey, Vec<CertSummary>), String> {
    let leaf = chain.first().ok_or("the certificate chain is empty")?;
    let t = unix(leaf.tbs_certificate.validity.not_before);
    let leaf_name = &leaf.tbs_certificate.subject;

    // The leaf must be usable for signing.
    let ku = leaf
        .tbs_certificate
        .get::<KeyUsage>()
        .ok()
        .flatten()
        .is_some_and(|(_, k)| k.digital_signature());
    let eku = leaf
        .tbs_certificate
        .get::<ExtendedKeyUsage>()
        .ok()
        .flatten()
        .is_some_and(|(_, e)| e.0.contains(&KP_CODE_SIGNING));
    if !ku && !eku {
        return Err(format!(
            "signing certificate '{leaf_name}' is not for signing (no keyUsage digitalSignature, no extendedKeyUsage codeSigning)"
        ));
    }
    let spki = leaf
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = EcKey::from_spki_der(&spki)
        .map_err(|e| format!("signing certificate '{leaf_name}' holds {e}"))?;

    let mut path = vec![leaf];
    valid_at(leaf, t)?;
    loop {
        let current = *path.last().expect("non-empty");
        // A trusted root that signed the current certificate ends the path.
        let mut root_err = None;
        for r in roots {
            match signed_by(current, r) {
                Ok(true) => {
                    valid_at(r, t)?;
                    check_ca(r, path.len() - 1, true)?;
                    let mut out: Vec<CertSummary> =
                        path.iter().map(|c| CertSummary::of(c)).collect();
                    out.push(CertSummary::of(r));
                    return Ok((key, out));
                }
                Ok(false) => {}
                Err(e) => root_err = Some(e),
            }
        }
        // The current certificate is itself a trust anchor (the signer pinned its own cert).
        if roots.iter().any(|r| r == current) {
            return Ok((key, path.iter().map(|c| CertSummary::of(c)).collect()));
        }
        if path.len() >= MAX_CHAIN {
            return Err(format!("certificate chain longer than {MAX_CHAIN}"));
        }
        let mut next = None;
        for c in &chain[1..] {
            if path.contains(&c) {
                continue;
            }
            match signed_by(current, c) {
                Ok(true) => {
                    next = Some(c);
                    break;
                }
                Ok(false) => {}
                Err(e) => root_err = Some(e),
            }
        }
        match next {
            Some(c) => {
                valid_at(c, t)?;
                check_ca(c, path.len() - 1, false)?;
                path.push(c);
            }
            None => {
                return Err(root_err.unwrap_or_else(|| {
                    format!(
                        "certificate '{}' (issuer '{}') does not chain to any trusted certificate",
                        current.tbs_certificate.subject, current.tbs_certificate.issuer
                    )
                }))
            }
        }
    }
}
