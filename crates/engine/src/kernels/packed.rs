//! The packed weight layout, activation blocks, and the portable kernels that define the
//! arithmetic every SIMD kernel reproduces bit for bit.
//!
//! GGUF stores a matrix row by row, block by block. At load the rows are regrouped by eight
//! ("groups") so that one 32-byte vector holds the same four values of eight rows: a SIMD
//! dot-product instruction then yields eight per-row sums at once, with no horizontal adds, and
//! a group streams through memory front to back. For group g and block i (32 values per row):
//!
//! - Q4_1, 160 bytes: d[8] (f16), m[8] (f16), then 4 vectors of 32 bytes; vector c holds bytes
//!   4c..4c+4 of each row's 16 nibble bytes (row r at bytes 4r..4r+4). Low nibbles are values
//!   4c.., high nibbles values 16+4c.. (GGUF's nibble order, x = d·q + m).
//! - Q4_0, 144 bytes: d[8] (f16), then the nibbles as for Q4_1 (x = d·(q − 8)).
//! - Q5_0, 176 bytes: d[8] (f16), then 32 bytes of fifth bits, then the nibbles as for Q4_1
//!   (x = d·(q − 16)). For vector c, the u32 at 16 + 8c has bit 4r+t set when value 4c+t of
//!   row r has its fifth bit, the u32 at 16 + 8c + 4 the same for value 16+4c+t.
//! - Q5_1, 192 bytes: d[8], m[8] (f16), then fifth bits and nibbles as for Q5_0, 16 bytes later
//!   (x = d·q + m).
//! - Q8_0, 272 bytes: d[8] (f16), then 8 vectors of 32 bytes; vector c holds values 4c..4c+4 of
//!   each row, stored as `q ^ 0x80` (q + 128 as an unsigned byte, what `vpdpbusd` multiplies).
//! - Q4_K, 1184 bytes per super-block of 256 values: d[8], dmin[8] (f16), the eight sub-block
//!   scales of each row (u8, [sub-block][row]), the mins as pairs ([pair i][row][2]: sub-blocks
//!   2i and 2i+1), then 32 vectors; vector `q4k_vector(j, l)` holds bytes 32j+4l..32j+4l+4 of
//!   each row's 128 nibble bytes (low nibbles: sub-block 2j, high: 2j+1).
//! - Q5_K, 1440 bytes per super-block: as Q4_K, then 8 vectors of fifth bits: vector l holds
//!   bytes 4l..4l+4 of each row's 32 `qh` bytes (bit 2j: low nibbles of chunk j, 2j+1: high).
//! - Q6_K, 1680 bytes per super-block: d[8] (f16), the 16 sub-block scales of each row (i8,
//!   [sub-block][row]), then for j in 0..2 and l in 0..8 three vectors (see `q6k_base`): bytes
//!   64j+4l.., 64j+32+4l.. of each row's `ql` and bytes 32j+4l.. of its `qh`.
//!
//! - Q2_K, 800 bytes per super-block: d[8], dmin[8] (f16), the 16 sub-block scales of each row
//!   (u8, [sub-block][row]), the mins as pairs ([pair i][row][2]: sub-blocks 2i and 2i+1), then
//!   the `qs` vectors as for Q3_K (value 128j+32t+b is bits 2t..2t+2 of byte 32j+b).
//! - Q3_K, 912 bytes per super-block: d[8] (f16), the 16 sub-block scales of each row (i8, the
//!   stored 6-bit value − 32, [sub-block][row]), then for l in 0..8 and j in 0..2 a vector of
//!   bytes 32j+4l..32j+4l+4 of each row's `qs` (`q3k_vector`), then 8 vectors of `hmask`: vector
//!   l holds bytes 4l..4l+4 of each row's 32. Value 128j+32t+b is bits 2t..2t+2 of `qs` byte
//!   32j+b, minus 4 unless bit 4j+t of `hmask` byte b is set.
//!
//! Rows past the matrix's last row (when n is not a multiple of 8) are zero.

