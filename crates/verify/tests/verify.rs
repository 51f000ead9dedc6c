//! verdict() end to end on files built in a temporary directory.

mod common;

use std::{
    fs::{self, OpenOptions},
    io::{Seek, SeekFrom, Write},
    path::Path,
    time::{Duration, SystemTime},
};

use candor_verify::{
    error::ErrorKind,
    files::UnsafeFile,
    formats::FormatError,
    openness::Level,
    policy::PolicyViolation,
    report::{FileStatus, Outcome},
    AcceptanceStore, Error, Manifest, NoProgress, Policy, Reason, VerifyOptions,
};
use common::*;

/// The verdict on a model without a manifest, allowed to be unlisted.
fn unlisted_verdict(dir: &Path) -> Result<candor_verify::Verification, Box<candor_verify::Report>> {
    let o = VerifyOptions {
        allow_unlisted: true,
        ..opts()
    };
    verdict(None, dir, &o, &NoProgress)
}

fn opts() -> VerifyOptions {
    VerifyOptions::default()
}

#[test]
fn valid_model_hands_over_its_handles() {
    let g = gguf("llama", Some("apache-2.0"), 4096);
    let (d, m) = listed_gguf(&g);
    let v = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap();
    assert!(v.report.decision.allowed());
    assert_eq!(v.files.len(), 1);
    let f = &v.files[0];
    assert_eq!(f.rel_path(), "m.gguf");
    assert_eq!(f.sha256_hex(), sha_hex(&g));
    assert_eq!(f.size(), g.len() as u64);
    assert_eq!(f.file().metadata().unwrap().len(), g.len() as u64);
    f.check_unchanged().unwrap();
    assert_eq!(v.report.root_digest, v.report.expected_root_digest);
    // A single file works as the target too.
    verdict(Some(&m), &d.path().join("m.gguf"), &opts(), &NoProgress).unwrap();
}

/// One flipped byte in a 98 MB file is caught and named with expected and actual hash.
#[test]
fn flipped_byte_in_98mb_file() {
    let g = gguf("llama", None, 98_000_000);
    let d = model_dir(&[("big.gguf", &g)]);
    let m = manifest(&[("big.gguf", &g)]);
    let mut f = OpenOptions::new()
        .write(true)
        .open(d.path().join("big.gguf"))
        .unwrap();
    let at = (g.len() / 2) as u64;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[g[at as usize] ^ 0x01]).unwrap();
    drop(f);
    let flipped = fs::read(d.path().join("big.gguf")).unwrap();
    let e = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    let r = e;
    assert_eq!(r.decision.outcome, Outcome::IntegrityFailure);
    let expected = sha_hex(&g);
    let actual = sha_hex(&flipped);
    assert!(r.decision.has(
        |x| matches!(x, Reason::HashMismatch { path, expected: e2, actual: a2 }
        if path == "big.gguf" && *e2 == expected && *a2 == actual)
    ));
    let text = r.render();
    assert!(text.contains(&expected) && text.contains(&actual), "{text}");
}

#[test]
fn truncated_file() {
    let g = gguf("llama", None, 4096);
    let d = model_dir(&[("m.gguf", &g[..g.len() - 100])]);
    let m = manifest(&[("m.gguf", &g)]);
    let e = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap_err();
    let r = e;
    assert!(r.decision.has(
        |x| matches!(x, Reason::SizeMismatch { expected, actual, .. }
        if *expected == g.len() as u64 && *actual == g.len() as u64 - 100)
    ));
    assert_eq!(r.files[0].status, FileStatus::SizeMismatch);
}

