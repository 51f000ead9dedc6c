//! The candor home (CANDOR_HOME) and the manifests candor knows: those bundled into the binary
//! and those a user adds under `$CANDOR_HOME/manifests/`.

use anyhow::{Context, Result};
use candor_verify::{Manifest, Profiles};
use std::path::{Path, PathBuf};

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_manifests.rs"));
}

pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$CANDOR_HOME`, else `~/.cache/candor`.
    pub fn from_env() -> Result<Self> {
        let root = match std::env::var_os("CANDOR_HOME") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let home =
                    std::env::var_os("HOME").context("neither CANDOR_HOME nor HOME is set")?;
                PathBuf::from(home).join(".cache").join("candor")
            }
        };
        Self::at(root)
    }

    /// A home at `root` (tests, tools embedding candor).
    pub fn at(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the candor home {}", root.display()))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where files fetched from a mirror are kept: `$CANDOR_HOME/models/<id>/`.
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.root.join("models").join(id)
    }

    pub fn user_manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// The family profiles a user's manifest may name: the user's own
    /// (`$CANDOR_HOME/manifests/families/`), then those bundled with candor.
    pub fn bundled_profiles() -> Profiles {
        bundled::BUNDLED_PROFILES
            .iter()
            .fold(Profiles::none(), |p, (name, text)| {
                p.then_embedded(name, text)
            })
    }

    /// Every known manifest: user manifests first (they may shadow bundled ones), then bundled.
    /// A user manifest's profile is looked up in the user's `families/`, then among the bundled
    /// profiles; a bundled manifest's only among the bundled ones.
    pub fn manifests(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        let bundled_profiles = Self::bundled_profiles();
        let user = self.user_manifests_dir();
        if user.is_dir() {
            out.extend(candor_verify::manifests_in_dir_with(
                &user,
                &bundled_profiles,
            )?);
        }
        for (id, text) in bundled::BUNDLED {
            if out.iter().any(|m: &Manifest| m.id() == *id) {
                continue;
            }
            let origin = PathBuf::from(format!("manifests/{id}.toml"));
            out.push(Manifest::parse_with(text, id, &origin, &bundled_profiles)?);
        }
        Ok(out)
    }

    /// The manifests shipped with candor (curated, never shadowed by a user's file).
    pub fn curated_manifests(&self) -> Result<Vec<Manifest>> {
        bundled::BUNDLED
            .iter()
            .map(|(id, text)| {
                let origin = PathBuf::from(format!("manifests/{id}.toml"));
                Ok(Manifest::parse_with(
                    text,
                    id,
                    &origin,
                    &Self::bundled_profiles(),
                )?)
            })
            .collect()
    }

    /// True when `id` names a manifest shipped with candor.
    pub fn is_curated(&self, id: &str) -> bool {
        bundled::BUNDLED.iter().any(|(b, _)| *b == id)
    }

    pub fn manifest(&self, id: &str) -> Result<Option<Manifest>> {
        Ok(self.manifests()?.into_iter().find(|m| m.id() == id))
    }
}

/// The Hugging Face hub cache, as Hugging Face tools locate it.
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// `snapshots/<revision>` of a repo in the Hugging Face cache.
pub fn hf_snapshot_dir(repo: &str, revision: &str) -> Option<PathBuf> {
    let dir = format!("models--{}", repo.replace('/', "--"));
    hf_cache_dir().map(|c| c.join(dir).join("snapshots").join(revision))
}