use super::arena::{self, Chunk};
use super::WeightFormat;
use half::f16;
use rayon::prelude::*;
use std::sync::Arc;

/// Values per block of the 32-value formats.
pub const QK: usize = 32;
/// Values per super-block of the K formats.
pub const QK_K: usize = 256;
/// Rows per group.
pub const G: usize = 8;

impl WeightFormat {
    /// Bytes of one GGUF block of one row.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            WeightFormat::Q4_1 => 20,
            WeightFormat::Q4_0 => 18,
            WeightFormat::Q5_0 => 22,
            WeightFormat::Q5_1 => 24,
            WeightFormat::Q8_0 => 34,
            WeightFormat::Q2K => 84,
            WeightFormat::Q3K => 110,
            WeightFormat::Q4K => 144,
            WeightFormat::Q5K => 176,
            WeightFormat::Q6K => 210,
        }
    }

    /// Values per block.
    pub(crate) fn block_values(self) -> usize {
        match self {
            WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1
            | WeightFormat::Q8_0 => QK,
            WeightFormat::Q2K
            | WeightFormat::Q3K
            | WeightFormat::Q4K
            | WeightFormat::Q5K
            | WeightFormat::Q6K => QK_K,
        }
    }

    /// Whether a super-block's products are summed exactly before any rounding (Q4_K, Q5_K,
    /// Q6_K; see `group_dot_k_scalar`), so that every kernel gives the same bits whatever
    /// order it multiplies in.
    pub(crate) fn sums_exactly(self) -> bool {
        matches!(
            self,
            WeightFormat::Q4K | WeightFormat::Q5K | WeightFormat::Q6K
        )
    }

    /// Bytes of one packed block of one group.
    pub(crate) fn group_block_bytes(self) -> usize {
        match self {
            WeightFormat::Q4_1 => 32 + 128,
            WeightFormat::Q4_0 => 16 + 128,
            WeightFormat::Q5_0 => 16 + 32 + 128,
            WeightFormat::Q5_1 => 32 + 32 + 128,
            WeightFormat::Q8_0 => 16 + 256,
            WeightFormat::Q2K => 32 + 128 + 128 + 512,
            WeightFormat::Q3K => 16 + 128 + 512 + 256,
            WeightFormat::Q4K => 32 + 64 + 64 + 1024,
            WeightFormat::Q5K => 32 + 64 + 64 + 1024 + 256,
            WeightFormat::Q6K => 16 + 128 + 1536,
        }
    }
}

/// One activation block: ggml's Q8_1 (d = max|x|/127, q = round(x/d), s = d·Σq), with d and s
/// rounded to f16 as ggml stores them, kept as f32 for the kernels. `sum = Σ q` undoes the
/// offsets of packed weights (Q8_0's +128, Q4_0's −8, Q5_0's −16).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct ActBlock {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
    pub sum: i32,
}

/// Quantizes `x` (a multiple of 32 long) into `out`, rounding exactly as candle's and ggml's
/// reference `quantize_row_q8_1` (whose d and q are also `quantize_row_q8_0`'s).
pub fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in ob.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
        finish_block(ob, d);
    }
}

/// Fills in a block's sums and f16-rounded scales from its quantized values and scale `d`.
pub fn finish_block(ob: &mut ActBlock, d: f32) {
    let sum = ob.qs.iter().map(|&v| v as i32).sum::<i32>();
    ob.sum = sum;
    let dh = f16::from_f32(d);
    ob.d = dh.to_f32();
    ob.s = (f16::from_f32(sum as f32) * dh).to_f32();
}

/// One activation super-block for the K formats: ggml's Q8_K (d = max/−127 kept in f32,
/// q = round(x/d) clamped to i8, sums of each 16 values).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ActBlockK {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for ActBlockK {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Quantizes `x` (a multiple of 256 long) into `out` exactly as candle's `quantize_row_q8k`.
pub fn quantize_row_k(x: &[f32], out: &mut [ActBlockK]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *ob = ActBlockK::default();
            continue;
        }
        let iscale = -127f32 / max;
        for (q, &v) in ob.qs.iter_mut().zip(xb) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        for (s, q) in ob.bsums.iter_mut().zip(ob.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i32).sum::<i32>() as i16;
        }
        ob.d = 1.0 / iscale;
    }
}

