//! Models published in several GGUF files (llama.cpp's `gguf-split`,
//! `name-00001-of-00003.gguf`): every part declares `split.no`, `split.count` and
//! `split.tensors.count`, the first holds the metadata, and together they hold each tensor once.

use std::collections::HashMap;

use super::GgufHeader;

pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS: &str = "split.tensors.count";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("{0} GGUF files that are not parts of one split model (each needs split.no and split.count); keep one model per directory")]
    NotOneModel(usize),
    #[error("{path} says it is part {no} of {count}, but {found} parts are here; fetch the missing parts (every `-0000N-of-{count:05}.gguf` file)")]
    PartsMissing {
        path: String,
        no: u64,
        count: u64,
        found: usize,
    },
    #[error("{path} says the model has {count} parts, {other} says {other_count}")]
    CountDisagrees {
        path: String,
        count: u64,
        other: String,
        other_count: u64,
    },
    #[error("{path} is part {no} of {count}, which is no part of such a model")]
    NoOutOfRange { path: String, no: u64, count: u64 },
    #[error("{path} and {other} are both part {no}")]
    PartTwice {
        path: String,
        other: String,
        no: u64,
    },
    #[error("{path}: {key} is {value:?}, not an unsigned integer")]
    BadValue {
        path: String,
        key: &'static str,
        value: String,
    },
    #[error("the parts declare {declared} tensors in all ({SPLIT_TENSORS}) but hold {found}")]
    TensorCount { declared: u64, found: u64 },
    #[error("tensor {name:?} is in both {path} and {other}")]
    TensorInTwoParts {
        name: String,
        path: String,
        other: String,
    },
}

/// Where one file stands in a split model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPart {
    /// 0-based, as stored.
    pub no: u64,
    pub count: u64,
    pub tensors: Option<u64>,
}

impl SplitPart {
    /// The file's split keys; None for a file that is not part of a split model.
    pub fn of(path: &str, h: &GgufHeader) -> Result<Option<SplitPart>, SplitError> {
        let read = |key: &'static str| match h.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| SplitError::BadValue {
                path: path.to_string(),
                key,
                value: format!("{v:?}"),
            }),
        };
        let (Some(count), no) = (read(SPLIT_COUNT)?, read(SPLIT_NO)?) else {
            return Ok(None);
        };
        Ok(Some(SplitPart {
            no: no.unwrap_or(0),
            count,
            tensors: read(SPLIT_TENSORS)?,
        }))
    }
}

/// Checks that the GGUF files of one model are one whole: a single file that is not split (or
/// is its own only part), or every part of one split model, each once, with every tensor in
/// exactly one part. Returns the parts in order (indices into `files`).
pub fn check_parts(files: &[(&str, &GgufHeader)]) -> Result<Vec<usize>, SplitError> {
    let mut parts = Vec::with_capacity(files.len());
    for (i, (path, h)) in files.iter().enumerate() {
        match SplitPart::of(path, h)? {
            Some(p) => parts.push((i, p)),
            None if files.len() == 1 => return Ok(vec![0]),
            None => return Err(SplitError::NotOneModel(files.len())),
        }
    }
    let (first, p0) = parts[0];
    for &(i, p) in &parts {
        if p.count != p0.count {
            return Err(SplitError::CountDisagrees {
                path: files[first].0.to_string(),
                count: p0.count,
                other: files[i].0.to_string(),
                other_count: p.count,
            });
        }
        if p.no >= p.count {
            return Err(SplitError::NoOutOfRange {
                path: files[i].0.to_string(),
                no: p.no + 1,
                count: p.count,
            });
        }
    }
    if p0.count > files.len() as u64 {
        return Err(SplitError::PartsMissing {
            path: files[first].0.to_string(),
            no: p0.no + 1,
            count: p0.count,
            found: files.len(),
        });
    }
    // More files than parts: two files claim the same part, found below.
    let mut order: Vec<Option<usize>> = vec![None; p0.count as usize];
    for &(i, p) in &parts {
        if let Some(other) = order[p.no as usize].replace(i) {
            return Err(SplitError::PartTwice {
                path: files[other].0.to_string(),
                other: files[i].0.to_string(),
                no: p.no + 1,
            });
        }
    }
    let order: Vec<usize> = order.into_iter().flatten().collect();
    let found: u64 = files.iter().map(|(_, h)| h.tensors.len() as u64).sum();
    if let Some(declared) = parts.iter().find_map(|(_, p)| p.tensors) {
        if declared != found {
            return Err(SplitError::TensorCount { declared, found });
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for &i in &order {
        for t in &files[i].1.tensors {
            if let Some(other) = seen.insert(&t.name, i) {
                return Err(SplitError::TensorInTwoParts {
                    name: t.name.clone(),
                    path: files[other].0.to_string(),
                    other: files[i].0.to_string(),
                });
            }
        }
    }
    Ok(order)
}
