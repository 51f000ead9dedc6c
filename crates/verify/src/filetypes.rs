//! What a file in a model directory is, from its name alone: its role, its format, and whether
//! it holds weights candor refuses to read (pickle and other code-carrying checkpoints). One
//! table, used by verification and by `manifest init` alike, and the search for a directory's
//! model files.

use std::{fs::File, path::Path};

use crate::{
    error::{Error, Result},
    files::{walk, WalkError, WalkLimits},
    manifest::{FileFormat, FileRole},
};

/// Extensions of files that hold weights (loadable or refused).
const WEIGHT_EXTS: &[&str] = &[
    "gguf",
    "safetensors",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "pkl",
    "pickle",
    "onnx",
    "h5",
    "msgpack",
    "npz",
    "joblib",
];
const MAX_WALK_ENTRIES: usize = 10_000;
const MAX_WALK_DEPTH: usize = 4;

/// Files that travel with the weights and that the engine reads (configuration, tokenizer, chat
/// template) or that state terms (license, model card). An unlisted model hands these over
/// hashed too, so nothing the engine reads bypasses verification.
pub const COMPANION_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
    "README.md",
    "LICENSE",
];

/// A file's role and, where candor reads that kind of file, its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    pub role: FileRole,
    /// `None`: weights in a format candor does not load (pickle, ONNX, ...), or a file candor
    /// has no use for.
    pub format: Option<FileFormat>,
}

/// What the file at `path` (a relative path; only its last component counts) is.
pub fn kind_of(path: &str) -> FileKind {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (role, format) = match name {
        "config.json" => (FileRole::Config, Some(FileFormat::Json)),
        "generation_config.json" => (FileRole::GenerationConfig, Some(FileFormat::Json)),
        "tokenizer.json" | "tokenizer_config.json" => (FileRole::Tokenizer, Some(FileFormat::Json)),
        "chat_template.jinja" => (FileRole::ChatTemplate, Some(FileFormat::Text)),
        "README.md" => (FileRole::ModelCard, Some(FileFormat::Text)),
        "LICENSE" => (FileRole::License, Some(FileFormat::Text)),
        n if n.ends_with(".safetensors.index.json") => (FileRole::Other, Some(FileFormat::Json)),
        n if is_weight_name(n) => match extension(n).as_deref() {
            Some("gguf") => (FileRole::Weights, Some(FileFormat::Gguf)),
            Some("safetensors") => (FileRole::Weights, Some(FileFormat::Safetensors)),
            _ => (FileRole::Weights, None),
        },
        _ => (FileRole::Other, None),
    };
    FileKind { role, format }
}

/// The role a file's name implies.
pub fn role_of(path: &str) -> FileRole {
    kind_of(path).role
}

fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())
}

fn is_weight_name(name: &str) -> bool {
    extension(name).is_some_and(|e| WEIGHT_EXTS.contains(&e.as_str()))
}

/// The files of the model in `root`: its weight-like files (at least one, else a usage error
/// naming the directory as the user gave it, `shown`) and the companion files next to them.
pub fn model_files_in(root: &Path, shown: &Path) -> Result<Vec<String>> {
    let mut found = weight_files_in(root)?;
    if found.is_empty() {
        return Err(Error::Usage(format!(
            "no model files (.gguf, .safetensors) in {}",
            shown.display()
        )));
    }
    found.extend(
        COMPANION_FILES
            .iter()
            .filter(|f| root.join(f).is_file())
            .map(|f| f.to_string()),
    );
    Ok(found)
}

/// Relative paths of weight-like files under `root`, sorted, without following symlinks, at
/// most `MAX_WALK_DEPTH` levels deep and `MAX_WALK_ENTRIES` entries.
pub fn weight_files_in(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let limits = WalkLimits {
        entries: MAX_WALK_ENTRIES,
        depth: MAX_WALK_DEPTH,
    };
    walk(root, limits, |e| {
        let name = e.rel.rsplit('/').next().unwrap_or(&e.rel);
        if e.utf8 && !e.file_type.is_dir() && is_weight_name(name) {
            out.push(e.rel.clone());
        }
        e.file_type.is_dir()
    })
    .map_err(|e| match e {
        WalkError::TooManyEntries(n) => {
            Error::Usage(format!("{} holds more than {n} entries", root.display()))
        }
        WalkError::Io { path, source } => Error::io(path, source),
    })?;
    out.sort();
    Ok(out)
}

/// Threads for hashing: `requested`, or one per CPU when it is 0 (the options' default).
pub fn hashing_threads(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// The first `limit + 1` bytes of `file` at most (one more than the limit, so that a caller can
/// tell a file that is too large).
pub fn read_bounded(file: &File, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let n = (size as usize).min(limit + 1);
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_companion_file_has_a_role_and_a_format() {
        for f in COMPANION_FILES {
            assert!(kind_of(f).format.is_some(), "{f}");
        }
        assert_eq!(kind_of("chat_template.jinja").role, FileRole::ChatTemplate);
    }

    #[test]
    fn weights_by_extension_and_refused_formats_have_none() {
        assert_eq!(
            kind_of("sub/model-00001-of-00002.safetensors"),
            FileKind {
                role: FileRole::Weights,
                format: Some(FileFormat::Safetensors)
            }
        );
        assert_eq!(kind_of("Model.GGUF").format, Some(FileFormat::Gguf));
        assert_eq!(
            kind_of("pytorch_model.bin"),
            FileKind {
                role: FileRole::Weights,
                format: None
            }
        );
        assert_eq!(kind_of("notes.txt").role, FileRole::Other);
    }
}
