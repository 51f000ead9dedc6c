//! Attention on the CPU, reading each sequence's KV cache where it lies.
//!
//! Two reasons not to go through candle's matrix products here. Speed: gemm repacks the whole
//! cache for every product, which after a few thousand tokens of context is most of a decoding
//! step. Exactness: candle's product rounds differently for a few query rows than for many, so
//! a token's keys came out different in the last bits whether it was read in a prompt or
//! decoded, and a prompt continued from a cached prefix could not match a fresh read.
//!
//! Here the keys are taken in blocks of [`KEY_BLOCK`] positions aligned to absolute positions.
//! All the query vectors that see a block go through it together, as two small matrix
//! products kept in registers: scores against the block's keys (stored dimension by dimension,
//! so a vector holds 16 keys' scores and no sum runs across lanes), then the exponentials'
//! weighted sum of its values. Each score and each output is one chain of fused multiply-adds
//! in a fixed order, whichever other vectors share the pass, and a block's softmax
//! (maximum, sum of exponentials, weighted values) is merged into a row's running one in block
//! order. So a row's result depends only on its query, its position and the cache before it —
//! not on how many rows share the call, whether it is read in a prompt or decoded, nor on how
//! the work is split across threads (blocks run in parallel when there are few rows).

use super::activation::exp;
use super::packed::G;
use super::SendPtr;
use crate::kv_cache::{KernelView, Rows, KEY_CHUNK};
use candle_core::{DType, Tensor};
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

/// One layer's cache of one sequence, in the layout of `kv_cache`: per kv head a run of
/// `capacity` positions, keys in chunks of [`KEY_CHUNK`] positions, values position by
/// position, filled up to at least the last query's position, in any of the cache's formats
/// (f16 read in place, converted as the products load it; q8_0 decoded into f32 a block at a
/// time).
#[derive(Clone)]
pub(crate) struct Cache<'a> {
    pub k: &'a Rows,
    pub v: &'a Rows,
    pub capacity: usize,
}

/// A block of keys and values: keys of positions `start..` (a multiple of [`KEY_CHUNK`]) in
/// whole chunks, values of `start..stop`.
struct Block<'a, E> {
    start: usize,
    keys: &'a [E],
    values: &'a [E],
}

/// Query vectors up to which a block of an f16 cache is read in place, each vector converted as
/// it is loaded: for more, each key would be converted once per tile of query vectors, and
/// converting the block once into f32 is cheaper (the default model, 2 threads, 2048 tokens of
/// context: decoding 199 / 201 → 249 / 234 tok/s in place; 512-token prompts 848 / 837 → 744 /
/// 763 in place, so they keep the conversion).
const IN_PLACE_QUERIES: usize = 8;

/// A block as the cache holds it: f32 (stored so, or decoded), or f16.
enum AnyBlock<'a> {
    F32(Block<'a, f32>),
    F16(Block<'a, half::f16>),
}

/// A number the products read from the cache, as f32.
pub(crate) trait Elem: Copy {
    /// Whether it is an f16 (vector loads convert it), else an f32.
    const F16: bool;
    fn f32(self) -> f32;
}

impl Elem for f32 {
    const F16: bool = false;
    fn f32(self) -> f32 {
        self
    }
}

impl Elem for half::f16 {
    const F16: bool = true;
    fn f32(self) -> f32 {
        self.to_f32()
    }
}

impl Cache<'_> {
    /// Keys and values of kv head `kv` from position `start` rounded down to a whole chunk to
    /// `stop` (keys to `stop` rounded up), for `queries` query vectors: f16 read in place for
    /// a few of them, else decoded into the scratch buffers where the cache holds another
    /// format than f32.
    fn block<'s>(
        &'s self,
        kv: usize,
        (start, stop): (usize, usize),
        (dim, queries): (usize, usize),
        scratch: &'s mut [Vec<f32>; 2],
    ) -> AnyBlock<'s> {
        let start = start / KEY_CHUNK * KEY_CHUNK;
        let at = (kv * self.capacity + start) * dim;
        let (keys, values) = (stop.next_multiple_of(KEY_CHUNK) - start, stop - start);
        if let (Some(k), Some(v)) = (self.k.f16(), self.v.f16()) {
            if queries <= IN_PLACE_QUERIES {
                return AnyBlock::F16(Block {
                    start,
                    keys: &k[at..at + keys * dim],
                    values: &v[at..at + values * dim],
                });
            }
        }
        let [ks, vs] = scratch;
        AnyBlock::F32(Block {
            start,
            keys: self.k.read_keys(at, keys * dim, dim, ks),
            values: self.v.read(at, values * dim, vs),
        })
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

