//! Attention on the CPU, reading each sequence's KV cache where it lies.
//!
//! Two reasons not to go through candle's matrix products here. Speed: gemm repacks the whole
//! cache for every product, which after a few thousand tokens of context is most of a decoding
//! step. Exactness: candle's product rounds differently for a few query rows than for many, so
//! a token's keys came out different in the last bits whether it was read in a prompt or
//! decoded, and a prompt continued from a cached prefix could not match a fresh read.
//!
//! Here every query row is computed by the same loops whatever else is in the call: its keys are
//! taken in blocks of [`KEY_BLOCK`] positions aligned to absolute positions; each block gives
//! its scores' maximum, the sum of their exponentials and the weighted sum of its values; the
//! blocks are then combined in order. A row's result depends only on its query, its position
//! and the cache before it — not on how many rows share the call, nor on how the work is
//! split across threads (blocks run in parallel when there are few rows, as in decoding).

use super::activation::exp;
use super::packed::G;
use super::SendPtr;
use crate::kv_cache::KernelView;
use crate::kv_cache::Rows;
use candle_core::{CpuStorage, DType, Storage, Tensor};
use rayon::prelude::*;

/// Positions per key block: long enough to amortize a block's setup, short enough that one
/// decoding row splits into many pieces of work at a few thousand tokens.
pub(crate) const KEY_BLOCK: usize = 128;

/// How the scores are formed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scoring {
    pub scale: f32,
    /// Gemma 2's `cap·tanh(s/cap)`.
    pub softcap: Option<f32>,
    /// Only the last `window` positions up to the query's own are visible (sliding layers).
    pub window: Option<usize>,
}

/// Heads and their width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
}

/// One layer's cache of one sequence: keys and values as `kv_heads` runs of `capacity`
/// positions × head_dim, filled up to at least the last query's position, in any of the
/// cache's formats (a block of positions is read as f32 when it is used).
#[derive(Clone)]
pub(crate) struct Cache<'a> {
    pub k: &'a Rows,
    pub v: &'a Rows,
    pub capacity: usize,
}

impl Cache<'_> {
    /// Keys and values of positions `start..stop` of kv head `kv`, in f32 (decoded into the
    /// scratch buffers where the cache holds another format).
    fn block<'s>(
        &'s self,
        kv: usize,
        (start, stop): (usize, usize),
        dim: usize,
        scratch: &'s mut [Vec<f32>; 2],
    ) -> (&'s [f32], &'s [f32]) {
        let at = (kv * self.capacity + start) * dim;
        let n = (stop - start) * dim;
        let [ks, vs] = scratch;
        (self.k.read(at, n, ks), self.v.read(at, n, vs))
    }
}

/// The queries: element (head h, row r, i) at `data[h * head_stride + r * row_stride + i]`.
#[derive(Clone)]
pub(crate) struct Queries<'a> {
    pub data: &'a [f32],
    pub head_stride: usize,
    pub row_stride: usize,
    pub rows: usize,
}

/// Whether this kernel attends for activations like `x`: f32 in CPU memory (their keys and
/// values are cached in the same form). Elsewhere attention goes through candle.
pub(crate) fn takes(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// One sequence's share of an attention call: its queries (1, heads, rows, head_dim), rows at
/// positions `pos`, `pos + 1`, …, and its cache, already holding the rows' own keys.
pub(crate) struct Part<'a> {
    pub q: &'a Tensor,
    pub cache: KernelView<'a>,
    pub pos: usize,
}

/// Attends for every part; returns their rows one after the other, (1, rows, heads·head_dim).
/// The queries are tensors [`takes`] accepts.
pub(crate) fn attend_tensors(
    parts: &[Part],
    shape: Heads,
    scoring: Scoring,
) -> candle_core::Result<Tensor> {
    let qs = parts
        .iter()
        .map(|p| {
            if p.q.stride()[3] == 1 {
                Ok(p.q.clone())
            } else {
                p.q.contiguous()
            }
        })
        .collect::<candle_core::Result<Vec<Tensor>>>()?;
    let guards: Vec<_> = qs.iter().map(|q| q.storage_and_layout()).collect();
    let mut items = Vec::with_capacity(parts.len());
    for ((q, (storage, layout)), part) in qs.iter().zip(&guards).zip(parts) {
        let Storage::Cpu(CpuStorage::F32(qd)) = &**storage else {
            candle_core::bail!("the attention kernel takes f32 tensors in CPU memory");
        };
        let stride = layout.stride();
        let queries = Queries {
            data: &qd[layout.start_offset()..],
            head_stride: stride[1],
            row_stride: stride[2],
            rows: q.dim(2)?,
        };
        let cache = Cache {
            k: part.cache.k,
            v: part.cache.v,
            capacity: part.cache.capacity,
        };
        items.push((queries, part.pos, cache));
    }
    let rows = items.iter().map(|(q, ..)| q.rows).sum::<usize>();
    let out = attend_many(&items, shape, scoring);
    let device = parts
        .first()
        .map_or(&candle_core::Device::Cpu, |p| p.q.device());
    Tensor::from_vec(out, (1, rows, shape.heads * shape.dim), device)
}

