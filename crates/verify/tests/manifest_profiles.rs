//! Family profiles (`families/<name>.toml`): a manifest naming one loads as if the profile's
//! `[license]` and `[openness]` were written inline; a missing, broken or doubled profile is an
//! error naming the file. Also the additional license terms a profile may carry.

mod common;

use std::path::{Path, PathBuf};

use candor_verify::{
    manifests_in_dir, manifests_in_dir_with, openness::Level, policy::PolicyViolation,
    report::Outcome, AcceptanceStore, Manifest, NoProgress, Policy, Profiles, Reason,
    VerifyOptions,
};
use common::*;

fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

/// The manifest text with its `profile = …` line replaced by the profile's tables.
fn inlined(manifest_text: &str, profile_text: &str) -> String {
    let own: Vec<&str> = manifest_text
        .lines()
        .filter(|l| !l.starts_with("profile = "))
        .collect();
    let tables: Vec<&str> = profile_text
        .lines()
        .filter(|l| !l.starts_with("schema_version = ") && !l.starts_with("family = "))
        .collect();
    format!("{}\n\n{}\n", own.join("\n"), tables.join("\n"))
}

#[test]
fn every_profile_manifest_equals_its_inline_form() {
    let dir = shipped_dir();
    let all = manifests_in_dir(&dir).unwrap();
    assert!(all.len() >= 30);
    for m in &all {
        let id = m.id();
        let profile = m
            .profile
            .as_deref()
            .expect("shipped manifests name a profile");
        let text = std::fs::read_to_string(dir.join(format!("{id}.toml"))).unwrap();
        let ptext =
            std::fs::read_to_string(dir.join("families").join(format!("{profile}.toml"))).unwrap();
        let inline = Manifest::parse_with(
            &inlined(&text, &ptext),
            id,
            Path::new("inline.toml"),
            &Profiles::none(),
        )
        .unwrap_or_else(|e| panic!("{id} inline: {e}"));
        assert_eq!(inline.profile, None);
        assert_eq!(inline.license, m.license, "{id}");
        assert_eq!(inline.openness, m.openness, "{id}");
        assert_eq!(inline.model, m.model, "{id}");
        assert_eq!(inline.files, m.files, "{id}");
        assert_eq!(inline.sources, m.sources, "{id}");
        assert_eq!(inline.attestation, m.attestation, "{id}");
        assert_eq!(inline.root_digest, m.root_digest, "{id}");
        assert_eq!(
            inline.hf_repos_revision_unknown, m.hf_repos_revision_unknown,
            "{id}"
        );
        assert_eq!(inline.assess_openness(), m.assess_openness(), "{id}");
        // The manifest digest names the profile too, so it differs from the inline text's.
        assert_ne!(inline.digest(), m.digest(), "{id}");
    }
}

/// A manifests folder with `families/<name>.toml` holding `profile`, and one manifest.
fn folder(manifest: &str, profiles: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("families")).unwrap();
    for (name, text) in profiles {
        std::fs::write(d.path().join("families").join(format!("{name}.toml")), text).unwrap();
    }
    std::fs::write(d.path().join("m.toml"), manifest).unwrap();
    d
}

/// A folder whose manifest names profile `name`, next to an open-source profile "fam".
fn fam_folder(name: &str) -> tempfile::TempDir {
    folder(
        &with_profile(name),
        &[("fam", &profile_text("open-source"))],
    )
}

fn profile_text(claimed: &str) -> String {
    let inline = manifest_text(&[("w.gguf", b"abc")], claimed, OPEN_SOURCE_COMPONENTS);
    let tables = &inline[inline.find("[license]").unwrap()..];
    format!("schema_version = 1\nfamily = \"Test family\"\n\n{tables}")
}

fn with_profile(name: &str) -> String {
    let inline = manifest_text(&[("w.gguf", b"abc")], "open-source", "");
    let head = &inline[..inline.find("[license]").unwrap()];
    head.replacen(
        "attestation = \"published\"\n",
        &format!("attestation = \"published\"\nprofile = \"{name}\"\n"),
        1,
    )
}

