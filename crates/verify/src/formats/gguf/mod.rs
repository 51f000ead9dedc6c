//! A strict, bounded GGUF header reader (versions 2 and 3, little-endian). Every count and length
//! is checked against the bytes that remain before anything is allocated, arithmetic is checked,
//! and tensor data must be laid out the way llama.cpp writes it: in order, aligned, contiguous and
//! inside the file.

#[doc(hidden)]
pub mod build;
mod metadata;
mod reader;
pub mod split;
mod tensors;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use metadata::GgufValue;
pub use tensors::{ggml_type, TensorInfo};

use super::ByteSource;
use reader::Reader;

/// Largest metadata string value (chat templates are the big ones).
pub const MAX_STRING: u64 = 16 << 20;
/// Largest metadata key.
pub const MAX_KEY: u64 = 1024;
/// GGML_MAX_NAME is 64 including the terminating NUL.
pub const MAX_TENSOR_NAME: u64 = 63;
/// Most elements in one metadata array.
pub const MAX_ARRAY: u64 = 1 << 24;
/// Arrays longer than this are validated but not kept in memory.
pub const KEEP_ARRAY: u64 = 4096;
/// Most bytes of the file the header (metadata + tensor infos) may take.
pub const MAX_HEADER_BYTES: u64 = 512 << 20;
pub const MAX_ALIGNMENT: u64 = 1 << 16;
pub const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufError {
    #[error("bad magic (not a GGUF file)")]
    BadMagic,
    #[error("version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF is not supported")]
    BigEndian,
    #[error("file ends inside the {0}")]
    UnexpectedEof(&'static str),
    #[error("{what} count {count} cannot fit in the {remaining} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: u64,
    },
    #[error("string of {len} bytes exceeds the limit of {limit}")]
    StringTooLong { len: u64, limit: u64 },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("metadata key {0:?} is empty or holds control characters")]
    BadKey(String),
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    #[error("nested arrays are not allowed")]
    NestedArray,
    #[error("array of {0} elements exceeds the limit")]
    ArrayTooLong(u64),
    #[error("bool value {0} is neither 0 nor 1")]
    BadBool(u8),
    #[error("general.alignment must be a u32 power of two up to {MAX_ALIGNMENT}; found {0}")]
    BadAlignment(String),
    #[error("header larger than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    #[error("tensor {name:?}: {n_dims} dimensions (1 to 4 allowed)")]
    BadDimCount { name: String, n_dims: u32 },
    #[error("tensor {name:?}: a dimension is 0")]
    ZeroDim { name: String },
    #[error("tensor {name:?}: element count overflows")]
    ElementCountOverflow { name: String },
    #[error("tensor {name:?}: unknown ggml type {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },
    #[error("tensor {name:?}: first dimension {ne0} is not a multiple of {type_name}'s block size {block}")]
    RowNotBlockAligned {
        name: String,
        ne0: u64,
        type_name: &'static str,
        block: u64,
    },
    #[error("tensor name {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("tensor name {0:?} is empty, too long (max {MAX_TENSOR_NAME} bytes) or holds control characters")]
    BadTensorName(String),
    #[error("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor {name:?}: offset {offset} is not where the previous tensor ends ({expected})")]
    OffsetNotContiguous {
        name: String,
        offset: u64,
        expected: u64,
    },
    #[error("tensor {name:?}: data ends beyond the end of the file")]
    TensorOutOfBounds { name: String },
    #[error("read error: {0}")]
    Io(String),
}

