//! The curated manifests in manifests/: every one loads and validates (schema, digests, known
//! licenses, evidence for every graded component), inherits its base model's license, and each
//! family reaches the openness level the table below says.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use candor_verify::{
    license::{self, LicenseTerms},
    manifest::{Attestation, FileFormat, FileRole},
    manifests_in_dir,
    openness::{Component, Grade},
    Level, Manifest, Source,
};

fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

fn all() -> Vec<Manifest> {
    manifests_in_dir(&manifests_dir()).expect("every shipped manifest is valid")
}

/// Only hashes seen in two or more independent sources, with an exact size, are used. These floors
/// are what is shipped; raise them as manifests are added.
const MIN_FAMILIES: usize = 15;
const MIN_FILES: usize = 34;

/// Manifests whose publisher claims more than the grades carry, so loading them needs
/// `--accept-openness`: OLMo 2 Instruct is called fully open, but its weights also carry the
/// Gemma Terms of Use. (prefix, a word every reason list must mention)
const CLAIM_ABOVE_ACHIEVED: &[(&str, &str)] = &[("olmo-2-", "LicenseRef-Gemma-Terms-of-Use")];

/// Manifest id prefix (first match wins) → family, achieved level, license expression (the
/// model's own license `AND` any additional one).
const FAMILIES: &[(&str, &str, Level, &str)] = &[
    ("smollm2-", "SmolLM2", (Level::OpenSource), "Apache-2.0"),
    // The Instruct models carry the Gemma Terms of Use as additional terms.
    (
        "olmo-2-",
        "OLMo 2",
        (Level::OpenWeights),
        "Apache-2.0 AND LicenseRef-Gemma-Terms-of-Use",
    ),
    ("smollm3-", "SmolLM3", (Level::OpenSource), "Apache-2.0"),
    (
        "llama-3.1-",
        "Llama 3.1",
        (Level::OpenWeights),
        "LicenseRef-Llama-3.1-Community-License",
    ),
    (
        "mistral-7b-instruct-",
        "Mistral 7B",
        (Level::OpenWeightsPermissive),
        "Apache-2.0",
    ),
    // MIT of its own, Apache-2.0 from the Qwen2.5-Math base model.
    (
        "deepseek-r1-distill-qwen-",
        "DeepSeek-R1-Distill-Qwen",
        (Level::OpenWeightsPermissive),
        "MIT AND Apache-2.0",
    ),
    ("phi-4-", "Phi-4", (Level::OpenWeightsPermissive), "MIT"),
    ("tinyllama-", "TinyLlama", (Level::OpenSource), "Apache-2.0"),
    (
        "llama-3.2-",
        "Llama 3.2",
        (Level::OpenWeights),
        "LicenseRef-Llama-3.2-Community-License",
    ),
    (
        "meta-llama-3-",
        "Llama 3",
        (Level::OpenWeights),
        "LicenseRef-Llama-3-Community-License",
    ),
    (
        "gemma-2-",
        "Gemma 2",
        (Level::OpenWeights),
        "LicenseRef-Gemma-Terms-of-Use",
    ),
    (
        "gemma-3-",
        "Gemma 3",
        (Level::OpenWeights),
        "LicenseRef-Gemma-Terms-of-Use",
    ),
    // The 3B size is research-licensed; the other Qwen2.5 sizes here are Apache-2.0.
    (
        "qwen2.5-3b-",
        "Qwen2.5",
        (Level::OpenWeights),
        "LicenseRef-Qwen-Research-License",
    ),
    (
        "qwen2.5-",
        "Qwen2.5",
        (Level::OpenWeightsPermissive),
        "Apache-2.0",
    ),
    (
        "qwen3-",
        "Qwen3",
        (Level::OpenWeightsPermissive),
        "Apache-2.0",
    ),
    ("phi-3.5-", "Phi-3.5", (Level::OpenWeightsPermissive), "MIT"),
];

