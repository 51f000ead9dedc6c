//! Stage 1: which files to check. A manifest's files, or for a model no manifest lists, the
//! weight files found in the directory and the companion files next to them; then any weight
//! file next to a manifest's files that it does not list (refused unless allowed).

use std::collections::HashSet;
use std::path::Path;

use super::{Check, CheckedFile, VerifyOptions};
use crate::{
    error::{Error, Result},
    filetypes,
    manifest::Manifest,
    report::{FileReport, FileStatus, Reason},
};

pub(super) fn select<'a>(
    manifest: Option<&'a Manifest>,
    target: &Path,
    opts: &'a VerifyOptions,
) -> Result<Check<'a>> {
    let meta = std::fs::metadata(target).map_err(|e| Error::io(target, e))?;
    let (root, checked) = if meta.is_dir() {
        in_directory(manifest, target)?
    } else {
        single_file(manifest, target)?
    };
    let mut check = Check {
        manifest,
        opts,
        root,
        checked,
        extra: Vec::new(),
        findings: Vec::new(),
        warnings: Vec::new(),
        overrides: Vec::new(),
    };
    if meta.is_dir() && manifest.is_some() && !opts.allow_extra {
        extra_weight_files(&mut check)?;
    }
    Ok(check)
}

fn in_directory(
    manifest: Option<&Manifest>,
    target: &Path,
) -> Result<(std::path::PathBuf, Vec<CheckedFile>)> {
    let root = target.canonicalize().map_err(|e| Error::io(target, e))?;
    let checked = match manifest {
        Some(m) => m
            .files
            .iter()
            .map(|e| CheckedFile::new(e.path.clone(), e.path.clone(), Some(e.clone())))
            .collect(),
        None => filetypes::model_files_in(&root, target)?
            .into_iter()
            .map(|p| CheckedFile::new(p.clone(), p, None))
            .collect(),
    };
    Ok((root, checked))
}

fn single_file(
    manifest: Option<&Manifest>,
    target: &Path,
) -> Result<(std::path::PathBuf, Vec<CheckedFile>)> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{}: not a usable file name", target.display())))?
        .to_string();
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let root = parent.canonicalize().map_err(|e| Error::io(parent, e))?;
    let slots = match manifest {
        Some(m) if m.files.len() == 1 => vec![CheckedFile::new(
            m.files[0].path.clone(),
            name,
            Some(m.files[0].clone()),
        )],
        // One part of a split model the manifest lists whole: check them all.
        Some(m) if split_parts(&name).is_some() && m.files.iter().any(|e| e.path == name) => {
            return in_directory(manifest, parent)
        }
        Some(m) => {
            return Err(Error::Usage(format!(
                "manifest {} lists {} files; pass the model directory, not the file {}",
                m.id(),
                m.files.len(),
                target.display()
            )))
        }
        // One part of a split model: the others are its siblings by name.
        None => match split_parts(&name) {
            Some(parts) => parts
                .into_iter()
                .filter(|p| p == &name || root.join(p).is_file())
                .map(|p| CheckedFile::new(p.clone(), p, None))
                .collect(),
            None => vec![CheckedFile::new(name.clone(), name, None)],
        },
    };
    Ok((root, slots))
}

/// The names of every part of the split GGUF model `name` belongs to, by llama.cpp's
/// `gguf-split` naming (`model-00002-of-00003.gguf`); None for any other name.
fn split_parts(name: &str) -> Option<Vec<String>> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) {
        return None;
    }
    let count: usize = count.parse().ok().filter(|&c| c >= 1)?;
    Some(
        (1..=count)
            .map(|i| format!("{prefix}-{i:05}-of-{count:05}.gguf"))
            .collect(),
    )
}

fn extra_weight_files(c: &mut Check) -> Result<()> {
    let listed: HashSet<String> = c.checked.iter().map(|s| s.disk_path.clone()).collect();
    for p in filetypes::weight_files_in(&c.root)? {
        if listed.contains(&p) {
            continue;
        }
        c.refuse(Reason::ExtraFile { path: p.clone() });
        c.extra.push(FileReport {
            path: p,
            role: None,
            format: None,
            status: FileStatus::Extra,
            expected_size: None,
            actual_size: None,
            expected_sha256: None,
            actual_sha256: None,
            cached: false,
            hash_sources: Vec::new(),
            size_sources: None,
        });
    }
    Ok(())
}