#[test]
fn missing_and_extra_files() {
    let g = gguf("llama", None, 64);
    let d = model_dir(&[
        ("other.safetensors", b"x"),
        ("sub/more.gguf", b"y"),
        ("README.md", b"# hi"),
    ]);
    let m = manifest(&[("m.gguf", &g)]);
    let e = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    let r = e;
    assert!(r
        .decision
        .has(|x| matches!(x, Reason::MissingFile { path } if path == "m.gguf")));
    assert!(r
        .decision
        .has(|x| matches!(x, Reason::ExtraFile { path } if path == "other.safetensors")));
    assert!(r
        .decision
        .has(|x| matches!(x, Reason::ExtraFile { path } if path == "sub/more.gguf")));
    assert!(!r
        .decision
        .has(|x| matches!(x, Reason::ExtraFile { path } if path == "README.md")));
    // --allow-extra tolerates the extra files but not the missing one.
    let e = verdict(
        Some(&m),
        d.path(),
        &VerifyOptions {
            allow_extra: true,
            ..opts()
        },
        &NoProgress,
    )
    .unwrap_err();
    assert!(!e.decision.has(|x| matches!(x, Reason::ExtraFile { .. })));
}

fn set_mtime(p: &Path, t: SystemTime) {
    let f = OpenOptions::new().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn cache_hits_and_invalidates() {
    let g = gguf("llama", None, 1 << 16);
    let d = model_dir(&[("m.gguf", &g)]);
    let home = tempfile::tempdir().unwrap();
    let m = manifest(&[("m.gguf", &g)]);
    let o = VerifyOptions {
        cache_dir: Some(home.path().to_path_buf()),
        ..opts()
    };
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert_eq!(
        (v.report.stats.cache_hits, v.report.stats.hashed_bytes),
        (0, g.len() as u64)
    );
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert_eq!(
        (v.report.stats.cache_hits, v.report.stats.hashed_bytes),
        (1, 0)
    );
    assert!(v.report.files[0].cached);
    // --rehash bypasses the cache.
    let v = verdict(
        Some(&m),
        d.path(),
        &VerifyOptions {
            rehash: true,
            ..o.clone()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(v.report.stats.cache_hits, 0);

    let path = d.path().join("m.gguf");
    // mtime changes: hashed again.
    set_mtime(&path, SystemTime::now() - Duration::from_secs(3600));
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert_eq!(v.report.stats.cache_hits, 0);
    // Modified in place (same size), mtime restored: ctime still changes, the flip is caught.
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    let mut bad = g.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(&path, &bad).unwrap();
    set_mtime(&path, before);
    let e = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap_err();
    assert!(e.decision.has(|x| matches!(x, Reason::HashMismatch { .. })));
    // Replaced by another inode with the original content: hashed again and accepted.
    fs::write(d.path().join("tmp"), &g).unwrap();
    fs::rename(d.path().join("tmp"), &path).unwrap();
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert_eq!(v.report.stats.cache_hits, 0);
    // A manifest change invalidates too.
    let m2 = parse(&manifest_text(
        &[("m.gguf", &g)],
        "open-weights",
        OPEN_SOURCE_COMPONENTS,
    ));
    let v = verdict(Some(&m2), d.path(), &o, &NoProgress).unwrap();
    assert_eq!(v.report.stats.cache_hits, 0);
    // A corrupt cache file is ignored, never trusted.
    fs::write(
        home.path().join(candor_verify::cache::CACHE_FILE),
        b"garbage",
    )
    .unwrap();
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert_eq!(v.report.stats.cache_hits, 0);
}

/// F2: a file replaced after verification is not the one loaded, and check_unchanged says so.
#[test]
fn replaced_after_verification() {
    let g = gguf("llama", None, 4096);
    let (d, m) = listed_gguf(&g);
    let v = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap();
    let evil = gguf("llama", Some("mit"), 4096);
    fs::write(d.path().join("evil"), &evil).unwrap();
    fs::rename(d.path().join("evil"), d.path().join("m.gguf")).unwrap();
    let e = v.files[0].check_unchanged().unwrap_err();
    assert!(matches!(
        e,
        Error::FileChanged {
            what: "replaced by another file",
            ..
        }
    ));
    assert_eq!(e.kind(), ErrorKind::Integrity);
    // The handle still reads the verified bytes.
    let (digest, _) = candor_verify::sha256_file(v.files[0].file(), &NoProgress).unwrap();
    assert_eq!(hex::encode(digest), sha_hex(&g));
}

#[test]
fn modified_in_place_after_verification() {
    let g = gguf("llama", None, 4096);
    let (d, m) = listed_gguf(&g);
    let v = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap();
    OpenOptions::new()
        .append(true)
        .open(d.path().join("m.gguf"))
        .unwrap()
        .write_all(b"tail")
        .unwrap();
    assert!(matches!(
        v.files[0].check_unchanged(),
        Err(Error::FileChanged {
            what: "size changed",
            ..
        })
    ));
}

#[test]
fn gguf_declaring_another_license_is_refused() {
    let g = gguf("llama", Some("mit"), 256);
    let (d, m) = listed_gguf(&g);
    let e = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Refused);
    assert_eq!(e.decision.outcome, Outcome::Refused);
    assert!(e.decision.has(
        |x| matches!(x, Reason::DeclaredLicenseMismatch { declared, manifest, .. }
        if declared == "mit" && manifest == "Apache-2.0")
    ));
    // The hub spelling of the same license is fine.
    let g = gguf("llama", Some("Apache-2.0"), 256);
    let d = model_dir(&[("m.gguf", &g)]);
    listed_verdict(&[("m.gguf", &g)], d.path()).unwrap();
}

#[test]
fn gguf_declaring_another_architecture_is_refused() {
    let g = gguf("qwen2", None, 256);
    let d = model_dir(&[("m.gguf", &g)]);
    let e = listed_verdict(&[("m.gguf", &g)], d.path()).unwrap_err();
    assert!(e
        .decision
        .has(|x| matches!(x, Reason::DeclaredArchitectureMismatch { .. })));
}

#[test]
fn model_card_license_and_base_model_checked() {
    let g = gguf("llama", None, 256);
    let card = b"---\nlicense: llama3.1\nbase_model: meta-llama/Llama-3.1-8B\n---\n# card\n";
    let d = model_dir(&[("m.gguf", &g), ("README.md", card)]);
    let mut text = manifest_text(&[("m.gguf", &g)], "open-source", OPEN_SOURCE_COMPONENTS);
    text = text.replace(
        "[license]",
        &format!("[[files]]\npath = \"README.md\"\nsize = {}\nsha256 = \"{}\"\nrole = \"model_card\"\nformat = \"text\"\n\n[license]", card.len(), sha_hex(card)),
    );
    let e = verdict(Some(&parse(&text)), d.path(), &opts(), &NoProgress).unwrap_err();
    let r = e;
    assert!(r.decision.has(
        |x| matches!(x, Reason::DeclaredLicenseMismatch { declared, .. } if declared == "llama3.1")
    ));
    assert!(r.decision.has(|x| matches!(x, Reason::DeclaredBaseModelMismatch { declared, .. } if declared == "meta-llama/Llama-3.1-8B")));
    assert_eq!(r.declared.card_license.as_deref(), Some("llama3.1"));
}

#[test]
fn claim_above_achieved_names_the_rule_and_accept_openness_needs_the_achieved_level() {
    let g = gguf("llama", None, 256);
    let d = model_dir(&[("m.gguf", &g)]);
    let comps = OPEN_SOURCE_COMPONENTS.replace(
        "training_code = { grade = \"open\", license = \"Apache-2.0\" }",
        "training_code = { grade = \"closed\" }",
    );
    let m = parse(&manifest_text(&[("m.gguf", &g)], "open-source", &comps));
    let e = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap_err();
    let r = e;
    assert!(r.decision.has(|x| matches!(x, Reason::ClaimAboveAchieved { claimed: Level::OpenSource, achieved: Level::OpenWeightsPermissive, rules }
        if rules.iter().any(|s| s == "open-source requires training_code open; manifest grades it closed"))));
    let f = &r.decision.findings[0];
    assert_eq!(
        f.fix.as_deref(),
        Some("pass --accept-openness open-weights-permissive to load it as what it is")
    );
    // The wrong level does not override.
    let o = VerifyOptions {
        accept_openness: Some(Level::OpenWeights),
        ..opts()
    };
    assert!(verdict(Some(&m), d.path(), &o, &NoProgress).is_err());
    // The achieved level does, and the override is reported.
    let o = VerifyOptions {
        accept_openness: Some(Level::OpenWeightsPermissive),
        ..opts()
    };
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert!(overridden(&v.report, "--accept-openness"));
}

/// The real Gemma manifest's license and openness, on a small fake file.
fn gemma_like(g: &[u8]) -> Manifest {
    let real = candor_verify::find_manifest(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests"),
        "gemma-3-270m-q4_k_m",
    )
    .unwrap();
    let mut files = real.files.clone();
    files[0].path = "gemma.gguf".into();
    files[0].size = g.len() as u64;
    files[0].sha256 =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(g)).into();
    Manifest::new(
        "gemma-test",
        real.attestation,
        real.model.clone(),
        vec![],
        files,
        real.license.clone(),
        real.openness.clone(),
    )
}

#[test]
fn gemma_refused_under_open_source_policy_allowed_under_open_weights_once_accepted() {
    let g = gguf("gemma3", Some("gemma"), 512);
    let d = model_dir(&[("gemma.gguf", &g)]);
    let m = gemma_like(&g);
    let home = tempfile::tempdir().unwrap();

    let strict = Policy::parse("min_level = \"open-source\"", Path::new("p.toml")).unwrap();
    let o = VerifyOptions {
        policy: strict,
        acceptances: AcceptanceStore::load(home.path()),
        ..opts()
    };
    let e = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Refused);
    let r = e;
    assert!(r.decision.has(|x| matches!(
        x,
        Reason::Policy {
            violation: PolicyViolation::BelowMinLevel {
                required: Level::OpenSource,
                achieved: Level::OpenWeights
            }
        }
    )));
    assert!(r
        .decision
        .has(|x| matches!(x, Reason::LicenseNotAccepted { .. })));
    assert!(r.render().contains("candor license accept gemma-test"));

    let weights = Policy::parse("min_level = \"open-weights\"", Path::new("p.toml")).unwrap();
    let o = VerifyOptions {
        policy: weights.clone(),
        acceptances: AcceptanceStore::load(home.path()),
        ..opts()
    };
    let e = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap_err();
    let r = e;
    assert_eq!(r.decision.findings.len(), 1, "{:?}", r.decision.findings);
    assert!(matches!(
        r.decision.findings[0].reason,
        Reason::LicenseNotAccepted { .. }
    ));

    AcceptanceStore::load(home.path()).accept(&m).unwrap();
    let o = VerifyOptions {
        policy: weights,
        acceptances: AcceptanceStore::load(home.path()),
        ..opts()
    };
    let v = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();
    assert!(overridden(&v.report, "Gemma Terms of Use"));
    assert_eq!(
        v.report.openness.as_ref().unwrap().achieved,
        Level::OpenWeights
    );
}