/// Scale and min of sub-block j from a Q4_K block's 12 packed bytes (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// One matrix's packed bytes: a region of an [`arena`](super::arena) chunk, starting on a
/// 64-byte boundary so that the kernels' 32- and 64-byte loads never straddle a cache line
/// (every packed block size is a multiple of 16, and of 32 for the vectors).
pub struct Aligned {
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Aligned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aligned({} bytes)", self.len)
    }
}

impl Aligned {
    fn zeroed(len: usize) -> Self {
        let (chunk, start) = arena::take(len);
        Self { chunk, start, len }
    }
}

impl std::ops::Deref for Aligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `arena::take` gave this region (`len` zeroed bytes from `start`, inside the
        // chunk) to this value alone, and the chunk lives as long as `self` holds it.
        unsafe { std::slice::from_raw_parts(self.chunk.as_ptr().add(self.start), self.len) }
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; no other value refers to these bytes, and `self` is borrowed
        // exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.as_ptr().add(self.start), self.len) }
    }
}

/// Source bytes one task packs before handing them back: few enough that a large matrix's
/// source never stays resident whole, enough that the hand-backs cost little.
const TASK_BYTES: usize = 4 << 20;

/// Packs `n` GGUF rows of `nb` blocks each (`src`, row-major) into groups of eight, handing each
/// stretch of `src` to `done` once it is packed (so a mapped file's pages can go as they are
/// read, instead of the whole matrix being held twice).
pub fn pack(
    kind: WeightFormat,
    src: &[u8],
    n: usize,
    nb: usize,
    done: &(dyn Fn(&[u8]) + Sync),
) -> Aligned {
    let (bb, gbb) = (kind.block_bytes(), kind.group_block_bytes());
    let groups = n.div_ceil(G);
    let mut out = Aligned::zeroed(groups * nb * gbb);
    // Groups are independent: spread them over the threads (a model's load is mostly this).
    let per_task = (TASK_BYTES / (G * nb * bb)).max(1);
    out.par_chunks_mut(per_task * nb * gbb)
        .enumerate()
        .for_each(|(task, groups)| {
            let first_row = task * per_task * G;
            for (j, group) in groups.chunks_mut(nb * gbb).enumerate() {
                let g = task * per_task + j;
                for i in 0..nb {
                    let dst = &mut group[i * gbb..][..gbb];
                    for r in 0..G.min(n - g * G) {
                        let b = &src[((g * G + r) * nb + i) * bb..][..bb];
                        pack_block(kind, b, r, dst);
                    }
                }
            }
            let rows = first_row..(first_row + per_task * G).min(n);
            done(&src[rows.start * nb * bb..rows.end * nb * bb]);
        });
    // Once more whole: a read near a task's edge maps a few neighbouring pages too, some of
    // them in a stretch already handed back.
    done(src);
    out
}

