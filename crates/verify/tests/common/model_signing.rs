//! The real OpenSSF model-signing tool (PyPI `model-signing`) and openssl, for the tests that sign
//! fresh bundles: the verify crate's interoperability test and the CLI's signing test include
//! this file, so that both find the tool, make keys and tamper with bundles the same way.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct Tool {
    pub model_signing: PathBuf,
    pub python: PathBuf,
}

impl Tool {
    /// `model_signing COMMAND MODEL --flag value…`; whether it succeeded.
    pub fn model_signing(&self, command: [&str; 2], model: &Path, flags: &[(&str, &Path)]) -> bool {
        let mut c = Command::new(&self.model_signing);
        c.args(command).arg(model);
        for (flag, value) in flags {
            c.arg(flag).arg(value);
        }
        run(&mut c)
    }
}

/// `CANDOR_MODEL_SIGNING` (the `model_signing` executable of a venv), the venv's `python3` (or
/// `CANDOR_MODEL_SIGNING_PYTHON`) and `openssl`; `None` with a note when one is missing, except
/// under `CI=true`, where a missing tool fails the test.
pub fn tool() -> Option<Tool> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let missing = |why: String| {
        if ci {
            panic!("CI=true but {why}: install model-signing (see tests/fixtures/signing/make.sh) and export CANDOR_MODEL_SIGNING");
        }
        eprintln!("note: skipping the fresh model_signing bundles: {why}");
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

/// Runs `cmd`; whether it succeeded, with its output shown when it did not.
pub fn run(cmd: &mut Command) -> bool {
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

pub fn openssl(args: &[&str], dir: &Path) {
    assert!(run(Command::new("openssl").args(args).current_dir(dir)));
}

/// A fresh EC key pair on `curve` (openssl's name): `dir/{name}.priv` and `dir/{name}.pub`.
pub fn keypair(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let (k, p) = (format!("{name}.priv"), format!("{name}.pub"));
    openssl(
        &["ecparam", "-name", curve, "-genkey", "-noout", "-out", &k],
        dir,
    );
    openssl(&["ec", "-in", &k, "-pubout", "-out", &p], dir);
    (dir.join(k), dir.join(p))
}

/// `model_signing sign key MODEL --private_key PRIVATE --signature SIG` (whole files).
pub fn sign_key(t: &Tool, model: &Path, private: &Path, sig: &Path) {
    assert!(
        t.model_signing(
            ["sign", "key"],
            model,
            &[("--private_key", private), ("--signature", sig)]
        ),
        "signing failed"
    );
}

/// A copy of the bundle `from` at `to` with one base64 character changed in the middle of its
/// DSSE signature (inside the DER signature's integers), so that it no longer verifies.
pub fn write_altered_bundle(from: &Path, to: &Path) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(from).unwrap()).unwrap();
    let s = v["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    let mut chars: Vec<char> = s.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    v["dsseEnvelope"]["signatures"][0]["sig"] = chars.into_iter().collect::<String>().into();
    std::fs::write(to, serde_json::to_vec(&v).unwrap()).unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
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
