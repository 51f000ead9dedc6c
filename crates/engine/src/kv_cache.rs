//! One layer's key/value cache, and the number formats it stores keys and values in.
//!
//! On the CPU the cache holds its own buffers in the layout the attention kernel reads
//! ([`crate::kernels::attention`]): per key/value head, a run of positions: values position by
//! position (head_dim each), keys in chunks of [`KEY_CHUNK`] positions stored dimension by
//! dimension, so that one vector load holds one dimension of 16 keys and a query is scored
//! against them with no reduction across lanes. Either in f32, f16 or llama.cpp's q8_0 (blocks
//! of 32 int8 values of one position sharing one f16 scale). The kernel
//! turns a block of positions back into f32 as it reads it, so a smaller format halves (f16) or
//! nearly quarters (q8_0) both the memory a long context holds and the bytes a decoding step
//! reads. Elsewhere (accelerators, activations not in f32) keys and values stay candle tensors
//! in the activations' own type.

use crate::error::{Error, Result};
use crate::kernels::convert;
use candle_core::Tensor;
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use serde::Serialize;

/// The number format of the cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheType {
    F32,
    /// Half precision: keys and values are activations of modest range, and f16's 11-bit
    /// mantissa moves perplexity by well under a thousandth (measured in the README).
    #[default]
    F16,
    /// Blocks of [`Q8_BLOCK`] int8 values with one f16 scale (8.5 bits a value).
    Q8_0,
}

/// Values per q8_0 block.
pub const Q8_BLOCK: usize = 32;

/// Positions per chunk of the keys' layout (one 512-bit vector of f32).
pub(crate) const KEY_CHUNK: usize = 16;

/// Where value `i` of position `pos` lies in a head's run of keys: chunk by chunk, each
/// `dim` rows of [`KEY_CHUNK`] positions.
fn key_index(pos: usize, i: usize, dim: usize) -> usize {
    (pos / KEY_CHUNK * dim + i) * KEY_CHUNK + pos % KEY_CHUNK
}

impl CacheType {
    pub const ALL: [CacheType; 3] = [CacheType::F32, CacheType::F16, CacheType::Q8_0];

    /// The name `--cache-type` takes and reports give, as llama.cpp spells it.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
        }
    }

    /// Bytes `values` values take.
    pub fn bytes(self, values: usize) -> usize {
        match self {
            CacheType::F32 => values * 4,
            CacheType::F16 => values * 2,
            CacheType::Q8_0 => values + values / Q8_BLOCK * 2,
        }
    }

    /// Whether rows of `head_dim` values can be stored (q8_0 blocks may not straddle heads).
    pub fn check_head_dim(self, head_dim: usize) -> Result<()> {
        if self == CacheType::Q8_0 && !head_dim.is_multiple_of(Q8_BLOCK) {
            return Err(Error::InvalidOption(format!(
                "a q8_0 KV cache needs heads a multiple of {Q8_BLOCK} wide; this model's are \
                 {head_dim}: use --cache-type f16"
            )));
        }
        Ok(())
    }
}

impl std::str::FromStr for CacheType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        CacheType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("`{s}` is not a cache type (f32, f16 or q8_0)"))
    }
}

impl std::fmt::Display for CacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Values in one of the cache's formats; offsets and lengths count values. Halves are kept as
/// their bits so that a new buffer is zeroed memory the system maps only when written: a
/// context's worth of capacity costs only the positions used.
#[derive(Debug, Clone)]
pub(crate) enum Rows {
    F32(Vec<f32>),
    F16(Vec<u16>),
    /// Value i is `quants[i] · scales[i / 32]` (scales as f16 bits).
    Q8_0 {
        quants: Vec<i8>,
        scales: Vec<u16>,
    },
}

impl Rows {
    fn zeros(kind: CacheType, values: usize) -> Self {
        match kind {
            CacheType::F32 => Rows::F32(vec![0.0; values]),
            CacheType::F16 => Rows::F16(vec![0; values]),
            CacheType::Q8_0 => Rows::Q8_0 {
                quants: vec![0; values],
                scales: vec![0; values / Q8_BLOCK],
            },
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Rows::F32(v) => v.len() * 4,
            Rows::F16(v) => v.len() * 2,
            Rows::Q8_0 { quants, scales } => quants.len() + scales.len() * 2,
        }
    }