/// Attends from `q`, whose rows sit at positions `pos`, `pos + 1`, … (their own keys already
/// in the cache); returns (rows, heads·head_dim) values.
#[cfg(test)]
pub(crate) fn attend(
    q: &Queries,
    pos: usize,
    cache: &Cache,
    shape: Heads,
    scoring: Scoring,
) -> Vec<f32> {
    attend_many(&[(q.clone(), pos, cache.clone())], shape, scoring)
}

/// Attends for several sequences' rows, each `(queries, first position, cache)`; returns their
/// (rows, heads·head_dim) values one after the other. Sequences with few rows (decoding) put
/// all their key blocks through the pool in one pass, so a batch of decoding sequences costs one
/// hand-off to the threads a layer, not one each; longer prompts go tile by tile.
fn attend_many<'a>(
    items: &'a [(Queries<'a>, usize, Cache<'a>)],
    shape: Heads,
    scoring: Scoring,
) -> Vec<f32> {
    let Heads {
        heads,
        kv_heads,
        dim,
    } = shape;
    let group = heads / kv_heads;
    let width = group * dim;
    let total: usize = items.iter().map(|(q, ..)| q.rows).sum();
    let mut out = vec![0f32; total * heads * dim];
    let threads = rayon::current_num_threads();
    let few = |q: &Queries| threads > 1 && q.rows * kv_heads < 2 * threads;
    // Where each item's rows start in `out`.
    let starts: Vec<usize> = items
        .iter()
        .scan(0, |at, (q, ..)| {
            let start = *at;
            *at += q.rows * heads * dim;
            Some(start)
        })
        .collect();

    // Decoding items: every row's key blocks across the pool at once.
    let mut tasks: Vec<(usize, Task)> = Vec::new();
    let task = |(q, pos, cache): &'a (Queries<'a>, usize, Cache<'a>), row: usize, kv: usize| Task {
        q,
        cache,
        shape,
        scoring,
        row,
        kv,
        pos: pos + row,
    };
    for (item, &start) in items.iter().zip(&starts).filter(|(item, _)| few(&item.0)) {
        for i in 0..item.0.rows * kv_heads {
            let (row, kv) = (i / kv_heads, i % kv_heads);
            tasks.push((
                start + (row * heads + kv * group) * dim,
                task(item, row, kv),
            ));
        }
    }
    if !tasks.is_empty() {
        let jobs: Vec<(usize, (usize, usize))> = tasks
            .iter()
            .enumerate()
            .flat_map(|(i, (_, t))| t.blocks().into_iter().map(move |b| (i, b)))
            .collect();
        let partials: Vec<Partial> = jobs
            .par_iter()
            .with_min_len(1)
            .map(|&(i, b)| {
                let task = &tasks[i].1;
                SCRATCH.with_borrow_mut(|scratch| {
                    let (keys, values) = task.cache.block(task.kv, b, dim, scratch);
                    task.block(b.1 - b.0, keys, values)
                })
            })
            .collect();
        let mut first = 0;
        for (i, (at, task)) in tasks.iter().enumerate() {
            let n = jobs[first..].iter().take_while(|(j, _)| *j == i).count();
            task.combine(&partials[first..first + n], &mut out[*at..*at + width]);
            first += n;
        }
    }

    // Prompts: tiles of rows share each key block while it is in cache.
    for (item, &start) in items.iter().zip(&starts).filter(|(item, _)| !few(&item.0)) {
        let q = &item.0;
        let tiles = q.rows.div_ceil(ROW_TILE);
        let out_ptr = SendPtr(out[start..].as_mut_ptr());
        super::pool_groups(tiles * kv_heads, |i| {
            let (tile, kv) = (i / kv_heads, i % kv_heads);
            let rows = tile * ROW_TILE..((tile + 1) * ROW_TILE).min(q.rows);
            let tasks: Vec<Task> = rows.map(|row| task(item, row, kv)).collect();
            for (t, y) in tasks.iter().zip(run_tile(&tasks)) {
                // SAFETY: item i writes only its own rows' slices for its kv head, disjoint
                // from every other item's, inside this item's part of `out`, which outlives the
                // pool call.
                let dst = unsafe {
                    let at = (t.row * heads + kv * group) * dim;
                    std::slice::from_raw_parts_mut(out_ptr.get().add(at), width)
                };
                dst.copy_from_slice(&y);
            }
        });
    }
    out
}