impl From<std::io::Error> for GgufError {
    fn from(e: std::io::Error) -> Self {
        GgufError::Io(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GgufHeader {
    pub version: u32,
    pub alignment: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub file_size: u64,
}

/// A base model named in `general.base_model.N.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BaseModelMeta {
    pub name: Option<String>,
    pub organization: Option<String>,
    pub repo_url: Option<String>,
}

/// Metadata keys and tensor names: not empty, and no control characters that could hide text in
/// a report.
fn is_clean_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// What the fixed-size start of the file declares.
struct Preamble {
    version: u32,
    tensor_count: u64,
    kv_count: u64,
}

/// Magic, version and the two counts; the counts must fit in the bytes left at their smallest
/// possible entry sizes, so nothing is allocated for entries the file cannot hold.
fn read_preamble<S: ByteSource + ?Sized>(r: &mut Reader<'_, S>) -> Result<Preamble, GgufError> {
    let magic = r.arr::<4>("magic").map_err(|_| GgufError::BadMagic)?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic);
    }
    let version = r.u32("header")?;
    match version {
        2 | 3 => {}
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => return Err(GgufError::BigEndian),
        v => return Err(GgufError::UnsupportedVersion(v)),
    }
    let tensor_count = r.u64("header")?;
    let kv_count = r.u64("header")?;
    // Smallest possible entries: a kv is an 8-byte key length, 1 key byte, a 4-byte type and
    // a 1-byte value; a tensor info is an 8-byte name length, 4-byte n_dims, one 8-byte dim,
    // a 4-byte type and an 8-byte offset.
    let need = kv_count
        .checked_mul(14)
        .and_then(|a| tensor_count.checked_mul(32).and_then(|b| a.checked_add(b)));
    if need.is_none_or(|n| n > r.remaining()) {
        let (what, count) = if kv_count.saturating_mul(14) > r.remaining() {
            ("metadata entry", kv_count)
        } else {
            ("tensor", tensor_count)
        };
        return Err(GgufError::CountTooLarge {
            what,
            count,
            remaining: r.remaining(),
        });
    }
    Ok(Preamble {
        version,
        tensor_count,
        kv_count,
    })
}

impl GgufHeader {
    /// Read and validate the header of a GGUF file: preamble, metadata, tensor infos, then the
    /// layout of the tensor data they describe.
    pub fn read<S: ByteSource + ?Sized>(src: &S) -> Result<GgufHeader, GgufError> {
        let file_size = src.size()?;
        let mut r = Reader::new(src, file_size);
        let preamble = read_preamble(&mut r)?;
        let (metadata, alignment) = metadata::read_metadata(&mut r, preamble.kv_count)?;
        let tensors = tensors::read_tensor_infos(&mut r, preamble.tensor_count)?;
        let data_offset =
            tensors::align_up(r.pos(), alignment).ok_or(GgufError::UnexpectedEof("tensor data"))?;
        tensors::check_data_layout(&tensors, alignment, data_offset, file_size)?;
        Ok(GgufHeader {
            version: preamble.version,
            alignment,
            metadata,
            tensors,
            data_offset,
            file_size,
        })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `general.license` (an SPDX expression or a hub id such as `apache-2.0`).
    pub fn license(&self) -> Option<&str> {
        self.get_str("general.license")
    }

    pub fn license_name(&self) -> Option<&str> {
        self.get_str("general.license.name")
    }

    pub fn license_link(&self) -> Option<&str> {
        self.get_str("general.license.link")
    }

    /// `general.base_model.count` entries of `general.base_model.N.{name,organization,repo_url}`.
    pub fn base_models(&self) -> Vec<BaseModelMeta> {
        let count = self
            .get("general.base_model.count")
            .and_then(GgufValue::as_u64)
            .unwrap_or(0);
        let mut by_index: BTreeMap<u64, BaseModelMeta> = BTreeMap::new();
        for i in 0..count.min(64) {
            let f = |k: &str| {
                self.get_str(&format!("general.base_model.{i}.{k}"))
                    .map(str::to_string)
            };
            by_index.insert(
                i,
                BaseModelMeta {
                    name: f("name"),
                    organization: f("organization"),
                    repo_url: f("repo_url"),
                },
            );
        }
        by_index.into_values().collect()
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.size).sum()
    }
}