#[test]
fn unlisted_model_refused_unless_allowed() {
    let g = gguf("llama", Some("apache-2.0"), 256);
    let d = model_dir(&[("x.gguf", &g)]);
    let file = d.path().join("x.gguf");
    let e = verdict(None, &file, &opts(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Refused);
    assert!(e.decision.has(|x| matches!(
        x,
        Reason::Policy {
            violation: PolicyViolation::UnlistedNotAllowed
        }
    )));
    let v = unlisted_verdict(&file).unwrap();
    assert_eq!(v.files[0].sha256_hex(), sha_hex(&g));
    // An unlisted file gets the role its name implies, and the format its validated header
    // showed (which the engine loads by).
    assert_eq!(
        v.files[0].role(),
        Some(candor_verify::manifest::FileRole::Weights)
    );
    assert_eq!(
        v.files[0].format(),
        Some(candor_verify::manifest::FileFormat::Gguf)
    );
    assert_eq!(v.report.files[0].status, FileStatus::Unlisted);
    assert_eq!(
        v.report.declared.gguf_license.as_deref(),
        Some("apache-2.0")
    );
    assert!(!v.report.decision.overrides.is_empty());
    // Directory form, allowed by policy.
    let o = VerifyOptions {
        policy: Policy {
            allow_unlisted: true,
            ..Policy::default()
        },
        ..opts()
    };
    verdict(None, d.path(), &o, &NoProgress).unwrap();
}

#[test]
fn pickle_refused_even_when_its_hash_matches() {
    let pickle = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.".to_vec();
    let d = model_dir(&[("pytorch_model.bin", &pickle)]);
    let e = unlisted_verdict(d.path()).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Malformed);
    assert_eq!(e.decision.outcome, Outcome::Malformed);
    assert!(e.decision.has(|x| matches!(
        x,
        Reason::MalformedFile {
            error: FormatError::Pickle(_),
            ..
        }
    )));
}