thread_local! {
    /// Each pool thread's buffers for key and value blocks read from an f16 or q8_0 cache.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = Default::default();
}

/// Query rows that go through the key blocks together.
const ROW_TILE: usize = 16;

/// The rows of one tile, block by block: each key block is used by every row that sees it
/// before the next is read. Returns each row's output.
fn run_tile(tasks: &[Task]) -> Vec<Vec<f32>> {
    let blocks: Vec<Vec<(usize, usize)>> = tasks.iter().map(Task::blocks).collect();
    let mut partials: Vec<Vec<Partial>> =
        blocks.iter().map(|b| Vec::with_capacity(b.len())).collect();
    let mut next = vec![0; tasks.len()];
    let last = blocks
        .iter()
        .filter_map(|b| b.last())
        .map(|&(start, _)| start / KEY_BLOCK)
        .max()
        .unwrap_or(0);
    let Some(first) = tasks.first() else {
        return Vec::new();
    };
    let (cache, kv, dim) = (first.cache, first.kv, first.shape.dim);
    let mut scratch = Default::default();
    for number in 0..=last {
        // The tile's rows see parts of this block: read the part any of them sees once.
        let seen: Vec<Option<(usize, usize)>> = (0..tasks.len())
            .map(|t| {
                blocks[t]
                    .get(next[t])
                    .copied()
                    .filter(|r| r.0 / KEY_BLOCK == number)
            })
            .collect();
        let Some(start) = seen.iter().flatten().map(|r| r.0).min() else {
            continue;
        };
        let stop = seen.iter().flatten().map(|r| r.1).max().unwrap_or(start);
        let (keys, values) = cache.block(kv, (start, stop), dim, &mut scratch);
        for (t, task) in tasks.iter().enumerate() {
            if let Some((from, to)) = seen[t] {
                let part = (from - start) * dim..(to - start) * dim;
                partials[t].push(task.block(to - from, &keys[part.clone()], &values[part]));
                next[t] += 1;
            }
        }
    }
    tasks
        .iter()
        .zip(&partials)
        .map(|(task, p)| {
            let mut y = vec![0f32; task.shape.dim * task.shape.heads / task.shape.kv_heads];
            task.combine(p, &mut y);
            y
        })
        .collect()
}

/// One query row's heads that share one key/value head.
struct Task<'a> {
    q: &'a Queries<'a>,
    cache: &'a Cache<'a>,
    shape: Heads,
    scoring: Scoring,
    row: usize,
    kv: usize,
    /// The row's position: keys up to and including it are visible.
    pos: usize,
}

/// What one key block leaves for the combination, per head: the scores' maximum, the sum of
/// `exp(score - max)` and the values weighted by those exponentials.
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
}

impl Task<'_> {
    /// The visible key blocks: (first position, one past the last).
    fn blocks(&self) -> Vec<(usize, usize)> {
        let end = self.pos + 1;
        let first = self.scoring.window.map_or(0, |w| end.saturating_sub(w));
        let mut blocks = Vec::with_capacity((end - first).div_ceil(KEY_BLOCK) + 1);
        let mut start = first;
        while start < end {
            let stop = ((start / KEY_BLOCK + 1) * KEY_BLOCK).min(end);
            blocks.push((start, stop));
            start = stop;
        }
        blocks
    }

    /// Scores, exponentials and weighted values of `n` consecutive keys and values (in f32)
    /// for every head of the group.
    fn block(&self, n: usize, keys: &[f32], values: &[f32]) -> Partial {
        let Heads {
            heads,
            kv_heads,
            dim,
        } = self.shape;
        let group = heads / kv_heads;
        let queries: Vec<&[f32]> = (0..group)
            .map(|g| {
                let h = self.kv * group + g;
                &self.q.data[h * self.q.head_stride + self.row * self.q.row_stride..][..dim]
            })
            .collect();
        // Scores, one run of n (padded to whole lanes) per head.
        let padded = n.next_multiple_of(16);
        let mut scores = vec![f32::NEG_INFINITY; group * padded];
        dots(&queries, keys, &mut scores, padded, n);
        for s in scores.chunks_exact_mut(padded) {
            s[..n].iter_mut().for_each(|s| *s *= self.scoring.scale);
        }
        if let Some(cap) = self.scoring.softcap {
            for s in scores.iter_mut().filter(|s| s.is_finite()) {
                *s = cap * (*s / cap).tanh();
            }
        }
        let mut p = Partial {
            max: vec![0.0; group],
            sum: vec![0.0; group],
            acc: vec![0.0; group * dim],
        };
        for g in 0..group {
            let s = &mut scores[g * padded..][..padded];
            let max = lane_max(s);
            p.max[g] = max;
            p.sum[g] = exp_sum(s, max);
        }
        weighted_sums(&scores, padded, n, values, &mut p.acc);
        p
    }

    /// Joins the blocks' partials in order into `y` (the group's heads × head_dim).
    fn combine(&self, partials: &[Partial], y: &mut [f32]) {
        let dim = self.shape.dim;
        for (g, y) in y.chunks_exact_mut(dim).enumerate() {
            let max = partials
                .iter()
                .map(|p| p.max[g])
                .fold(f32::NEG_INFINITY, f32::max);
            y.fill(0.0);
            let mut sum = 0f32;
            for p in partials {
                let w = (p.max[g] - max).exp();
                sum += p.sum[g] * w;
                axpy(w, &p.acc[g * dim..][..dim], y);
            }
            let inv = 1.0 / sum;
            y.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Replaces each score s of `scores` (a multiple of [`G`] long, padded with -inf) by
/// `exp(s - max)` (padding by 0) and returns their sum.
#[inline(always)]
fn exp_sum(scores: &mut [f32], max: f32) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "fma"
    ))]
    if scores.len().is_multiple_of(16) {
        // SAFETY: AVX-512F is enabled at build time.
        return unsafe { avx512::exp_sum(scores, max) };
    }
    exp_sum_portable(scores, max)
}