    /// Stores `src` from value `at` on (q8_0: both whole blocks).
    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Rows::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Rows::F16(v) => v[at..at + src.len()]
                .reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(src),
            Rows::Q8_0 { quants, scales } => {
                let quants = &mut quants[at..at + src.len()];
                let scales = &mut scales[at / Q8_BLOCK..];
                for ((x, q), d) in src
                    .chunks_exact(Q8_BLOCK)
                    .zip(quants.chunks_exact_mut(Q8_BLOCK))
                    .zip(scales.iter_mut())
                {
                    *d = quantize_q8(x, q).to_bits();
                }
            }
        }
    }

    /// Stores keys `src` (rows of `dim`) of positions `pos`, `pos + 1`, … into the run of
    /// keys at `base` (a head's first value), in the keys' chunked layout. A q8_0 block is 32
    /// dimensions of one position, as for values; its scales lie like the values, 16 positions
    /// of one block next to each other.
    fn write_keys(&mut self, base: usize, pos: usize, dim: usize, src: &[f32]) {
        let mut bits = vec![0u16; dim];
        let mut quants = vec![0i8; dim];
        for (p, row) in (pos..).zip(src.chunks_exact(dim)) {
            let at = |i| base + key_index(p, i, dim);
            match self {
                Rows::F32(v) => row.iter().enumerate().for_each(|(i, x)| v[at(i)] = *x),
                Rows::F16(v) => {
                    bits.reinterpret_cast_mut::<f16>()
                        .convert_from_f32_slice(row);
                    bits.iter().enumerate().for_each(|(i, b)| v[at(i)] = *b);
                }
                Rows::Q8_0 { quants: q, scales } => {
                    let blocks = row
                        .chunks_exact(Q8_BLOCK)
                        .zip(quants.chunks_exact_mut(Q8_BLOCK));
                    for (b, (x, qb)) in blocks.enumerate() {
                        let d = quantize_q8(x, qb);
                        scales[key_index(p, b, dim / Q8_BLOCK) + base / Q8_BLOCK] = d.to_bits();
                    }
                    quants.iter().enumerate().for_each(|(i, x)| q[at(i)] = *x);
                }
            }
        }
    }

    /// Copies `n` values from `src` at `from` to `at` (both whole q8_0 blocks).
    fn copy_from(&mut self, at: usize, src: &Rows, from: usize, n: usize) {
        match (self, src) {
            (Rows::F32(d), Rows::F32(s)) => d[at..at + n].copy_from_slice(&s[from..from + n]),
            (Rows::F16(d), Rows::F16(s)) => d[at..at + n].copy_from_slice(&s[from..from + n]),
            (
                Rows::Q8_0 { quants, scales },
                Rows::Q8_0 {
                    quants: sq,
                    scales: ss,
                },
            ) => {
                quants[at..at + n].copy_from_slice(&sq[from..from + n]);
                let (at, from, n) = (at / Q8_BLOCK, from / Q8_BLOCK, n / Q8_BLOCK);
                scales[at..at + n].copy_from_slice(&ss[from..from + n]);
            }
            _ => unreachable!("one cache holds one format"),
        }
    }

    /// The stored values, where they are f16.
    pub(crate) fn f16(&self) -> Option<&[half::f16]> {
        match self {
            Rows::F16(v) => Some(v.reinterpret_cast()),
            _ => None,
        }
    }

    /// Values `at..at + n` in f32: the stored ones themselves, or decoded into `scratch`.
    pub(crate) fn read<'a>(&'a self, at: usize, n: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        if let Rows::F32(v) = self {
            return &v[at..at + n];
        }
        scratch.resize(n, 0.0);
        match self {
            Rows::F16(v) => convert::f16_to_f32(&v[at..at + n], scratch),
            Rows::Q8_0 { quants, scales } => {
                let scales = &scales[at / Q8_BLOCK..(at + n) / Q8_BLOCK];
                convert::q8_0_to_f32(&quants[at..at + n], scales, scratch);
            }
            Rows::F32(_) => {}
        }
        scratch
    }

    /// Keys `at..at + n` in f32, `at` and `n` whole chunks: as [`Rows::read`] (the layout
    /// stays chunked), but a q8_0 value's scale lies where its chunk's scales are.
    pub(crate) fn read_keys<'a>(
        &'a self,
        at: usize,
        n: usize,
        dim: usize,
        scratch: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let Rows::Q8_0 { quants, scales } = self else {
            return self.read(at, n, scratch);
        };
        scratch.resize(n, 0.0);
        let scales = &scales[at / Q8_BLOCK..(at + n) / Q8_BLOCK];
        convert::q8_0_keys_to_f32(&quants[at..at + n], scales, dim, scratch);
        scratch
    }

    /// An f32 store to test the kernel with.
    #[cfg(test)]
    pub(crate) fn from_f32(kind: CacheType, values: &[f32]) -> Self {
        let mut rows = Rows::zeros(kind, values.len());
        rows.write(0, values);
        rows
    }

    /// Keys to test the kernel with: `values` holds heads of `capacity` positions × `dim`,
    /// position by position.
    #[cfg(test)]
    pub(crate) fn keys_from_f32(
        kind: CacheType,
        values: &[f32],
        capacity: usize,
        dim: usize,
    ) -> Self {
        let mut rows = Rows::zeros(kind, values.len());
        for (h, head) in values.chunks_exact(capacity * dim).enumerate() {
            rows.write_keys(h * capacity * dim, 0, dim, head);
        }
        rows
    }
}