/// One sequence's share of a step: its query rows, (rows, heads, head_dim) in row order as the
/// projections give them, the cache they attend over (their own keys already in it), and the
/// first row's position.
pub(crate) struct Part<'a> {
    pub q: &'a [f32],
    pub cache: KernelView<'a>,
    pub pos: usize,
}

/// Attends for every part; returns their rows one after the other, (rows, heads·head_dim).
pub(crate) fn attend_parts(parts: &[Part], shape: Heads, scoring: Scoring) -> Vec<f32> {
    let row = shape.heads * shape.dim;
    let items: Vec<_> = parts
        .iter()
        .map(|part| {
            let queries = Queries {
                data: part.q,
                head_stride: shape.dim,
                row_stride: row,
                rows: part.q.len() / row,
            };
            let cache = Cache {
                k: part.cache.k,
                v: part.cache.v,
                capacity: part.cache.capacity,
            };
            (queries, part.pos, cache)
        })
        .collect();
    attend_many(&items, shape, scoring)
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
    let task = |(q, pos, cache): &'a (Queries<'a>, usize, Cache<'a>), row: usize, kv: usize| Task {
        q,
        cache,
        shape,
        scoring,
        row,
        kv,
        pos: pos + row,
    };

    // Decoding items: every row's key blocks across the pool at once.
    let mut tasks: Vec<(usize, Task)> = Vec::new();
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
            .flat_map(|(i, (_, t))| t.blocks().map(move |b| (i, b)))
            .collect();
        let partials: Vec<Softmax> = jobs
            .par_iter()
            .with_min_len(1)
            .map(|&(i, seen)| {
                let task = &tasks[i].1;
                SCRATCH.with_borrow_mut(|s| {
                    let shape = (dim, task.group());
                    let block = task.cache.block(task.kv, seen, shape, &mut s.kv);
                    let mut partial = Softmax::default();
                    through_any(&[(task, seen)], &block, &mut s.scores, &mut partial);
                    partial
                })
            })
            .collect();
        let mut first = 0;
        for (i, (at, _)) in tasks.iter().enumerate() {
            let n = jobs[first..].iter().take_while(|(j, _)| *j == i).count();
            let mut running = Softmax::empty(group, dim);
            for partial in &partials[first..first + n] {
                (0..group).for_each(|g| running.merge(g, partial, g));
            }
            running.finish(&mut out[*at..*at + width]);
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
            let y = SCRATCH.with_borrow_mut(|s| run_tile(&tasks, s));
            for (t, y) in tasks.iter().zip(y.chunks_exact(width)) {
                // SAFETY: item i writes only its own rows' slices for its kv head, disjoint
                // from every other item's, inside this item's part of `out`, which outlives the
                // pool call.
                let dst = unsafe {
                    let at = (t.row * heads + kv * group) * dim;
                    std::slice::from_raw_parts_mut(out_ptr.get().add(at), width)
                };
                dst.copy_from_slice(y);
            }
        });
    }
    out
}

/// Each pool thread's buffers: key and value blocks read from an f16 or q8_0 cache, a block's
/// scores and its softmax.
#[derive(Default)]
struct Scratch {
    kv: [Vec<f32>; 2],
    scores: Vec<f32>,
    block: Softmax,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
}

/// Query rows that go through the key blocks together.
const ROW_TILE: usize = 64;

