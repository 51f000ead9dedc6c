//! OpenSSF model-signing (OMS) bundles: the committed fixtures were written by the real PyPI tool
//! (`tests/fixtures/signing/make.sh`), so these tests check interoperability without Python.
//! Edge cases the tool cannot be made to write are built here with the RustCrypto signers.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use candor_verify::{
    manifest,
    policy::Policy,
    report::{Outcome, Reason, SignatureSource},
    signature::{self, FileProblem, SignatureError, SigningMethod},
    Error, ErrorKind, Manifest, NoProgress, SignatureCheck, SignatureOptions, VerifyKey,
    VerifyOptions,
};
use common::{overridden, verdict, OPEN_SOURCE_COMPONENTS, PERMISSIVE_TERMS};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/signing")
}

fn bundle(name: &str) -> PathBuf {
    fixtures().join("bundles").join(name)
}

fn key(name: &str) -> VerifyKey {
    let p = fixtures().join("keys").join(name);
    if name.ends_with(".pub") {
        VerifyKey::load_public_key(&p).unwrap()
    } else {
        VerifyKey::load_certificate_roots(&p).unwrap()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A writable copy of the signed model directory.
fn model_copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("model"), d.path());
    d
}

fn check(
    bundle: &Path,
    dir: &Path,
    key: &VerifyKey,
) -> Result<signature::SignatureReport, SignatureError> {
    signature::verify_bundle(bundle, dir, key, &SignatureOptions::default())
}

fn sig_err(r: Result<signature::SignatureReport, SignatureError>) -> SignatureError {
    match r {
        Err(e) => e,
        Ok(r) => panic!("expected a refusal, got {}", r.summary()),
    }
}

fn problems(r: Result<signature::SignatureReport, SignatureError>) -> Vec<FileProblem> {
    let e = sig_err(r);
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    let problems = e.file_problems().to_vec();
    assert_eq!(Error::from(e).kind(), ErrorKind::Integrity);
    problems
}

const KEY_BUNDLES: &[(&str, &str, &str, &str)] = &[
    ("p256-files.sig", "p256.pub", "P-256", "files"),
    ("p384-files.sig", "p384.pub", "P-384", "files"),
    ("p256-shards.sig", "p256.pub", "P-256", "shards"),
    ("p384-shards.sig", "p384.pub", "P-384", "shards"),
];

fn disk_root_digest(dir: &Path) -> String {
    let files = ["config.json", "model.safetensors", "sub/notes.txt"];
    let digests: Vec<(&str, [u8; 32])> = files
        .iter()
        .map(|f| {
            (
                *f,
                Sha256::digest(std::fs::read(dir.join(f)).unwrap()).into(),
            )
        })
        .collect();
    hex::encode(manifest::root_digest(digests.iter().map(|(p, d)| (*p, d))))
}

#[test]
fn accepts_bundles_written_by_model_signing() {
    let dir = fixtures().join("model");
    for (b, k, curve, mode) in KEY_BUNDLES {
        let r = check(&bundle(b), &dir, &key(k)).unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!(r.method, SigningMethod::Key);
        assert_eq!(r.signer.curve, *curve);
        assert_eq!(r.serialization.method, *mode);
        assert_eq!(r.model_name, "model");
        let mut paths: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["config.json", "model.safetensors", "sub/notes.txt"]);
        if *mode == "files" {
            // The manifest's root digest rule is the OMS subject digest.
            assert_eq!(r.subject_digest, disk_root_digest(&dir), "{b}");
            assert_eq!(r.resources, 3);
        } else {
            assert_eq!(r.serialization.shard_size, Some(100));
            // 328 bytes in 100-byte shards, 63 and 62 bytes in one each.
            assert_eq!(r.resources, 6);
        }
        assert!(r.summary().contains(curve));
    }
}