/// Places GGUF block `b` as row `r` of the packed group block `dst` (layouts: module docs).
fn pack_block(kind: WeightFormat, b: &[u8], r: usize, dst: &mut [u8]) {
    match kind {
        WeightFormat::Q4_1 => {
            dst[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
            dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&b[2..4]);
            for c in 0..4 {
                let o = 32 + 32 * c + 4 * r;
                dst[o..o + 4].copy_from_slice(&b[4 + 4 * c..4 + 4 * c + 4]);
            }
        }
        WeightFormat::Q4_0 => {
            dst[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
            for c in 0..4 {
                let o = 16 + 32 * c + 4 * r;
                dst[o..o + 4].copy_from_slice(&b[2 + 4 * c..2 + 4 * c + 4]);
            }
        }
        WeightFormat::Q5_0 | WeightFormat::Q5_1 => pack_q5(kind == WeightFormat::Q5_1, b, r, dst),
        WeightFormat::Q8_0 => {
            dst[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
            for c in 0..8 {
                let o = 16 + 32 * c + 4 * r;
                for t in 0..4 {
                    dst[o + t] = b[2 + 4 * c + t] ^ 0x80;
                }
            }
        }
        WeightFormat::Q4K | WeightFormat::Q5K => pack_q4k5k(kind == WeightFormat::Q5K, b, r, dst),
        WeightFormat::Q2K => pack_q2k(b, r, dst),
        WeightFormat::Q3K => pack_q3k(b, r, dst),
        WeightFormat::Q6K => pack_q6k(b, r, dst),
    }
}

/// Q5_0 and Q5_1: Q5_1's block adds m after d, and its packed block m[8] after d[8].
fn pack_q5(with_min: bool, b: &[u8], r: usize, dst: &mut [u8]) {
    let (src, base) = if with_min { (4, 32) } else { (2, 16) };
    dst[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
    if with_min {
        dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&b[2..4]);
    }
    let qh = u32::from_le_bytes([b[src], b[src + 1], b[src + 2], b[src + 3]]);
    for c in 0..4 {
        for t in 0..4 {
            let bit = 4 * r + t;
            let (lo, hi) = (qh >> (4 * c + t) & 1, qh >> (16 + 4 * c + t) & 1);
            dst[base + 8 * c + bit / 8] |= (lo as u8) << (bit % 8);
            dst[base + 8 * c + 4 + bit / 8] |= (hi as u8) << (bit % 8);
        }
        let o = base + 32 + 32 * c + 4 * r;
        let q = src + 4 + 4 * c;
        dst[o..o + 4].copy_from_slice(&b[q..q + 4]);
    }
}

/// Q4_K, and Q5_K (`fifth_bits`) whose block stores qh[32] between the scales and qs[128].
fn pack_q4k5k(fifth_bits: bool, b: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
    dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&b[2..4]);
    for sb in 0..8 {
        let (sc, m) = scale_min_k4(sb, &b[4..16]);
        dst[32 + 8 * sb + r] = sc;
        dst[96 + 16 * (sb / 2) + 2 * r + sb % 2] = m;
    }
    let qs = if fifth_bits { 48 } else { 16 };
    for j in 0..4 {
        for l in 0..8 {
            let o = 160 + 32 * q4k_vector(j, l) + 4 * r;
            let q = qs + 32 * j + 4 * l;
            dst[o..o + 4].copy_from_slice(&b[q..q + 4]);
        }
    }
    if fifth_bits {
        for l in 0..8 {
            let o = 1184 + 32 * l + 4 * r;
            dst[o..o + 4].copy_from_slice(&b[16 + 4 * l..16 + 4 * l + 4]);
        }
    }
}

/// Q2_K; GGUF block: scales[16] (scale | min << 4), qs[64], d, dmin.
fn pack_q2k(b: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&b[80..82]);
    dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&b[82..84]);
    for u in 0..16 {
        dst[32 + 8 * u + r] = b[u] & 0x0F;
        dst[160 + 16 * (u / 2) + 2 * r + u % 2] = b[u] >> 4;
    }
    pack_q3k_vectors(&b[16..80], 288, r, dst);
}

/// Q3_K; GGUF block: hmask[32], qs[64], scales[12], d.
fn pack_q3k(b: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&b[108..110]);
    for (u, sc) in q3k_scales(&b[96..108]).iter().enumerate() {
        dst[16 + 8 * u + r] = *sc as u8;
    }
    pack_q3k_vectors(&b[32..96], 144, r, dst);
    for l in 0..8 {
        let o = 656 + 32 * l + 4 * r;
        dst[o..o + 4].copy_from_slice(&b[4 * l..4 * l + 4]);
    }
}

