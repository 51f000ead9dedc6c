//! A strict safetensors header reader: 8-byte little-endian length, a JSON object of at most
//! [`MAX_HEADER`] bytes with no duplicate keys (serde_json would silently keep the last), known
//! dtypes, shapes whose byte size matches their offsets, and offsets that tile the data section
//! exactly from 0 to its end (no gaps, overlaps or trailing bytes).

use std::{collections::HashSet, fmt};

use serde::{
    de::{MapAccess, Visitor},
    Deserialize, Deserializer, Serialize,
};
use serde_json::value::RawValue;

use super::ByteSource;

/// Tighter than the safetensors crate's 100 MB.
pub const MAX_HEADER: u64 = 50_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafetensorsError {
    #[error("file shorter than the 8-byte header length")]
    HeaderTooSmall,
    #[error("header length {0} exceeds the limit of {MAX_HEADER} bytes")]
    HeaderTooLarge(u64),
    #[error("header length {len} exceeds the {available} bytes after it")]
    InvalidHeaderLength { len: u64, available: u64 },
    #[error("header is not valid UTF-8")]
    InvalidHeaderUtf8,
    #[error("header does not start with '{{'")]
    InvalidHeaderStart,
    #[error("header is not a JSON object: {0}")]
    InvalidHeaderJson(String),
    #[error("key {0:?} appears twice in the header")]
    DuplicateKey(String),
    #[error("__metadata__ must map strings to strings")]
    InvalidMetadata,
    #[error("tensor {name:?}: {message}")]
    InvalidTensorInfo { name: String, message: String },
    #[error("tensor {name:?}: unknown dtype {dtype:?}")]
    UnknownDtype { name: String, dtype: String },
    #[error("tensor {0:?}: shape element count overflows")]
    ValidationOverflow(String),
    #[error("tensor {0:?}: size in bits is not a whole number of bytes")]
    MisalignedSlice(String),
    #[error(
        "tensor {name:?}: shape and dtype need {expected} bytes but data_offsets span {actual}"
    )]
    TensorInvalidInfo {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("tensor {name:?}: data_offsets [{begin}, {end}] {why}")]
    InvalidOffset {
        name: String,
        begin: u64,
        end: u64,
        why: &'static str,
    },
    #[error("tensor data covers {covered} bytes but the file holds {available}")]
    MetadataIncompleteBuffer { covered: u64, available: u64 },
    #[error("read error: {0}")]
    Io(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Offsets relative to the start of the data section.
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetensorsHeader {
    pub header_len: u64,
    pub metadata: Vec<(String, String)>,
    /// Tensors in data order.
    pub tensors: Vec<TensorEntry>,
    pub data_offset: u64,
    pub file_size: u64,
}

/// Bits per element of each dtype.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// A JSON object read as its entries in order, duplicates kept so we can refuse them.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn entries(json: &str) -> Result<Vec<(String, Box<RawValue>)>, SafetensorsError> {
    let e: Entries = serde_json::from_str(json)
        .map_err(|e| SafetensorsError::InvalidHeaderJson(e.to_string()))?;
    let mut seen = HashSet::new();
    for (k, _) in &e.0 {
        if !seen.insert(k.as_str()) {
            return Err(SafetensorsError::DuplicateKey(k.clone()));
        }
    }
    Ok(e.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

impl From<std::io::Error> for SafetensorsError {
    fn from(e: std::io::Error) -> Self {
        SafetensorsError::Io(e.to_string())
    }
}

impl SafetensorsHeader {
    /// Read and validate the header of a safetensors file: the JSON header, each tensor entry,
    /// then that the entries tile the data section.
    pub fn read<S: ByteSource + ?Sized>(src: &S) -> Result<SafetensorsHeader, SafetensorsError> {
        let file_size = src.size()?;
        let (header_len, json) = read_json(src, file_size)?;
        let mut metadata = Vec::new();
        let mut tensors = Vec::new();
        for (name, raw) in entries(&json)? {
            if name == "__metadata__" {
                // `entries` refused a second one.
                metadata = string_map(&raw)?;
            } else {
                tensors.push(tensor_entry(name, &raw)?);
            }
        }
        tensors.sort_by_key(|t| (t.begin, t.end));
        let data_offset = 8 + header_len;
        check_tiling(&tensors, file_size - data_offset)?;
        Ok(SafetensorsHeader {
            header_len,
            metadata,
            tensors,
            data_offset,
            file_size,
        })
    }
}

/// The header's length prefix and its JSON text, which must start with the object's `{`.
fn read_json<S: ByteSource + ?Sized>(
    src: &S,
    file_size: u64,
) -> Result<(u64, String), SafetensorsError> {
    if file_size < 8 {
        return Err(SafetensorsError::HeaderTooSmall);
    }
    let mut len = [0u8; 8];
    src.read_exact_at(&mut len, 0)?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(SafetensorsError::HeaderTooLarge(header_len));
    }
    let available = file_size - 8;
    if header_len > available {
        return Err(SafetensorsError::InvalidHeaderLength {
            len: header_len,
            available,
        });
    }
    let mut buf = vec![0u8; header_len as usize];
    src.read_exact_at(&mut buf, 8)?;
    let json = String::from_utf8(buf).map_err(|_| SafetensorsError::InvalidHeaderUtf8)?;
    if !json.starts_with('{') {
        return Err(SafetensorsError::InvalidHeaderStart);
    }
    Ok((header_len, json))
}

/// `__metadata__`: a JSON object of strings, without duplicate keys.
fn string_map(raw: &RawValue) -> Result<Vec<(String, String)>, SafetensorsError> {
    let map = entries(raw.get()).map_err(|e| match e {
        SafetensorsError::DuplicateKey(k) => SafetensorsError::DuplicateKey(k),
        _ => SafetensorsError::InvalidMetadata,
    })?;
    map.into_iter()
        .map(|(k, v)| {
            let s: String =
                serde_json::from_str(v.get()).map_err(|_| SafetensorsError::InvalidMetadata)?;
            Ok((k, s))
        })
        .collect()
}

/// One tensor's entry: known fields only, a known dtype, and offsets that span exactly the bytes
/// its shape and dtype need.
fn tensor_entry(name: String, raw: &RawValue) -> Result<TensorEntry, SafetensorsError> {
    let t: RawTensor =
        serde_json::from_str(raw.get()).map_err(|e| SafetensorsError::InvalidTensorInfo {
            name: name.clone(),
            message: e.to_string(),
        })?;
    let Some(bits) = dtype_bits(&t.dtype) else {
        return Err(SafetensorsError::UnknownDtype {
            name,
            dtype: t.dtype,
        });
    };
    let (begin, end) = t.data_offsets;
    if end < begin {
        return Err(SafetensorsError::InvalidOffset {
            name,
            begin,
            end,
            why: "end before begin",
        });
    }
    let total_bits = t
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|elements| elements.checked_mul(bits))
        .ok_or_else(|| SafetensorsError::ValidationOverflow(name.clone()))?;
    if total_bits % 8 != 0 {
        return Err(SafetensorsError::MisalignedSlice(name));
    }
    if total_bits / 8 != end - begin {
        return Err(SafetensorsError::TensorInvalidInfo {
            name,
            expected: total_bits / 8,
            actual: end - begin,
        });
    }
    Ok(TensorEntry {
        name,
        dtype: t.dtype,
        shape: t.shape,
        begin,
        end,
    })
}

