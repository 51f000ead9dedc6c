//! Turning a MODEL argument into a manifest (if any) and the files on disk to check.

use crate::error::CliError;
use crate::home::{hf_snapshot_dir, Home};
use anyhow::Result;
use candor_verify::{Manifest, Source};
use std::path::{Path, PathBuf};

pub struct Resolved {
    /// `None` for a path no manifest lists.
    pub manifest: Option<Manifest>,
    /// A model directory or a single file.
    pub target: PathBuf,
}

/// A path argument wins when it exists; otherwise the argument is a manifest id.
pub fn resolve(home: &Home, model: &str) -> Result<Resolved> {
    let path = Path::new(model);
    if path.exists() {
        return Ok(Resolved {
            manifest: None,
            target: path.to_path_buf(),
        });
    }
    let manifest = manifest_by_id(home, model)?;
    let target = locate(home, &manifest).ok_or_else(|| {
        CliError::usage(format!(
            "model '{model}' is not on this machine yet; fetch it with `candor pull {model}`"
        ))
    })?;
    Ok(Resolved {
        manifest: Some(manifest),
        target,
    })
}

pub fn manifest_by_id(home: &Home, id: &str) -> Result<Manifest> {
    home.manifest(id)?.ok_or_else(|| {
        let known: Vec<String> = home
            .manifests()
            .map(|ms| ms.iter().map(|m| m.id().to_string()).collect())
            .unwrap_or_default();
        CliError::usage(format!(
            "'{id}' is neither a file nor a known manifest id (known: {}); see `candor list --available`",
            known.join(", ")
        ))
        .into()
    })
}

/// Directories that may hold a manifest's files, in the order they are looked at.
pub fn candidate_dirs(home: &Home, manifest: &Manifest) -> Vec<PathBuf> {
    let mut dirs = vec![home.model_dir(manifest.id())];
    for s in &manifest.sources {
        if let Source::Huggingface { repo, revision } = s {
            dirs.extend(hf_snapshot_dir(repo, revision));
        }
    }
    dirs
}

/// The first candidate directory that holds every file of the manifest.
pub fn locate(home: &Home, manifest: &Manifest) -> Option<PathBuf> {
    candidate_dirs(home, manifest)
        .into_iter()
        .find(|d| manifest.files.iter().all(|f| d.join(&f.path).exists()))
}