#[test]
fn malformed_gguf_listed_with_matching_hash_is_refused() {
    let mut b =
        candor_verify::formats::gguf::build::GgufBuilder::new().kv_u32("general.alignment", 0);
    b = b.kv_str("general.architecture", "llama");
    let bytes = b.build();
    let d = model_dir(&[("m.gguf", &bytes)]);
    let e = listed_verdict(&[("m.gguf", &bytes)], d.path()).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Malformed);
}

#[test]
fn symlinked_weights_refused() {
    let g = gguf("llama", None, 256);
    let d = model_dir(&[]);
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("real.gguf"), &g).unwrap();
    std::os::unix::fs::symlink(outside.path().join("real.gguf"), d.path().join("m.gguf")).unwrap();
    let e = listed_verdict(&[("m.gguf", &g)], d.path()).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::IntegrityFailure);
    assert!(e.decision.has(|x| matches!(
        x,
        Reason::UnsafeFile {
            problem: UnsafeFile::Symlink { .. },
            ..
        }
    )));
}

#[test]
fn hf_cache_snapshot_verifies() {
    let g = gguf("llama", None, 256);
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("models--org--name");
    let sha = sha_hex(&g);
    fs::create_dir_all(repo.join("blobs")).unwrap();
    fs::create_dir_all(repo.join("snapshots/0123")).unwrap();
    fs::write(repo.join("blobs").join(&sha), &g).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{sha}"),
        repo.join("snapshots/0123/m.gguf"),
    )
    .unwrap();
    let v = listed_verdict(&[("m.gguf", &g)], &repo.join("snapshots/0123")).unwrap();
    v.files[0].check_unchanged().unwrap();
}

