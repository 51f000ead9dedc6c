//! Typed access to GGUF metadata.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;

/// Typed access to GGUF metadata with errors that name the key.
pub(crate) struct Metadata<'a>(pub &'a gguf_file::Content);

impl Metadata<'_> {
    fn get(&self, key: &str) -> Option<&gguf_file::Value> {
        self.0.metadata.get(key)
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.string_opt(key)?
            .ok_or_else(|| Error::malformed(format!("metadata key `{key}` is missing")))
    }

    pub fn string_opt(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(gguf_file::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(Error::malformed(format!(
                "metadata key `{key}` should be a string, found {:?}",
                v.value_type()
            ))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| Error::malformed(format!("metadata key `{key}` is missing")))
    }

    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        use gguf_file::Value as V;
        let v = match self.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: i128 = match v {
            V::U8(x) => *x as i128,
            V::I8(x) => *x as i128,
            V::U16(x) => *x as i128,
            V::I16(x) => *x as i128,
            V::U32(x) => *x as i128,
            V::I32(x) => *x as i128,
            V::U64(x) => *x as i128,
            V::I64(x) => *x as i128,
            _ => {
                return Err(Error::malformed(format!(
                    "metadata key `{key}` should be an integer, found {:?}",
                    v.value_type()
                )))
            }
        };
        usize::try_from(n)
            .map(Some)
            .map_err(|_| Error::malformed(format!("metadata key `{key}` is out of range: {n}")))
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        use gguf_file::Value as V;
        Ok(match self.get(key) {
            None => None,
            Some(V::F32(x)) => Some(*x as f64),
            Some(V::F64(x)) => Some(*x),
            Some(v) => match self.usize_opt(key) {
                Ok(Some(n)) => Some(n as f64),
                _ => {
                    return Err(Error::malformed(format!(
                        "metadata key `{key}` should be a number, found {:?}",
                        v.value_type()
                    )))
                }
            },
        })
    }

    /// llama.cpp's sliding-window pattern: one bool per layer, or a period n (every n-th
    /// layer global).
    pub fn sliding_pattern_opt(&self, key: &str, n_layers: usize) -> Result<Option<Vec<bool>>> {
        use gguf_file::Value as V;
        let bad = || {
            Error::malformed(format!(
                "metadata key `{key}` is not a sliding-window pattern"
            ))
        };
        match self.get(key) {
            None => Ok(None),
            Some(V::Array(items)) => {
                let p: Option<Vec<bool>> = items
                    .iter()
                    .map(|v| match v {
                        V::Bool(b) => Some(*b),
                        _ => None,
                    })
                    .collect();
                match p {
                    Some(p) if p.len() == n_layers => Ok(Some(p)),
                    _ => Err(bad()),
                }
            }
            Some(_) => match self.usize_opt(key)? {
                Some(n) if n > 0 => Ok(Some((0..n_layers).map(|i| (i + 1) % n != 0).collect())),
                _ => Err(bad()),
            },
        }
    }

    pub fn u32_array_opt(&self, key: &str) -> Result<Option<Vec<u32>>> {
        self.array_opt(key, "a non-integer or negative value", |v| match v {
            gguf_file::Value::I32(x) => u32::try_from(*x).ok(),
            gguf_file::Value::U32(x) => Some(*x),
            gguf_file::Value::U8(x) => Some(*x as u32),
            gguf_file::Value::I8(x) => u32::try_from(*x).ok(),
            _ => None,
        })
    }

    pub fn string_array_opt(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.array_opt(key, "a non-string value", |v| match v {
            gguf_file::Value::String(s) => Some(s.clone()),
            _ => None,
        })
    }

    pub fn f32_array_opt(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.array_opt(key, "a non-float value", |v| match v {
            gguf_file::Value::F32(x) => Some(*x),
            _ => None,
        })
    }

    /// The array under `key` with each item converted by `item`; an error names `key` and,
    /// when an item does not convert, what it held (`wrong`).
    fn array_opt<T>(
        &self,
        key: &str,
        wrong: &str,
        item: impl Fn(&gguf_file::Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        match self.get(key) {
            None => Ok(None),
            Some(gguf_file::Value::Array(items)) => items
                .iter()
                .map(item)
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| Error::malformed(format!("metadata key `{key}` holds {wrong}"))),
            Some(_) => Err(Error::malformed(format!(
                "metadata key `{key}` should be an array"
            ))),
        }
    }
}
