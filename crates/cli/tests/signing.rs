//! `candor verify --signature model.sig --public-key key.pub DIR` (and `--certificate-chain`):
//! OpenSSF model-signing bundles checked by the real binary. The committed bundles were written by
//! the PyPI tool (tests/fixtures/signing/make.sh); with `CANDOR_MODEL_SIGNING` set (required under
//! `CI=true`), a fresh bundle is also signed with `model_signing sign key` and checked.

mod common;
#[path = "../../verify/tests/common/model_signing.rs"]
mod model_signing;

use common::{both, candor_in as candor};
use model_signing::{copy_dir, keypair, sign_key, tool, write_altered_bundle};
use std::path::{Path, PathBuf};
use std::process::Output;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/signing")
}

#[track_caller]
fn expect(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", both(o));
    assert!(both(o).contains(needle), "'{needle}' not in:\n{}", both(o));
    assert!(!both(o).contains("panicked"), "{}", both(o));
}

/// `candor verify --signature BUNDLE --public-key KEY DIR` (or `--certificate-chain` for a .pem).
fn verify(home: &Path, dir: &Path, bundle: &Path, key: &Path, extra: &[&str]) -> Output {
    let flag = if key.extension().is_some_and(|e| e == "pem") {
        "--certificate-chain"
    } else {
        "--public-key"
    };
    candor(home)
        .arg("verify")
        .arg("--signature")
        .arg(bundle)
        .arg(flag)
        .arg(key)
        .args(extra)
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn verify_signature_flags_accept_and_refuse() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let f = fixtures();
    let model = f.join("model");
    let b = |n: &str| f.join("bundles").join(n);
    let k = |n: &str| f.join("keys").join(n);

    for (bundle, key) in [
        ("p256-files.sig", "p256.pub"),
        ("p384-files.sig", "p384.pub"),
        ("p256-shards.sig", "p256.pub"),
        ("p384-shards.sig", "p384.pub"),
        ("cert-files.sig", "ca.pem"),
    ] {
        let o = verify(h, &model, &b(bundle), &k(key), &[]);
        expect(&o, 0, "[verified]");
        expect(&o, 0, "decision: ALLOWED");
        let o = verify(h, &model, &b(bundle), &k(key), &["--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["signatures"][0]["verified"], true, "{bundle}");
        assert_eq!(v["signatures"][0]["source"], "command_line");
    }

    // Another key, or an unrelated CA: exit 3.
    expect(
        &verify(h, &model, &b("p256-files.sig"), &k("other.pub"), &[]),
        3,
        "another key",
    );
    expect(
        &verify(h, &model, &b("cert-files.sig"), &k("other-ca.pem"), &[]),
        3,
        "not trusted",
    );

    // Tampered copies: exit 3, naming the file.
    let work = tempfile::tempdir().unwrap();
    let changed = work.path().join("changed");
    copy_dir(&model, &changed);
    let p = changed.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[300] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    for bundle in ["p256-files.sig", "p256-shards.sig"] {
        expect(
            &verify(h, &changed, &b(bundle), &k("p256.pub"), &[]),
            3,
            "model.safetensors",
        );
    }
    let added = work.path().join("added");
    copy_dir(&model, &added);
    std::fs::write(added.join("extra.txt"), b"x").unwrap();
    expect(
        &verify(h, &added, &b("p384-files.sig"), &k("p384.pub"), &[]),
        3,
        "extra.txt",
    );
    expect(
        &verify(
            h,
            &added,
            &b("p384-files.sig"),
            &k("p384.pub"),
            &["--ignore-unsigned-files"],
        ),
        0,
        "unsigned files allowed: extra.txt",
    );
    let removed = work.path().join("removed");
    copy_dir(&model, &removed);
    std::fs::remove_file(removed.join("sub/notes.txt")).unwrap();
    expect(
        &verify(h, &removed, &b("p256-files.sig"), &k("p256.pub"), &[]),
        3,
        "sub/notes.txt",
    );

    // An altered signature.
    let altered = work.path().join("altered.sig");
    write_altered_bundle(&b("p256-files.sig"), &altered);
    expect(
        &verify(h, &model, &altered, &k("p256.pub"), &[]),
        3,
        "does not verify",
    );

    // Usage errors: exit 2.
    let o = candor(h)
        .args(["verify", "--signature"])
        .arg(b("p256-files.sig"))
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    expect(
        &verify(h, &model, &b("p256-files.sig"), &k("ca.pem"), &[]),
        2,
        "bare key",
    );
    let o = candor(h)
        .args(["verify", "--signature"])
        .arg(b("p256-files.sig"))
        .arg("--public-key")
        .arg(k("leaf.pem"))
        .arg(&model)
        .output()
        .unwrap();
    expect(&o, 2, "PUBLIC KEY");
}

/// A fresh signature by the real tool, in its default place (model.sig inside the directory).
#[test]
fn verify_a_bundle_model_signing_just_wrote() {
    let Some(t) = tool() else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (private, public) = keypair(w, "k", "secp384r1");
    let model = w.join("model");
    copy_dir(&fixtures().join("model"), &model);
    sign_key(&t, &model, &private, &model.join("model.sig"));
    let home = tempfile::tempdir().unwrap();
    let check = || verify(home.path(), &model, &model.join("model.sig"), &public, &[]);
    expect(&check(), 0, "[verified]");
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    expect(&check(), 3, "config.json");
}