/// A model directory of an Apache-2.0 GGUF named `weights` and one companion file, with the
/// self-attested manifest `manifest init` makes of it under `name`.
fn self_attested(
    weights: &str,
    companion: (&str, &[u8]),
    name: &str,
) -> (tempfile::TempDir, Manifest) {
    let g = gguf("llama", Some("apache-2.0"), 256);
    let d = model_dir(&[(weights, &g), companion]);
    let m = Manifest::self_attested_from_dir(d.path(), name, &NoProgress).unwrap();
    (d, m)
}

#[test]
fn self_attested_manifest_roundtrip() {
    let card = b"---\nlicense: apache-2.0\nbase_model: org/base\n---\n";
    let (d, m) = self_attested("m.gguf", ("README.md", card), "my-model");
    assert_eq!(
        m.attestation,
        candor_verify::manifest::Attestation::SelfAttested
    );
    assert_eq!(m.license.spdx, "Apache-2.0");
    assert_eq!(m.model.base_models, vec!["org/base"]);
    let text = m.to_toml();
    let back = Manifest::parse(&text, "my-model", Path::new("my-model.toml")).unwrap();
    assert_eq!(back.files, m.files);
    assert_eq!(
        back.attestation,
        candor_verify::manifest::Attestation::SelfAttested
    );
    let v = verdict(Some(&back), d.path(), &opts(), &NoProgress).unwrap();
    assert!(v
        .report
        .warnings
        .iter()
        .any(|w| w.contains("self-attested")));
}