#[test]
fn certificate_chain_to_a_trusted_root() {
    let dir = fixtures().join("model");
    let r = check(&bundle("cert-files.sig"), &dir, &key("ca.pem")).unwrap();
    assert_eq!(r.method, SigningMethod::Certificate);
    let subjects: Vec<&str> = r
        .signer
        .certificates
        .iter()
        .map(|c| c.subject.as_str())
        .collect();
    assert_eq!(
        subjects,
        [
            "CN=candor test signer",
            "CN=candor test intermediate",
            "CN=candor test root"
        ]
    );
    // The intermediate may be the trust anchor itself.
    let r = check(&bundle("cert-files.sig"), &dir, &key("intermediate.pem")).unwrap();
    assert_eq!(r.signer.certificates.len(), 2);

    let e = sig_err(check(&bundle("cert-files.sig"), &dir, &key("other-ca.pem")));
    assert!(matches!(e, SignatureError::Certificate { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Integrity);
    assert!(e.to_string().contains("does not chain"), "{e}");

    // The method must match the key material given.
    let e = sig_err(check(&bundle("cert-files.sig"), &dir, &key("p256.pub")));
    assert!(matches!(e, SignatureError::Unsupported { .. }), "{e}");
    let e = sig_err(check(&bundle("p256-files.sig"), &dir, &key("ca.pem")));
    assert!(matches!(e, SignatureError::Unsupported { .. }), "{e}");
}

#[test]
fn refuses_a_changed_byte_naming_the_file() {
    let mut all: Vec<(&str, &str)> = KEY_BUNDLES.iter().map(|(b, k, ..)| (*b, *k)).collect();
    all.push(("cert-files.sig", "ca.pem"));
    for (b, k) in all {
        let d = model_copy();
        let p = d.path().join("model.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[250] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let got = problems(check(&bundle(b), d.path(), &key(k)));
        assert_eq!(got.len(), 1, "{b}: {got:?}");
        match &got[0] {
            FileProblem::DigestMismatch { path, resource, .. } => {
                assert_eq!(path, "model.safetensors");
                if b.contains("shards") {
                    assert_eq!(resource, "model.safetensors:200:300");
                }
            }
            other => panic!("{b}: {other:?}"),
        }
        let msg = sig_err(check(&bundle(b), d.path(), &key(k))).to_string();
        assert!(msg.contains("model.safetensors: digest mismatch"), "{msg}");
    }
}

#[test]
fn refuses_added_and_removed_files() {
    for (b, k, ..) in KEY_BUNDLES {
        let d = model_copy();
        std::fs::write(d.path().join("sub/extra.bin"), b"not signed").unwrap();
        let got = problems(check(&bundle(b), d.path(), &key(k)));
        assert_eq!(
            got,
            [FileProblem::Unsigned {
                path: "sub/extra.bin".into()
            }],
            "{b}"
        );

        // Allowed, the extra file is listed in the report.
        let r = signature::verify_bundle(
            &bundle(b),
            d.path(),
            &key(k),
            &SignatureOptions {
                allow_unsigned_files: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.unsigned_files, ["sub/extra.bin"]);
        std::fs::remove_file(d.path().join("sub/extra.bin")).unwrap();

        // Git paths are ignored, as model_signing does by default.
        std::fs::create_dir_all(d.path().join(".git/objects")).unwrap();
        std::fs::write(d.path().join(".git/objects/x"), b"git").unwrap();
        std::fs::write(d.path().join(".gitattributes"), b"*.safetensors lfs").unwrap();
        check(&bundle(b), d.path(), &key(k)).unwrap();
        // ... and the signer recorded them among its ignore paths, so they stay ignored even when
        // candor's own defaults are turned off.
        let r = signature::verify_bundle(
            &bundle(b),
            d.path(),
            &key(k),
            &SignatureOptions {
                include_git_paths: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.serialization.ignore_paths.iter().any(|p| p == ".git"));

        std::fs::remove_file(d.path().join("sub/notes.txt")).unwrap();
        let got = problems(check(&bundle(b), d.path(), &key(k)));
        assert_eq!(
            got,
            [FileProblem::Missing {
                path: "sub/notes.txt".into()
            }],
            "{b}"
        );
    }
}

#[test]
fn shards_check_the_file_length() {
    let d = model_copy();
    let p = d.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.push(0);
    std::fs::write(&p, &bytes).unwrap();
    let got = problems(check(
        &bundle("p256-shards.sig"),
        d.path(),
        &key("p256.pub"),
    ));
    assert_eq!(
        got,
        [FileProblem::SizeMismatch {
            path: "model.safetensors".into(),
            signed: 328,
            actual: 329
        }]
    );
    // An empty extra file has no shards: model_signing signs nothing for it.
    let d = model_copy();
    std::fs::write(d.path().join("empty"), b"").unwrap();
    check(&bundle("p256-shards.sig"), d.path(), &key("p256.pub")).unwrap();
    let got = problems(check(&bundle("p256-files.sig"), d.path(), &key("p256.pub")));
    assert_eq!(
        got,
        [FileProblem::Unsigned {
            path: "empty".into()
        }]
    );
}

fn edit_bundle(src: &Path, dest: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(dest, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

#[test]
fn refuses_an_altered_signature_or_statement() {
    let t = tempfile::tempdir().unwrap();
    let dir = fixtures().join("model");
    for (b, k, ..) in KEY_BUNDLES {
        // One bit of the signature.
        let out = t.path().join("sig");
        edit_bundle(&bundle(b), &out, |v| {
            let s = v["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap();
            let mut raw = b64().decode(s).unwrap();
            let n = raw.len();
            raw[n - 5] ^= 0x10;
            v["dsseEnvelope"]["signatures"][0]["sig"] = b64().encode(raw).into();
        });
        let e = sig_err(check(&out, &dir, &key(k)));
        assert!(matches!(e, SignatureError::BadSignature { .. }), "{b}: {e}");
        assert_eq!(e.kind(), ErrorKind::Integrity);

        // The statement: a resource digest swapped for the file's current one would be the
        // attack; any change breaks the signature.
        edit_bundle(&bundle(b), &out, |v| {
            let s = v["dsseEnvelope"]["payload"].as_str().unwrap();
            let text = String::from_utf8(b64().decode(s).unwrap()).unwrap();
            let text = text.replacen("\"model\"", "\"modex\"", 1);
            v["dsseEnvelope"]["payload"] = b64().encode(text).into();
        });
        let e = sig_err(check(&out, &dir, &key(k)));
        assert!(matches!(e, SignatureError::BadSignature { .. }), "{b}: {e}");
    }
}

#[test]
fn refuses_another_key() {
    let dir = fixtures().join("model");
    for (b, k) in [
        ("p256-files.sig", "other.pub"),
        ("p256-files.sig", "p384.pub"),
        ("p384-shards.sig", "p256.pub"),
    ] {
        let e = sig_err(check(&bundle(b), &dir, &key(k)));
        assert!(matches!(e, SignatureError::WrongKey { .. }), "{b} {k}: {e}");
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.to_string().contains("signed with another key"), "{e}");
    }
    // Without the key hint the signature check itself refuses.
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("sig");
    edit_bundle(&bundle("p256-files.sig"), &out, |v| {
        v["verificationMaterial"]["publicKey"]
            .as_object_mut()
            .unwrap()
            .remove("hint");
    });
    check(&out, &dir, &key("p256.pub")).unwrap();
    let e = sig_err(check(&out, &dir, &key("other.pub")));
    assert!(matches!(e, SignatureError::BadSignature { .. }), "{e}");
}

#[test]
fn refuses_symlinks_unless_the_signer_allowed_them() {
    let d = model_copy();
    let real = d.path().join("config.json");
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("config.json");
    std::fs::rename(&real, &target).unwrap();
    std::os::unix::fs::symlink(&target, &real).unwrap();
    let got = problems(check(&bundle("p256-files.sig"), d.path(), &key("p256.pub")));
    assert_eq!(
        got,
        [FileProblem::Symlink {
            path: "config.json".into()
        }]
    );
}

#[test]
fn bundle_inside_the_directory_is_not_an_extra_file() {
    let d = model_copy();
    std::fs::copy(bundle("p256-files.sig"), d.path().join("model.sig")).unwrap();
    check(&d.path().join("model.sig"), d.path(), &key("p256.pub")).unwrap();
}

#[test]
fn keyless_bundles_are_unsupported() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("sig");
    edit_bundle(&bundle("p256-files.sig"), &out, |v| {
        v["verificationMaterial"] = serde_json::json!({
            "certificate": {"rawBytes": "MIIB"},
            "tlogEntries": [{"logIndex": "1"}]
        });
    });
    let e = sig_err(check(&out, &fixtures().join("model"), &key("p256.pub")));
    assert!(matches!(e, SignatureError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("keyless"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[test]
fn bad_key_files_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("k.pub");
    std::fs::write(&p, std::fs::read(fixtures().join("keys/ca.pem")).unwrap()).unwrap();
    let e = VerifyKey::load_public_key(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
    std::fs::write(&p, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n").unwrap();
    let e = VerifyKey::load_public_key(&p).unwrap_err();
    assert!(e.to_string().contains("Ed25519"), "{e}");
}

// ---- bundles built here -----------------------------------------------------------------------

enum TestKey {
    P256(p256::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl TestKey {
    fn pem(&self) -> String {
        match self {
            TestKey::P256(k) => p256::PublicKey::from(k.verifying_key())
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            TestKey::P521(k) => p521::PublicKey::from_secret_scalar(k.as_nonzero_scalar())
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ecdsa::signature::Signer;
        match self {
            TestKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(msg);
                s.to_der().as_bytes().to_vec()
            }
            TestKey::P521(k) => {
                use ecdsa::signature::RandomizedSigner;
                let s: p521::ecdsa::Signature = k.sign_with_rng(&mut CountingRng(1), msg);
                s.to_der().as_bytes().to_vec()
            }
        }
    }
}

/// Nonces for test signatures (p521 0.13 signs only with an RNG).
struct CountingRng(u64);

impl p521::elliptic_curve::rand_core::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = (self.next_u64() >> 56) as u8;
        }
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), p521::elliptic_curve::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl p521::elliptic_curve::rand_core::CryptoRng for CountingRng {}

/// An OMS bundle over `resources` (name, digest hex) signed with `k`.
fn build_bundle(
    k: &TestKey,
    serialization: serde_json::Value,
    resources: &[(String, String)],
    subject: Option<String>,
) -> Vec<u8> {
    let mut root = Sha256::new();
    for (_, d) in resources {
        root.update(hex::decode(d).unwrap());
    }
    let subject = subject.unwrap_or_else(|| hex::encode(root.finalize()));
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": subject}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": serialization,
            "resources": resources.iter().map(|(n, d)| serde_json::json!({"name": n, "algorithm": "sha256", "digest": d})).collect::<Vec<_>>(),
        }
    });
    let payload = serde_json::to_vec(&statement).unwrap();
    let sig = k.sign(&signature::pae(signature::PAYLOAD_TYPE, &payload));
    let hint = hex::encode(Sha256::digest(k.pem().as_bytes()));
    serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": b64().encode(payload),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": b64().encode(sig), "keyid": ""}]
        }
    }))
    .unwrap()
}

fn file_resources(dir: &Path) -> Vec<(String, String)> {
    ["config.json", "model.safetensors", "sub/notes.txt"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                hex::encode(Sha256::digest(std::fs::read(dir.join(f)).unwrap())),
            )
        })
        .collect()
}

