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
        let hint = match closest(id, &known).as_slice() {
            [] => String::new(),
            [one] => format!("; did you mean {one}?"),
            some => format!("; did you mean one of {}?", some.join(", ")),
        };
        CliError::usage(format!(
            "'{id}' is neither a file nor a known manifest id{hint}\n`candor list --available` lists every model candor can fetch and check"
        ))
        .into()
    })
}

/// The known ids most like `query`, best first: those that contain it, then those within a
/// small edit distance. At most three, so a long list never becomes a wall.
fn closest<'a>(query: &str, known: &'a [String]) -> Vec<&'a str> {
    let q = query.to_lowercase();
    if let Some(same) = known.iter().find(|id| id.to_lowercase() == q) {
        return vec![same.as_str()];
    }
    let mut scored: Vec<(f64, &str)> = known
        .iter()
        .filter_map(|id| {
            let lower = id.to_lowercase();
            let score = if !q.is_empty() && lower.contains(&q) {
                1.0 + q.len() as f64 / lower.len() as f64
            } else {
                strsim::jaro_winkler(&q, &lower)
            };
            (score >= 0.85).then_some((score, id.as_str()))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, id)| id).collect()
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

#[cfg(test)]
mod tests {
    use super::closest;

    fn ids() -> Vec<String> {
        [
            "gemma-2-2b-it-q4_k_m",
            "gemma-3-270m-q4_k_m",
            "llama-3.2-1b-instruct-q4_k_m",
            "smollm2-135m-instruct-q4_1",
            "smollm2-135m-instruct-q4_k_m",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn suggests_ids_that_contain_the_query_first() {
        assert_eq!(closest("gemma-3-270m", &ids()), ["gemma-3-270m-q4_k_m"]);
        assert_eq!(
            closest("smollm2-135m", &ids()),
            ["smollm2-135m-instruct-q4_1", "smollm2-135m-instruct-q4_k_m"]
        );
    }

    #[test]
    fn suggests_near_misspellings_and_nothing_for_strangers() {
        assert_eq!(
            closest("gema-3-270m-q4_k_m", &ids())[0],
            "gemma-3-270m-q4_k_m"
        );
        assert_eq!(
            closest("SmolLM2-135M-Instruct-Q4_1", &ids()),
            ["smollm2-135m-instruct-q4_1"]
        );
        assert!(closest("mistral-7b", &ids()).is_empty());
    }
}