/// The rows of one tile (all of one kv head), block by block: each key block is read once and
/// goes through with every row that sees part of it. Returns the rows' outputs one after the
/// other (each the group's heads × head_dim).
fn run_tile(tasks: &[Task], scratch: &mut Scratch) -> Vec<f32> {
    let Some(first) = tasks.first() else {
        return Vec::new();
    };
    let (cache, kv, dim, group) = (first.cache, first.kv, first.shape.dim, first.group());
    let visible: Vec<(usize, usize)> = tasks.iter().map(Task::visible).collect();
    let lo = visible.iter().map(|v| v.0).min().unwrap_or(0) / KEY_BLOCK;
    let hi = visible
        .iter()
        .map(|v| v.1)
        .max()
        .unwrap_or(0)
        .div_ceil(KEY_BLOCK);
    let mut running = Softmax::empty(tasks.len() * group, dim);
    for number in lo..hi {
        let (from, to) = (number * KEY_BLOCK, (number + 1) * KEY_BLOCK);
        let seen: Vec<(usize, (usize, usize))> = visible
            .iter()
            .enumerate()
            .map(|(t, v)| (t, (v.0.max(from), v.1.min(to))))
            .filter(|(_, (a, b))| a < b)
            .collect();
        let Some(start) = seen.iter().map(|(_, s)| s.0).min() else {
            continue;
        };
        let stop = seen.iter().map(|(_, s)| s.1).max().unwrap_or(start);
        let Scratch {
            kv: kvs,
            scores,
            block: partial,
        } = scratch;
        let block = cache.block(kv, (start, stop), (dim, seen.len() * group), kvs);
        let rows: Vec<(&Task, (usize, usize))> =
            seen.iter().map(|&(t, s)| (&tasks[t], s)).collect();
        through_any(&rows, &block, scores, partial);
        for (i, &(t, _)) in seen.iter().enumerate() {
            (0..group).for_each(|g| running.merge(t * group + g, partial, i * group + g));
        }
    }
    let mut y = vec![0f32; tasks.len() * group * dim];
    running.finish(&mut y);
    y
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

impl Task<'_> {
    fn group(&self) -> usize {
        self.shape.heads / self.shape.kv_heads
    }

    /// Head `g` of the group's query.
    fn query(&self, g: usize) -> &[f32] {
        let h = self.kv * self.group() + g;
        &self.q.data[h * self.q.head_stride + self.row * self.q.row_stride..][..self.shape.dim]
    }

    /// The positions the row sees: (first, one past the last).
    fn visible(&self) -> (usize, usize) {
        let end = self.pos + 1;
        (
            self.scoring.window.map_or(0, |w| end.saturating_sub(w)),
            end,
        )
    }

    /// The visible positions cut at key block boundaries.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> {
        let (first, end) = self.visible();
        (first / KEY_BLOCK..end.div_ceil(KEY_BLOCK))
            .map(move |b| (first.max(b * KEY_BLOCK), end.min((b + 1) * KEY_BLOCK)))
    }
}

/// Softmaxes of query vectors over some keys: per vector the scores' maximum, the sum of
/// `exp(score - max)` and the values weighted by those exponentials (`dim` each).
#[derive(Default)]
struct Softmax {
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
    dim: usize,
}

impl Softmax {
    /// `n` vectors over no keys yet.
    fn empty(n: usize, dim: usize) -> Self {
        let mut s = Softmax::default();
        s.reset(n, dim);
        s
    }

    fn reset(&mut self, n: usize, dim: usize) {
        self.dim = dim;
        self.max.clear();
        self.max.resize(n, f32::NEG_INFINITY);
        self.sum.clear();
        self.sum.resize(n, 0.0);
        self.acc.clear();
        self.acc.resize(n * dim, 0.0);
    }

    /// Takes vector `j` of `other` (over later keys) into vector `i`: both rescaled to the
    /// larger maximum. From an empty vector the result is `other`'s exactly (scaled by
    /// exp(0) = 1, its empty side by exp(-inf) = 0).
    fn merge(&mut self, i: usize, other: &Softmax, j: usize) {
        let max = self.max[i].max(other.max[j]);
        // exp(0) is 1 exactly: the side that holds the maximum needs no call.
        let scale = |m: f32| if m == max { 1.0 } else { (m - max).exp() };
        let (a, b) = (scale(self.max[i]), scale(other.max[j]));
        self.sum[i] = self.sum[i] * a + other.sum[j] * b;
        let dim = self.dim;
        let theirs = &other.acc[j * dim..][..dim];
        for (y, x) in self.acc[i * dim..][..dim].iter_mut().zip(theirs) {
            *y = *y * a + *x * b;
        }
        self.max[i] = max;
    }

    /// The attention outputs, vector after vector: weighted values over the sum.
    fn finish(&self, y: &mut [f32]) {
        for ((y, acc), sum) in y
            .chunks_exact_mut(self.dim)
            .zip(self.acc.chunks_exact(self.dim))
            .zip(&self.sum)
        {
            let inv = 1.0 / sum;
            for (y, a) in y.iter_mut().zip(acc) {
                *y = a * inv;
            }
        }
    }
}