fn files_ser() -> serde_json::Value {
    serde_json::json!({"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": ["model.sig"]})
}

fn p256_key() -> TestKey {
    TestKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap())
}

fn write_bundle(dir: &Path, bytes: &[u8]) -> PathBuf {
    let p = dir.join("model.sig");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn p521_keys_verify() {
    let d = model_copy();
    let k = TestKey::P521(
        p521::ecdsa::SigningKey::from_slice(&{
            let mut b = [0u8; 66];
            b[1..].fill(0x5a);
            b
        })
        .unwrap(),
    );
    let b = write_bundle(
        d.path(),
        &build_bundle(&k, files_ser(), &file_resources(d.path()), None),
    );
    let vk = VerifyKey::from_public_key_pem(&k.pem()).unwrap();
    let r = check(&b, d.path(), &vk).unwrap();
    assert_eq!(r.signer.curve, "P-521");
}

#[test]
fn statement_rules() {
    let d = model_copy();
    let k = p256_key();
    let vk = VerifyKey::from_public_key_pem(&k.pem()).unwrap();
    let res = file_resources(d.path());
    let malformed = |bytes: Vec<u8>| {
        let b = write_bundle(d.path(), &bytes);
        let e = sig_err(check(&b, d.path(), &vk));
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
        e
    };

    // The subject digest must be the root digest of the resources, in the listed order.
    let mut reordered = res.clone();
    reordered.swap(0, 1);
    let subject = {
        let mut h = Sha256::new();
        for (_, d) in &res {
            h.update(hex::decode(d).unwrap());
        }
        hex::encode(h.finalize())
    };
    let e = malformed(build_bundle(
        &k,
        files_ser(),
        &reordered,
        Some(subject.clone()),
    ));
    assert!(
        matches!(e, SignatureError::RootDigestMismatch { .. }),
        "{e}"
    );
    // Listed in another order with a matching subject: fine (hash in the order listed).
    let b = write_bundle(d.path(), &build_bundle(&k, files_ser(), &reordered, None));
    check(&b, d.path(), &vk).unwrap();

    let mut dup = res.clone();
    dup.push(res[0].clone());
    let e = malformed(build_bundle(&k, files_ser(), &dup, None));
    assert!(e.to_string().contains("listed twice"), "{e}");

    let mut escape = res.clone();
    escape.push(("../outside".into(), res[0].1.clone()));
    let e = malformed(build_bundle(&k, files_ser(), &escape, None));
    assert!(e.to_string().contains("'..'"), "{e}");

    // Shards must cut each file exactly as model_signing does.
    let st = serde_json::json!({"method": "shards", "hash_type": "sha256", "shard_size": 1000.0, "allow_symlinks": false});
    let bytes = std::fs::read(d.path().join("model.safetensors")).unwrap();
    let mut shards: Vec<(String, String)> = res
        .iter()
        .filter(|(n, _)| n != "model.safetensors")
        .map(|(n, dg)| {
            let size = std::fs::metadata(d.path().join(n)).unwrap().len();
            (format!("{n}:0:{size}"), dg.clone())
        })
        .collect();
    shards.push((
        "model.safetensors:0:100".into(),
        hex::encode(Sha256::digest(&bytes[..100])),
    ));
    let e = malformed(build_bundle(&k, st.clone(), &shards, None));
    assert!(
        matches!(e.file_problems(), [FileProblem::SizeMismatch { path, .. }] if path == "model.safetensors"),
        "{e}"
    );
    shards.pop();
    shards.push((
        format!("model.safetensors:0:{}", bytes.len()),
        hex::encode(Sha256::digest(&bytes)),
    ));
    let b = write_bundle(d.path(), &build_bundle(&k, st, &shards, None));
    check(&b, d.path(), &vk).unwrap();

    // Unsupported hash types are named.
    let ser =
        serde_json::json!({"method": "files", "hash_type": "blake3", "allow_symlinks": false});
    let b = write_bundle(d.path(), &build_bundle(&k, ser, &res, None));
    let e = sig_err(check(&b, d.path(), &vk));
    assert!(e.to_string().contains("blake3"), "{e}");

    // An expected root digest from elsewhere (a manifest).
    let b = write_bundle(d.path(), &build_bundle(&k, files_ser(), &res, None));
    let e = sig_err(signature::verify_bundle(
        &b,
        d.path(),
        &vk,
        &SignatureOptions {
            expected_subject_digest: Some([0; 32]),
            ..Default::default()
        },
    ));
    assert!(matches!(e, SignatureError::SubjectMismatch { .. }), "{e}");
}

// ---- manifests and verify() ---------------------------------------------------------------------

fn manifest_with_signature(dir: &Path, signature_table: &str) -> String {
    let entry = |p: &str, role: &str, format: &str| {
        let b = std::fs::read(dir.join(p)).unwrap();
        format!(
            "[[files]]\npath = \"{p}\"\nsize = {}\nsha256 = \"{}\"\nrole = \"{role}\"\nformat = \"{format}\"\n\n",
            b.len(),
            hex::encode(Sha256::digest(&b))
        )
    };
    let mut t = String::from("schema_version = 1\nattestation = \"published\"\n\n[model]\nname = \"Signed\"\npublisher = \"Tests\"\narchitecture = \"llama\"\n\n");
    t.push_str(&entry("config.json", "config", "json"));
    t.push_str(&entry("model.safetensors", "weights", "safetensors"));
    t.push_str(&entry("sub/notes.txt", "other", "text"));
    t.push_str("[license]\nspdx = \"Apache-2.0\"\nname = \"Apache License 2.0\"\nhf_id = \"apache-2.0\"\nurl = \"https://www.apache.org/licenses/LICENSE-2.0\"\n");
    t.push_str(PERMISSIVE_TERMS);
    t.push_str("\n[openness]\nclaimed = \"open-source\"\nclaimed_wording = \"open\"\nclaim_source = \"https://example.org\"\n");
    t.push_str(OPEN_SOURCE_COMPONENTS);
    t.push('\n');
    t.push_str(signature_table);
    t
}

fn parse_manifest(text: &str) -> candor_verify::Result<Manifest> {
    Manifest::parse(text, "signed-model", Path::new("signed-model.toml"))
}

fn pub_pem(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("keys").join(name)).unwrap()
}