/// The 64 `qs` bytes of a Q2_K or Q3_K row as the vectors starting at byte `at`.
fn pack_q3k_vectors(qs: &[u8], at: usize, r: usize, dst: &mut [u8]) {
    for j in 0..2 {
        for l in 0..8 {
            let o = at + 32 * q3k_vector(j, l) + 4 * r;
            let q = 32 * j + 4 * l;
            dst[o..o + 4].copy_from_slice(&qs[q..q + 4]);
        }
    }
}

fn pack_q6k(b: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&b[208..210]);
    for u in 0..16 {
        dst[16 + 8 * u + r] = b[192 + u];
    }
    for j in 0..2 {
        for l in 0..8 {
            let o = q6k_base(j, l) + 4 * r;
            let (qa, qb, qh) = (64 * j + 4 * l, 64 * j + 32 + 4 * l, 128 + 32 * j + 4 * l);
            dst[o..o + 4].copy_from_slice(&b[qa..qa + 4]);
            dst[o + 64..o + 68].copy_from_slice(&b[qb..qb + 4]);
            dst[o + 128..o + 132].copy_from_slice(&b[qh..qh + 4]);
        }
    }
}

/// The 32 values of row r in a packed group block of a 32-value format, in order, less the
/// format's offset (Q4_0's 8, Q5_0's 16): x = d·q, or d·q + m for the formats with a min.
#[inline]
fn block_values(kind: WeightFormat, b: &[u8], r: usize) -> [i32; QK] {
    if kind == WeightFormat::Q8_0 {
        // Stored as q + 128 (`q ^ 0x80`), vector c holding values 4c..4c+4.
        return std::array::from_fn(|x| (b[16 + 32 * (x / 4) + 4 * r + x % 4] ^ 0x80) as i8 as i32);
    }
    // Where the nibbles start: after d[8], m[8] (Q4_1, Q5_1) and the fifth bits (Q5_x).
    let (nibbles, fifth, offset) = match kind {
        WeightFormat::Q4_0 => (16, None, 8),
        WeightFormat::Q4_1 => (32, None, 0),
        WeightFormat::Q5_0 => (48, Some(16), 16),
        _ => (64, Some(32), 0),
    };
    // Value x: the low (x < 16) or high nibble of byte 4c + t of vector c = x % 16 / 4, and
    // its fifth bit, bit 4r + t of the u32 at 8c (+ 4 for the high nibbles).
    std::array::from_fn(|x| {
        let (high, c, t) = (x / 16, x % 16 / 4, x % 4);
        let q = b[nibbles + 32 * c + 4 * r + t] >> (4 * high) & 0x0F;
        let q = match fifth {
            Some(base) => {
                let (at, bit) = (base + 8 * c + 4 * high, 4 * r + t);
                q | (b[at + bit / 8] >> (bit % 8) & 1) << 4
            }
            None => q,
        };
        q as i32 - offset
    })
}

/// Whether a 32-value format's blocks carry a min m (x = d·q + m).
fn has_min(kind: WeightFormat) -> bool {
    matches!(kind, WeightFormat::Q4_1 | WeightFormat::Q5_1)
}

