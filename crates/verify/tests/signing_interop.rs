//! Interoperability with the real OpenSSF model-signing tool (PyPI `model-signing`): sign fresh
//! directories with `model_signing sign key|certificate` (whole files) and with the library's
//! `shards` serialization (tests/fixtures/signing/sign.py), then check that candor accepts each
//! bundle and refuses, naming the file, after a byte changes, a file is added or removed, the
//! signature is altered, or another key is given; and that `model_signing verify` agrees.
//!
//! Needs `CANDOR_MODEL_SIGNING` (the `model_signing` executable of a venv with `model-signing`
//! and `pyopenssl`; the venv's `python3` next to it runs sign.py, or set
//! `CANDOR_MODEL_SIGNING_PYTHON`) and `openssl`. Without them the test prints a note and passes,
//! except under `CI=true`, where it fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[path = "common/model_signing.rs"]
mod model_signing;

use candor_verify::{
    signature::{verify_bundle, FileProblem, SignatureError},
    SignatureOptions, VerifyKey,
};
use model_signing::{copy_dir, keypair, openssl, run, sign_key, tool, write_altered_bundle, Tool};

fn sign_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/signing/sign.py")
}

/// A small model: a valid safetensors file, a config and a nested file.
fn write_model(dir: &Path) {
    std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
    let mut header = br#"{"w":{"dtype":"F32","shape":[40],"data_offsets":[0,160]}}"#.to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(&header);
    st.extend((0..160u32).map(|i| (i * 7) as u8));
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(
        dir.join("tokenizer/tokenizer.json"),
        br#"{"version": "1.0"}"#,
    )
    .unwrap();
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `model_signing sign key` (the CLI; whole files).
    CliFiles,
    /// The library with `shards` serialization, 64-byte shards.
    Shards,
}

fn sign(t: &Tool, mode: Mode, model: &Path, sig: &Path, private: &Path) {
    match mode {
        Mode::CliFiles => sign_key(t, model, private, sig),
        Mode::Shards => assert!(
            run(Command::new(&t.python)
                .arg(sign_py())
                .arg(model)
                .arg(sig)
                .args(["--mode", "shards", "--shard-size", "64", "--private-key"])
                .arg(private)),
            "signing failed"
        ),
    }
}

/// `model_signing verify key` agrees (files mode: its 1.1.1 verifier cannot read shard bundles).
fn reference_accepts(t: &Tool, model: &Path, sig: &Path, public: &Path) -> bool {
    t.model_signing(
        ["verify", "key"],
        model,
        &[("--signature", sig), ("--public_key", public)],
    )
}

fn refused(r: Result<candor_verify::SignatureReport, SignatureError>) -> SignatureError {
    match r {
        Err(e) => {
            // The class the CLI maps to its exit code: 3, integrity.
            assert_eq!(e.kind(), candor_verify::ErrorKind::Integrity, "{e}");
            e
        }
        Ok(r) => panic!("expected a refusal, got {}", r.summary()),
    }
}