/// [`through_block`] for a block in whichever form [`Cache::block`] gave it.
fn through_any(
    rows: &[(&Task, (usize, usize))],
    block: &AnyBlock,
    scores: &mut Vec<f32>,
    out: &mut Softmax,
) {
    match block {
        AnyBlock::F32(b) => through_block(rows, b, scores, out),
        AnyBlock::F16(b) => through_block(rows, b, scores, out),
    }
}

/// The softmax over one block of every query vector of `rows` (each row's group of heads, in
/// order), where each row sees the positions given with it: scores, the scale and soft cap,
/// positions a row does not see at -inf, maxima and exponentials, then the weighted values.
fn through_block<E: Elem>(
    rows: &[(&Task, (usize, usize))],
    block: &Block<E>,
    scores: &mut Vec<f32>,
    out: &mut Softmax,
) {
    let Some((first, _)) = rows.first() else {
        return;
    };
    let (dim, group, scoring) = (first.shape.dim, first.group(), first.scoring);
    let n = block.keys.len() / dim;
    let queries: Vec<&[f32]> = rows
        .iter()
        .flat_map(|(t, _)| (0..group).map(move |g| t.query(g)))
        .collect();
    scores.clear();
    scores.resize(queries.len() * n, 0.0);
    score(&queries, block.keys, n, scores);
    out.reset(queries.len(), dim);
    for (v, s) in scores.chunks_exact_mut(n).enumerate() {
        // The keys the row sees are one run (all of them, commonly): scale (and cap) it, hide
        // the rest.
        let (from, to) = rows[v / group].1;
        let lo = from.saturating_sub(block.start).min(n);
        let hi = to.saturating_sub(block.start).clamp(lo, n);
        s[..lo].fill(f32::NEG_INFINITY);
        s[hi..].fill(f32::NEG_INFINITY);
        let seen = &mut s[lo..hi];
        seen.iter_mut().for_each(|s| *s *= scoring.scale);
        if let Some(cap) = scoring.softcap {
            super::activation::softcap(seen, cap);
        }
        let max = lane_max(s);
        out.max[v] = max;
        out.sum[v] = exp_sum(s, max);
    }
    weigh(scores, n, block.values, &mut out.acc);
}

/// Replaces each score s of `scores` (a multiple of [`KEY_CHUNK`] long, -inf where not
/// visible) by `exp(s - max)` (-inf by 0) and returns their sum.
#[inline(always)]
fn exp_sum(scores: &mut [f32], max: f32) -> f32 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "fma"
    ))]
    if scores.len().is_multiple_of(16) {
        // SAFETY: AVX-512F is enabled at build time.
        return unsafe { simd::exp_sum(scores, max) };
    }
    exp_sum_portable(scores, max)
}