/// Row `row` of a packed matrix as f32, as candle's `dequantize_row_q4_1/q8_0` computes it.
pub fn dequantize_row(kind: WeightFormat, w: &[u8], nb: usize, row: usize, out: &mut [f32]) {
    let (g, r) = (row / G, row % G);
    let gbb = kind.group_block_bytes();
    for (i, ob) in out
        .chunks_exact_mut(kind.block_values())
        .take(nb)
        .enumerate()
    {
        let b = &w[(g * nb + i) * gbb..][..gbb];
        let d = f16_at(b, 2 * r);
        match kind {
            WeightFormat::Q4_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1
            | WeightFormat::Q8_0 => {
                let m = has_min(kind).then(|| f16_at(b, 16 + 2 * r));
                for (o, q) in ob.iter_mut().zip(block_values(kind, b, r)) {
                    let v = q as f32 * d;
                    *o = m.map_or(v, |m| v + m);
                }
            }
            WeightFormat::Q4K | WeightFormat::Q5K => {
                let dmin = f16_at(b, 16 + 2 * r);
                for (x, o) in ob.iter_mut().enumerate() {
                    let (sb, q) = q4k_at(b, r, x);
                    let q = q + q5k_fifth(kind, b, r, x);
                    let m = b[96 + 16 * (sb / 2) + 2 * r + sb % 2];
                    *o = d * b[32 + 8 * sb + r] as f32 * q as f32 - dmin * m as f32;
                }
            }
            WeightFormat::Q2K => {
                let dmin = f16_at(b, 16 + 2 * r);
                for (x, o) in ob.iter_mut().enumerate() {
                    let (u, q) = q2k_at(b, r, x);
                    let m = b[160 + 16 * (u / 2) + 2 * r + u % 2];
                    *o = d * b[32 + 8 * u + r] as f32 * q as f32 - dmin * m as f32;
                }
            }
            WeightFormat::Q3K => {
                for (x, o) in ob.iter_mut().enumerate() {
                    let (u, q) = q3k_at(b, r, x);
                    *o = d * (b[16 + 8 * u + r] as i8) as f32 * q as f32;
                }
            }
            WeightFormat::Q6K => {
                for (x, o) in ob.iter_mut().enumerate() {
                    let (u, q) = q6k_at(b, r, x);
                    *o = d * (b[16 + 8 * u + r] as i8) as f32 * (q as i32 - 32) as f32;
                }
            }
        }
    }
}

/// Where the vector of 64-value chunk j, lane l sits among a Q4_K super-block's 32: chunks 2p
/// and 2p+1 of the same lane side by side, so one 64-byte load takes both.
#[inline]
pub(crate) fn q4k_vector(j: usize, l: usize) -> usize {
    16 * (j / 2) + 2 * l + j % 2
}

/// Sub-block and 4-bit value of value x (0..256) of row r in a packed Q4_K super-block.
#[inline]
fn q4k_at(b: &[u8], r: usize, x: usize) -> (usize, u8) {
    let (j, half, l, t) = (x / 64, x / 32 % 2, x % 32 / 4, x % 4);
    let byte = b[160 + 32 * q4k_vector(j, l) + 4 * r + t];
    (
        2 * j + half,
        if half == 0 { byte & 0x0F } else { byte >> 4 },
    )
}

/// The fifth bit (0 or 16) of value x of row r in a packed Q5_K super-block; 0 for Q4_K.
#[inline]
fn q5k_fifth(kind: WeightFormat, b: &[u8], r: usize, x: usize) -> u8 {
    if kind != WeightFormat::Q5K {
        return 0;
    }
    let (j, half, l, t) = (x / 64, x / 32 % 2, x % 32 / 4, x % 4);
    ((b[1184 + 32 * l + 4 * r + t] >> (2 * j + half)) & 1) << 4
}

/// Where the `ql` vector of 128-value chunk j, lane l sits in a Q6_K super-block; its second
/// `ql` vector is 64 bytes on, its `qh` vector 128. Chunks 0 and 1 of a lane sit side by side,
/// so one 64-byte load takes both.
#[inline]
pub(crate) fn q6k_base(j: usize, l: usize) -> usize {
    144 + 192 * l + 32 * j
}

/// Sub-block (of 16) and 6-bit value of value x of row r in a packed Q6_K super-block.
#[inline]
fn q6k_at(b: &[u8], r: usize, x: usize) -> (usize, u8) {
    let (j, v, l, t) = (x / 128, x / 32 % 4, x % 32 / 4, x % 4);
    let o = q6k_base(j, l) + 4 * r + t;
    let (qa, qb, qh) = (b[o], b[o + 64], b[o + 128]);
    let low = match v {
        0 => qa & 0x0F,
        1 => qb & 0x0F,
        2 => qa >> 4,
        _ => qb >> 4,
    };
    (x / 16, low | ((qh >> (2 * v)) & 3) << 4)
}

