//! Tensor infos (name, shape, ggml type, offset) and the layout of the tensor data they describe.

use std::collections::HashSet;

use serde::Serialize;

use super::{is_clean_name, reader::Reader, GgufError, MAX_TENSOR_NAME};
use crate::formats::ByteSource;

/// Where a tensor info error happened, for [`GgufError::UnexpectedEof`].
const INFOS: &str = "tensor infos";

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

/// `count` tensor infos, in file order, each checked on its own.
pub(super) fn read_tensor_infos<S: ByteSource + ?Sized>(
    r: &mut Reader<'_, S>,
    count: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(count.min(65_536) as usize);
    let mut names = HashSet::new();
    for _ in 0..count {
        let name = read_name(r, &mut names)?;
        tensors.push(read_info(r, name)?);
        r.check_header_size()?;
    }
    Ok(tensors)
}

/// A tensor's name: short enough for ggml, printable, and not seen before.
fn read_name<S: ByteSource + ?Sized>(
    r: &mut Reader<'_, S>,
    names: &mut HashSet<String>,
) -> Result<String, GgufError> {
    let name = r.string(MAX_TENSOR_NAME, INFOS).map_err(|e| match e {
        GgufError::StringTooLong { .. } => GgufError::BadTensorName("(too long)".into()),
        e => e,
    })?;
    if !is_clean_name(&name) {
        return Err(GgufError::BadTensorName(name));
    }
    if !names.insert(name.clone()) {
        return Err(GgufError::DuplicateTensor(name));
    }
    Ok(name)
}

/// The rest of a tensor info after its name: dimensions, type and offset.
fn read_info<S: ByteSource + ?Sized>(
    r: &mut Reader<'_, S>,
    name: String,
) -> Result<TensorInfo, GgufError> {
    let n_dims = r.u32(INFOS)?;
    if !(1..=4).contains(&n_dims) {
        return Err(GgufError::BadDimCount { name, n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(r.u64(INFOS)?);
    }
    let type_id = r.u32(INFOS)?;
    let offset = r.u64(INFOS)?;
    let (type_name, size) = data_size(&name, &dims, type_id)?;
    Ok(TensorInfo {
        name,
        dims,
        type_id,
        type_name,
        offset,
        size,
    })
}

/// The type's name and the bytes of data a tensor of this shape and type takes.
fn data_size(name: &str, dims: &[u64], type_id: u32) -> Result<(&'static str, u64), GgufError> {
    let name = || name.to_string();
    if dims.contains(&0) {
        return Err(GgufError::ZeroDim { name: name() });
    }
    let Some((type_name, block, block_bytes)) = ggml_type(type_id) else {
        return Err(GgufError::UnknownTensorType {
            name: name(),
            type_id,
        });
    };
    // ggml counts elements in an i64.
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| GgufError::ElementCountOverflow { name: name() })?;
    if !dims[0].is_multiple_of(block) {
        return Err(GgufError::RowNotBlockAligned {
            name: name(),
            ne0: dims[0],
            type_name,
            block,
        });
    }
    let size = (elements / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| GgufError::ElementCountOverflow { name: name() })?;
    Ok((type_name, size))
}

pub(super) fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

/// Tensor data as llama.cpp writes it: in order, each at an aligned offset right after the
/// previous one (padding aside), all inside the file.
pub(super) fn check_data_layout(
    tensors: &[TensorInfo],
    alignment: u64,
    data_offset: u64,
    file_size: u64,
) -> Result<(), GgufError> {
    let mut expected = 0u64;
    for t in tensors {
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            name: t.name.clone(),
        };
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
            .ok_or_else(out_of_bounds)?;
        expected = t
            .offset
            .checked_add(t.size)
            .and_then(|e| align_up(e, alignment))
            .ok_or_else(out_of_bounds)?;
    }
    Ok(())
}