/// llama.cpp's q8_0 rounding of one block: scale max|x|/127, values rounded to nearest.
fn quantize_q8(x: &[f32], q: &mut [i8]) -> f16 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, v) in q.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    f16::from_f32(d)
}

/// Positions a head's run holds in buffers for `capacity`: whole key chunks, so that the
/// kernel reads the last one whole (the spare positions are not counted as held).
fn run(capacity: usize) -> usize {
    capacity.next_multiple_of(KEY_CHUNK)
}

/// Where a cache keeps its keys and values.
#[derive(Debug, Clone, Default)]
enum Store {
    #[default]
    Empty,
    /// The attention kernel's: per key/value head, `capacity` positions × head_dim values,
    /// in runs of whole key chunks ([`run`]).
    Kernel { k: Rows, v: Rows, capacity: usize },
    /// candle's: (1, kv_heads, capacity, head_dim) tensors.
    Tensors { k: Tensor, v: Tensor },
}

/// One layer's keys and values for one sequence, kept in buffers that grow by doubling up to
/// a limit, so appending a token is a copy into place (not a concatenation of the whole
/// history) and rewinding a conversation is just a shorter length.
#[derive(Debug, Clone)]
pub struct KvCache {
    store: Store,
    kind: CacheType,
    len: usize,
    /// The most positions it grows to (the context size, or a request's share of a budget).
    pub(crate) limit: usize,
}

/// The kernel's view of a cache: keys and values per head, `capacity` positions apart (whole
/// key chunks).
pub(crate) struct KernelView<'a> {
    pub k: &'a Rows,
    pub v: &'a Rows,
    pub capacity: usize,
}

impl KvCache {
    pub(crate) fn new(kind: CacheType, limit: usize) -> Self {
        Self {
            store: Store::Empty,
            kind,
            len: 0,
            limit,
        }
    }