/// Where the `qs` vector of half j, lane l sits among a Q2_K / Q3_K super-block's 16: both
/// halves of a lane side by side, so one 64-byte load takes both.
#[inline]
pub(crate) fn q3k_vector(j: usize, l: usize) -> usize {
    2 * l + j
}

/// The 16 sub-block scales of a Q3_K block, unpacked from its 12 bytes of 6-bit values and
/// offset by −32, as ggml does.
pub(crate) fn q3k_scales(packed: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a: [u32; 3] = std::array::from_fn(|i| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    });
    let words = [
        (a[0] & KMASK2) | (a[2] & KMASK1) << 4,
        (a[1] & KMASK2) | (a[2] >> 2 & KMASK1) << 4,
        (a[0] >> 4 & KMASK2) | (a[2] >> 4 & KMASK1) << 4,
        (a[1] >> 4 & KMASK2) | (a[2] >> 6 & KMASK1) << 4,
    ];
    std::array::from_fn(|u| (words[u / 4].to_le_bytes()[u % 4] as i8).wrapping_sub(32))
}

/// Sub-block (of 16) and 2-bit value of value x of row r in a packed Q2_K super-block.
#[inline]
fn q2k_at(b: &[u8], r: usize, x: usize) -> (usize, i32) {
    let (j, t, l, u) = (x / 128, x / 32 % 4, x % 32 / 4, x % 4);
    (
        x / 16,
        (b[288 + 32 * q3k_vector(j, l) + 4 * r + u] >> (2 * t) & 3) as i32,
    )
}

/// Sub-block (of 16) and signed 3-bit value (−4..4) of value x of row r in a packed Q3_K
/// super-block.
#[inline]
fn q3k_at(b: &[u8], r: usize, x: usize) -> (usize, i32) {
    let (j, t, l, u) = (x / 128, x / 32 % 4, x % 32 / 4, x % 4);
    let low = b[144 + 32 * q3k_vector(j, l) + 4 * r + u] >> (2 * t) & 3;
    let high = b[656 + 32 * l + 4 * r + u] >> (4 * j + t) & 1;
    (x / 16, low as i32 - if high == 1 { 0 } else { 4 })
}

/// Candle's `hsum_float_8` order over eight lanes.
#[inline]
fn hsum8(a: &[f32; 8]) -> f32 {
    ((a[4] + a[0]) + (a[6] + a[2])) + ((a[5] + a[1]) + (a[7] + a[3]))
}

