//! Test helpers: manifests and model files built in code.
#![allow(dead_code)]

use std::path::Path;

use candor_verify::{
    formats::gguf::build::GgufBuilder, verify, Manifest, NoProgress, Progress, Report,
    Verification, VerifyOptions,
};
use sha2::{Digest, Sha256};

/// `verify` with a refusal as the `Err`: the verified files, or the report that refuses them.
/// Errors (checks that could not run) fail the test.
pub fn verdict(
    manifest: Option<&Manifest>,
    target: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<Verification, Box<Report>> {
    verify(manifest, target, opts, progress)
        .expect("verification runs")
        .allowed()
}

/// The verdict on `target` against the test manifest listing `files`, with default options.
pub fn listed_verdict(files: &[(&str, &[u8])], target: &Path) -> Result<Verification, Box<Report>> {
    verdict(
        Some(&manifest(files)),
        target,
        &VerifyOptions::default(),
        &NoProgress,
    )
}

/// Whether the report's decision records an override that mentions `needle`.
pub fn overridden(report: &Report, needle: &str) -> bool {
    report.decision.overrides.iter().any(|o| o.contains(needle))
}

pub fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A small valid GGUF declaring `license` (if any) with `data_len` bytes of I8 tensor data.
pub fn gguf(arch: &str, license: Option<&str>, data_len: u64) -> Vec<u8> {
    let mut b = GgufBuilder::new().kv_str("general.architecture", arch);
    if let Some(l) = license {
        b = b.kv_str("general.license", l);
    }
    b.tensor("token_embd.weight", &[data_len], 24, data_len)
        .build()
}

pub const PERMISSIVE_TERMS: &str = r#"
[license.terms]
commercial_use = true
redistribution = true
derivatives = true
non_commercial_only = false
non_production_only = false
field_of_use_restrictions = false
restrictions_flow_down = false
policy_may_change_unilaterally = false
mau_threshold = 0
revenue_threshold_usd = 0
no_training_other_models = false
outputs_restricted = false
region_exclusions = []
must_accept = false
licensor_may_restrict_remotely = false
must_use_latest_version = false
hosted_service_needs_license = false
"#;

pub const OPEN_SOURCE_COMPONENTS: &str = r#"
[openness.components]
model_architecture = { grade = "open", license = "Apache-2.0" }
inference_code = { grade = "open", license = "Apache-2.0" }
training_code = { grade = "open", license = "Apache-2.0" }
data_preprocessing_code = { grade = "open", license = "Apache-2.0" }
model_parameters_final = { grade = "open", license = "Apache-2.0" }
datasets = { grade = "partial" }
data_card = { grade = "open" }
"#;

/// A manifest for `files` = (path, bytes), Apache-2.0, claiming `claimed`, with components.
pub fn manifest_text(files: &[(&str, &[u8])], claimed: &str, components: &str) -> String {
    let mut t = String::from("schema_version = 1\nattestation = \"published\"\n\n[model]\nname = \"Test\"\npublisher = \"Tests\"\narchitecture = \"llama\"\nbase_models = [\"org/base\"]\nbase_model_relation = \"quantized\"\n\n");
    for (p, b) in files {
        t.push_str(&format!(
            "[[files]]\npath = \"{p}\"\nsize = {}\nsha256 = \"{}\"\nrole = \"weights\"\nformat = \"gguf\"\n\n",
            b.len(),
            sha_hex(b)
        ));
    }
    t.push_str("[license]\nspdx = \"Apache-2.0\"\nname = \"Apache License 2.0\"\nhf_id = \"apache-2.0\"\nurl = \"https://www.apache.org/licenses/LICENSE-2.0\"\n");
    t.push_str(PERMISSIVE_TERMS);
    t.push_str(&format!("\n[openness]\nclaimed = \"{claimed}\"\nclaimed_wording = \"open\"\nclaim_source = \"https://example.org\"\n"));
    t.push_str(components);
    t
}

pub fn manifest(files: &[(&str, &[u8])]) -> Manifest {
    parse(&manifest_text(files, "open-source", OPEN_SOURCE_COMPONENTS))
}

pub fn parse(text: &str) -> Manifest {
    Manifest::parse(text, "test-model", Path::new("test-model.toml")).unwrap()
}

/// A model directory holding `g` as m.gguf, and the test manifest that lists it.
pub fn listed_gguf(g: &[u8]) -> (tempfile::TempDir, Manifest) {
    let files = [("m.gguf", g)];
    (model_dir(&files), manifest(&files))
}

/// A model directory with the given files written.
pub fn model_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, b) in files {
        let path = d.path().join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, b).unwrap();
    }
    d
}