/// Base-model id prefix (first match wins) → the license a derivative inherits.
const BASE_LICENSES: &[(&str, &str)] = &[
    (
        "meta-llama/Meta-Llama-3-",
        "LicenseRef-Llama-3-Community-License",
    ),
    (
        "meta-llama/Llama-3.2-",
        "LicenseRef-Llama-3.2-Community-License",
    ),
    (
        "meta-llama/Llama-3.1-",
        "LicenseRef-Llama-3.1-Community-License",
    ),
    ("mistralai/Mistral-7B-", "Apache-2.0"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-", "MIT"),
    ("microsoft/phi-4", "MIT"),
    ("microsoft/Phi-4-", "MIT"),
    ("HuggingFaceTB/SmolLM3-", "Apache-2.0"),
    ("google/gemma-2-", "LicenseRef-Gemma-Terms-of-Use"),
    ("google/gemma-3-", "LicenseRef-Gemma-Terms-of-Use"),
    ("Qwen/Qwen2.5-3B", "LicenseRef-Qwen-Research-License"),
    ("Qwen/Qwen2.5-72B", "LicenseRef-Qwen-License"),
    ("Qwen/Qwen2.5-", "Apache-2.0"),
    ("Qwen/Qwen3-", "Apache-2.0"),
    ("microsoft/Phi-3.5-", "MIT"),
    ("HuggingFaceTB/SmolLM2-", "Apache-2.0"),
    ("allenai/OLMo-2-", "Apache-2.0"),
    ("TinyLlama/", "Apache-2.0"),
];

/// Licenses a shipped manifest may carry: SPDX id → (Hugging Face card id, card license_name).
const KNOWN_LICENSES: &[(&str, &str, Option<&str>)] = &[
    ("Apache-2.0", "apache-2.0", None),
    ("MIT", "mit", None),
    ("LicenseRef-Gemma-Terms-of-Use", "gemma", None),
    ("LicenseRef-Llama-3-Community-License", "llama3", None),
    ("LicenseRef-Llama-3.2-Community-License", "llama3.2", None),
    ("LicenseRef-Llama-3.1-Community-License", "llama3.1", None),
    (
        "LicenseRef-Qwen-Research-License",
        "other",
        Some("qwen-research"),
    ),
];

fn family_of(id: &str) -> (&'static str, Level, &'static str) {
    FAMILIES
        .iter()
        .find(|(prefix, ..)| id.starts_with(prefix))
        .map(|&(_, f, e, l)| (f, e, l))
        .unwrap_or_else(|| panic!("{id}: no entry in FAMILIES; add the family to the table"))
}

fn is_hex40(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn every_curated_manifest_is_complete() {
    let manifests = all();
    let mut digests = BTreeSet::new();
    for m in &manifests {
        let id = m.id();
        assert_eq!(m.attestation, Attestation::Published, "{id}");
        assert_eq!(
            m.root_digest,
            Some(m.computed_root_digest()),
            "{id}: root digest recorded and equal"
        );

        // Files: well-formed digests, real sizes, weights in a safe format, no bytes listed twice.
        assert!(m.weights().count() >= 1, "{id}: lists weights");
        for f in &m.files {
            let hex = f.sha256_hex();
            assert_eq!(hex.len(), 64, "{id}");
            assert_ne!(f.sha256, [0u8; 32], "{id}: placeholder digest");
            assert!(f.size > 0, "{id}: {} has no size", f.path);
            assert!(
                !f.hash_sources.is_empty(),
                "{id}: {} does not say where its sha256 was published",
                f.path
            );
            if f.role == FileRole::Weights {
                assert!(matches!(
                    f.format,
                    FileFormat::Gguf | FileFormat::Safetensors
                ));
            }
            assert!(
                digests.insert(hex),
                "{id}: {} listed in two manifests",
                f.path
            );
        }

        // Sources: every manifest names a Hugging Face repo, pinned to a commit or explicitly
        // marked as revision unknown; never both for one repo.
        let mut pinned = BTreeSet::new();
        for s in &m.sources {
            if let Source::Huggingface { repo, revision } = s {
                assert!(is_hex40(revision), "{id}: revision {revision}");
                pinned.insert(repo.clone());
            }
        }
        assert!(
            !pinned.is_empty() || !m.hf_repos_revision_unknown.is_empty(),
            "{id}: names no Hugging Face repo"
        );
        for r in &m.hf_repos_revision_unknown {
            assert!(!pinned.contains(r), "{id}: {r} both pinned and unpinned");
        }

        // License: known, with its hub spelling, and a text to read.
        let l = &m.license;
        let Some(&(_, hf, hf_name)) = KNOWN_LICENSES.iter().find(|(s, ..)| *s == l.spdx) else {
            panic!("{id}: license {} is not in KNOWN_LICENSES", l.spdx)
        };
        assert_eq!(l.hf_id.as_deref(), Some(hf), "{id}: hf_id");
        assert_eq!(
            l.hf_license_name.as_deref(),
            hf_name,
            "{id}: hf_license_name"
        );
        assert!(l.url.starts_with("https://"), "{id}: license url");
        assert!(
            license::declared_matches(hf, l),
            "{id}: hub id names the license"
        );
        if license::is_osi_approved(&l.spdx) {
            assert_eq!(
                l.terms,
                LicenseTerms::permissive(),
                "{id}: OSI license terms"
            );
        }

        // Openness: the claim in the publisher's words with a source, evidence for every graded
        // component, and component licenses that parse.
        let o = &m.openness;
        assert!(!o.claimed_wording.trim().is_empty(), "{id}");
        assert!(o.claim_source.starts_with("https://"), "{id}: claim source");
        for c in Component::ALL {
            let Some(g) = o.components.get(&c) else {
                continue;
            };
            if let Some(lic) = &g.license {
                assert!(
                    license::is_valid_spdx_expression(lic),
                    "{id}: {c} license {lic}"
                );
            }
            if g.grade != Grade::Absent {
                let ev = g.evidence.as_deref().unwrap_or_default();
                assert!(
                    ev.starts_with("https://"),
                    "{id}: {c} is graded {} but has no evidence link",
                    g.grade.as_str()
                );
            }
        }
        let a = m.assess_openness();
        match CLAIM_ABOVE_ACHIEVED.iter().find(|(p, _)| id.starts_with(p)) {
            Some((_, why)) => {
                assert!(o.claimed > a.achieved, "{id}: listed as claiming too much");
                let reasons = a.failures_for(o.claimed).join("; ");
                assert!(reasons.contains(why), "{id}: {reasons}");
            }
            None => assert!(
                o.claimed <= a.achieved,
                "{id}: claims {} but achieves {}: {:?}",
                o.claimed,
                a.achieved,
                a.unmet
            ),
        }
    }
}

#[test]
fn each_family_reaches_its_level_and_license() {
    let manifests = all();
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files = 0;
    for m in &manifests {
        let id = m.id();
        let (family, expect, spdx) = family_of(id);
        *families.entry(family).or_default() += 1;
        files += m.files.len();
        assert_eq!(m.license.expression(), spdx, "{id}: license of {family}");
        let a = m.assess_openness();
        assert_eq!(a.achieved, expect, "{id} ({family}): {:?}", a.unmet);
    }
    assert!(
        families.len() >= MIN_FAMILIES,
        "{} families: {families:?}",
        families.len()
    );
    assert!(files >= MIN_FILES, "{files} files");
}

#[test]
fn derivatives_inherit_their_base_models_license() {
    for m in all() {
        let id = m.id();
        for base in &m.model.base_models {
            let Some(&(_, spdx)) = BASE_LICENSES.iter().find(|(p, _)| base.starts_with(p)) else {
                panic!("{id}: base model {base} not in BASE_LICENSES")
            };
            let ids = license::license_ids(&m.license.expression());
            assert!(
                ids.iter().any(|i| i == spdx),
                "{id}: inherits {spdx} from {base}, but is under {}",
                m.license.expression()
            );
        }
    }
}

/// The key terms of one license, as its text says them.
fn check_terms(id: &str, spdx: &str, version: Option<&str>, t: &LicenseTerms) {
    match spdx {
        "LicenseRef-Llama-3-Community-License" => {
            assert!(t.must_accept && t.field_of_use_restrictions, "{id}");
            assert_eq!(t.mau_threshold, 700_000_000, "{id}");
            assert!(
                t.no_training_other_models,
                "{id}: Llama 3 bans improving other LLMs"
            );
            assert_eq!(t.derivative_name_prefix.as_deref(), Some("Llama 3"), "{id}");
            assert_eq!(t.display_phrase.as_deref(), Some("Built with Meta Llama 3"));
        }
        "LicenseRef-Llama-3.1-Community-License" | "LicenseRef-Llama-3.2-Community-License" => {
            assert!(t.must_accept && t.field_of_use_restrictions, "{id}");
            assert_eq!(t.mau_threshold, 700_000_000, "{id}");
            assert!(!t.no_training_other_models, "{id}: 3.1+ dropped the ban");
            assert_eq!(t.derivative_name_prefix.as_deref(), Some("Llama"), "{id}");
            assert_eq!(t.display_phrase.as_deref(), Some("Built with Llama"));
            // The EU clause for multimodal models is in the 3.2 Acceptable Use Policy only.
            let eu: Vec<String> = if spdx.contains("3.2") {
                vec!["EU:multimodal".into()]
            } else {
                vec![]
            };
            assert_eq!(t.region_exclusions, eu, "{id}");
        }
        "LicenseRef-Gemma-Terms-of-Use" => {
            assert!(t.must_accept && t.field_of_use_restrictions, "{id}");
            assert!(t.licensor_may_restrict_remotely, "{id}: ToU 3.2");
            assert!(t.restrictions_flow_down, "{id}: ToU 3.1");
            assert!(t.attribution_notice.is_some(), "{id}");
            // Only the 21 February 2024 text asks users to use the latest version, so the term
            // is set exactly when that text is pinned, and a text date is always recorded.
            assert!(version.is_some(), "{id}: which Gemma text the terms encode");
            assert_eq!(
                t.must_use_latest_version,
                version == Some("2024-02-21"),
                "{id}: ToU 4.1 of text {version:?}"
            );
        }
        "LicenseRef-Qwen-Research-License" => {
            assert!(t.non_commercial_only && !t.commercial_use, "{id}");
        }
        "Apache-2.0" | "MIT" => assert_eq!(*t, LicenseTerms::permissive(), "{id}"),
        other => panic!("{id}: no term checks for {other}"),
    }
}

#[test]
fn license_terms_per_version() {
    for m in all() {
        let id = m.id();
        let l = &m.license;
        check_terms(id, &l.spdx, l.version.as_deref(), &l.terms);
        for a in &l.additional {
            check_terms(id, &a.spdx, a.version.as_deref(), &a.terms);
        }
    }
}

#[test]
fn olmo_2_instruct_carries_the_gemma_terms() {
    let olmo: Vec<Manifest> = all()
        .into_iter()
        .filter(|m| m.id().starts_with("olmo-2-"))
        .collect();
    assert_eq!(olmo.len(), 2);
    for m in &olmo {
        let id = m.id();
        // Apache-2.0 is what the files declare; the Gemma terms come on top.
        assert_eq!(m.license.spdx, "Apache-2.0", "{id}");
        assert_eq!(m.license.terms, LicenseTerms::permissive(), "{id}");
        let t = m.license.effective_terms();
        assert!(t.must_accept, "{id}: the Gemma terms must be accepted");
        assert!(
            t.licensor_may_restrict_remotely && t.field_of_use_restrictions,
            "{id}"
        );
        assert!(t.attribution_notice.is_some(), "{id}");
        let a = m.assess_openness();
        assert_eq!(a.achieved, Level::OpenWeights, "{id}");
        let why = a.failures_for(Level::OpenWeightsPermissive).join("; ");
        assert!(
            why.contains("model_parameters_final under an OSI-approved or open data license")
                && why.contains("LicenseRef-Gemma-Terms-of-Use"),
            "{id}: {why}"
        );
        assert!(why.contains("no field-of-use restrictions"), "{id}: {why}");
    }
}

#[test]
fn single_source_sizes_say_so() {
    for id in [
        "meta-llama-3-8b-instruct-q4_k_m",
        "gemma-2-9b-it-q4_k_m",
        "llama-3.2-1b-instruct-q8_0",
        "phi-3.5-mini-instruct-q4_k_m",
        "qwen2.5-0.5b-instruct-q4_k_m-bartowski",
    ] {
        let m = candor_verify::find_manifest(&manifests_dir(), id).unwrap();
        for f in &m.files {
            assert_eq!(
                f.size_sources.as_ref().map(Vec::len),
                Some(1),
                "{id}: {} has a size from one source",
                f.path
            );
        }
    }
}

#[test]
fn split_gguf_lists_every_part() {
    let m = candor_verify::find_manifest(&manifests_dir(), "qwen2.5-7b-instruct-q4_k_m").unwrap();
    let parts: Vec<&str> = m.weights().map(|f| f.path.as_str()).collect();
    assert_eq!(
        parts,
        [
            "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf",
            "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf"
        ]
    );
    assert!(m.weights().all(|f| f.format == FileFormat::Gguf));
    assert_eq!(
        m.weights().map(|f| f.size).sum::<u64>(),
        3_993_201_344 + 689_872_288
    );
}

#[test]
fn readme_lists_every_shipped_manifest() {
    let readme = std::fs::read_to_string(manifests_dir().join("README.md")).unwrap();
    for m in all() {
        assert!(
            readme.contains(&format!("`{}`", m.id())),
            "manifests/README.md does not list {}",
            m.id()
        );
    }
}

// ---- the `hf_repos_revision_unknown` marker ---------------------------------------------------

fn default_manifest_text() -> String {
    std::fs::read_to_string(manifests_dir().join("smollm2-135m-instruct-q4_1.toml")).unwrap()
}

fn with_unpinned(list: &str) -> String {
    default_manifest_text().replacen(
        "attestation = \"published\"\n",
        &format!("attestation = \"published\"\nhf_repos_revision_unknown = {list}\n"),
        1,
    )
}

#[test]
fn revision_unknown_marker_parses_and_roundtrips() {
    let text = with_unpinned(r#"["bartowski/SmolLM2-135M-Instruct-GGUF"]"#);
    let m = Manifest::parse(&text, "x", &manifests_dir().join("x.toml")).unwrap();
    assert_eq!(
        m.hf_repos_revision_unknown,
        vec!["bartowski/SmolLM2-135M-Instruct-GGUF".to_string()]
    );
    let back = Manifest::parse(&m.to_toml(), "x", &manifests_dir().join("x.toml")).unwrap();
    assert_eq!(back.hf_repos_revision_unknown, m.hf_repos_revision_unknown);
    // Absent means none.
    let m = Manifest::parse(
        &default_manifest_text(),
        "x",
        &manifests_dir().join("x.toml"),
    )
    .unwrap();
    assert!(m.hf_repos_revision_unknown.is_empty());
}

#[test]
fn revision_unknown_marker_rejects_bad_repos() {
    for bad in [
        r#"["noslash"]"#,
        r#"["a/b/c"]"#,
        r#"["../x"]"#,
        r#"["a/"]"#,
        r#"["a/b", "a/b"]"#,
        r#""a/b""#,
    ] {
        let text = with_unpinned(bad);
        let e = Manifest::parse(&text, "x", &manifests_dir().join("x.toml"))
            .expect_err(&format!("{bad} must be refused"));
        assert!(
            e.to_string().contains("x.toml:"),
            "{bad}: error names the line: {e}"
        );
    }
}
