//! `candor manifest import`: a manifest from what a Hugging Face repo publishes at one commit —
//! each file's size and sha256 (the LFS oid, or for small git files a hash of the bytes fetched
//! at the commit), the model card's base models and license. License terms and openness come
//! from a curated profile when the caller found one; otherwise they are marked unassessed, and
//! the default policy refuses the model as it refuses an unlisted one.
//!
//! This module only assembles the manifest; reading the hub is the caller's job.

use std::path::Path;

use crate::{
    error::{Error, Result},
    filetypes,
    license::{License, LicenseTerms},
    manifest::{BaseModelRelation, FileEntry, HubOrigin, Manifest, ModelInfo, Profiles, Source},
    model_card::CardInfo,
    openness::{Level, Openness},
};

/// One file as the hub publishes it at the commit.
#[derive(Debug, Clone)]
pub struct HubFile {
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The hub publishes no sha256 for it (a small file kept in git); `sha256` was computed
    /// from the bytes fetched at the commit.
    pub fetched: bool,
}

/// A family profile (`manifests/families/NAME.toml`): its name and the license and openness it
/// supplies.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub license: License,
    pub openness: Openness,
}

impl Profile {
    /// The profile `name` as `profiles` resolve it: the tables a manifest naming it loads with.
    /// Errors name `wanted_by`, the manifest that is to name it.
    pub fn named(name: &str, profiles: &Profiles, wanted_by: &Path) -> Result<Profile> {
        let (license, openness) = profiles.tables(name, wanted_by)?;
        Ok(Profile {
            name: name.to_string(),
            license,
            openness,
        })
    }
}

/// Everything a `hub` manifest is made of.
#[derive(Debug, Clone)]
pub struct HubImport {
    pub id: String,
    /// `owner/name`.
    pub repo: String,
    /// 40 lowercase hex digits.
    pub commit: String,
    pub files: Vec<HubFile>,
    /// The repo's model-card metadata (`cardData`).
    pub card: CardInfo,
    /// GGUF `general.architecture` or config.json `model_type`, where the hub or a fetched
    /// config.json says.
    pub architecture: Option<String>,
    pub profile: Option<Profile>,
}

impl Manifest {
    /// The `hub` manifest for `import`. Every file must be one candor loads (by the name table
    /// verification uses).
    pub fn imported(import: HubImport) -> Result<Manifest> {
        let mut files = Vec::with_capacity(import.files.len());
        for f in &import.files {
            let kind = filetypes::kind_of(&f.path);
            let Some(format) = kind.format else {
                return Err(Error::Usage(format!(
                    "{}: not a file candor loads (weights must be GGUF or safetensors)",
                    f.path
                )));
            };
            files.push(FileEntry {
                path: f.path.clone(),
                size: f.size,
                sha256: f.sha256,
                role: kind.role,
                format,
                hash_sources: vec![if f.fetched {
                    format!(
                        "sha256 of the bytes fetched from {}@{}, checked against the hub's git blob id",
                        import.repo, import.commit
                    )
                } else {
                    format!("the hub's LFS sha256 for {}@{}", import.repo, import.commit)
                }],
                size_sources: None,
            });
        }
        if files.is_empty() {
            return Err(Error::Usage("no files to import".into()));
        }
        let (owner, name) = import.repo.split_once('/').unwrap_or(("", &import.repo));
        let model = ModelInfo {
            name: name.to_string(),
            publisher: if owner.is_empty() { "unknown" } else { owner }.to_string(),
            architecture: import
                .architecture
                .clone()
                .unwrap_or_else(|| "unknown".into()),
            version: None,
            parameter_count: None,
            homepage: Some(format!("https://huggingface.co/{}", import.repo)),
            base_models: import.card.base_model.clone(),
            base_model_relation: import
                .card
                .base_model_relation
                .as_deref()
                .and_then(relation),
        };
        let (license, openness, profile) = match import.profile {
            Some(p) => (p.license, p.openness, Some(p.name)),
            None => (
                unassessed_license(&import.card),
                unassessed_openness(),
                None,
            ),
        };
        let source = Source::Huggingface {
            repo: import.repo.clone(),
            revision: import.commit.clone(),
        };
        let hub = HubOrigin {
            repo: import.repo,
            commit: import.commit,
            sha256_fetched: import
                .files
                .iter()
                .filter(|f| f.fetched)
                .map(|f| f.path.clone())
                .collect(),
        };
        let mut m = Manifest::new(
            &import.id,
            crate::manifest::Attestation::Hub,
            model,
            vec![source],
            files,
            license,
            openness,
        );
        m.profile = profile;
        Ok(m.imported_from_hub(hub))
    }
}