/// Tensors sorted by offset must cover the data section from 0 to its end with no gap, overlap
/// or trailing bytes, so no byte of the file goes unchecked.
fn check_tiling(tensors: &[TensorEntry], data_len: u64) -> Result<(), SafetensorsError> {
    let mut expected = 0u64;
    for t in tensors {
        if t.begin != expected {
            let why = if expected == 0 {
                "do not start at 0"
            } else if t.begin < expected {
                "overlap the previous tensor"
            } else {
                "leave a gap after the previous tensor"
            };
            return Err(SafetensorsError::InvalidOffset {
                name: t.name.clone(),
                begin: t.begin,
                end: t.end,
                why,
            });
        }
        expected = t.end;
    }
    if expected != data_len {
        return Err(SafetensorsError::MetadataIncompleteBuffer {
            covered: expected,
            available: data_len,
        });
    }
    Ok(())
}

/// A sharded model's `model.safetensors.index.json`: which shard holds each tensor. candle would
/// silently take the last shard that has a tensor; here every tensor must be in exactly the shard
/// the index names, and every shard must be named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetensorsIndex {
    /// tensor name -> shard path (relative, validated like a manifest path)
    pub weight_map: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index larger than {MAX_HEADER} bytes")]
    TooLarge,
    #[error("index is not a JSON object with a weight_map: {0}")]
    InvalidJson(String),
    #[error("key {0:?} appears twice in the index")]
    DuplicateKey(String),
    #[error("tensor {tensor:?}: shard {shard:?} is not a safe relative path ({why})")]
    BadShardPath {
        tensor: String,
        shard: String,
        why: crate::manifest::PathProblem,
    },
    #[error("tensor {0:?}: shard is not a string")]
    NonStringShard(String),
    #[error("the index names shard {0:?}, which is not among the model's files")]
    UnknownShard(String),
    #[error("tensor {0:?} is in more than one shard")]
    TensorInTwoShards(String),
    #[error("tensor {tensor:?} is in shard {found:?} but the index names {named:?}")]
    TensorInWrongShard {
        tensor: String,
        named: String,
        found: String,
    },
    #[error("tensor {tensor:?} of shard {shard:?} is not in the index")]
    TensorNotInIndex { tensor: String, shard: String },
    #[error("tensor {tensor:?} is in the index but not in shard {shard:?}")]
    TensorMissing { tensor: String, shard: String },
    #[error("shard {0:?} is not named by the index")]
    ShardNotInIndex(String),
}