/// The eight dot products of one K-format group (`nb` packed super-blocks at `w`) with one
/// activation row: the portable definition.
///
/// Q4_K, Q5_K and Q6_K: per super-block the integer sum Σ scale·Σ q·x over its sub-blocks is
/// exact (it fits in i32), as is Q4_K's and Q5_K's Σ min·Σ x; each is then added once,
/// `acc = fma(d·d', sum, acc)`, `acc = fma(−d'·dmin, mins, acc)`, super-block by super-block.
/// Nothing depends on the order of the products, so every kernel — one row or many, whatever
/// its vector width or dot-product instruction — gets these bits.
///
/// Q2_K and Q3_K follow candle's AVX2 `vec_dot_q2k_q8k` / `vec_dot_q3k_q8k`: eight i32 lanes
/// (lane l takes values 4l..4l+4 of every 32), each weighted by its sub-block scale,
/// `acc = fma(d·d', lane, acc)` per super-block, summed in `hsum_float_8` order; Q2_K's mins
/// enter the lanes first.
pub fn group_dot_k_scalar(kind: WeightFormat, w: &[u8], a: &[ActBlockK]) -> [f32; G] {
    let gbb = kind.group_block_bytes();
    let mut out = [0f32; G];
    for (r, o) in out.iter_mut().enumerate() {
        let mut acc = [0f32; 8];
        for (b, y) in w.chunks_exact(gbb).zip(a) {
            let mut lanes = [0i32; 8];
            for x in 0..QK_K {
                let (scale, q) = match kind {
                    WeightFormat::Q4K | WeightFormat::Q5K => {
                        let (sb, q) = q4k_at(b, r, x);
                        let q = q + q5k_fifth(kind, b, r, x);
                        (b[32 + 8 * sb + r] as i32, q as i32)
                    }
                    WeightFormat::Q3K => {
                        let (u, q) = q3k_at(b, r, x);
                        ((b[16 + 8 * u + r] as i8) as i32, q)
                    }
                    WeightFormat::Q2K => {
                        let (u, q) = q2k_at(b, r, x);
                        (b[32 + 8 * u + r] as i32, q)
                    }
                    _ => {
                        let (u, q) = q6k_at(b, r, x);
                        ((b[16 + 8 * u + r] as i8) as i32, q as i32 - 32)
                    }
                };
                lanes[x % 32 / 4] += scale * q * y.qs[x] as i32;
            }
            let dd = y.d * f16_at(b, 2 * r);
            match kind {
                _ if kind.sums_exactly() => {
                    acc[0] = dd.mul_add(lanes.iter().sum::<i32>() as f32, acc[0]);
                    if kind != WeightFormat::Q6K {
                        let dmin = -y.d * f16_at(b, 16 + 2 * r);
                        let s = |sb: usize| y.bsums[2 * sb] as i32 + y.bsums[2 * sb + 1] as i32;
                        let m = |sb: usize| b[96 + 16 * (sb / 2) + 2 * r + sb % 2] as i32;
                        let mins: i32 = (0..8).map(|sb| m(sb) * s(sb)).sum();
                        acc[0] = dmin.mul_add(mins as f32, acc[0]);
                    }
                }
                _ => {
                    if kind == WeightFormat::Q2K {
                        // Q2_K's mins go into the lanes first: lane l pairs sub-blocks 2l, 2l+1.
                        let dmin = -y.d * f16_at(b, 16 + 2 * r);
                        for (l, acc) in acc.iter_mut().enumerate() {
                            let m = |u: usize| b[160 + 16 * l + 2 * r + u] as i32;
                            let v = m(0) * y.bsums[2 * l] as i32 + m(1) * y.bsums[2 * l + 1] as i32;
                            *acc = dmin.mul_add(v as f32, *acc);
                        }
                    }
                    for (acc, &l) in acc.iter_mut().zip(&lanes) {
                        *acc = dd.mul_add(l as f32, *acc);
                    }
                }
            }
        }
        *o = if kind.sums_exactly() {
            acc[0]
        } else {
            hsum8(&acc)
        };
    }
    out
}

/// The eight dot products of one group (`nb` packed blocks at `w`) with one activation row:
/// the portable definition of the arithmetic.
///
/// Each follows candle's and ggml's generic dot product: per block the integer sum is exact,
/// then `sumi·d·d'` (`vec_dot_q8_0_q8_0`, `vec_dot_q4_0_q8_0`, `vec_dot_q5_0_q8_0`), plus
/// `m·s` for the formats with a min (`vec_dot_q4_1_q8_1`, `vec_dot_q5_1_q8_1`), added in block
/// order.
pub fn group_dot_scalar(kind: WeightFormat, w: &[u8], a: &[ActBlock]) -> [f32; G] {
    assert!(
        kind.block_values() == QK,
        "K formats take `group_dot_k_scalar`"
    );
    let gbb = kind.group_block_bytes();
    std::array::from_fn(|r| {
        let mut sum = 0f32;
        for (b, ab) in w.chunks_exact(gbb).zip(a) {
            let q = block_values(kind, b, r);
            let si: i32 = q.iter().zip(&ab.qs).map(|(&q, &x)| q * x as i32).sum();
            let x = si as f32 * f16_at(b, 2 * r) * ab.d;
            sum += if has_min(kind) {
                x + f16_at(b, 16 + 2 * r) * ab.s
            } else {
                x
            };
        }
        sum
    })
}
