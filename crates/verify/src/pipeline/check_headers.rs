//! Stage 5: validate every weight file's header strictly (GGUF, safetensors; pickle refused)
//! and a sharded safetensors model's index against its shards, before the engine reads them.

use std::path::Path;

use super::{Check, CheckedFile};
use crate::{
    files::open_in_dir,
    filetypes::read_bounded,
    formats::{
        self,
        gguf::{
            split::{self, SplitError},
            GgufHeader,
        },
        safetensors::{IndexError, SafetensorsHeader, SafetensorsIndex},
        FormatError, Header,
    },
    manifest::{FileFormat, FileRole},
    report::{FileStatus, Reason},
};

/// The largest safetensors index candor reads.
const MAX_INDEX_BYTES: usize = 50_000_000;

/// The GGUF headers that validated, by report path: what the files declare comes from them.
pub(super) type GgufHeaders = Vec<(String, GgufHeader)>;

pub(super) fn validate(c: &mut Check) -> GgufHeaders {
    let mut gguf = Vec::new();
    let mut safetensors: Vec<(String, SafetensorsHeader)> = Vec::new();
    for i in 0..c.checked.len() {
        let s = &c.checked[i];
        if !matches!(s.status, FileStatus::Ok | FileStatus::Unlisted)
            || s.role() != FileRole::Weights
        {
            continue;
        }
        let Some(o) = &s.opened else { continue };
        let fmt = s.entry.as_ref().map(|e| e.format);
        match formats::validate_weights(&o.file, &s.disk_path, fmt) {
            Ok(Header::Gguf(h)) => {
                gguf.push((s.report_path.clone(), h));
                c.checked[i].detected = Some(FileFormat::Gguf);
            }
            Ok(Header::Safetensors(h)) => {
                safetensors.push((s.disk_path.clone(), h));
                c.checked[i].detected = Some(FileFormat::Safetensors);
            }
            Err(error) => {
                let path = s.report_path.clone();
                c.checked[i].status = FileStatus::Malformed;
                c.refuse(Reason::MalformedFile { path, error });
            }
        }
    }
    if let Some((path, problem)) = check_split(&gguf) {
        c.refuse(Reason::MalformedFile {
            path,
            error: FormatError::GgufSplit(problem),
        });
    }
    let listed = c.manifest.is_some();
    if let Some((path, problem)) = check_index(&c.root, &c.checked, &safetensors, listed) {
        c.refuse(Reason::MalformedFile {
            path,
            error: FormatError::SafetensorsIndex(problem),
        });
    }
    gguf
}

/// Several GGUF files must be the parts of one split model, each once, every tensor in one.
fn check_split(gguf: &GgufHeaders) -> Option<(String, SplitError)> {
    if gguf.is_empty() {
        return None;
    }
    let files: Vec<(&str, &GgufHeader)> = gguf.iter().map(|(p, h)| (p.as_str(), h)).collect();
    split::check_parts(&files)
        .err()
        .map(|e| (gguf[0].0.clone(), e))
}

/// Find `*.safetensors.index.json` (a listed file that was hashed, or for an unlisted model the
/// file next to the shards) and check it against the validated shard headers.
fn check_index(
    root: &Path,
    checked: &[CheckedFile],
    shards: &[(String, SafetensorsHeader)],
    listed: bool,
) -> Option<(String, IndexError)> {
    const SUFFIX: &str = ".safetensors.index.json";
    let (bytes, path) = if listed {
        let s = checked
            .iter()
            .find(|s| s.disk_path.ends_with(SUFFIX) && s.status == FileStatus::Ok)?;
        (
            read_bounded(&s.opened.as_ref()?.file, MAX_INDEX_BYTES).ok()?,
            s.disk_path.clone(),
        )
    } else {
        let name = "model.safetensors.index.json";
        let o = open_in_dir(root, name, None).ok()?;
        (
            read_bounded(&o.file, MAX_INDEX_BYTES).ok()?,
            name.to_string(),
        )
    };
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let result = SafetensorsIndex::parse(&bytes).and_then(|idx| {
        let rel: Vec<(&str, &SafetensorsHeader)> = shards
            .iter()
            .filter_map(|(p, h)| p.strip_prefix(dir.as_str()).map(|r| (r, h)))
            .collect();
        idx.check_shards(&rel)
    });
    result.err().map(|e| (path, e))
}
