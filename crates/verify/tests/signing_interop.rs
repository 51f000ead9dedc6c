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

use candor_verify::{
    signature::{verify_bundle, FileProblem, SignatureError},
    SignatureOptions, VerifyKey,
};

struct Tool {
    model_signing: PathBuf,
    python: PathBuf,
}

fn tool() -> Option<Tool> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let missing = |why: String| {
        if ci {
            panic!("CI=true but {why}: install model-signing (see tests/fixtures/signing/make.sh) and export CANDOR_MODEL_SIGNING");
        }
        eprintln!("note: skipping the model_signing interoperability test: {why}");
        None
    };
    let Some(ms) = std::env::var_os("CANDOR_MODEL_SIGNING").map(PathBuf::from) else {
        return missing("CANDOR_MODEL_SIGNING is not set".into());
    };
    if !ms.is_file() {
        return missing(format!(
            "CANDOR_MODEL_SIGNING={} does not exist",
            ms.display()
        ));
    }
    let python = std::env::var_os("CANDOR_MODEL_SIGNING_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| ms.with_file_name("python3"));
    if !python.is_file() {
        return missing(format!(
            "no python3 next to {} (set CANDOR_MODEL_SIGNING_PYTHON)",
            ms.display()
        ));
    }
    if Command::new("openssl").arg("version").output().is_err() {
        return missing("openssl is not installed".into());
    }
    Some(Tool {
        model_signing: ms,
        python,
    })
}

fn run(cmd: &mut Command) -> bool {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if !out.status.success() {
        eprintln!(
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

fn openssl(args: &[&str], dir: &Path) {
    assert!(run(Command::new("openssl").args(args).current_dir(dir)));
}

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

fn keypair(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let (k, p) = (format!("{name}.priv"), format!("{name}.pub"));
    openssl(
        &["ecparam", "-name", curve, "-genkey", "-noout", "-out", &k],
        dir,
    );
    openssl(&["ec", "-in", &k, "-pubout", "-out", &p], dir);
    (dir.join(k), dir.join(p))
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `model_signing sign key` (the CLI; whole files).
    CliFiles,
    /// The library with `shards` serialization, 64-byte shards.
    Shards,
}

fn sign(t: &Tool, mode: Mode, model: &Path, sig: &Path, private: &Path) {
    let ok = match mode {
        Mode::CliFiles => run(Command::new(&t.model_signing)
            .args(["sign", "key"])
            .arg(model)
            .arg("--private_key")
            .arg(private)
            .arg("--signature")
            .arg(sig)),
        Mode::Shards => run(Command::new(&t.python)
            .arg(sign_py())
            .arg(model)
            .arg(sig)
            .args(["--mode", "shards", "--shard-size", "64", "--private-key"])
            .arg(private)),
    };
    assert!(ok, "signing failed");
}

/// `model_signing verify key` agrees (files mode: its 1.1.1 verifier cannot read shard bundles).
fn reference_accepts(t: &Tool, model: &Path, sig: &Path, public: &Path) -> bool {
    run(Command::new(&t.model_signing)
        .args(["verify", "key"])
        .arg(model)
        .arg("--signature")
        .arg(sig)
        .arg("--public_key")
        .arg(public))
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
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
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
            let s = v["dsseEnvelope"]["signatures"][0]["sig"]
                .as_str()
                .unwrap()
                .to_string();
            // Change one base64 character in the middle of the DER signature's integers.
            let mut chars: Vec<char> = s.chars().collect();
            let i = chars.len() / 2;
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            v["dsseEnvelope"]["signatures"][0]["sig"] =
                chars.into_iter().collect::<String>().into();
            std::fs::write(&altered, serde_json::to_vec(&v).unwrap()).unwrap();
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
    assert!(run(Command::new(&t.model_signing)
        .args(["sign", "certificate"])
        .arg(&model)
        .arg("--private_key")
        .arg(w.join("leaf.key"))
        .arg("--signing_certificate")
        .arg(w.join("leaf.pem"))
        .arg("--certificate_chain")
        .arg(w.join("ca.pem"))
        .arg("--signature")
        .arg(&sig)));
    let opts = SignatureOptions::default();
    let roots = VerifyKey::load_certificate_roots(&w.join("ca.pem")).unwrap();
    let r = verify_bundle(&sig, &model, &roots, &opts).unwrap();
    assert_eq!(r.signer.certificates.len(), 2);
    assert!(run(Command::new(&t.model_signing)
        .args(["verify", "certificate"])
        .arg(&model)
        .arg("--signature")
        .arg(&sig)
        .arg("--certificate_chain")
        .arg(w.join("ca.pem"))));
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