    /// Appends (1, kv_heads, seq, head_dim) keys and values as tensors, for candle's attention
    /// (where the CPU kernel does not attend: [`Self::append_rows`]).
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let seq = k.dim(2)?;
        let needed = self.len + seq;
        if needed > self.capacity() {
            self.grow_tensors(k, self.grown(needed))?;
        }
        let Store::Tensors { k: kc, v: vc } = &mut self.store else {
            unreachable!("grown above")
        };
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok(())
    }

    /// Appends keys and values given as (kv_heads, seq, head_dim) values into the CPU
    /// attention kernel's buffers.
    pub(crate) fn append_rows(
        &mut self,
        keys: &[f32],
        values: &[f32],
        [heads, seq, dim]: [usize; 3],
    ) -> Result<()> {
        debug_assert!(keys.len() == heads * seq * dim && values.len() == keys.len());
        let needed = self.len + seq;
        if needed > self.capacity() {
            self.grow_kernel(heads, dim, self.grown(needed))?;
        }
        let Store::Kernel {
            k: kc,
            v: vc,
            capacity,
        } = &mut self.store
        else {
            unreachable!("grown above")
        };
        let run = run(*capacity);
        for (h, src) in keys.chunks_exact(seq * dim).enumerate() {
            kc.write_keys(h * run * dim, self.len, dim, src);
        }
        for (h, src) in values.chunks_exact(seq * dim).enumerate() {
            vc.write((h * run + self.len) * dim, src);
        }
        self.len = needed;
        Ok(())
    }

    /// The capacity to grow to for `needed` positions: doubling, within the limit.
    fn grown(&self, needed: usize) -> usize {
        needed
            .max(self.capacity() * 2)
            .max(64)
            .min(self.limit.max(needed))
    }

    /// Moves the kernel's buffers (or none yet) into buffers of `capacity` positions.
    fn grow_kernel(&mut self, heads: usize, dim: usize, capacity: usize) -> Result<()> {
        let values = heads * run(capacity) * dim;
        self.store = match std::mem::take(&mut self.store) {
            Store::Kernel {
                k,
                v,
                capacity: old,
            } => {
                let mut moved = [
                    Rows::zeros(self.kind, values),
                    Rows::zeros(self.kind, values),
                ];
                // Whole chunks of keys: the last one's spare positions come along.
                let n = self.len.next_multiple_of(KEY_CHUNK) * dim;
                for (new, old_rows) in moved.iter_mut().zip([&k, &v]) {
                    for h in 0..heads {
                        new.copy_from(h * run(capacity) * dim, old_rows, h * run(old) * dim, n);
                    }
                }
                let [k, v] = moved;
                Store::Kernel { k, v, capacity }
            }
            _ => {
                self.kind.check_head_dim(dim)?;
                Store::Kernel {
                    k: Rows::zeros(self.kind, values),
                    v: Rows::zeros(self.kind, values),
                    capacity,
                }
            }
        };
        Ok(())
    }

    /// Moves the cached tensors (or none yet) into (1, kv_heads, capacity, head_dim) tensors
    /// like `like`.
    fn grow_tensors(&mut self, like: &Tensor, capacity: usize) -> Result<()> {
        let (b, heads, _, dim) = like.dims4()?;
        let grow = |t: Option<&Tensor>| -> Result<Tensor> {
            let new = Tensor::zeros((b, heads, capacity, dim), like.dtype(), like.device())?;
            if let Some(t) = t.filter(|_| self.len > 0) {
                new.slice_set(&t.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
            Ok(new)
        };
        let (k, v) = match &self.store {
            Store::Tensors { k, v } => (Some(k), Some(v)),
            _ => (None, None),
        };
        self.store = Store::Tensors {
            k: grow(k)?,
            v: grow(v)?,
        };
        Ok(())
    }

    /// The kernel's buffers; None before the first append or when the cache holds tensors.
    pub(crate) fn kernel_view(&self) -> Option<KernelView<'_>> {
        match &self.store {
            Store::Kernel { k, v, capacity, .. } => Some(KernelView {
                k,
                v,
                capacity: run(*capacity),
            }),
            _ => None,
        }
    }

    /// Views (1, kv_heads, len, head_dim) of the cached keys and values, for candle's
    /// attention.
    pub fn history(&self) -> Result<(Tensor, Tensor)> {
        match &self.store {
            Store::Tensors { k, v } => Ok((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?)),
            _ => Err(candle_core::Error::Msg("the KV cache holds no tensors".into()).into()),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        match &self.store {
            Store::Empty => 0,
            Store::Kernel { capacity, .. } => *capacity,
            Store::Tensors { k, .. } => k.dim(2).unwrap_or(0),
        }
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn release(&mut self) {
        (self.store, self.len) = (Store::Empty, 0);
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        match &self.store {
            Store::Empty => 0,
            Store::Kernel { k, v, .. } => k.bytes() + v.bytes(),
            Store::Tensors { k, v } => [k, v]
                .iter()
                .map(|t| t.elem_count() * t.dtype().size_in_bytes())
                .sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 3.0)
            .collect()
    }

    /// Each format reads back what was written, within its rounding: f32 exactly, f16 within
    /// half a unit in its 11th bit, q8_0 within half a step of its block's scale.
    #[test]
    fn formats_read_back_within_their_rounding() {
        let x = noise(4 * Q8_BLOCK);
        for kind in CacheType::ALL {
            let rows = Rows::from_f32(kind, &x);
            let mut scratch = Vec::new();
            let got = rows.read(Q8_BLOCK, 2 * Q8_BLOCK, &mut scratch).to_vec();
            for (i, (g, w)) in got.iter().zip(&x[Q8_BLOCK..]).enumerate() {
                let block = &x[Q8_BLOCK + i / Q8_BLOCK * Q8_BLOCK..][..Q8_BLOCK];
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let tolerance = match kind {
                    CacheType::F32 => 0.0,
                    CacheType::F16 => w.abs() / 2048.0,
                    CacheType::Q8_0 => amax / 127.0 * 0.5 + amax / 2048.0,
                };
                assert!((g - w).abs() <= tolerance, "{kind} [{i}]: {g} vs {w}");
            }
            assert_eq!(rows.bytes(), kind.bytes(x.len()));
        }
    }

    /// Growing moves every head's positions to its new place, in every format.
    #[test]
    fn growing_keeps_every_position() {
        let (heads, dim) = (3, Q8_BLOCK);
        for kind in CacheType::ALL {
            let mut cache = KvCache::new(kind, 1000);
            let mut all = Vec::new();
            for step in 0..5 {
                let seq = 40 + step;
                let data: Vec<f32> = noise(heads * seq * dim)
                    .iter()
                    .map(|v| v + step as f32)
                    .collect();
                cache.append_rows(&data, &data, [heads, seq, dim]).unwrap();
                let t = Tensor::from_vec(data, (1, heads, seq, dim), &candle_core::Device::Cpu)
                    .unwrap();
                all.push(t);
            }
            let whole = Tensor::cat(&all, 2).unwrap();
            let len = whole.dim(2).unwrap();
            let view = cache.kernel_view().unwrap();
            assert!(view.capacity >= len);
            let chunks = len.next_multiple_of(KEY_CHUNK) * dim;
            for h in 0..heads {
                let want = whole.get(0).unwrap().get(h).unwrap().flatten_all().unwrap();
                let mut want = want.to_vec1::<f32>().unwrap();
                let values = Rows::from_f32(kind, &want);
                want.resize(chunks, 0.0);
                let keys = Rows::keys_from_f32(kind, &want, chunks / dim, dim);
                let at = h * view.capacity * dim;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let got = view.k.read_keys(at, chunks, dim, &mut a);
                assert_eq!(
                    got,
                    keys.read_keys(0, chunks, dim, &mut b),
                    "{kind} keys {h}"
                );
                let got = view.v.read(at, len * dim, &mut a);
                assert_eq!(got, values.read(0, len * dim, &mut b), "{kind} values {h}");
            }
        }
    }

    #[test]
    fn q8_0_refuses_heads_that_split_a_block() {
        assert!(CacheType::Q8_0.check_head_dim(64).is_ok());
        let e = CacheType::Q8_0.check_head_dim(80).unwrap_err().to_string();
        assert!(e.contains("--cache-type f16"), "{e}");
        assert!(CacheType::F16.check_head_dim(80).is_ok());
    }
}