fn load_err(d: &tempfile::TempDir) -> String {
    Manifest::load(&d.path().join("m.toml"))
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn profile_is_found_next_to_the_manifest() {
    let d = fam_folder("fam");
    let m = Manifest::load(&d.path().join("m.toml")).unwrap();
    assert_eq!(m.profile.as_deref(), Some("fam"));
    assert_eq!(m.license.spdx, "Apache-2.0");
    assert_eq!(m.assess_openness().achieved, Level::OpenSource);
    // The same through the folder listing.
    let all = manifests_in_dir(d.path()).unwrap();
    assert_eq!(all.len(), 1, "profiles are not manifests");
}

#[test]
fn unknown_profile_names_the_manifest_and_where_it_looked() {
    let d = folder(&with_profile("nope"), &[]);
    let e = load_err(&d);
    assert!(e.contains("m.toml:3:"), "{e}");
    assert!(e.contains("profile 'nope' not found"), "{e}");
    assert!(e.contains("families/nope.toml"), "{e}");
}

#[test]
fn a_problem_inside_the_profile_names_both_files() {
    let bad = profile_text("open-source").replace("[license]\n", "[license]\ncolour = \"red\"\n");
    let d = folder(&with_profile("fam"), &[("fam", &bad)]);
    let e = load_err(&d);
    assert!(e.contains("m.toml:3:"), "{e}");
    assert!(e.contains("families/fam.toml:"), "{e}");
    assert!(e.contains("colour"), "{e}");

    for (what, text) in [
        (
            "schema version",
            profile_text("open-source").replace("schema_version = 1", "schema_version = 2"),
        ),
        (
            "blank family",
            profile_text("open-source").replace("\"Test family\"", "\" \""),
        ),
        (
            "missing term",
            profile_text("open-source").replace("must_accept = false\n", ""),
        ),
        ("no openness", {
            let t = profile_text("open-source");
            t[..t.find("[openness]").unwrap()].to_string()
        }),
        ("not toml", "family = [".to_string()),
    ] {
        let d = folder(&with_profile("fam"), &[("fam", &text)]);
        let e = load_err(&d);
        assert!(
            e.contains("profile 'fam' (") && e.contains("fam.toml"),
            "{what}: {e}"
        );
    }
}

#[test]
fn profile_and_inline_tables_are_not_both_allowed() {
    let both = with_profile("fam")
        + "[license]\nspdx = \"MIT\"\nname = \"MIT\"\nurl = \"https://x\"\n"
        + PERMISSIVE_TERMS;
    let d = folder(&both, &[("fam", &profile_text("open-source"))]);
    let e = load_err(&d);
    assert!(
        e.contains("names profile 'fam' and also has a [license] table"),
        "{e}"
    );
}

#[test]
fn neither_profile_nor_tables_is_an_error() {
    let d = folder(&with_profile("fam").replace("profile = \"fam\"\n", ""), &[]);
    let e = load_err(&d);
    assert!(e.contains("no [license] table and no profile"), "{e}");
}

#[test]
fn profile_names_cannot_leave_the_folder() {
    for name in ["../fam", "Fam", "a/b", ""] {
        let d = fam_folder(name);
        let e = load_err(&d);
        assert!(e.contains("profile name"), "{name}: {e}");
    }
}

#[test]
fn own_profiles_come_first_then_the_fallback() {
    let fallback = Profiles::none().then_embedded("fam", &profile_text("open-weights"));
    // No families/ of its own: the fallback (the bundled profiles) supplies it.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("m.toml"), with_profile("fam")).unwrap();
    assert!(manifests_in_dir(d.path()).is_err());
    let m = &manifests_in_dir_with(d.path(), &fallback).unwrap()[0];
    assert_eq!(m.openness.claimed, Level::OpenWeights);
    // A profile of its own shadows the fallback's.
    let d = fam_folder("fam");
    let m = Manifest::load_with(&d.path().join("m.toml"), &fallback).unwrap();
    assert_eq!(m.openness.claimed, Level::OpenSource);
    // Text parsed with embedded profiles only (how bundled manifests load).
    let m =
        Manifest::parse_with(&with_profile("fam"), "m", Path::new("m.toml"), &fallback).unwrap();
    assert_eq!(m.openness.claimed, Level::OpenWeights);
}

#[test]
fn digest_follows_the_profile_text() {
    let d = fam_folder("fam");
    let before = Manifest::load(&d.path().join("m.toml")).unwrap();
    std::fs::write(
        d.path().join("families/fam.toml"),
        profile_text("open-weights"),
    )
    .unwrap();
    let b = Manifest::load(&d.path().join("m.toml")).unwrap();
    assert_ne!(before.digest(), b.digest());
    // The root digest names the files only.
    assert_eq!(before.computed_root_digest(), b.computed_root_digest());
}

// ---- additional license terms ------------------------------------------------------------------

const GEMMA_ADDITIONAL: &str = r#"
[[license.additional]]
spdx = "LicenseRef-Gemma-Terms-of-Use"
name = "Gemma Terms of Use"
url = "https://ai.google.dev/gemma/terms"
reason = "trained on Gemma outputs"

[license.additional.terms]
commercial_use = true
redistribution = true
derivatives = true
non_commercial_only = false
non_production_only = false
field_of_use_restrictions = true
restrictions_flow_down = true
policy_may_change_unilaterally = true
mau_threshold = 0
revenue_threshold_usd = 0
no_training_other_models = false
outputs_restricted = false
region_exclusions = []
must_accept = true
licensor_may_restrict_remotely = true
must_use_latest_version = false
hosted_service_needs_license = false
"#;

/// An Apache-2.0 model (as its GGUF declares) that also carries the Gemma terms.
fn apache_plus_gemma(g: &[u8]) -> Manifest {
    let t = manifest_text(
        &[("m.gguf", g)],
        "open-weights",
        "[openness.components]\nmodel_parameters_final = { grade = \"open\", license = \"Apache-2.0\" }\n",
    );
    let at = t.find("\n[openness]").unwrap();
    let text = format!("{}\n{GEMMA_ADDITIONAL}{}", &t[..at], &t[at..]);
    Manifest::parse_with(
        &text,
        "olmo-like",
        Path::new("olmo-like.toml"),
        &Profiles::none(),
    )
    .unwrap()
}

#[test]
fn additional_terms_bind_acceptance_policy_openness_and_the_report() {
    let g = gguf("llama", Some("apache-2.0"), 512);
    let d = model_dir(&[("m.gguf", &g)]);
    let m = apache_plus_gemma(&g);
    assert_eq!(
        m.license.expression(),
        "Apache-2.0 AND LicenseRef-Gemma-Terms-of-Use"
    );
    // The weights' own entry says Apache-2.0; the additional terms still count against them.
    let a = m.assess_openness();
    assert_eq!(a.achieved, Level::OpenWeights);
    let why = a.failures_for(Level::OpenWeightsPermissive).join("; ");
    assert!(why.contains("LicenseRef-Gemma-Terms-of-Use"), "{why}");

    let home = tempfile::tempdir().unwrap();
    let o = VerifyOptions {
        acceptances: AcceptanceStore::load(home.path()),
        ..Default::default()
    };
    // The GGUF's "apache-2.0" still matches the model's own license; only acceptance is missing.
    let r = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap_err();
    assert_eq!(r.decision.findings.len(), 1, "{:?}", r.decision.findings);
    assert!(r
        .decision
        .has(|x| matches!(x, Reason::LicenseNotAccepted { license, .. } if license.contains("Gemma Terms of Use"))));
    let l = r.license.as_ref().unwrap();
    assert_eq!(l.spdx, "Apache-2.0");
    assert_eq!(l.expression, m.license.expression());
    assert!(!l.osi_approved);
    assert!(l.terms.must_accept && l.terms.licensor_may_restrict_remotely);
    assert_eq!(l.additional.len(), 1);
    let text = r.render();
    assert!(text.contains("and     Gemma Terms of Use"), "{text}");
    assert!(
        text.contains("the licensor may restrict usage remotely"),
        "{text}"
    );

    // Accepted: allowed, and the acceptance records the whole expression.
    let acc = AcceptanceStore::load(home.path())
        .accept(&m)
        .unwrap()
        .clone();
    assert_eq!(acc.license, m.license.expression());
    let o = VerifyOptions {
        acceptances: AcceptanceStore::load(home.path()),
        ..Default::default()
    };
    verdict(Some(&m), d.path(), &o, &NoProgress).unwrap();

    // A policy denying Gemma's terms refuses it, though its own license is Apache-2.0.
    let deny = Policy::parse(
        "deny_licenses = [\"LicenseRef-Gemma-Terms-of-Use\"]",
        Path::new("p.toml"),
    )
    .unwrap();
    let o = VerifyOptions {
        policy: deny,
        acceptances: AcceptanceStore::load(home.path()),
        ..Default::default()
    };
    let r = verdict(Some(&m), d.path(), &o, &NoProgress).unwrap_err();
    assert_eq!(r.decision.outcome, Outcome::Refused);
    assert!(r.decision.has(|x| matches!(
        x,
        Reason::Policy {
            violation: PolicyViolation::LicenseDenied { .. }
        }
    )));
}

#[test]
fn additional_terms_need_every_field() {
    let g = gguf("llama", Some("apache-2.0"), 16);
    let t = manifest_text(&[("m.gguf", &g)], "open-weights", "");
    let at = t.find("\n[openness]").unwrap();
    for (what, add) in [
        (
            "blank reason",
            GEMMA_ADDITIONAL.replace("trained on Gemma outputs", " "),
        ),
        (
            "bad spdx",
            GEMMA_ADDITIONAL.replace("LicenseRef-Gemma-Terms-of-Use", "not (valid"),
        ),
        (
            "missing term",
            GEMMA_ADDITIONAL.replace("must_accept = true\n", ""),
        ),
        (
            "unknown key",
            GEMMA_ADDITIONAL.replace("reason =", "colour = 1\nreason ="),
        ),
    ] {
        let text = format!("{}\n{add}{}", &t[..at], &t[at..]);
        let e = Manifest::parse_with(&text, "x", Path::new("x.toml"), &Profiles::none())
            .expect_err(what)
            .to_string();
        assert!(e.contains("x.toml"), "{what}: {e}");
    }
}

// ---- hash and size sources ---------------------------------------------------------------------

#[test]
fn sources_of_hash_and_size_are_shown_and_checked() {
    let g = gguf("llama", Some("apache-2.0"), 64);
    let base = manifest_text(&[("m.gguf", &g)], "open-source", OPEN_SOURCE_COMPONENTS);
    let with = |extra: &str| {
        base.replacen(
            "format = \"gguf\"\n",
            &format!("format = \"gguf\"\n{extra}"),
            1,
        )
    };
    let text = with(
        "hash_sources = [\"catalog A @1234\", \"pin B\"]\nsize_sources = [\"catalog A @1234\"]\n",
    );
    let m = parse(&text);
    assert_eq!(m.files[0].hash_sources, ["catalog A @1234", "pin B"]);
    let back = parse(&m.to_toml());
    assert_eq!(back.files, m.files);

    let d = model_dir(&[("m.gguf", &g)]);
    let v = verdict(Some(&m), d.path(), &VerifyOptions::default(), &NoProgress).unwrap();
    let text = v.report.render();
    assert!(
        text.contains("sha256 published in: catalog A @1234; pin B"),
        "{text}"
    );
    assert!(
        text.contains("size seen in 1 source only: catalog A @1234"),
        "{text}"
    );
    assert_eq!(v.report.files[0].hash_sources.len(), 2);

    // A wrong single-source size: the fix says the manifest may be the one that is wrong.
    let short = model_dir(&[("m.gguf", &g[..g.len() - 1])]);
    let r = verdict(
        Some(&m),
        short.path(),
        &VerifyOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    let fix = r.decision.findings[0].fix.clone().unwrap_or_default();
    assert!(
        fix.contains("seen in one source only (catalog A @1234)"),
        "{fix}"
    );

    for bad in [
        "hash_sources = [\"\"]\n",
        "hash_sources = [\"a\", \"a\"]\n",
        "size_sources = []\n",
        "hash_sources = \"a\"\n",
    ] {
        let e = Manifest::parse(&with(bad), "x", Path::new("x.toml"))
            .expect_err(bad)
            .to_string();
        assert!(e.contains("x.toml:"), "{bad}: {e}");
    }
}