fn exp_sum_portable(scores: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; G];
    for chunk in scores.chunks_exact_mut(G) {
        let x: [f32; G] = std::array::from_fn(|i| chunk[i] - max);
        let e = exp(x);
        for i in 0..G {
            // Hidden positions give zero (exp clamps -inf to e^-87, not 0).
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

/// `out[v * n + j] = queries[v] · key j`, the `n` keys in the cache's chunked layout (each
/// chunk `dim` rows of [`KEY_CHUNK`] keys). Each score is one chain of fused multiply-adds over
/// the dimensions in order, from zero, in every form.
fn score<E: Elem>(queries: &[&[f32]], keys: &[E], n: usize, out: &mut [f32]) {
    let dim = keys.len() / n;
    assert!(n.is_multiple_of(KEY_CHUNK) && keys.len() == n * dim && out.len() == queries.len() * n);
    assert!(queries.iter().all(|q| q.len() == dim));
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    return simd::score::<simd::Widest, E>(queries, keys, n, out);
    #[allow(unreachable_code)]
    score_portable(queries, keys, n, out)
}

fn score_portable<E: Elem>(queries: &[&[f32]], keys: &[E], n: usize, out: &mut [f32]) {
    let dim = keys.len() / n;
    for (q, out) in queries.iter().zip(out.chunks_exact_mut(n)) {
        for (j, o) in out.iter_mut().enumerate() {
            let chunk = &keys[j / KEY_CHUNK * KEY_CHUNK * dim..];
            *o = q.iter().enumerate().fold(0f32, |s, (i, q)| {
                q.mul_add(chunk[i * KEY_CHUNK + j % KEY_CHUNK].f32(), s)
            });
        }
    }
}

/// `acc[v] = Σ_j w[v * n + j] · values[j]` over the rows of `values` (at most `n`), each
/// vector of `acc` as wide as a row. Each output is one chain of fused multiply-adds over the
/// rows in order, from zero, in every form.
fn weigh<E: Elem>(w: &[f32], n: usize, values: &[E], acc: &mut [f32]) {
    let m = w.len() / n;
    let dim = acc.len() / m;
    assert!(acc.len() == m * dim && values.len().is_multiple_of(dim) && values.len() <= n * dim);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        use simd::{Vector, Widest};
        use std::arch::x86_64::__m256;
        if dim.is_multiple_of(Widest::LANES) {
            return simd::weigh::<Widest, E>(w, n, values, acc);
        }
        if dim.is_multiple_of(__m256::LANES) {
            return simd::weigh::<__m256, E>(w, n, values, acc);
        }
    }
    weigh_portable(w, n, values, acc)
}

fn weigh_portable<E: Elem>(w: &[f32], n: usize, values: &[E], acc: &mut [f32]) {
    let dim = acc.len() / (w.len() / n);
    for (w, acc) in w.chunks_exact(n).zip(acc.chunks_exact_mut(dim)) {
        acc.fill(0.0);
        for (&w, v) in w.iter().zip(values.chunks_exact(dim)) {
            for (a, v) in acc.iter_mut().zip(v) {
                *a = w.mul_add(v.f32(), *a);
            }
        }
    }
}

/// The kernel's vector code (`attention/simd.rs`), where the build targets AVX2, FMA and F16C.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
mod simd;

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

    /// candle's attention (the reference) for queries `qd` laid out as [`queries`] lays them,
    /// rows at positions `pos`.., over key and value tensors (1, kv_heads, pos + rows, d); the
    /// rows one after the other, (rows, heads·d).
    fn candle_reference(
        qd: &[f32],
        heads: usize,
        pos: usize,
        (k, v): (&Tensor, &Tensor),
        scoring: Scoring,
    ) -> Vec<f32> {
        let (d, len) = (k.dim(3).unwrap(), k.dim(2).unwrap());
        let rows = len - pos;
        let qt = Tensor::from_vec(qd.to_vec(), (1, heads, rows, d), &Device::Cpu).unwrap();
        let mask = attention_mask(rows, pos, scoring.window, &Device::Cpu).unwrap();
        let softcap = scoring.softcap.map(f64::from);
        attention(&qt, k, v, scoring.scale as f64, softcap, mask.as_ref())
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    /// Keys and values (heads of `cap` positions × `d`, position by position) stored in the
    /// cache's layout and format.
    fn stored(kind: CacheType, k: &[f32], v: &[f32], cap: usize, d: usize) -> (Rows, Rows) {
        (
            Rows::keys_from_f32(kind, k, cap, d),
            Rows::from_f32(kind, v),
        )
    }

    /// The kernel's view of `stored`'s rows.
    fn cache<'a>((k, v): &'a (Rows, Rows), capacity: usize) -> Cache<'a> {
        Cache { k, v, capacity }
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
        let cap = 4 * KEY_BLOCK + 80;
        let k = noise(kv * cap * d, 1);
        let v = noise(kv * cap * d, 2);
        for (rows, pos) in [
            (1, 0),
            (1, KEY_BLOCK + 40),
            (7, KEY_BLOCK - 3),
            (20, 0),
            (100, 300),
            (40, 2),
        ] {
            for (softcap, window) in [(None, None), (Some(5.0), None), (None, Some(7))] {
                let qd = noise(heads * rows * d, 3 + rows as u32);
                let q = queries(&qd, rows, d);
                let scoring = Scoring {
                    scale: 0.25,
                    softcap,
                    window,
                };
                let held = stored(F32, &k, &v, cap, d);
                let cache = cache(&held, cap);
                let shape = Heads {
                    heads,
                    kv_heads: kv,
                    dim: d,
                };
                let got = attend(&q, pos, &cache, shape, scoring);
                let len = pos + rows;
                let (kt, vt) = (tensor(&k, kv, cap, len, d), tensor(&v, kv, cap, len, d));
                let want = candle_reference(&qd, heads, pos, (&kt, &vt), scoring);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                        "d {d} rows {rows} pos {pos} {softcap:?} {window:?} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// A cache filled the way the decoder fills it (appends of a few positions and of many,
    /// growing past its first buffers, in every format) attends as candle does over the same
    /// keys and values, within the format's rounding.
    #[test]
    fn an_appended_cache_matches_candle_attention() {
        let (heads, kv, d) = (9, 3, 64);
        let steps = [37, 1, 100, 5, 200];
        let len: usize = steps.iter().sum();
        let (k, v) = (noise(kv * len * d, 31), noise(kv * len * d, 32));
        let as_tensor =
            |x: &[f32]| Tensor::from_vec(x.to_vec(), (1, kv, len, d), &Device::Cpu).unwrap();
        let (kt, vt) = (as_tensor(&k), as_tensor(&v));
        let rows = 20;
        let qd = noise(heads * rows * d, 33);
        let q = queries(&qd, rows, d);
        let pos = len - rows;
        let want = candle_reference(&qd, heads, pos, (&kt, &vt), plain(0.125));
        for (kind, tolerance) in [(F32, 1e-4), (CacheType::F16, 2e-3), (CacheType::Q8_0, 3e-2)] {
            let mut cache = crate::kv_cache::KvCache::new(kind, 4096);
            let mut at = 0;
            for n in steps {
                let rows = |t: &Tensor| {
                    let t = t.narrow(2, at, n).unwrap().contiguous().unwrap();
                    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                };
                cache
                    .append_rows(&rows(&kt), &rows(&vt), [kv, n, d])
                    .unwrap();
                at += n;
            }
            let view = cache.kernel_view().unwrap();
            let c = Cache {
                k: view.k,
                v: view.v,
                capacity: view.capacity,
            };
            let shape = Heads {
                heads,
                kv_heads: kv,
                dim: d,
            };
            let got = attend(&q, pos, &c, shape, plain(0.125));
            let worst = max_abs_diff(&got, &want);
            assert!(worst <= tolerance, "{kind}: off by {worst}");
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

    /// The vector products give the portable loops' results bit for bit, from f32 and from
    /// f16 keys and values: every query count the register tiles split into, and head widths
    /// that leave partial tiles.
    #[test]
    fn products_are_the_portable_ones() {
        fn check<E: Elem + std::fmt::Debug>(dim: usize, to: fn(f32) -> E) {
            let n = 3 * KEY_CHUNK;
            let keys: Vec<E> = noise(n * dim, 21).into_iter().map(to).collect();
            let qd = noise(11 * dim, 22);
            let queries: Vec<&[f32]> = qd.chunks_exact(dim).collect();
            let (mut a, mut b) = (vec![0f32; 11 * n], vec![0f32; 11 * n]);
            score(&queries, &keys, n, &mut a);
            score_portable(&queries, &keys, n, &mut b);
            assert_eq!(a, b, "scores, dim {dim}");
            // Weights of every key, values of the first 37 only (a block's last rows).
            let values: Vec<E> = noise(37 * dim, 23).into_iter().map(to).collect();
            let (mut a, mut b) = (vec![0f32; 11 * dim], vec![0f32; 11 * dim]);
            weigh(&noise(11 * n, 24), n, &values, &mut a);
            weigh_portable(&noise(11 * n, 24), n, &values, &mut b);
            assert_eq!(a, b, "weighted values, dim {dim}");
        }
        for dim in [16, 24, 96, 128] {
            check(dim, |x| x);
            check(dim, half::f16::from_f32);
        }
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
        let held = stored(kind, k, v, cap, d);
        let cache = cache(&held, cap);
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
            let held = stored(kind, &k, &v, cap, d);
            let cache = cache(&held, cap);
            attend(&q, KEY_BLOCK + 9, &cache, shape, scoring)
        };
        let exact = run(F32);
        for (kind, tolerance) in [(CacheType::F16, 2e-3), (CacheType::Q8_0, 2e-2)] {
            let got = run(kind);
            let worst = max_abs_diff(&got, &exact);
            assert!(worst <= tolerance, "{kind}: off by {worst}");
            assert!(
                worst > 0.0,
                "{kind} rounds nothing: not read in its own format"
            );
        }
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }
}