fn relation(s: &str) -> Option<BaseModelRelation> {
    Some(match s {
        "adapter" => BaseModelRelation::Adapter,
        "merge" => BaseModelRelation::Merge,
        "quantized" => BaseModelRelation::Quantized,
        "finetune" => BaseModelRelation::Finetune,
        _ => return None,
    })
}

/// The license the card declares, so that verification's comparison with what the files
/// declare still holds, but with the conservative terms of a license nobody read.
fn unassessed_license(card: &CardInfo) -> License {
    License {
        terms: LicenseTerms::unknown(),
        ..crate::manifest_init::license_of(None, card)
    }
}

/// Nothing graded: the achieved level is closed, and nothing is claimed.
fn unassessed_openness() -> Openness {
    Openness {
        claimed: Level::Closed,
        claimed_wording: "not assessed (imported from the hub)".into(),
        claim_source: "candor manifest import".into(),
        assessed_by: None,
        assessed_at: None,
        components: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(profile: Option<Profile>) -> HubImport {
        HubImport {
            id: "tiny".into(),
            repo: "org/tiny".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            files: vec![
                HubFile {
                    path: "model.safetensors".into(),
                    size: 10,
                    sha256: [1; 32],
                    fetched: false,
                },
                HubFile {
                    path: "config.json".into(),
                    size: 2,
                    sha256: [2; 32],
                    fetched: true,
                },
            ],
            card: CardInfo {
                license: Some("apache-2.0".into()),
                base_model: vec!["org/base".into()],
                base_model_relation: Some("quantized".into()),
                ..Default::default()
            },
            architecture: Some("llama".into()),
            profile,
        }
    }

    #[test]
    fn an_unassessed_import_round_trips_through_the_strict_loader() {
        let m = Manifest::imported(import(None)).unwrap();
        assert!(m.is_unassessed());
        let text = m.to_toml();
        let back = Manifest::parse(&text, "tiny", std::path::Path::new("tiny.toml")).unwrap();
        assert_eq!(back.attestation, crate::manifest::Attestation::Hub);
        assert_eq!(back.hub, m.hub);
        assert_eq!(back.hub.as_ref().unwrap().sha256_fetched, ["config.json"]);
        assert_eq!(back.license.spdx, "Apache-2.0");
        assert!(!back.license.terms.commercial_use, "terms nobody read");
        assert!(back.is_unassessed());
        assert_eq!(back.files[1].role, crate::manifest::FileRole::Config);
    }

    #[test]
    fn a_profile_supplies_license_and_openness() {
        let mut openness = unassessed_openness();
        openness.claimed_wording = "curated".into();
        let license = License {
            terms: LicenseTerms::permissive(),
            ..unassessed_license(&CardInfo {
                license: Some("apache-2.0".into()),
                ..Default::default()
            })
        };
        let m = Manifest::imported(import(Some(Profile {
            name: "tiny-curated".into(),
            license,
            openness,
        })))
        .unwrap();
        assert!(!m.is_unassessed());
        assert!(m.license.terms.commercial_use);
        assert_eq!(m.openness.claimed_wording, "curated");
        assert_eq!(m.profile.as_deref(), Some("tiny-curated"));
    }

    #[test]
    fn a_file_candor_does_not_load_is_refused() {
        let mut i = import(None);
        i.files[0].path = "pytorch_model.bin".into();
        let e = Manifest::imported(i).unwrap_err().to_string();
        assert!(e.contains("pytorch_model.bin"), "{e}");
    }
}
