//! The family profile of an imported repo: the profile that the shipped manifests of its base
//! model (or of the repo itself) name, resolved by that name as the written manifest will be.
//! This is the one place that looks one up.

use candor_verify::manifest::Profiles;
use candor_verify::manifest_import::Profile;
use candor_verify::{Manifest, Result, Source};
use std::path::Path;

/// What the lookup found.
pub enum Lookup {
    Found(Box<Profile>),
    NotFound,
    /// Shipped manifests for the model name different profiles (their ids).
    Ambiguous(Vec<String>),
}

/// The family profile of the first of `base_models`, then of `repo` itself, that a shipped
/// manifest covers: as one of its base models, or as the repo it fetches from. Its tables come
/// from `profiles` by name, as when the manifest `wanted_by` that names it is loaded.
pub fn curated_profile(
    curated: &[Manifest],
    repo: &str,
    base_models: &[String],
    profiles: &Profiles,
    wanted_by: &Path,
) -> Result<Lookup> {
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
            .filter(|m| m.is_published() && m.profile.is_some() && covers(m, id))
            .collect();
        found.sort_by(|a, b| a.id().cmp(b.id()));
        let Some(first) = found.first() else { continue };
        if found.iter().any(|m| m.profile != first.profile) {
            return Ok(Lookup::Ambiguous(
                found.iter().map(|m| m.id().to_string()).collect(),
            ));
        }
        let name = first.profile.as_deref().expect("filtered on a profile");
        return Ok(Lookup::Found(Box::new(Profile::named(
            name, profiles, wanted_by,
        )?)));
    }
    Ok(Lookup::NotFound)
}