fn exp_sum_portable(scores: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; G];
    for chunk in scores.chunks_exact_mut(G) {
        let x: [f32; G] = std::array::from_fn(|i| chunk[i] - max);
        let e = exp(x);
        for i in 0..G {
            // Padding stays at zero (exp clamps -inf to e^-87, not 0).
            let e = if chunk[i] == f32::NEG_INFINITY {
                0.0
            } else {
                e[i]
            };
            chunk[i] = e;
            lanes[i] += e;
        }
    }
    reduce(lanes)
}

/// `out[h * stride + j] = queries[h] · keys[j]` for the first `n` rows of `keys` (each as long
/// as a query).
#[inline(always)]
fn dots(queries: &[&[f32]], keys: &[f32], out: &mut [f32], stride: usize, n: usize) {
    let d = queries[0].len();
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "fma"
    ))]
    if d.is_multiple_of(16) {
        return avx512::dots(queries, keys, out, stride, n);
    }
    for (q, out) in queries.iter().zip(out.chunks_exact_mut(stride)) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        if d.is_multiple_of(8) {
            avx2::dots(q, keys, &mut out[..n]);
            continue;
        }
        for (o, k) in out[..n].iter_mut().zip(keys.chunks_exact(d)) {
            *o = dot(q, k);
        }
    }
}

/// Calls `four` with pointers to the first `n` rows of `keys` (each `d` floats) four at a time
/// and stores its scores for H queries at `out[h * stride + j]`. A short last group repeats its
/// last key: the same arithmetic, its result dropped, so every key's score is formed alike.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
fn four_keys_at_a_time<const H: usize>(
    keys: &[f32],
    d: usize,
    n: usize,
    out: &mut [f32],
    stride: usize,
    four: impl Fn([*const f32; 4]) -> [[f32; 4]; H],
) {
    assert!(keys.len() >= n * d && out.len() >= (H - 1) * stride + n);
    for j in (0..n).step_by(4) {
        let rows: [usize; 4] = std::array::from_fn(|r| (j + r).min(n - 1));
        let scores = four(rows.map(|r| keys[r * d..][..d].as_ptr()));
        for (h, s) in scores.iter().enumerate() {
            for (r, v) in s.iter().enumerate().take(n - j) {
                out[h * stride + j + r] = *v;
            }
        }
    }
}

/// `acc[h] += Σ_j w[h * stride + j] · values[j]` over the first `n` rows of `values`, for each
/// head h whose `dim` outputs `acc` holds one after another.
#[inline(always)]
fn weighted_sums(w: &[f32], stride: usize, n: usize, values: &[f32], acc: &mut [f32]) {
    let heads = w.len() / stride;
    let d = acc.len() / heads;
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "fma"
    ))]
    if d.is_multiple_of(64) {
        return avx512::weighted_sums(w, stride, n, values, acc);
    }
    for (w, acc) in w.chunks_exact(stride).zip(acc.chunks_exact_mut(d)) {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        if d.is_multiple_of(32) {
            avx2::weighted_sum(&w[..n], values, acc);
            continue;
        }
        for (&w, v) in w[..n].iter().zip(values.chunks_exact(d)) {
            axpy(w, v, acc);
        }
    }
}

