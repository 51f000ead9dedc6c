//! A strict, bounded GGUF header reader (versions 2 and 3, little-endian). Every count and length
//! is checked against the bytes that remain before anything is allocated, arithmetic is checked,
//! and tensor data must be laid out the way llama.cpp writes it: in order, aligned, contiguous and
//! inside the file.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::ByteSource;

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

/// A metadata value. Arrays hold scalars or strings only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    /// An array longer than [`KEEP_ARRAY`] elements: validated element by element, but only its
    /// element type and length are kept (tokenizer vocabularies and merges).
    LongArray {
        elem_type: u32,
        len: u64,
    },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }
    /// Any unsigned or non-negative integer as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// ggml tensor types: (id, name, block size in elements, bytes per block).
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

/// The name, block size and block bytes of a ggml type id.
pub fn ggml_type(id: u32) -> Option<(&'static str, u64, u64)> {
    GGML_TYPES
        .iter()
        .find(|t| t.0 == id)
        .map(|t| (t.1, t.2, t.3))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub type_name: &'static str,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    pub size: u64,
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

/// A buffered positional reader that never reads past the end it was given.
struct Reader<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const BUF: usize = 1 << 18;

impl<'a, S: ByteSource + ?Sized> Reader<'a, S> {
    fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    fn bytes(&mut self, n: u64, ctx: &'static str) -> Result<Vec<u8>, GgufError> {
        if n > self.remaining() {
            return Err(GgufError::UnexpectedEof(ctx));
        }
        let mut out = vec![0u8; n as usize];
        self.fill(&mut out, ctx)?;
        Ok(out)
    }

    #[inline]
    fn fill(&mut self, out: &mut [u8], ctx: &'static str) -> Result<(), GgufError> {
        // Fast path: the bytes are already buffered.
        if self.pos >= self.buf_start {
            let off = (self.pos - self.buf_start) as usize;
            if let Some(src) = off
                .checked_add(out.len())
                .and_then(|end| self.buf.get(off..end))
            {
                out.copy_from_slice(src);
                self.pos += out.len() as u64;
                return Ok(());
            }
        }
        self.fill_slow(out, ctx)
    }

    fn fill_slow(&mut self, out: &mut [u8], ctx: &'static str) -> Result<(), GgufError> {
        let n = out.len() as u64;
        if n > self.remaining() {
            return Err(GgufError::UnexpectedEof(ctx));
        }
        let mut done = 0usize;
        while done < out.len() {
            let in_buf =
                self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
            if !in_buf {
                if out.len() - done >= BUF {
                    // Large reads bypass the buffer.
                    self.src
                        .read_exact_at(&mut out[done..], self.pos)
                        .map_err(|e| GgufError::Io(e.to_string()))?;
                    self.pos += (out.len() - done) as u64;
                    return Ok(());
                }
                let len = (self.end - self.pos).min(BUF as u64) as usize;
                self.buf.resize(len, 0);
                self.src
                    .read_exact_at(&mut self.buf, self.pos)
                    .map_err(|e| GgufError::Io(e.to_string()))?;
                self.buf_start = self.pos;
            }
            let off = (self.pos - self.buf_start) as usize;
            let take = (self.buf.len() - off).min(out.len() - done);
            out[done..done + take].copy_from_slice(&self.buf[off..off + take]);
            done += take;
            self.pos += take as u64;
        }
        Ok(())
    }

    fn arr<const N: usize>(&mut self, ctx: &'static str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, ctx)?;
        Ok(b)
    }
    fn u8(&mut self, ctx: &'static str) -> Result<u8, GgufError> {
        Ok(self.arr::<1>(ctx)?[0])
    }
    fn u32(&mut self, ctx: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(ctx)?))
    }
    fn u64(&mut self, ctx: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(ctx)?))
    }

    fn string(&mut self, limit: u64, ctx: &'static str) -> Result<String, GgufError> {
        let len = self.u64(ctx)?;
        if len > limit {
            return Err(GgufError::StringTooLong { len, limit });
        }
        if len > self.remaining() {
            return Err(GgufError::UnexpectedEof(ctx));
        }
        String::from_utf8(self.bytes(len, ctx)?).map_err(|_| GgufError::InvalidUtf8)
    }

    /// Validate a string without keeping it.
    fn skip_string(&mut self, scratch: &mut Vec<u8>) -> Result<(), GgufError> {
        const CTX: &str = "metadata values";
        let len = self.u64(CTX)?;
        if len > MAX_STRING {
            return Err(GgufError::StringTooLong {
                len,
                limit: MAX_STRING,
            });
        }
        if len > self.remaining() {
            return Err(GgufError::UnexpectedEof(CTX));
        }
        scratch.resize(len as usize, 0);
        self.fill(scratch, CTX)?;
        std::str::from_utf8(scratch).map_err(|_| GgufError::InvalidUtf8)?;
        Ok(())
    }

    /// Validate one array element without keeping it.
    fn skip_value(&mut self, ty: u32, scratch: &mut Vec<u8>) -> Result<(), GgufError> {
        const CTX: &str = "metadata values";
        match ty {
            0 | 1 => {
                self.u8(CTX)?;
            }
            7 => {
                let b = self.u8(CTX)?;
                if b > 1 {
                    return Err(GgufError::BadBool(b));
                }
            }
            2 | 3 => {
                self.arr::<2>(CTX)?;
            }
            4..=6 => {
                self.arr::<4>(CTX)?;
            }
            10..=12 => {
                self.arr::<8>(CTX)?;
            }
            8 => self.skip_string(scratch)?,
            9 => return Err(GgufError::NestedArray),
            t => return Err(GgufError::UnknownValueType(t)),
        }
        Ok(())
    }

    fn value(&mut self, ty: u32, in_array: bool) -> Result<GgufValue, GgufError> {
        const CTX: &str = "metadata values";
        Ok(match ty {
            0 => GgufValue::U8(self.u8(CTX)?),
            1 => GgufValue::I8(i8::from_le_bytes(self.arr(CTX)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr(CTX)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr(CTX)?)),
            4 => GgufValue::U32(self.u32(CTX)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr(CTX)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr(CTX)?)),
            7 => match self.u8(CTX)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(GgufError::BadBool(b)),
            },
            8 => GgufValue::String(self.string(MAX_STRING, CTX)?),
            9 => {
                if in_array {
                    return Err(GgufError::NestedArray);
                }
                let et = self.u32(CTX)?;
                let count = self.u64(CTX)?;
                let min = match et {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => return Err(GgufError::NestedArray),
                    t => return Err(GgufError::UnknownValueType(t)),
                };
                if count > MAX_ARRAY {
                    return Err(GgufError::ArrayTooLong(count));
                }
                if count.saturating_mul(min) > self.remaining() {
                    return Err(GgufError::CountTooLarge {
                        what: "array element",
                        count,
                        remaining: self.remaining(),
                    });
                }
                if count > KEEP_ARRAY {
                    let mut scratch = Vec::new();
                    for _ in 0..count {
                        self.skip_value(et, &mut scratch)?;
                    }
                    return Ok(GgufValue::LongArray {
                        elem_type: et,
                        len: count,
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(et, true)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(CTX)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr(CTX)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr(CTX)?)),
            t => return Err(GgufError::UnknownValueType(t)),
        })
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

impl GgufHeader {
    /// Read and validate the header of a GGUF file.
    pub fn read<S: ByteSource + ?Sized>(src: &S) -> Result<GgufHeader, GgufError> {
        let file_size = src.size().map_err(|e| GgufError::Io(e.to_string()))?;
        let mut r = Reader {
            src,
            pos: 0,
            end: file_size,
            buf: Vec::new(),
            buf_start: 0,
        };
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

        let mut metadata = Vec::with_capacity(kv_count.min(4096) as usize);
        let mut keys = HashSet::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..kv_count {
            let key = r.string(MAX_KEY, "metadata keys")?;
            if key.is_empty() || key.chars().any(char::is_control) {
                return Err(GgufError::BadKey(key));
            }
            if !keys.insert(key.clone()) {
                return Err(GgufError::DuplicateKey(key));
            }
            let ty = r.u32("metadata types")?;
            let value = r.value(ty, false)?;
            if key == "general.alignment" {
                alignment = match value {
                    GgufValue::U32(a)
                        if a != 0 && a.is_power_of_two() && u64::from(a) <= MAX_ALIGNMENT =>
                    {
                        a.into()
                    }
                    ref other => return Err(GgufError::BadAlignment(format!("{other:?}"))),
                };
            }
            metadata.push((key, value));
            if r.pos > MAX_HEADER_BYTES {
                return Err(GgufError::HeaderTooLarge);
            }
        }

        let mut tensors = Vec::with_capacity(tensor_count.min(65_536) as usize);
        let mut names = HashSet::new();
        for _ in 0..tensor_count {
            let name = r
                .string(MAX_TENSOR_NAME, "tensor infos")
                .map_err(|e| match e {
                    GgufError::StringTooLong { .. } => {
                        GgufError::BadTensorName("(too long)".into())
                    }
                    e => e,
                })?;
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(GgufError::BadTensorName(name));
            }
            if !names.insert(name.clone()) {
                return Err(GgufError::DuplicateTensor(name));
            }
            let n_dims = r.u32("tensor infos")?;
            if !(1..=4).contains(&n_dims) {
                return Err(GgufError::BadDimCount { name, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor infos")?);
            }
            let type_id = r.u32("tensor infos")?;
            let offset = r.u64("tensor infos")?;
            if dims.contains(&0) {
                return Err(GgufError::ZeroDim { name });
            }
            let Some((type_name, block, block_bytes)) = ggml_type(type_id) else {
                return Err(GgufError::UnknownTensorType { name, type_id });
            };
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| GgufError::ElementCountOverflow { name: name.clone() })?;
            if dims[0] % block != 0 {
                return Err(GgufError::RowNotBlockAligned {
                    name,
                    ne0: dims[0],
                    type_name,
                    block,
                });
            }
            let size = (elements / block)
                .checked_mul(block_bytes)
                .ok_or_else(|| GgufError::ElementCountOverflow { name: name.clone() })?;
            tensors.push(TensorInfo {
                name,
                dims,
                type_id,
                type_name,
                offset,
                size,
            });
            if r.pos > MAX_HEADER_BYTES {
                return Err(GgufError::HeaderTooLarge);
            }
        }

        let data_offset =
            align_up(r.pos, alignment).ok_or(GgufError::UnexpectedEof("tensor data"))?;
        let mut expected = 0u64;
        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(GgufError::MisalignedOffset {
                    name: t.name.clone(),
                    offset: t.offset,
                    alignment,
                });
            }
            if t.offset != expected {
                return Err(GgufError::OffsetNotContiguous {
                    name: t.name.clone(),
                    offset: t.offset,
                    expected,
                });
            }
            data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.size))
                .filter(|&e| e <= file_size)
                .ok_or_else(|| GgufError::TensorOutOfBounds {
                    name: t.name.clone(),
                })?;
            expected = t
                .offset
                .checked_add(t.size)
                .and_then(|e| align_up(e, alignment))
                .ok_or_else(|| GgufError::TensorOutOfBounds {
                    name: t.name.clone(),
                })?;
        }
        Ok(GgufHeader {
            version,
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

/// Byte builders for tests (here and in the integration tests).
#[doc(hidden)]
pub mod build {
    /// A GGUF file under construction.
    #[derive(Default)]
    pub struct GgufBuilder {
        pub version: u32,
        pub kv: Vec<(String, u32, Vec<u8>)>,
        pub tensors: Vec<(String, Vec<u64>, u32, u64)>,
        pub alignment: u64,
        pub data: Vec<u8>,
        /// Override the counts written in the header.
        pub tensor_count: Option<u64>,
        pub kv_count: Option<u64>,
    }

    pub fn str_bytes(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    impl GgufBuilder {
        pub fn new() -> Self {
            GgufBuilder {
                version: 3,
                alignment: 32,
                ..Default::default()
            }
        }
        pub fn kv_raw(mut self, key: &str, ty: u32, value: Vec<u8>) -> Self {
            self.kv.push((key.to_string(), ty, value));
            self
        }
        pub fn kv_str(self, key: &str, v: &str) -> Self {
            self.kv_raw(key, 8, str_bytes(v.as_bytes()))
        }
        pub fn kv_u32(self, key: &str, v: u32) -> Self {
            self.kv_raw(key, 4, v.to_le_bytes().to_vec())
        }
        /// A tensor whose data is appended (zeroes) in order, aligned.
        pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, size: u64) -> Self {
            let off = self.data.len() as u64;
            self.tensors
                .push((name.to_string(), dims.to_vec(), ty, off));
            self.data.resize((off + size) as usize, 0);
            let aligned = (self.data.len() as u64).div_ceil(self.alignment) * self.alignment;
            self.data.resize(aligned as usize, 0);
            self
        }
        pub fn header_bytes(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend(
                self.tensor_count
                    .unwrap_or(self.tensors.len() as u64)
                    .to_le_bytes(),
            );
            out.extend(self.kv_count.unwrap_or(self.kv.len() as u64).to_le_bytes());
            for (k, t, v) in &self.kv {
                out.extend(str_bytes(k.as_bytes()));
                out.extend(t.to_le_bytes());
                out.extend(v);
            }
            for (name, dims, ty, off) in &self.tensors {
                out.extend(str_bytes(name.as_bytes()));
                out.extend((dims.len() as u32).to_le_bytes());
                for d in dims {
                    out.extend(d.to_le_bytes());
                }
                out.extend(ty.to_le_bytes());
                out.extend(off.to_le_bytes());
            }
            out
        }
        pub fn build(&self) -> Vec<u8> {
            let mut out = self.header_bytes();
            let aligned = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
            out.resize(aligned as usize, 0);
            out.extend(&self.data);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn parse(b: &[u8]) -> Result<GgufHeader, GgufError> {
        GgufHeader::read(b)
    }

    fn good() -> GgufBuilder {
        GgufBuilder::new()
            .kv_str("general.architecture", "llama")
            .kv_str("general.license", "apache-2.0")
            .tensor("tok_embd.weight", &[64, 2], 0, 64 * 2 * 4)
            .tensor("blk.0.attn_q.weight", &[64, 4], 2, 2 * 4 * 18)
    }

    #[test]
    fn valid_file_parses() {
        let h = parse(&good().build()).unwrap();
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(h.license(), Some("apache-2.0"));
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.tensors[1].type_name, "Q4_0");
        assert_eq!(h.data_offset % 32, 0);
    }

    #[test]
    fn base_model_helpers() {
        let h = parse(
            &GgufBuilder::new()
                .kv_raw("general.base_model.count", 4, 1u32.to_le_bytes().to_vec())
                .kv_str("general.base_model.0.name", "Gemma 3 270m")
                .kv_str("general.base_model.0.organization", "Google")
                .kv_str(
                    "general.base_model.0.repo_url",
                    "https://huggingface.co/google/gemma-3-270m",
                )
                .build(),
        )
        .unwrap();
        let b = h.base_models();
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].repo_url.as_deref(),
            Some("https://huggingface.co/google/gemma-3-270m")
        );
    }

    // G1
    #[test]
    fn g1_magic_and_versions() {
        assert_eq!(parse(b"GGUX\x03\0\0\0"), Err(GgufError::BadMagic));
        assert_eq!(parse(b"GG"), Err(GgufError::BadMagic));
        for v in [0u32, 1, 4] {
            let mut b = GgufBuilder::new();
            b.version = v;
            assert_eq!(parse(&b.build()), Err(GgufError::UnsupportedVersion(v)));
        }
        let mut b = GgufBuilder::new();
        b.version = 0x0300_0000;
        assert_eq!(parse(&b.build()), Err(GgufError::BigEndian));
    }

    // G2
    #[test]
    fn g2_huge_counts() {
        let mut b = GgufBuilder::new();
        b.tensor_count = Some(1 << 63);
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::CountTooLarge { what: "tensor", .. })
        ));
        let mut b = GgufBuilder::new();
        b.kv_count = Some(1 << 63);
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::CountTooLarge {
                what: "metadata entry",
                ..
            })
        ));
        let mut b = GgufBuilder::new();
        b.kv_count = Some(u64::MAX);
        b.tensor_count = Some(u64::MAX);
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::CountTooLarge { .. })
        ));
    }

    // G3
    #[test]
    fn g3_string_lengths() {
        let mut v = u64::MAX.to_le_bytes().to_vec();
        v.extend(b"abc");
        let b = GgufBuilder::new().kv_raw("k", 8, v).build();
        assert!(matches!(parse(&b), Err(GgufError::StringTooLong { .. })));
        let mut v = 1000u64.to_le_bytes().to_vec();
        v.extend(b"abc");
        let b = GgufBuilder::new().kv_raw("k", 8, v).build();
        assert!(matches!(parse(&b), Err(GgufError::UnexpectedEof(_))));
        let mut v = (MAX_STRING + 1).to_le_bytes().to_vec();
        v.extend(b"abc");
        assert!(matches!(
            parse(&GgufBuilder::new().kv_raw("k", 8, v).build()),
            Err(GgufError::StringTooLong { .. })
        ));
    }

    // G4
    #[test]
    fn g4_arrays() {
        let mut v = 0u32.to_le_bytes().to_vec();
        v.extend((1u64 << 40).to_le_bytes());
        assert!(matches!(
            parse(&GgufBuilder::new().kv_raw("a", 9, v).build()),
            Err(GgufError::ArrayTooLong(_))
        ));
        let mut v = 4u32.to_le_bytes().to_vec();
        v.extend(1000u64.to_le_bytes());
        assert!(matches!(
            parse(&GgufBuilder::new().kv_raw("a", 9, v).build()),
            Err(GgufError::CountTooLarge { .. })
        ));
        let mut nested = Vec::new();
        for _ in 0..10_000 {
            nested.extend(9u32.to_le_bytes());
            nested.extend(1u64.to_le_bytes());
        }
        assert_eq!(
            parse(&GgufBuilder::new().kv_raw("a", 9, nested).build()),
            Err(GgufError::NestedArray)
        );
    }

    // Long arrays (tokenizer vocabularies) are validated element by element but not kept.
    #[test]
    fn long_arrays_validated_not_kept() {
        let n = KEEP_ARRAY + 1;
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend(n.to_le_bytes());
        for i in 0..n {
            v.extend(str_bytes(format!("t{i}").as_bytes()));
        }
        let h = parse(&GgufBuilder::new().kv_raw("tokens", 9, v.clone()).build()).unwrap();
        assert_eq!(
            h.get("tokens"),
            Some(&GgufValue::LongArray {
                elem_type: 8,
                len: n
            })
        );
        let at = v.len() - 1;
        v[at] = 0xff;
        assert_eq!(
            parse(&GgufBuilder::new().kv_raw("tokens", 9, v).build()),
            Err(GgufError::InvalidUtf8)
        );
        let mut b = 7u32.to_le_bytes().to_vec();
        b.extend(n.to_le_bytes());
        b.extend(std::iter::repeat_n(1u8, n as usize - 1));
        b.push(2);
        assert_eq!(
            parse(&GgufBuilder::new().kv_raw("flags", 9, b).build()),
            Err(GgufError::BadBool(2))
        );
    }

    // G5
    #[test]
    fn g5_value_types() {
        assert_eq!(
            parse(&GgufBuilder::new().kv_raw("k", 13, vec![0; 8]).build()),
            Err(GgufError::UnknownValueType(13))
        );
        assert_eq!(
            parse(
                &GgufBuilder::new()
                    .kv_raw("k", 0xFFFF_FFFF, vec![0; 8])
                    .build()
            ),
            Err(GgufError::UnknownValueType(0xFFFF_FFFF))
        );
        assert_eq!(
            parse(&GgufBuilder::new().kv_raw("k", 7, vec![2]).build()),
            Err(GgufError::BadBool(2))
        );
    }

    // G6
    #[test]
    fn g6_keys() {
        let dup = GgufBuilder::new().kv_u32("k", 1).kv_u32("k", 2).build();
        assert_eq!(parse(&dup), Err(GgufError::DuplicateKey("k".into())));
        assert_eq!(
            parse(&GgufBuilder::new().kv_u32("", 1).build()),
            Err(GgufError::BadKey(String::new()))
        );
        assert_eq!(
            parse(&GgufBuilder::new().kv_u32("k\0", 1).build()),
            Err(GgufError::BadKey("k\0".into()))
        );
        assert_eq!(
            parse(&GgufBuilder::new().kv_u32("a\nb", 1).build()),
            Err(GgufError::BadKey("a\nb".into()))
        );
        let bad_utf8 = GgufBuilder::new()
            .kv_raw("k", 8, str_bytes(b"\xff\xfe"))
            .build();
        assert_eq!(parse(&bad_utf8), Err(GgufError::InvalidUtf8));
    }

    // G7
    #[test]
    fn g7_alignment() {
        for a in [0u32, 3, 1 << 31] {
            let b = GgufBuilder::new().kv_u32("general.alignment", a).build();
            assert!(matches!(parse(&b), Err(GgufError::BadAlignment(_))), "{a}");
        }
        let b = GgufBuilder::new()
            .kv_raw("general.alignment", 5, 32i32.to_le_bytes().to_vec())
            .build();
        assert!(matches!(parse(&b), Err(GgufError::BadAlignment(_))));
        let mut ok = GgufBuilder::new().kv_u32("general.alignment", 64);
        ok.alignment = 64;
        let ok = ok.tensor("t", &[16], 0, 64);
        assert_eq!(parse(&ok.build()).unwrap().alignment, 64);
    }

    // G8
    #[test]
    fn g8_dims() {
        let mut b = GgufBuilder::new();
        b.tensors.push(("t".into(), vec![1; 5], 0, 0));
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::BadDimCount { n_dims: 5, .. })
        ));
        let mut bytes = GgufBuilder::new().tensor("t", &[1], 0, 4).build();
        // Patch n_dims to u32::MAX: it sits after magic, version, counts, name length and name.
        let at = 4 + 4 + 8 + 8 + 8 + 1;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&bytes),
            Err(GgufError::BadDimCount {
                n_dims: u32::MAX,
                ..
            })
        ));
        let mut b = GgufBuilder::new();
        b.tensors.push(("t".into(), vec![0, 4], 0, 0));
        assert!(matches!(parse(&b.build()), Err(GgufError::ZeroDim { .. })));
    }

    // G9
    #[test]
    fn g9_element_overflow() {
        for dims in [vec![1u64 << 40, 1 << 40], vec![i64::MAX as u64, 2]] {
            let mut b = GgufBuilder::new();
            b.tensors.push(("t".into(), dims, 0, 0));
            assert!(matches!(
                parse(&b.build()),
                Err(GgufError::ElementCountOverflow { .. })
            ));
        }
    }

    // G10, G11
    #[test]
    fn g10_g11_types() {
        let mut b = GgufBuilder::new();
        b.tensors.push(("t".into(), vec![100], 12, 0));
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::RowNotBlockAligned {
                ne0: 100,
                type_name: "Q4_K",
                block: 256,
                ..
            })
        ));
        for ty in [99u32, 4, 31] {
            let mut b = GgufBuilder::new();
            b.tensors.push(("t".into(), vec![256], ty, 0));
            assert!(
                matches!(parse(&b.build()), Err(GgufError::UnknownTensorType { .. })),
                "{ty}"
            );
        }
    }

    // G12
    #[test]
    fn g12_tensor_names() {
        let b = GgufBuilder::new()
            .tensor("t", &[8], 0, 32)
            .tensor("t", &[8], 0, 32);
        assert_eq!(
            parse(&b.build()),
            Err(GgufError::DuplicateTensor("t".into()))
        );
        let long = "x".repeat(64);
        let b = GgufBuilder::new().tensor(&long, &[8], 0, 32);
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::BadTensorName(_))
        ));
    }

    // G13
    #[test]
    fn g13_offsets() {
        let mut b = good();
        b.tensors.swap(0, 1);
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::OffsetNotContiguous { .. })
        ));
        let mut b = good();
        b.tensors[1].3 = 0; // overlaps the first
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::OffsetNotContiguous { .. })
        ));
        let mut b = good();
        b.tensors[1].3 += 4; // unaligned
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::MisalignedOffset { .. })
        ));
    }

    // G14
    #[test]
    fn g14_out_of_bounds() {
        let mut b = GgufBuilder::new().tensor("t", &[8], 0, 32);
        b.data.truncate(16);
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::TensorOutOfBounds { .. })
        ));
        // An offset near u64::MAX must not wrap around.
        let mut b = GgufBuilder::new();
        b.tensors.push(("t".into(), vec![8], 0, 0));
        b.tensors.push(("u".into(), vec![8], 0, u64::MAX - 31));
        b.data = vec![0; 32];
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::OffsetNotContiguous { .. } | GgufError::TensorOutOfBounds { .. })
        ));
        // The same with the first tensor at the wrapping offset (aligned, so only bounds stop it).
        let mut b = GgufBuilder::new();
        b.tensors
            .push(("t".into(), vec![8], 0, (u64::MAX - 50) / 32 * 32));
        assert!(parse(&b.build()).is_err());
    }

    // G15: truncated anywhere in the header.
    #[test]
    fn g15_truncation_never_panics() {
        let full = good().build();
        let header_len = good().header_bytes().len();
        for cut in 0..header_len {
            let r = parse(&full[..cut]);
            assert!(r.is_err(), "cut at {cut}");
        }
        // The last tensor's 144 bytes are followed by 16 bytes of padding.
        assert!(parse(&full[..full.len() - 16]).is_ok());
        assert!(matches!(
            parse(&full[..full.len() - 17]),
            Err(GgufError::TensorOutOfBounds { .. })
        ));
    }
}