fn require_signature() -> VerifyOptions {
    VerifyOptions {
        policy: Policy {
            require_signature: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn manifest_signature_table_makes_require_signature_pass() {
    let d = model_copy();
    std::fs::copy(bundle("p256-files.sig"), d.path().join("model.sig")).unwrap();
    let hint = hex::encode(Sha256::digest(pub_pem("p256.pub").as_bytes()));
    let table = format!(
        "[signature]\nformat = \"oms-1.0\"\npath = \"model.sig\"\nmethod = \"key\"\npublic_key_pem = \"\"\"\n{}\"\"\"\nkey_hint = \"{hint}\"\nexpect_subject_digest = \"{}\"\n",
        pub_pem("p256.pub"),
        disk_root_digest(d.path())
    );
    let m = parse_manifest(&manifest_with_signature(d.path(), &table)).unwrap();
    let spec = m.signature.as_ref().unwrap();
    assert_eq!(spec.key_hint.as_deref(), Some(hint.as_str()));
    // The manifest's own root digest is the signed subject digest.
    assert_eq!(
        hex::encode(m.computed_root_digest()),
        disk_root_digest(d.path())
    );
    // Round trip through TOML.
    let again = parse_manifest(&m.to_toml()).unwrap();
    assert_eq!(again.signature, m.signature);

    let v = verdict(Some(&m), d.path(), &require_signature(), &NoProgress).unwrap();
    let s = &v.report.signatures;
    assert_eq!(s.len(), 1);
    assert!(s[0].verified);
    assert_eq!(s[0].source, SignatureSource::Manifest);
    let text = v.report.render();
    assert!(text.contains("[verified]"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&v.report.to_json()).unwrap();
    assert_eq!(json["signatures"][0]["verified"], true);
    assert_eq!(json["signatures"][0]["signature"]["method"], "key");
    assert_eq!(
        json["signatures"][0]["signature"]["subject_digest"],
        disk_root_digest(d.path())
    );

    // An unsigned extra file the manifest does not mind (not weights) is refused by the signature.
    std::fs::write(d.path().join("notes2.txt"), b"late addition").unwrap();
    let e = verdict(Some(&m), d.path(), &require_signature(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure, "{e:?}");
    let r = &e;
    assert!(r.decision.has(|x| matches!(x, Reason::SignatureInvalid { files, .. } if files.iter().any(|f| f.path() == "notes2.txt"))));
    assert!(e.decision.summary().contains("notes2.txt"), "{e:?}");
    // --allow-extra also allows unsigned files.
    let o = VerifyOptions {
        allow_extra: true,
        ..require_signature()
    };
    verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    std::fs::remove_file(d.path().join("notes2.txt")).unwrap();

    // Another key pinned: refused with exit code 3.
    let table = format!(
        "[signature]\npath = \"model.sig\"\npublic_key_pem = \"\"\"\n{}\"\"\"\n",
        pub_pem("other.pub")
    );
    let m = parse_manifest(&manifest_with_signature(d.path(), &table)).unwrap();
    let e = verdict(Some(&m), d.path(), &VerifyOptions::default(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    assert!(e.decision.summary().contains("another key"), "{e:?}");

    // A certificate-pinned manifest.
    std::fs::copy(bundle("cert-files.sig"), d.path().join("model.sig")).unwrap();
    let table = format!(
        "[signature]\npath = \"model.sig\"\nmethod = \"certificate\"\nca_chain_pem = \"\"\"\n{}\"\"\"\n",
        pub_pem("ca.pem")
    );
    let m = parse_manifest(&manifest_with_signature(d.path(), &table)).unwrap();
    verdict(Some(&m), d.path(), &require_signature(), &NoProgress).unwrap();

    // Without a signature, require_signature refuses (exit 4); with a missing bundle, exit 3.
    let m = parse_manifest(&manifest_with_signature(d.path(), "")).unwrap();
    let e = verdict(Some(&m), d.path(), &require_signature(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Refused);
    std::fs::remove_file(d.path().join("model.sig")).unwrap();
    let m = parse_manifest(&manifest_with_signature(d.path(), &table)).unwrap();
    let e = verdict(Some(&m), d.path(), &require_signature(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    assert!(e.decision.summary().contains("not found"), "{e:?}");
}

#[test]
fn manifest_signature_table_is_strict() {
    let d = fixtures().join("model");
    let bad = |table: &str, needle: &str| {
        let e = parse_manifest(&manifest_with_signature(&d, table)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains(needle), "{e}");
    };
    let pem = pub_pem("p256.pub");
    bad(
        "[signature]\npath = \"model.sig\"\n",
        "needs public_key_pem",
    );
    bad(
        &format!("[signature]\npath = \"../model.sig\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\n"),
        "'..'",
    );
    bad(
        &format!("[signature]\npath = \"model.sig\"\nmethod = \"sigstore\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\n"),
        "keyless",
    );
    bad(
        &format!("[signature]\npath = \"model.sig\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\nkey_hint = \"{}\"\n", "a".repeat(64)),
        "does not match public_key_pem",
    );
    bad(
        &format!("[signature]\npath = \"model.sig\"\nformat = \"oms-2\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\n"),
        "oms-1.0",
    );
    bad(
        "[signature]\npath = \"model.sig\"\npublic_key_pem = \"nope\"\n",
        "public_key_pem",
    );
    bad(
        &format!("[signature]\npath = \"model.sig\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\nunknown = 1\n"),
        "unknown",
    );
}

#[test]
fn a_signature_vouches_for_a_model_without_manifest() {
    let d = model_copy();
    // Unlisted and unsigned: refused by the default policy.
    let e = verdict(None, d.path(), &VerifyOptions::default(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Refused);

    let with = |b: &str, k: &str| VerifyOptions {
        signature: Some(SignatureCheck {
            bundle: bundle(b),
            key: key(k),
            options: SignatureOptions::default(),
        }),
        ..require_signature()
    };
    for (b, k, ..) in KEY_BUNDLES {
        let v = verdict(None, d.path(), &with(b, k), &NoProgress).unwrap();
        assert!(v.report.signatures[0].verified);
        assert_eq!(v.report.signatures[0].source, SignatureSource::CommandLine);
        assert!(overridden(&v.report, "signature verified"));
    }
    let refused = |b: &str, k: &str| verdict(None, d.path(), &with(b, k), &NoProgress).unwrap_err();
    let e = refused("p256-files.sig", "other.pub");
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);

    let p = d.path().join("config.json");
    std::fs::write(&p, b"{\"model_type\": \"llama\"}").unwrap();
    let e = refused("p256-shards.sig", "p256.pub");
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    assert!(e.decision.summary().contains("config.json"), "{e:?}");
}