/// The two loops in 256-bit vectors, compiled in when the build targets a CPU with AVX2 and
/// FMA (candor builds for the CPU it runs on). Like the portable loops, each result is computed
/// in one fixed order.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(unsafe_op_in_unsafe_fn)]
mod avx2 {
    use std::arch::x86_64::*;

    /// Dot products of `q` with four keys at once; every key goes through the same
    /// eight-lane chain and the same reduction, whichever of the four it is.
    pub fn dots(q: &[f32], keys: &[f32], out: &mut [f32]) {
        let (d, n) = (q.len(), out.len());
        assert!(d.is_multiple_of(8));
        // SAFETY: AVX2 and FMA are enabled at build time; each key pointer is at d floats
        // (`four_keys_at_a_time`'s promise) and q holds d.
        super::four_keys_at_a_time::<1>(keys, d, n, out, n, |k| unsafe {
            [dot4(q.as_ptr(), k, d)]
        });
    }

    #[inline(always)]
    unsafe fn dot4(q: *const f32, k: [*const f32; 4], d: usize) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < d {
            let qv = _mm256_loadu_ps(q.add(i));
            for r in 0..4 {
                acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[r].add(i)), acc[r]);
            }
            i += 8;
        }
        sum4(acc)
    }

    /// The sums of four eight-lane accumulators, each folded pairwise in the same order.
    #[inline(always)]
    pub unsafe fn sum4(acc: [__m256; 4]) -> [f32; 4] {
        let s01 = _mm256_hadd_ps(acc[0], acc[1]);
        let s23 = _mm256_hadd_ps(acc[2], acc[3]);
        let s = _mm256_hadd_ps(s01, s23);
        let sum = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sum);
        out
    }

    /// `acc += Σ_j w[j] · values[j]`, 32 dimensions at a time kept in registers.
    pub fn weighted_sum(w: &[f32], values: &[f32], acc: &mut [f32]) {
        let d = acc.len();
        assert!(d.is_multiple_of(32) && values.len() >= w.len() * d);
        for c in (0..d).step_by(32) {
            // SAFETY: AVX2 and FMA are enabled at build time; reads stay within the first
            // w.len() rows of `values` and within `acc` (c + 32 <= d).
            unsafe {
                let a = acc.as_mut_ptr().add(c);
                let mut sum = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(a.add(o)));
                for (j, &wj) in w.iter().enumerate() {
                    let wv = _mm256_set1_ps(wj);
                    let v = values.as_ptr().add(j * d + c);
                    for (o, s) in sum.iter_mut().enumerate() {
                        *s = _mm256_fmadd_ps(wv, _mm256_loadu_ps(v.add(8 * o)), *s);
                    }
                }
                for (o, s) in sum.iter().enumerate() {
                    _mm256_storeu_ps(a.add(8 * o), *s);
                }
            }
        }
    }
}

/// The two loops in 512-bit vectors (with the 256-bit module's final reduction) for heads a multiple of 16 (dot products) or 64 (weighted
/// sums) wide, up to four heads of a group at once so that each key and value vector loaded
/// serves them all. Each score and each output still goes through its own chain of the same
/// operations in the same order, whichever heads share the pass.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "fma"
))]
#[allow(unsafe_op_in_unsafe_fn)]
mod avx512 {
    use std::arch::x86_64::*;

    /// Heads per pass: four heads × four keys (or four vectors of values) of accumulators
    /// leave registers for the loads.
    const HEADS: usize = 4;

    pub fn dots(queries: &[&[f32]], keys: &[f32], out: &mut [f32], stride: usize, n: usize) {
        for (c, qs) in queries.chunks(HEADS).enumerate() {
            let out = &mut out[c * HEADS * stride..];
            match qs.len() {
                1 => dots_of::<1>(qs, keys, out, stride, n),
                2 => dots_of::<2>(qs, keys, out, stride, n),
                3 => dots_of::<3>(qs, keys, out, stride, n),
                _ => dots_of::<4>(qs, keys, out, stride, n),
            }
        }
    }

    fn dots_of<const H: usize>(
        qs: &[&[f32]],
        keys: &[f32],
        out: &mut [f32],
        stride: usize,
        n: usize,
    ) {
        let d = qs[0].len();
        assert!(d.is_multiple_of(16) && qs.len() == H && qs.iter().all(|q| q.len() == d));
        let q: [*const f32; H] = std::array::from_fn(|h| qs[h].as_ptr());
        // SAFETY: AVX-512F is enabled at build time; each key pointer is at d floats
        // (`four_keys_at_a_time`'s promise) and each query holds d.
        super::four_keys_at_a_time::<H>(keys, d, n, out, stride, |k| unsafe { dot4::<H>(q, k, d) });
    }