#[test]
fn model_signing_key_bundles_interoperate() {
    let Some(t) = tool() else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for (curve, openssl_curve) in [("P-256", "prime256v1"), ("P-384", "secp384r1")] {
        let (private, public) = keypair(w, curve, openssl_curve);
        let (_, other_public) = keypair(w, &format!("{curve}-other"), openssl_curve);
        let key = VerifyKey::load_public_key(&public).unwrap();
        let other = VerifyKey::load_public_key(&other_public).unwrap();
        for mode in [Mode::CliFiles, Mode::Shards] {
            let case = format!("{curve} {mode:?}");
            let signed = w.join(format!("{curve}-{mode:?}"));
            write_model(&signed);
            // The signature where model_signing puts it by default: inside the model directory.
            let sig = signed.join("model.sig");
            sign(&t, mode, &signed, &sig, &private);
            let opts = SignatureOptions::default();

            let r = verify_bundle(&sig, &signed, &key, &opts)
                .unwrap_or_else(|e| panic!("{case}: candor refuses a fresh bundle: {e}"));
            assert_eq!(r.signer.curve, curve);
            assert_eq!(r.files.len(), 3, "{case}");
            if matches!(mode, Mode::CliFiles) {
                assert!(reference_accepts(&t, &signed, &sig, &public));
            }

            // Each tampering on a fresh copy: (what, change, expected problem path).
            type Change = fn(&Path);
            let changes: [(&str, Change, &str); 3] = [
                (
                    "a changed byte",
                    |d| {
                        let p = d.join("model.safetensors");
                        let mut b = std::fs::read(&p).unwrap();
                        let n = b.len();
                        b[n - 3] ^= 0x40;
                        std::fs::write(&p, b).unwrap();
                    },
                    "model.safetensors",
                ),
                (
                    "an added file",
                    |d| std::fs::write(d.join("tokenizer/added.json"), b"{}").unwrap(),
                    "tokenizer/added.json",
                ),
                (
                    "a removed file",
                    |d| std::fs::remove_file(d.join("config.json")).unwrap(),
                    "config.json",
                ),
            ];
            for (what, change, path) in changes {
                let d = w.join(format!("{curve}-{mode:?}-{}", what.replace(' ', "-")));
                copy_dir(&signed, &d);
                change(&d);
                let e = refused(verify_bundle(&d.join("model.sig"), &d, &key, &opts));
                let problems = e.file_problems();
                assert_eq!(problems.len(), 1, "{case}, {what}: {e}");
                assert_eq!(problems[0].path(), path, "{case}, {what}: {e}");
                match what {
                    "a changed byte" => {
                        assert!(matches!(problems[0], FileProblem::DigestMismatch { .. }))
                    }
                    "an added file" => {
                        assert!(matches!(problems[0], FileProblem::Unsigned { .. }))
                    }
                    _ => assert!(matches!(problems[0], FileProblem::Missing { .. })),
                }
                assert!(e.to_string().contains(path), "{e}");
                if matches!(mode, Mode::CliFiles) {
                    assert!(
                        !reference_accepts(&t, &d, &d.join("model.sig"), &public),
                        "{case}, {what}: model_signing accepts what candor refuses"
                    );
                }
            }

            // An altered signature.
            let altered = w.join(format!("{curve}-{mode:?}-altered.sig"));
            write_altered_bundle(&sig, &altered);
            let e = refused(verify_bundle(&altered, &signed, &key, &opts));
            assert!(
                matches!(e, SignatureError::BadSignature { .. }),
                "{case}: {e}"
            );
            if matches!(mode, Mode::CliFiles) {
                assert!(!reference_accepts(&t, &signed, &altered, &public));
            }

            // Another key.
            let e = refused(verify_bundle(&sig, &signed, &other, &opts));
            assert!(matches!(e, SignatureError::WrongKey { .. }), "{case}: {e}");
            if matches!(mode, Mode::CliFiles) {
                assert!(!reference_accepts(&t, &signed, &sig, &other_public));
            }
        }
    }
}

#[test]
fn model_signing_certificate_bundles_interoperate() {
    let Some(t) = tool() else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let req = |name: &str, subj: &str, curve: &str| {
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subj,
            ],
            w,
        );
    };
    std::fs::write(
        w.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        w.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n",
    )
    .unwrap();
    for (name, subj) in [("ca", "/CN=interop root"), ("rogue", "/CN=interop root")] {
        req(name, subj, "secp384r1");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-signkey",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
                "-extfile",
                "ca.ext",
            ],
            w,
        );
    }
    req("leaf", "/CN=interop signer", "prime256v1");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
        ],
        w,
    );
    let model = w.join("model");
    write_model(&model);
    let sig = w.join("cert.sig");
    assert!(t.model_signing(
        ["sign", "certificate"],
        &model,
        &[
            ("--private_key", &w.join("leaf.key")),
            ("--signing_certificate", &w.join("leaf.pem")),
            ("--certificate_chain", &w.join("ca.pem")),
            ("--signature", &sig),
        ],
    ));
    let opts = SignatureOptions::default();
    let roots = VerifyKey::load_certificate_roots(&w.join("ca.pem")).unwrap();
    let r = verify_bundle(&sig, &model, &roots, &opts).unwrap();
    assert_eq!(r.signer.certificates.len(), 2);
    assert!(t.model_signing(
        ["verify", "certificate"],
        &model,
        &[
            ("--signature", &sig),
            ("--certificate_chain", &w.join("ca.pem"))
        ],
    ));
    // A root with the same name but another key does not vouch for it.
    let rogue = VerifyKey::load_certificate_roots(&w.join("rogue.pem")).unwrap();
    match verify_bundle(&sig, &model, &rogue, &opts) {
        Err(e @ SignatureError::Certificate { .. }) => {
            assert_eq!(e.kind(), candor_verify::ErrorKind::Integrity)
        }
        other => panic!("expected an untrusted chain, got {other:?}"),
    }
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    let e = refused(verify_bundle(&sig, &model, &roots, &opts));
    assert_eq!(e.file_problems()[0].path(), "config.json");
}