/// [`entries`] with its errors as index errors.
fn index_entries(json: &str) -> Result<Vec<(String, Box<RawValue>)>, IndexError> {
    entries(json).map_err(|e| match e {
        SafetensorsError::DuplicateKey(k) => IndexError::DuplicateKey(k),
        other => IndexError::InvalidJson(other.to_string()),
    })
}

impl SafetensorsIndex {
    /// Parse an index strictly (duplicate keys refused, shard paths validated) before any shard
    /// it names is opened.
    pub fn parse(bytes: &[u8]) -> Result<SafetensorsIndex, IndexError> {
        if bytes.len() as u64 > MAX_HEADER {
            return Err(IndexError::TooLarge);
        }
        let json =
            std::str::from_utf8(bytes).map_err(|e| IndexError::InvalidJson(e.to_string()))?;
        let top = index_entries(json)?;
        let Some((_, map)) = top.iter().find(|(k, _)| k == "weight_map") else {
            return Err(IndexError::InvalidJson("no weight_map".into()));
        };
        let mut weight_map = Vec::new();
        for (tensor, v) in index_entries(map.get())? {
            let shard: String = serde_json::from_str(v.get())
                .map_err(|_| IndexError::NonStringShard(tensor.clone()))?;
            crate::manifest::validate_rel_path(&shard).map_err(|why| IndexError::BadShardPath {
                tensor: tensor.clone(),
                shard: shard.clone(),
                why,
            })?;
            weight_map.push((tensor, shard));
        }
        Ok(SafetensorsIndex { weight_map })
    }