    /// Four keys' dot products with H queries: sixteen lanes per key, folded to eight, then
    /// summed pairwise across the four keys.
    #[inline(always)]
    unsafe fn dot4<const H: usize>(
        q: [*const f32; H],
        k: [*const f32; 4],
        d: usize,
    ) -> [[f32; 4]; H] {
        let mut acc = [[_mm512_setzero_ps(); 4]; H];
        let mut i = 0;
        while i < d {
            let kv = k.map(|k| _mm512_loadu_ps(k.add(i)));
            for h in 0..H {
                let qv = _mm512_loadu_ps(q[h].add(i));
                for r in 0..4 {
                    acc[h][r] = _mm512_fmadd_ps(qv, kv[r], acc[h][r]);
                }
            }
            i += 16;
        }
        acc.map(|acc| {
            let half = acc.map(|a| {
                _mm256_add_ps(
                    _mm512_castps512_ps256(a),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)),
                )
            });
            super::avx2::sum4(half)
        })
    }

    /// `super::exp_sum` sixteen lanes at a time, bit for bit: the portable `exp`'s operations
    /// in the same order (`activation::exp`; AVX-512's `scalef` multiplies by the same exact
    /// power of two), summed into eight lanes half a vector after the other.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_sum(scores: &mut [f32], max: f32) -> f32 {
        use crate::kernels::activation::{EXP_POLY as P, LN2_HI, LN2_LO, LOG2E, ROUND};
        let maxv = _mm512_set1_ps(max);
        let (floor, ceil) = (_mm512_set1_ps(-87.0), _mm512_set1_ps(88.0));
        let log2e = _mm512_set1_ps(LOG2E);
        let round = _mm512_set1_ps(ROUND);
        let (hi, lo) = (_mm512_set1_ps(LN2_HI), _mm512_set1_ps(LN2_LO));
        let one = _mm512_set1_ps(1.0);
        let mut sum = _mm256_setzero_ps();
        for chunk in scores.chunks_exact_mut(16) {
            let s = _mm512_loadu_ps(chunk.as_ptr());
            let live = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(s, _mm512_set1_ps(f32::NEG_INFINITY));
            let x = _mm512_min_ps(_mm512_max_ps(_mm512_sub_ps(s, maxv), floor), ceil);
            let n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, log2e), round), round);
            let r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, hi)), _mm512_mul_ps(n, lo));
            let mut p = _mm512_set1_ps(P[0]);
            for &c in &P[1..] {
                p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(c));
            }
            let e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), one);
            let e = _mm512_maskz_mov_ps(live, _mm512_scalef_ps(e, n));
            _mm512_storeu_ps(chunk.as_mut_ptr(), e);
            sum = _mm256_add_ps(sum, _mm512_castps512_ps256(e));
            sum = _mm256_add_ps(
                sum,
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)),
            );
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        super::reduce(lanes)
    }

    pub fn weighted_sums(w: &[f32], stride: usize, n: usize, values: &[f32], acc: &mut [f32]) {
        let heads = w.len() / stride;
        let d = acc.len() / heads;
        for (c, acc) in acc.chunks_mut(HEADS * d).enumerate() {
            let w = &w[c * HEADS * stride..];
            match acc.len() / d {
                1 => weighted_of::<1>(w, stride, n, values, acc),
                2 => weighted_of::<2>(w, stride, n, values, acc),
                3 => weighted_of::<3>(w, stride, n, values, acc),
                _ => weighted_of::<4>(w, stride, n, values, acc),
            }
        }
    }

    /// `acc[h] += Σ_j w[h·stride + j] · values[j]`, 64 dimensions of H heads in registers.
    fn weighted_of<const H: usize>(
        w: &[f32],
        stride: usize,
        n: usize,
        values: &[f32],
        acc: &mut [f32],
    ) {
        let d = acc.len() / H;
        assert!(
            d.is_multiple_of(64)
                && acc.len() == H * d
                && values.len() >= n * d
                && w.len() >= (H - 1) * stride + n
        );
        for c in (0..d).step_by(64) {
            // SAFETY: AVX-512F is enabled at build time; reads stay within the first n rows of
            // `values`, the first n weights of each head's run, and `acc` (h·d + c + 64 <= H·d).
            unsafe {
                let a: [*mut f32; H] = std::array::from_fn(|h| acc.as_mut_ptr().add(h * d + c));
                let mut sum = a.map(|a| [0, 16, 32, 48].map(|o| _mm512_loadu_ps(a.add(o))));
                for j in 0..n {
                    let v = values.as_ptr().add(j * d + c);
                    let vv = [0, 16, 32, 48].map(|o| _mm512_loadu_ps(v.add(o)));
                    for (h, sum) in sum.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*w.get_unchecked(h * stride + j));
                        for (s, v) in sum.iter_mut().zip(&vv) {
                            *s = _mm512_fmadd_ps(wv, *v, *s);
                        }
                    }
                }
                for (a, sum) in a.iter().zip(&sum) {
                    for (o, s) in sum.iter().enumerate() {
                        _mm512_storeu_ps(a.add(16 * o), *s);
                    }
                }
            }
        }
    }
}

