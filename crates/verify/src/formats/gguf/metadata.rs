//! The metadata key/value section: typed values, arrays of scalars or strings, and
//! `general.alignment`.

use std::collections::HashSet;

use serde::Serialize;

use super::{
    is_clean_name, reader::Reader, GgufError, DEFAULT_ALIGNMENT, KEEP_ARRAY, MAX_ALIGNMENT,
    MAX_ARRAY, MAX_KEY, MAX_STRING,
};
use crate::formats::ByteSource;

/// Where a value error happened, for [`GgufError::UnexpectedEof`].
const VALUES: &str = "metadata values";

/// Value type ids, as written in the file.
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

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

/// The fewest bytes one array element of type `ty` takes (a string: its 8-byte length), which
/// bounds an array's count by the bytes left. Nested arrays and unknown types are refused here.
fn min_element_size(ty: u32) -> Result<u64, GgufError> {
    match ty {
        0 | 1 | TYPE_BOOL => Ok(1),
        2 | 3 => Ok(2),
        4..=6 => Ok(4),
        TYPE_STRING | 10..=12 => Ok(8),
        TYPE_ARRAY => Err(GgufError::NestedArray),
        t => Err(GgufError::UnknownValueType(t)),
    }
}

/// The metadata entries in file order, and the tensor data alignment they set.
pub(super) fn read_metadata<S: ByteSource + ?Sized>(
    r: &mut Reader<'_, S>,
    kv_count: u64,
) -> Result<(Vec<(String, GgufValue)>, u64), GgufError> {
    let mut metadata = Vec::with_capacity(kv_count.min(4096) as usize);
    let mut keys = HashSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..kv_count {
        let key = r.string(MAX_KEY, "metadata keys")?;
        if !is_clean_name(&key) {
            return Err(GgufError::BadKey(key));
        }
        if !keys.insert(key.clone()) {
            return Err(GgufError::DuplicateKey(key));
        }
        let ty = r.u32("metadata types")?;
        let value = r.value(ty)?;
        if key == "general.alignment" {
            alignment = alignment_of(&value)?;
        }
        metadata.push((key, value));
        r.check_header_size()?;
    }
    Ok((metadata, alignment))
}

/// `general.alignment` must be a u32 power of two, as llama.cpp requires.
fn alignment_of(value: &GgufValue) -> Result<u64, GgufError> {
    match *value {
        GgufValue::U32(a) if a != 0 && a.is_power_of_two() && u64::from(a) <= MAX_ALIGNMENT => {
            Ok(a.into())
        }
        ref other => Err(GgufError::BadAlignment(format!("{other:?}"))),
    }
}

impl<S: ByteSource + ?Sized> Reader<'_, S> {
    fn bool(&mut self) -> Result<bool, GgufError> {
        match self.u8(VALUES)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::BadBool(b)),
        }
    }

    /// A top-level value of type `ty` (an array's elements go through [`Self::scalar`]).
    fn value(&mut self, ty: u32) -> Result<GgufValue, GgufError> {
        if ty == TYPE_ARRAY {
            self.array()
        } else {
            self.scalar(ty)
        }
    }

    /// A value that is not an array.
    fn scalar(&mut self, ty: u32) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::U8(self.u8(VALUES)?),
            1 => GgufValue::I8(i8::from_le_bytes(self.arr(VALUES)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr(VALUES)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr(VALUES)?)),
            4 => GgufValue::U32(self.u32(VALUES)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr(VALUES)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr(VALUES)?)),
            TYPE_BOOL => GgufValue::Bool(self.bool()?),
            TYPE_STRING => GgufValue::String(self.string(MAX_STRING, VALUES)?),
            TYPE_ARRAY => return Err(GgufError::NestedArray),
            10 => GgufValue::U64(self.u64(VALUES)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr(VALUES)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr(VALUES)?)),
            t => return Err(GgufError::UnknownValueType(t)),
        })
    }

    /// An array: element type, count (bounded by the limit and by the bytes left), elements.
    fn array(&mut self) -> Result<GgufValue, GgufError> {
        let elem_type = self.u32(VALUES)?;
        let count = self.u64(VALUES)?;
        let min = min_element_size(elem_type)?;
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
                self.skip_element(elem_type, &mut scratch)?;
            }
            return Ok(GgufValue::LongArray {
                elem_type,
                len: count,
            });
        }
        let mut items = Vec::with_capacity(count as usize);
        for _ in 0..count {
            items.push(self.scalar(elem_type)?);
        }
        Ok(GgufValue::Array(items))
    }

    /// Validate one array element without keeping it.
    fn skip_element(&mut self, ty: u32, scratch: &mut Vec<u8>) -> Result<(), GgufError> {
        match ty {
            TYPE_BOOL => {
                self.bool()?;
            }
            TYPE_STRING => {
                let len = self.string_len(MAX_STRING, VALUES)?;
                scratch.resize(len as usize, 0);
                self.fill(scratch, VALUES)?;
                std::str::from_utf8(scratch).map_err(|_| GgufError::InvalidUtf8)?;
            }
            _ => {
                let mut bytes = [0u8; 8];
                let n = min_element_size(ty)? as usize;
                self.fill(&mut bytes[..n], VALUES)?;
            }
        }
        Ok(())
    }
}
