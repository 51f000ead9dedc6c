//! The curated license and openness of an imported repo. Today a profile is the `[license]` and
//! `[openness]` of a shipped manifest for the same base model; this is the one place that looks
//! one up, so that moving profiles elsewhere changes only this file.

use candor_verify::manifest_import::Profile;
use candor_verify::{Manifest, Source};

/// What the lookup found.
pub enum Lookup {
    Found(Box<Profile>),
    NotFound,
    /// Shipped manifests for the model disagree on its license or openness (their ids).
    Ambiguous(Vec<String>),
}

/// The profile of the first of `base_models`, then of `repo` itself, that a shipped manifest
/// covers: as one of its base models, or as the repo it fetches from.
pub fn curated_profile(curated: &[Manifest], repo: &str, base_models: &[String]) -> Lookup {
    let covers = |m: &Manifest, id: &str| {
        let same = |s: &String| s.eq_ignore_ascii_case(id);
        m.model.base_models.iter().any(same)
            || m.hf_repos_revision_unknown.iter().any(same)
            || m.sources
                .iter()
                .any(|s| matches!(s, Source::Huggingface { repo, .. } if same(repo)))
    };
    for id in base_models.iter().map(String::as_str).chain([repo]) {
        let mut found: Vec<&Manifest> = curated
            .iter()
            .filter(|m| m.is_published() && covers(m, id))
            .collect();
        found.sort_by(|a, b| a.id().cmp(b.id()));
        let Some(first) = found.first() else { continue };
        let level = first.assess_openness().achieved;
        // Wording may differ between a family's manifests; the terms and the level may not.
        let agree = found.iter().all(|m| {
            m.license.spdx == first.license.spdx
                && m.license.terms == first.license.terms
                && m.assess_openness().achieved == level
        });
        if !agree {
            return Lookup::Ambiguous(found.iter().map(|m| m.id().to_string()).collect());
        }
        return Lookup::Found(Box::new(Profile {
            name: first.id().to_string(),
            license: first.license.clone(),
            openness: first.openness.clone(),
        }));
    }
    Lookup::NotFound
}