/// Lanes of the portable dot product.
const LANES: usize = 16;

/// `a · b`, in [`LANES`] fused multiply-add lanes summed pairwise.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(0f32, |t, (x, y)| x.mul_add(*y, t));
    for (x, y) in ca.zip(cb) {
        // Whole arrays, so that the compiler sees vector-wide operations.
        let x: &[f32; LANES] = x.try_into().expect("chunk");
        let y: &[f32; LANES] = y.try_into().expect("chunk");
        acc = std::array::from_fn(|i| x[i].mul_add(y[i], acc[i]));
    }
    reduce(acc) + tail
}

/// `y += w · x`.
#[inline(always)]
fn axpy(w: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = w.mul_add(*x, *y);
    }
}

/// Sums lanes pairwise (halves folded onto each other), a fixed order.
#[inline(always)]
fn reduce<const N: usize>(mut a: [f32; N]) -> f32 {
    let mut w = N / 2;
    while w > 0 {
        for i in 0..w {
            a[i] += a[i + w];
        }
        w /= 2;
    }
    a[0]
}

/// The largest of `s` (whose length is a multiple of [`G`]).
#[inline(always)]
fn lane_max(s: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; G];
    for chunk in s.chunks_exact(G) {
        for i in 0..G {
            m[i] = m[i].max(chunk[i]);
        }
    }
    m.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::CacheType::{self, F32};
    use crate::layers::{attention, attention_mask};
    use candle_core::{Device, Tensor};

    /// Scores scaled, neither capped nor windowed.
    fn plain(scale: f32) -> Scoring {
        Scoring {
            scale,
            softcap: None,
            window: None,
        }
    }

    /// Queries laid out head by head, `rows` rows of `d` each.
    fn queries(data: &[f32], rows: usize, d: usize) -> Queries<'_> {
        Queries {
            data,
            head_stride: rows * d,
            row_stride: d,
            rows,
        }
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                (x % 1000) as f32 / 250.0 - 2.0
            })
            .collect()
    }

    /// The cache as candle's path takes it: (1, kv_heads, len, d).
    fn tensor(data: &[f32], kv: usize, cap: usize, len: usize, d: usize) -> Tensor {
        Tensor::from_vec(data.to_vec(), (1, kv, cap, d), &Device::Cpu)
            .unwrap()
            .narrow(2, 0, len)
            .unwrap()
    }

    /// Matches candle's attention within float rounding (scores here reach ±25, so a few units
    /// in the last place of a score move the output by ~1e-5), for prompts and single rows, with
    /// grouped heads, spare capacity, blocks that cross KEY_BLOCK, a soft cap and a window.
    #[test]
    fn matches_candle_attention() {
        // Head widths that take every code path: portable, 256- and 512-bit.
        for (heads, kv, d) in [(6, 2, 16), (9, 3, 64), (4, 1, 96), (4, 2, 256)] {
            matches_candle_attention_at(heads, kv, d);
        }
    }

    fn matches_candle_attention_at(heads: usize, kv: usize, d: usize) {
        let cap = KEY_BLOCK + 80;
        let k = noise(kv * cap * d, 1);
        let v = noise(kv * cap * d, 2);
        for (rows, pos) in [(1, 0), (1, KEY_BLOCK + 40), (7, KEY_BLOCK - 3), (20, 0)] {
            for (softcap, window) in [(None, None), (Some(5.0), None), (None, Some(7))] {
                let qd = noise(heads * rows * d, 3 + rows as u32);
                let q = queries(&qd, rows, d);
                let scoring = Scoring {
                    scale: 0.25,
                    softcap,
                    window,
                };
                let (kr, vr) = (Rows::from_f32(F32, &k), Rows::from_f32(F32, &v));
                let cache = Cache {
                    k: &kr,
                    v: &vr,
                    capacity: cap,
                };
                let shape = Heads {
                    heads,
                    kv_heads: kv,
                    dim: d,
                };
                let got = attend(&q, pos, &cache, shape, scoring);
                let len = pos + rows;
                let qt = Tensor::from_vec(qd.clone(), (1, heads, rows, d), &Device::Cpu).unwrap();
                let mask = attention_mask(rows, pos, window, &Device::Cpu).unwrap();
                let (kt, vt) = (tensor(&k, kv, cap, len, d), tensor(&v, kv, cap, len, d));
                let want = attention(&qt, &kt, &vt, 0.25, softcap.map(f64::from), mask.as_ref())
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "d {d} rows {rows} pos {pos} {softcap:?} {window:?} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The vector softmax exponentials are the portable ones bit for bit, padding included.
    #[test]
    fn exp_sum_is_the_portable_one() {
        let mut a: Vec<f32> = noise(64, 9).iter().map(|x| x * 30.0).collect();
        a[60..].fill(f32::NEG_INFINITY);
        let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut b = a.clone();
        let (sa, sb) = (exp_sum(&mut a, max), exp_sum_portable(&mut b, max));
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert_eq!(a, b);
        assert!(a[60..].iter().all(|&e| e == 0.0));
    }

    /// A row's result is bit for bit the same alone, among other rows, and split across
    /// threads or not.
    #[test]
    fn a_row_does_not_depend_on_its_company() {
        let (heads, kv, d, cap) = (4, 1, 32, 3 * KEY_BLOCK);
        let k = noise(kv * cap * d, 4);
        let v = noise(kv * cap * d, 5);
        let rows = 12;
        let qd = noise(heads * rows * d, 6);
        let shape = Heads {
            heads,
            kv_heads: kv,
            dim: d,
        };
        let scoring = plain(0.2);
        let pos = 2 * KEY_BLOCK + 5;
        for kind in CacheType::ALL {
            let_a_row_alone(kind, &k, &v, &qd, (rows, cap, pos), shape, scoring);
        }
    }

    fn let_a_row_alone(
        kind: CacheType,
        k: &[f32],
        v: &[f32],
        qd: &[f32],
        (rows, cap, pos): (usize, usize, usize),
        shape: Heads,
        scoring: Scoring,
    ) {
        let Heads { heads, dim: d, .. } = shape;
        let (kr, vr) = (Rows::from_f32(kind, k), Rows::from_f32(kind, v));
        let cache = Cache {
            k: &kr,
            v: &vr,
            capacity: cap,
        };
        let all = attend(&queries(qd, rows, d), pos, &cache, shape, scoring);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for r in [0, 5, rows - 1] {
            // Row r alone: its heads, one row each.
            let one: Vec<f32> = (0..heads)
                .flat_map(|h| qd[h * rows * d + r * d..][..d].to_vec())
                .collect();
            let q = Queries {
                data: &one,
                head_stride: d,
                row_stride: d,
                rows: 1,
            };
            let alone = attend(&q, pos + r, &cache, shape, scoring);
            let split = pool.install(|| attend(&q, pos + r, &cache, shape, scoring));
            let want = &all[r * heads * d..][..heads * d];
            assert_eq!(alone, want, "{kind}: row {r} alone");
            assert_eq!(split, want, "{kind}: row {r} split across threads");
        }
    }

    /// f16 and q8_0 caches give the f32 cache's attention within their rounding: the outputs
    /// are averages of values of magnitude ≤ 2, so f16 (2⁻¹¹ relative) stays within 2e-3 and
    /// q8_0 (half a step of max/127 per value, ±2/254 here) within 2e-2.
    #[test]
    fn smaller_formats_stay_close_to_f32() {
        let (heads, kv, d, cap) = (4, 2, 64, 2 * KEY_BLOCK);
        let (k, v) = (noise(kv * cap * d, 11), noise(kv * cap * d, 12));
        let rows = 3;
        let qd: Vec<f32> = noise(heads * rows * d, 13)
            .iter()
            .map(|x| x * 0.3)
            .collect();
        let q = queries(&qd, rows, d);
        let shape = Heads {
            heads,
            kv_heads: kv,
            dim: d,
        };
        let scoring = plain(0.125);
        let run = |kind| {
            let (kr, vr) = (Rows::from_f32(kind, &k), Rows::from_f32(kind, &v));
            let cache = Cache {
                k: &kr,
                v: &vr,
                capacity: cap,
            };
            attend(&q, KEY_BLOCK + 9, &cache, shape, scoring)
        };
        let exact = run(F32);
        for (kind, tolerance) in [(CacheType::F16, 2e-3), (CacheType::Q8_0, 2e-2)] {
            let got = run(kind);
            let worst = got
                .iter()
                .zip(&exact)
                .map(|(g, w)| (g - w).abs())
                .fold(0f32, f32::max);
            assert!(worst <= tolerance, "{kind}: off by {worst}");
            assert!(
                worst > 0.0,
                "{kind} rounds nothing: not read in its own format"
            );
        }
    }
}