/// `manifest init` lists every companion file verification hands over, with the same role:
/// a chat template next to the weights once made it exit 2 ("not a format candor loads").
#[test]
fn self_attested_manifest_lists_the_chat_template_and_verifies() {
    let template = b"{% for m in messages %}{{ m.content }}{% endfor %}";
    let (d, m) = self_attested(
        "tiny-llama.gguf",
        ("chat_template.jinja", template),
        "tiny-llama",
    );
    let roles: Vec<_> = m.files.iter().map(|f| (f.path.as_str(), f.role)).collect();
    assert_eq!(
        roles,
        [
            (
                "tiny-llama.gguf",
                candor_verify::manifest::FileRole::Weights
            ),
            (
                "chat_template.jinja",
                candor_verify::manifest::FileRole::ChatTemplate
            )
        ]
    );
    let back = Manifest::parse(&m.to_toml(), "tiny-llama", Path::new("tiny-llama.toml")).unwrap();
    verdict(Some(&back), d.path(), &opts(), &NoProgress).unwrap();
}

#[test]
fn self_attested_manifest_reads_the_architecture_from_config_json() {
    let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0u8; 4]);
    let named = |config: &[u8]| {
        let d = model_dir(&[("model.safetensors", &st), ("config.json", config)]);
        Manifest::self_attested_from_dir(d.path(), "m", &NoProgress)
            .unwrap()
            .model
            .architecture
    };
    assert_eq!(named(br#"{"model_type": "mistral"}"#), "mistral");
    assert_eq!(
        named(br#"{"architectures": ["Qwen2ForCausalLM"]}"#),
        "Qwen2ForCausalLM"
    );
    // Not JSON, or not a plain name: not guessed.
    assert_eq!(named(b"{ not json"), "unknown");
    assert_eq!(named(br#"{"model_type": "llama\n[license]"}"#), "unknown");
}

#[test]
fn json_report_has_stable_top_level_fields() {
    let g = gguf("llama", Some("apache-2.0"), 256);
    let d = model_dir(&[("m.gguf", &g)]);
    let v = listed_verdict(&[("m.gguf", &g)], d.path()).unwrap();
    let j: serde_json::Value = serde_json::from_str(&v.report.to_json()).unwrap();
    assert_eq!(j["schema_version"], 1);
    for k in [
        "target",
        "manifest",
        "model",
        "files",
        "root_digest",
        "expected_root_digest",
        "license",
        "declared",
        "openness",
        "decision",
        "warnings",
        "stats",
    ] {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    assert_eq!(j["decision"]["outcome"], "allowed");
    assert_eq!(j["files"][0]["status"], "ok");
    assert_eq!(j["openness"]["achieved"], "open-source");
    // A refusal's findings carry code, kind, message and fix.
    let bad = gguf("llama", Some("mit"), 256);
    let d = model_dir(&[("m.gguf", &bad)]);
    let e = listed_verdict(&[("m.gguf", &bad)], d.path()).unwrap_err();
    let j: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    let f = &j["decision"]["findings"][0];
    assert_eq!(f["code"], "declared_license_mismatch");
    assert_eq!(f["kind"], "refused");
    assert!(f["message"].is_string() && f["fix"].is_string());
}

#[test]
fn safetensors_weights_verify_and_malformed_ones_are_refused() {
    use candor_verify::formats::safetensors::build::file;
    let good = file(
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        8,
    );
    let text = |b: &[u8]| {
        manifest_text(
            &[("model.safetensors", b)],
            "open-source",
            OPEN_SOURCE_COMPONENTS,
        )
        .replace("format = \"gguf\"", "format = \"safetensors\"")
    };
    let d = model_dir(&[("model.safetensors", &good)]);
    verdict(Some(&parse(&text(&good))), d.path(), &opts(), &NoProgress).unwrap();
    // Duplicate tensor names (S5), even with a matching hash.
    let dup = file(
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        4,
    );
    let d = model_dir(&[("model.safetensors", &dup)]);
    let e = verdict(Some(&parse(&text(&dup))), d.path(), &opts(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Malformed);
    assert!(e.decision.has(|x| matches!(
        x,
        Reason::MalformedFile {
            error: FormatError::Safetensors(
                candor_verify::formats::safetensors::SafetensorsError::DuplicateKey(_)
            ),
            ..
        }
    )));
}

/// S12: a sharded safetensors model whose index names the wrong shard for a tensor.
#[test]
fn sharded_safetensors_index_must_match_shards() {
    use candor_verify::formats::safetensors::{build::file, IndexError};
    let a = file(
        r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
        1,
    );
    let b = file(
        r#"{"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
        1,
    );
    let good = br#"{"metadata":{"total_size":2},"weight_map":{"x":"model-1.safetensors","y":"model-2.safetensors"}}"#;
    let bad = br#"{"metadata":{"total_size":2},"weight_map":{"x":"model-2.safetensors","y":"model-1.safetensors"}}"#;
    let text = |index: &[u8]| {
        manifest_text(&[("model-1.safetensors", &a), ("model-2.safetensors", &b)], "open-source", OPEN_SOURCE_COMPONENTS)
            .replace("format = \"gguf\"", "format = \"safetensors\"")
            .replace(
                "[license]",
                &format!(
                    "[[files]]\npath = \"model.safetensors.index.json\"\nsize = {}\nsha256 = \"{}\"\nrole = \"config\"\nformat = \"json\"\n\n[license]",
                    index.len(),
                    sha_hex(index)
                ),
            )
    };
    let d = model_dir(&[
        ("model-1.safetensors", &a),
        ("model-2.safetensors", &b),
        ("model.safetensors.index.json", good),
    ]);
    verdict(Some(&parse(&text(good))), d.path(), &opts(), &NoProgress).unwrap();
    let d = model_dir(&[
        ("model-1.safetensors", &a),
        ("model-2.safetensors", &b),
        ("model.safetensors.index.json", bad),
    ]);
    let e = verdict(Some(&parse(&text(bad))), d.path(), &opts(), &NoProgress).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Malformed);
    assert!(e.decision.has(|x| matches!(
        x,
        Reason::MalformedFile {
            error: FormatError::SafetensorsIndex(IndexError::TensorInWrongShard { .. }),
            ..
        }
    )));
    // Unlisted: the index next to the shards is checked too.
    let e = unlisted_verdict(d.path()).unwrap_err();
    assert_eq!(e.decision.outcome, Outcome::Malformed);
}

/// A GGUF published in parts (gguf-split): every part is listed, hashed and header-checked; the
/// parts after the first carry no general.* keys, so what the model declares is the first part's.
#[test]
fn split_gguf_parts_are_each_verified() {
    use candor_verify::formats::gguf::build::GgufBuilder;
    let first = GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.license", "apache-2.0")
        .kv_u32("split.no", 0)
        .kv_u32("split.count", 2)
        .tensor("token_embd.weight", &[64], 24, 64)
        .build();
    let second = GgufBuilder::new()
        .kv_u32("split.no", 1)
        .kv_u32("split.count", 2)
        .tensor("output.weight", &[64], 24, 64)
        .build();
    let files: [(&str, &[u8]); 2] = [
        ("m-00001-of-00002.gguf", &first),
        ("m-00002-of-00002.gguf", &second),
    ];
    let d = model_dir(&files);
    let m = manifest(&files);
    let v = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap();
    assert_eq!(v.files.len(), 2);
    assert!(v.report.files.iter().all(|f| f.status == FileStatus::Ok));
    assert_eq!(
        v.report.declared.gguf_architecture.as_deref(),
        Some("llama")
    );
    assert_eq!(
        v.report.declared.gguf_license.as_deref(),
        Some("apache-2.0")
    );

    // A damaged second part is caught like any file.
    let mut bad = second.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let d = model_dir(&[files[0], ("m-00002-of-00002.gguf", &bad)]);
    let r = verdict(Some(&m), d.path(), &opts(), &NoProgress).unwrap_err();
    assert_eq!(r.decision.outcome, Outcome::IntegrityFailure);
    assert!(r.decision.has(
        |x| matches!(x, Reason::HashMismatch { path, .. } if path == "m-00002-of-00002.gguf")
    ));
}