    /// Check the index against the shards' validated headers (`shard path -> header`, paths
    /// relative to the index's directory).
    pub fn check_shards(&self, shards: &[(&str, &SafetensorsHeader)]) -> Result<(), IndexError> {
        use std::collections::{HashMap, HashSet};
        let named: HashMap<&str, &str> = self
            .weight_map
            .iter()
            .map(|(t, s)| (t.as_str(), s.as_str()))
            .collect();
        let known: HashSet<&str> = shards.iter().map(|(p, _)| *p).collect();
        for (_, shard) in &self.weight_map {
            if !known.contains(shard.as_str()) {
                return Err(IndexError::UnknownShard(shard.clone()));
            }
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (path, header) in shards {
            if !self.weight_map.iter().any(|(_, s)| s == path) {
                return Err(IndexError::ShardNotInIndex(path.to_string()));
            }
            for t in &header.tensors {
                if seen.insert(t.name.as_str(), path).is_some() {
                    return Err(IndexError::TensorInTwoShards(t.name.clone()));
                }
                match named.get(t.name.as_str()) {
                    None => {
                        return Err(IndexError::TensorNotInIndex {
                            tensor: t.name.clone(),
                            shard: path.to_string(),
                        })
                    }
                    Some(n) if n != path => {
                        return Err(IndexError::TensorInWrongShard {
                            tensor: t.name.clone(),
                            named: n.to_string(),
                            found: path.to_string(),
                        })
                    }
                    _ => {}
                }
            }
        }
        for (t, s) in &self.weight_map {
            if !seen.contains_key(t.as_str()) {
                return Err(IndexError::TensorMissing {
                    tensor: t.clone(),
                    shard: s.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Byte builders for tests.
#[doc(hidden)]
pub mod build {
    /// A safetensors file with the given JSON header and `data_len` zero bytes of data.
    pub fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend(json.as_bytes());
        out.resize(out.len() + data_len, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::file;
    use super::*;
    use SafetensorsError as E;

    fn parse(b: &[u8]) -> Result<SafetensorsHeader, SafetensorsError> {
        SafetensorsHeader::read(b)
    }

    const GOOD: &str = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;

    #[test]
    fn valid_file() {
        let h = parse(&file(GOOD, 24)).unwrap();
        assert_eq!(h.tensors[0].name, "a");
        assert_eq!(h.metadata, vec![("format".to_string(), "pt".to_string())]);
        let h = parse(&file("{}", 0)).unwrap();
        assert!(h.tensors.is_empty());
    }

    #[test]
    fn s1_too_small() {
        assert_eq!(parse(b""), Err(E::HeaderTooSmall));
        assert_eq!(parse(b"\x01\x00"), Err(E::HeaderTooSmall));
    }

    #[test]
    fn s2_s3_header_length() {
        let mut b = (1u64 << 63).to_le_bytes().to_vec();
        b.extend(b"{}");
        assert!(matches!(parse(&b), Err(E::HeaderTooLarge(_))));
        let mut b = 100u64.to_le_bytes().to_vec();
        b.extend(b"{}");
        assert!(matches!(parse(&b), Err(E::InvalidHeaderLength { .. })));
        let mut b = (MAX_HEADER + 1).to_le_bytes().to_vec();
        b.extend(b"{}");
        assert!(matches!(parse(&b), Err(E::HeaderTooLarge(_))));
    }

    #[test]
    fn s4_not_a_json_object() {
        let mut b = 2u64.to_le_bytes().to_vec();
        b.extend(b"\xff\xfe");
        assert_eq!(parse(&b), Err(E::InvalidHeaderUtf8));
        assert_eq!(parse(&file("[1]", 0)), Err(E::InvalidHeaderStart));
        assert_eq!(parse(&file("12", 0)), Err(E::InvalidHeaderStart));
        assert_eq!(parse(&file(" {}", 0)), Err(E::InvalidHeaderStart));
        assert!(matches!(
            parse(&file("{\"a\":", 0)),
            Err(E::InvalidHeaderJson(_))
        ));
    }

    #[test]
    fn s5_duplicate_key() {
        let j = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert_eq!(parse(&file(j, 4)), Err(E::DuplicateKey("a".into())));
        let j = r#"{"__metadata__":{"k":"1","k":"2"}}"#;
        assert_eq!(parse(&file(j, 0)), Err(E::DuplicateKey("k".into())));
    }

    #[test]
    fn s6_metadata_and_dtype() {
        assert_eq!(
            parse(&file(r#"{"__metadata__":{"k":1}}"#, 0)),
            Err(E::InvalidMetadata)
        );
        assert_eq!(
            parse(&file(r#"{"__metadata__":[]}"#, 0)),
            Err(E::InvalidMetadata)
        );
        let j = r#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#;
        assert!(matches!(parse(&file(j, 16)), Err(E::UnknownDtype { .. })));
        let j = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#;
        assert!(matches!(
            parse(&file(j, 4)),
            Err(E::InvalidTensorInfo { .. })
        ));
    }

    #[test]
    fn s7_offsets() {
        let one = |b: u64, e: u64| {
            format!(
                r#"{{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[{b},{e}]}}}}"#,
                e.saturating_sub(b)
            )
        };
        assert!(matches!(
            parse(&file(
                r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#,
                4
            )),
            Err(E::InvalidOffset {
                why: "end before begin",
                ..
            })
        ));
        assert!(matches!(
            parse(&file(&one(2, 4), 4)),
            Err(E::InvalidOffset {
                why: "do not start at 0",
                ..
            })
        ));
        let gap = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#;
        assert!(matches!(
            parse(&file(gap, 5)),
            Err(E::InvalidOffset {
                why: "leave a gap after the previous tensor",
                ..
            })
        ));
        let overlap = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
        assert!(matches!(
            parse(&file(overlap, 4)),
            Err(E::InvalidOffset {
                why: "overlap the previous tensor",
                ..
            })
        ));
    }

    #[test]
    fn s8_trailing_bytes() {
        assert!(matches!(
            parse(&file(GOOD, 25)),
            Err(E::MetadataIncompleteBuffer {
                covered: 24,
                available: 25
            })
        ));
        assert!(matches!(
            parse(&file(GOOD, 20)),
            Err(E::MetadataIncompleteBuffer { .. })
        ));
    }

    #[test]
    fn s9_overflow() {
        let j = format!(
            r#"{{"a":{{"dtype":"F32","shape":[{0},{0},2],"data_offsets":[0,4]}}}}"#,
            1u64 << 32
        );
        assert_eq!(parse(&file(&j, 4)), Err(E::ValidationOverflow("a".into())));
        let j = format!(
            r#"{{"a":{{"dtype":"F64","shape":[{}],"data_offsets":[0,4]}}}}"#,
            u64::MAX / 4
        );
        assert_eq!(parse(&file(&j, 4)), Err(E::ValidationOverflow("a".into())));
    }

    #[test]
    fn s11_index_paths_rejected_before_opening() {
        for (shard, why) in [
            ("../x.safetensors", crate::manifest::PathProblem::DotDot),
            ("/etc/passwd", crate::manifest::PathProblem::Absolute),
            ("C:\\\\x", crate::manifest::PathProblem::Backslash),
            ("a\\\\..\\\\b", crate::manifest::PathProblem::Backslash),
            ("", crate::manifest::PathProblem::Empty),
        ] {
            let j = format!(r#"{{"weight_map":{{"w":"{shard}"}}}}"#);
            assert!(
                matches!(SafetensorsIndex::parse(j.as_bytes()), Err(IndexError::BadShardPath { why: w, .. }) if w == why),
                "{shard:?}"
            );
        }
        assert!(matches!(
            SafetensorsIndex::parse(br#"{"weight_map":{"w":1}}"#),
            Err(IndexError::NonStringShard(_))
        ));
        assert!(matches!(
            SafetensorsIndex::parse(br#"{"weight_map":{"w":"a","w":"b"}}"#),
            Err(IndexError::DuplicateKey(_))
        ));
        assert!(matches!(
            SafetensorsIndex::parse(b"[]"),
            Err(IndexError::InvalidJson(_))
        ));
    }

    #[test]
    fn s12_index_and_shards_must_agree() {
        let a = parse(&file(
            r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        ))
        .unwrap();
        let b = parse(&file(
            r#"{"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        ))
        .unwrap();
        let b_dup = parse(&file(
            r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        ))
        .unwrap();
        let idx = SafetensorsIndex::parse(
            br#"{"metadata":{},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}}"#,
        )
        .unwrap();
        idx.check_shards(&[("a.safetensors", &a), ("b.safetensors", &b)])
            .unwrap();
        assert!(matches!(
            idx.check_shards(&[("a.safetensors", &a), ("b.safetensors", &b_dup)]),
            Err(IndexError::TensorInTwoShards(_))
        ));
        let swapped =
            SafetensorsIndex::parse(br#"{"weight_map":{"x":"b.safetensors","y":"a.safetensors"}}"#)
                .unwrap();
        assert!(matches!(
            swapped.check_shards(&[("a.safetensors", &a), ("b.safetensors", &b)]),
            Err(IndexError::TensorInWrongShard { .. })
        ));
        let only_a = SafetensorsIndex::parse(br#"{"weight_map":{"x":"a.safetensors"}}"#).unwrap();
        assert!(matches!(
            only_a.check_shards(&[("a.safetensors", &a), ("b.safetensors", &b)]),
            Err(IndexError::ShardNotInIndex(_))
        ));
        assert!(matches!(
            idx.check_shards(&[("a.safetensors", &a)]),
            Err(IndexError::UnknownShard(_))
        ));
    }

    #[test]
    fn s10_size_mismatch() {
        let j = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
        assert!(matches!(
            parse(&file(j, 4)),
            Err(E::TensorInvalidInfo {
                expected: 8,
                actual: 4,
                ..
            })
        ));
        let j = r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
        assert_eq!(parse(&file(j, 2)), Err(E::MisalignedSlice("a".into())));
    }
}
