//! CPU matmul kernels for the GGUF weight types candle 0.11 handles slowly: Q4_0, Q4_1, Q5_0,
//! Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
//!
//! The weights are regrouped at load, straight from the verified file, into a layout built for
//! SIMD dot products (`packed.rs`: eight rows per group); each activation row is quantized once
//! with ggml's rounding, and groups of rows are split across the rayon pool the model runs in, each group
//! reused for every row of a prompt batch (eight rows per call for the `vpdpbusd` kernels;
//! with AVX512-VNNI, two groups at once for all these but Q2_K and Q3_K). The kernels
//! (`x86.rs`: AVX-VNNI, AVX512-VNNI or AVX2, picked at run time in `isa.rs`; the portable loop
//! in `packed.rs` defines the arithmetic) give the portable loop's bits on every CPU: the
//! 32-value formats, Q2_K and Q3_K round as candle's dot products do (its reference ones for
//! the 32-value formats, its AVX2 ones for Q2_K and Q3_K); Q4_K, Q5_K and Q6_K sum each
//! super-block exactly and round once, which frees their kernels to multiply in whatever order
//! is fastest; on CPUs with AMX, their prompt rows go through tile products (`amx.rs`) to the
//! same exact sums.
//! `activation.rs` holds the vectorized gate activations of the fused feed-forward kernel;
//! `attention.rs` the attention that reads each sequence's KV cache in place (its vector code
//! in `attention/simd.rs`), `convert.rs`
//! the cache's f16 and q8_0 back to f32 as it reads them, `arena.rs` the large-page memory the
//! packed weights live in, and `bandwidth.rs` the probe of the memory bandwidth that decoding
//! is measured against.

pub(crate) mod activation;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod amx;
pub(crate) mod arena;
pub(crate) mod attention;
pub(crate) mod bandwidth;
pub(crate) mod convert;
mod isa;
mod packed;
// Each x86 kernel is one `unsafe fn` whose whole body is intrinsics over raw pointers, with its
// contract stated once on the function; an `unsafe` block around every line would say nothing more.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_op_in_unsafe_fn)]
mod x86;

use candle_core::quantized::GgmlDType;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
pub use isa::instruction_sets;
use isa::Isa;
use packed::{ActBlock, ActBlockK, QK_K};
use std::sync::Arc;

pub use packed::{G, QK};

/// The GGUF block format of a weight matrix these kernels multiply with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl WeightFormat {
    fn of(dtype: GgmlDType) -> Option<WeightFormat> {
        Some(match dtype {
            GgmlDType::Q4_0 => WeightFormat::Q4_0,
            GgmlDType::Q4_1 => WeightFormat::Q4_1,
            GgmlDType::Q5_0 => WeightFormat::Q5_0,
            GgmlDType::Q5_1 => WeightFormat::Q5_1,
            GgmlDType::Q8_0 => WeightFormat::Q8_0,
            GgmlDType::Q2K => WeightFormat::Q2K,
            GgmlDType::Q3K => WeightFormat::Q3K,
            GgmlDType::Q4K => WeightFormat::Q4K,
            GgmlDType::Q5K => WeightFormat::Q5K,
            GgmlDType::Q6K => WeightFormat::Q6K,
            _ => return None,
        })
    }
}

/// Whether the kernels run at all: a SIMD instruction set is there and `CANDOR_NO_KERNELS`
/// is not set.
fn enabled() -> bool {
    std::env::var_os("CANDOR_NO_KERNELS").is_none() && Isa::best() != Isa::Portable
}

/// Whether a GGUF matrix stored as `dtype` runs on these kernels on this CPU.
pub(crate) fn takes(dtype: GgmlDType) -> bool {
    enabled() && WeightFormat::of(dtype).is_some()
}

/// A quantized (n, k) weight on the CPU, packed for these kernels.
#[derive(Debug, Clone)]
pub(crate) struct PackedMatrix {
    data: Arc<packed::Aligned>,
    kind: WeightFormat,
    n: usize,
    k: usize,
}

impl PackedMatrix {
    /// A matrix packed straight from its stored GGUF blocks (`data`: `n` rows of `k` values of
    /// type `dtype`). None when the type is not one these kernels handle, the rows are not whole
    /// blocks, or the CPU has no SIMD kernels for it: elsewhere (e.g. ARM, where candle has NEON
    /// kernels) candle's own are faster than the portable loop. Set `CANDOR_NO_KERNELS` to run
    /// candle's kernels anyway (for comparisons).
    /// Each stretch of `data` goes to `done` once packed (see [`packed::pack`]).
    pub(crate) fn from_blocks(
        dtype: GgmlDType,
        (n, k): (usize, usize),
        data: &[u8],
        done: &(dyn Fn(&[u8]) + Sync),
    ) -> Option<Self> {
        if !enabled() {
            return None;
        }
        Self::pack_blocks(dtype, n, k, data, done)
    }

    fn pack_blocks(
        dtype: GgmlDType,
        n: usize,
        k: usize,
        bytes: &[u8],
        done: &(dyn Fn(&[u8]) + Sync),
    ) -> Option<Self> {
        let kind = WeightFormat::of(dtype)?;
        let bv = kind.block_values();
        if k == 0 || n == 0 || !k.is_multiple_of(bv) {
            return None;
        }
        // The storage must hold exactly the blocks the shape implies.
        if bytes.len() != n * (k / bv) * kind.block_bytes() {
            return None;
        }
        Some(Self {
            data: Arc::new(packed::pack(kind, bytes, n, k / bv, done)),
            kind,
            n,
            k,
        })
    }

    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    /// Bytes of one group of rows.
    fn group_bytes(&self) -> usize {
        self.k / self.kind.block_values() * self.kind.group_block_bytes()
    }

    /// Rows `ids` dequantized, as candle's quantized embedding computes them: (ids.len(), k).
    pub(crate) fn embedding(&self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        let mut out = vec![0f32; ids.len() * self.k];
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(self.k)) {
            if id as usize >= self.n {
                candle_core::bail!("embedding id {id} is out of range for {} rows", self.n)
            }
            let nb = self.k / self.kind.block_values();
            packed::dequantize_row(self.kind, &self.data, nb, id as usize, o);
        }
        Ok(out)
    }
}

/// Runs `f(rows, m)` on the m rows of `x` borrowed from its storage, when the kernels can take
/// it (on the CPU, f32, contiguous, last dim `k`); None otherwise.
fn with_input<R>(
    x: &Tensor,
    k: usize,
    f: impl FnOnce(&[f32], usize) -> candle_core::Result<R>,
) -> candle_core::Result<Option<R>> {
    if x.dims().last() != Some(&k) || x.elem_count() == 0 {
        return Ok(None);
    }
    let (storage, layout) = x.storage_and_layout();
    let (candle_core::Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        return Ok(None);
    };
    f(&data[start..end], (end - start) / k).map(Some)
}

fn out_tensor(x: &Tensor, data: Vec<f32>, n: usize) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Tensor::from_vec(data, dims, x.device())
}

/// Several weights with the same input width applied to one input (Q, K, V): one activation
/// quantization and one pool dispatch for all. None when the kernels do not apply.
pub(crate) fn forward_many(
    ws: &[&PackedMatrix],
    x: &Tensor,
) -> candle_core::Result<Option<Vec<Tensor>>> {
    let Some(first) = ws.first() else {
        return Ok(None);
    };
    let k = first.k;
    if ws.iter().any(|w| w.k != k) {
        return Ok(None);
    }
    with_input(x, k, |xs, m| {
        let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; m * w.n]).collect();
        {
            let mut dsts: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            matmul(ws, xs, m, &mut dsts);
        }
        outs.into_iter()
            .zip(ws)
            .map(|(o, w)| out_tensor(x, o, w.n))
            .collect()
    })
}

/// `act(x·Gᵀ) ⊙ (x·Uᵀ)` in one pass (SwiGLU, GeGLU); None when the kernels do not apply.
pub(crate) fn gated(
    act: impl Fn(&[f32; G]) -> [f32; G] + Sync,
    g: &PackedMatrix,
    u: &PackedMatrix,
    x: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    if g.kind != u.kind || g.n != u.n || g.k != u.k {
        return Ok(None);
    }
    with_input(x, g.k, |xs, m| {
        let n = g.n;
        let mut out = vec![0f32; m * n];
        let dst = SendPtr(out.as_mut_ptr());
        let isa = Isa::best();
        let gbytes = g.group_bytes();
        let (groups, span) = (n.div_ceil(G), span(g.kind, m));
        with_acts(xs, m, g.k, Formats::of([g.kind]), |acts| {
            pool_groups(groups.div_ceil(span), |item| {
                let grps = item * span..((item + 1) * span).min(groups);
                let ws = [&g.data[..], &u.data[..]];
                span_rows(
                    isa,
                    g.kind,
                    ws,
                    gbytes,
                    grps,
                    acts,
                    m,
                    |grp, r, [gv, uv]| {
                        let a = act(gv);
                        let y = std::array::from_fn(|l| a[l] * uv[l]);
                        // SAFETY: row r's columns of this group lie inside `out` (m × n), and
                        // only this group writes them.
                        unsafe { store(dst, n, r, grp, &y) };
                    },
                );
            });
        });
        out_tensor(x, out, n)
    })
}

/// `dst[j] (m, n_j) = x (m, k) · W_jᵀ` for weights sharing the input width k.
fn matmul(ws: &[&PackedMatrix], x: &[f32], m: usize, dst: &mut [&mut [f32]]) {
    let k = ws[0].k;
    debug_assert!(ws
        .iter()
        .zip(dst.iter())
        .all(|(w, d)| w.k == k && d.len() == m * w.n));
    let dsts: Vec<SendPtr> = dst.iter_mut().map(|d| SendPtr(d.as_mut_ptr())).collect();
    // Work items: each weight's groups, `span` at a time.
    let spans: Vec<usize> = ws.iter().map(|w| span(w.kind, m)).collect();
    let mut starts = Vec::with_capacity(ws.len());
    let mut total = 0;
    for (w, span) in ws.iter().zip(&spans) {
        starts.push(total);
        total += w.n.div_ceil(G).div_ceil(*span);
    }
    let isa = Isa::best();
    with_acts(x, m, k, Formats::of(ws.iter().map(|w| w.kind)), |acts| {
        pool_groups(total, |item| {
            let j = starts.partition_point(|&s| s <= item) - 1;
            let (w, item, span) = (ws[j], item - starts[j], spans[j]);
            let grps = item * span..((item + 1) * span).min(w.n.div_ceil(G));
            let gbytes = w.group_bytes();
            span_rows(
                isa,
                w.kind,
                [&w.data[..]],
                gbytes,
                grps,
                acts,
                m,
                |grp, r, [y]| {
                    // SAFETY: as in `gated`, for weight j's output.
                    unsafe { store(dsts[j], w.n, r, grp, y) };
                },
            );
        });
    });
}

/// Groups per work item for m rows of weights stored as `kind`: two where AMX multiplies them
/// (a tile takes sixteen columns) or a 512-bit kernel takes two groups at once (from
/// [`Isa::pair_rows`] rows: for one row, half as many work items balanced worse and decoding
/// slowed), else one.
fn span(kind: WeightFormat, m: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if amx::takes(kind, m) || Isa::best().pair_rows(kind).is_some_and(|min| m >= min) {
        return 2;
    }
    let _ = (kind, m);
    1
}

/// Up to this many rows a matrix product (or a whole step: `pool::run`) is batched decoding, a
/// row per sequence, rather than a prompt. Such rows read each weight once, from memory, so the
/// two-group kernels fetch the next pair meanwhile; prompts read each pair again and again from
/// cache, where fetching ahead only cost time (the 1.7B shape's pp512 2% slower).
pub(crate) const DECODING_ROWS: usize = 16;

/// The dot products of groups `grps` (one, or two neighbours: see [`span`]) of each weight in
/// `ws` (whole matrices, `gbytes` a group) with every one of the m activation rows:
/// `f(group, row, dots)`. Two groups go through AMX tile products while 16 rows last (where
/// AMX multiplies), then through the two-group kernels eight or four rows at a time (where
/// they exist); the rows left, group by group.
#[allow(clippy::too_many_arguments)]
#[inline]
fn span_rows<const W: usize>(
    isa: Isa,
    kind: WeightFormat,
    ws: [&[u8]; W],
    gbytes: usize,
    grps: std::ops::Range<usize>,
    acts: &QuantizedActivations,
    m: usize,
    mut f: impl FnMut(usize, usize, [&[f32; G]; W]),
) {
    let mut r = 0;
    #[cfg(target_arch = "x86_64")]
    if grps.len() == 2 {
        let pair = ws.map(|w| &w[grps.start * gbytes..][..2 * gbytes]);
        if amx::takes(kind, m) {
            r = amx::pair_rows(kind, pair, gbytes, acts, m, &mut |half, row, ys| {
                f(grps.start + half, row, ys)
            });
        }
        if let Some(min) = isa.pair_rows(kind) {
            macro_rules! rows {
                ($m:literal) => {
                    let ys = pair.map(|w| {
                        isa.pair_dots::<$m>(kind, w, gbytes, acts, r, r == 0 && m <= DECODING_ROWS)
                    });
                    for (half, grp) in grps.clone().enumerate() {
                        for i in 0..$m {
                            f(grp, r + i, ys.each_ref().map(|y| &y[half][i]));
                        }
                    }
                    r += $m;
                };
            }
            while r + 8 <= m {
                rows!(8);
            }
            if min <= 4 && r + 4 <= m {
                rows!(4);
            }
        }
    }
    for grp in grps {
        let wg = ws.map(|w| &w[grp * gbytes..][..gbytes]);
        group_rows(isa, kind, wg, acts, r..m, |row, ys| f(grp, row, ys));
    }
}

/// The dot products of the same group of each weight in `ws` with activation rows `rows`,
/// eight or four rows per kernel call while they last: `f(row, dots)`.
#[inline]
fn group_rows<const W: usize>(
    isa: Isa,
    kind: WeightFormat,
    ws: [&[u8]; W],
    acts: &QuantizedActivations,
    rows: std::ops::Range<usize>,
    mut f: impl FnMut(usize, [&[f32; G]; W]),
) {
    let (mut r, m) = (rows.start, rows.end);
    if isa.eight_rows() {
        while r + 8 <= m {
            let ys = ws.map(|w| isa.group_dots::<8>(kind, w, acts, r));
            for i in 0..8 {
                f(r + i, ys.each_ref().map(|y| &y[i]));
            }
            r += 8;
        }
    }
    while r + 4 <= m {
        let ys = ws.map(|w| isa.group_dots::<4>(kind, w, acts, r));
        for i in 0..4 {
            f(r + i, ys.each_ref().map(|y| &y[i]));
        }
        r += 4;
    }
    for r in r..m {
        let ys = ws.map(|w| isa.group_dots::<1>(kind, w, acts, r));
        f(r, std::array::from_fn(|j| &ys[j][0]));
    }
}

/// Writes the group's outputs `y` (lanes past column n dropped) into row `row` of `dst` (m × n).
///
/// # Safety
/// `dst` must point at m × n f32s with `row < m` and `grp` a group of the n columns; no other
/// thread may write those columns of that row meanwhile.
#[inline]
unsafe fn store(dst: SendPtr, n: usize, row: usize, grp: usize, y: &[f32; G]) {
    let c0 = grp * G;
    for (l, &v) in y.iter().enumerate().take(n - c0) {
        // SAFETY: `row * n + c0 + l` < m × n by the caller's contract; the columns are ours.
        unsafe { *dst.0.add(row * n + c0 + l) = v };
    }
}

/// Runs `f(r, row r)` for each row (`nb` items) of `out`, across the pool for prompt batches.
fn rows_parallel<T: Send>(out: &mut [T], nb: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let m = out.len() / nb;
    if m < 8 {
        out.chunks_exact_mut(nb)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
        return;
    }
    let base = SendPtr(out.as_mut_ptr());
    pool_groups(m, |r| {
        // SAFETY: row r (r < m) lies inside `out`, and each r is handed to one worker once.
        let row = unsafe { std::slice::from_raw_parts_mut(base.get().add(r * nb), nb) };
        f(r, row)
    });
}

/// Runs `f` on every work item of `0..items` across the rayon pool the model runs in. Each
/// thread, when free, takes the next run of items: a share of what is left that shrinks as the
/// loop nears its end (guided self-scheduling), so the threads finish within one item of each
/// other. rayon's halving split left one thread waiting out the other's last piece: on the 3B
/// shape at two threads, 4-9 ms of each thread's time per token.
fn pool_groups(items: usize, f: impl Fn(usize) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let threads = rayon::current_num_threads();
    if threads == 1 || items < 2 {
        // No one to share with: skip rayon's job machinery (a decode step makes ~100 calls).
        return (0..items).for_each(f);
    }
    let next = AtomicUsize::new(0);
    let work = || loop {
        let start = next.load(Relaxed);
        if start >= items {
            return;
        }
        let end = start + ((items - start) / (2 * threads)).max(1);
        if next
            .compare_exchange_weak(start, end, Relaxed, Relaxed)
            .is_ok()
        {
            (start..end).for_each(&f);
        }
    };
    rayon::scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| work());
        }
        work();
    });
}

/// `packed::quantize_row`, with SIMD where the CPU has it (same results).
fn quantize_row(isa: Isa, x: &[f32], out: &mut [ActBlock]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        for (xb, ob) in x.chunks_exact(QK).zip(out.iter_mut()) {
            // SAFETY: any ISA but the portable one has AVX2, FMA and F16C; `xb` holds 32
            // floats and `ob.qs` 32 bytes.
            let d = unsafe { x86::quantize_block(xb.as_ptr(), ob.qs.as_mut_ptr()) };
            packed::finish_block(ob, d);
        }
        return;
    }
    let _ = isa;
    packed::quantize_row(x, out)
}

/// `packed::quantize_row_k`, with SIMD where the CPU has it (same results).
fn quantize_row_k(isa: Isa, x: &[f32], out: &mut [ActBlockK]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        for (xb, ob) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            // SAFETY: any ISA but the portable one has AVX2, FMA and F16C; `xb` holds 256
            // floats.
            unsafe { x86::quantize_block_k(xb.as_ptr(), ob) };
        }
        return;
    }
    let _ = isa;
    packed::quantize_row_k(x, out)
}

/// The input rows quantized in the formats the weights at hand multiply with: 32-value blocks
/// (Q8_1/Q8_0 rounding) and/or 256-value super-blocks (Q8_K), each m rows of width k.
struct QuantizedActivations<'a> {
    blocks: &'a [ActBlock],
    super_blocks: &'a [ActBlockK],
    k: usize,
}

impl QuantizedActivations<'_> {
    fn row(&self, r: usize) -> &[ActBlock] {
        let nb = self.k / QK;
        &self.blocks[r * nb..][..nb]
    }

    fn row_k(&self, r: usize) -> &[ActBlockK] {
        let nb = self.k / QK_K;
        &self.super_blocks[r * nb..][..nb]
    }
}

thread_local! {
    static ACTS: std::cell::RefCell<(Vec<ActBlock>, Vec<ActBlockK>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Which activation formats a set of weights multiplies with.
#[derive(Clone, Copy)]
struct Formats {
    blocks: bool,
    super_blocks: bool,
}

impl Formats {
    fn of(kinds: impl IntoIterator<Item = WeightFormat>) -> Self {
        kinds.into_iter().fold(
            Formats {
                blocks: false,
                super_blocks: false,
            },
            |f, k| Formats {
                blocks: f.blocks || k.block_values() == QK,
                super_blocks: f.super_blocks || k.block_values() == QK_K,
            },
        )
    }
}

/// Quantizes the m rows of `x` (m, k) in the `formats` needed and runs `f` on them.
///
/// The buffers are reused per thread. While `f` waits on its rows, rayon may hand this thread
/// a job of another forward pass in the same pool (another model, or another test), whose
/// matmul then finds them borrowed: it gets buffers of its own instead.
fn with_acts<R>(
    x: &[f32],
    m: usize,
    k: usize,
    formats: Formats,
    f: impl FnOnce(&QuantizedActivations) -> R,
) -> R {
    ACTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => quantize_acts(x, m, k, formats, &mut bufs, f),
        Err(_) => quantize_acts(x, m, k, formats, &mut Default::default(), f),
    })
}

fn quantize_acts<R>(
    x: &[f32],
    m: usize,
    k: usize,
    formats: Formats,
    (blocks, super_blocks): &mut (Vec<ActBlock>, Vec<ActBlockK>),
    f: impl FnOnce(&QuantizedActivations) -> R,
) -> R {
    blocks.clear();
    super_blocks.clear();
    if formats.blocks {
        let nb = k / QK;
        blocks.resize(m * nb, ActBlock::default());
        rows_parallel(blocks, nb, |r, ar| {
            quantize_row(Isa::best(), &x[r * k..][..k], ar)
        });
    }
    if formats.super_blocks {
        let nb = k / QK_K;
        super_blocks.resize(m * nb, ActBlockK::default());
        rows_parallel(super_blocks, nb, |r, ar| {
            quantize_row_k(Isa::best(), &x[r * k..][..k], ar)
        });
    }
    f(&QuantizedActivations {
        blocks,
        super_blocks,
        k,
    })
}

impl CustomOp1 for PackedMatrix {
    fn name(&self) -> &'static str {
        "candor-qmatmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(xs) = storage else {
            candle_core::bail!("candor-qmatmul: f32 input expected")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("candor-qmatmul: contiguous input expected")
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.k) {
            candle_core::bail!("candor-qmatmul: input {dims:?} does not end in {}", self.k)
        }
        let x = &xs[start..end];
        let m = x.len() / self.k;
        let mut dst = vec![0f32; m * self.n];
        matmul(&[self], x, m, &mut [&mut dst]);
        if let Some(last) = dims.last_mut() {
            *last = self.n;
        }
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

/// Raw pointer that may cross to pool workers, which write disjoint parts of it.
pub(crate) struct SendPtr<T = f32>(pub *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the wrapper, not the bare pointer).
    fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: only used for disjoint writes from pool workers while the owner waits.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as for Send: workers share the pointer, never the same element.
unsafe impl<T> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module};

    #[test]
    fn pool_groups_runs_every_item_once() {
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for items in [0, 1, 2, 3, 5, 64, 1001] {
                let runs: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                pool.install(|| {
                    pool_groups(items, |i| {
                        runs[i].fetch_add(1, Relaxed);
                    })
                });
                let counts: Vec<usize> = runs.iter().map(|r| r.load(Relaxed)).collect();
                assert_eq!(counts, vec![1; items], "{threads} threads, {items} items");
            }
        }
    }

    /// `w` packed for the kernels, whatever the CPU (the portable kernel defines the results).
    fn pack(w: &QMatMul) -> Option<PackedMatrix> {
        let QMatMul::QTensor(q) = w else { return None };
        let (n, k) = q.shape().dims2().ok()?;
        PackedMatrix::pack_blocks(q.dtype(), n, k, &q.data().ok()?, &|_| ())
    }

    const ALL: [GgmlDType; 10] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];

    fn quantized(dtype: GgmlDType, n: usize, k: usize, seed: u64) -> QMatMul {
        let w: Vec<f32> = noise(n * k, seed);
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap()
    }

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    /// Random input rows `x` (m, k) from `seed`, and `x·wᵀ` by candle's kernels and by the
    /// packed ones, flattened.
    fn candle_and_packed(
        w: &QMatMul,
        m: usize,
        k: usize,
        seed: u64,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = noise(m * k, seed);
        let xt = Tensor::from_vec(x.clone(), (1, m, k), &Device::Cpu).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let candle = flat(w.forward(&xt).unwrap());
        let packed = flat(xt.apply_op1_no_bwd(&pack(w).unwrap()).unwrap());
        (x, candle, packed)
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    /// candle's Q2_K and Q3_K dot products take their AVX2 paths on such CPUs, the order the
    /// kernels keep.
    fn candle_uses_avx2() -> bool {
        Isa::available().len() > 1
    }

    #[test]
    fn matmul_equals_candle_bit_for_bit() {
        for dtype in ALL {
            // Q4_1, Q5_0 and Q5_1 round as candle's reference kernels do; Q2_K and Q3_K as its
            // AVX2 ones, where it takes them. Q4_0 and Q8_0 keep candle's reference order (their
            // own test below), which its AVX2 kernels do not (they round every four products);
            // Q4_K, Q5_K and Q6_K sum exactly instead (`k_formats_near_candle`).
            let compared = match dtype {
                GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => true,
                GgmlDType::Q2K | GgmlDType::Q3K => candle_uses_avx2(),
                _ => false,
            };
            if !compared {
                continue;
            }
            let widen = if matches!(dtype, GgmlDType::Q2K | GgmlDType::Q3K) {
                8
            } else {
                1
            };
            // Rows not a multiple of 8 and batches not a multiple of 4 take the tail paths. No
            // n is a multiple of 16: candle 0.11.1 sends such Q4_K (and Q8_0, Q6_K prompt)
            // matmuls with k % 256 == 0 to separate repacked kernels on AVX-VNNI CPUs, whose
            // rounding differs from its own generic kernels (see `k_formats_near_candle_repacked`).
            for (m, n, k) in [
                (1, 7, 64),
                (1, 72, 576),
                (3, 130, 96),
                (5, 33, 128),
                (9, 300, 64),
            ] {
                let k = k * widen;
                let w = quantized(dtype, n, k, (m * n * k) as u64);
                let x = Tensor::from_vec(noise(m * k, 7), (1, m, k), &Device::Cpu).unwrap();
                let reference = w.forward(&x).unwrap();
                let fast = pack(&w).expect("kernels handle this weight");
                let y = x.apply_op1_no_bwd(&fast).unwrap();
                assert_eq!(y.dims(), reference.dims());
                assert_eq!(bits(&y), bits(&reference), "{dtype:?} m={m} n={n} k={k}");
            }
        }
    }

    /// Q4_0 and Q8_0 against candle's reference dot products (`vec_dot_unopt`, what candle runs
    /// where it has no SIMD version), on every row pair, bit for bit.
    #[test]
    fn q4_0_and_q8_0_equal_candles_reference_bit_for_bit() {
        use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ8_0, GgmlType};
        fn check<B: GgmlType<VecDotType = BlockQ8_0>>(dtype: GgmlDType) {
            let size = std::mem::size_of::<B>();
            for (m, n, k) in [(1, 7, 64), (3, 130, 96), (5, 33, 576), (9, 40, 64)] {
                let w = quantized(dtype, n, k, (m * n * k) as u64);
                let QMatMul::QTensor(q) = &w else {
                    panic!("quantized")
                };
                let bytes = q.data().unwrap();
                let nb = k / 32;
                assert_eq!(bytes.len(), n * nb * size);
                let blocks: Vec<B> = (0..n * nb)
                    // SAFETY: the block types are repr(C) plain data of `size` bytes, as the GGUF
                    // stores them, and `bytes` holds n·nb of them.
                    .map(|i| unsafe { std::ptr::read_unaligned(bytes[size * i..].as_ptr().cast()) })
                    .collect();
                let x = noise(m * k, 7);
                let fast = pack(&w).unwrap();
                let xt = Tensor::from_vec(x.clone(), (1, m, k), &Device::Cpu).unwrap();
                let y = xt.apply_op1_no_bwd(&fast).unwrap();
                let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for r in 0..m {
                    let mut acts = vec![BlockQ8_0::zeros(); nb];
                    BlockQ8_0::from_float(&x[r * k..(r + 1) * k], &mut acts);
                    for j in 0..n {
                        let want = B::vec_dot_unopt(k, &blocks[j * nb..(j + 1) * nb], &acts);
                        assert_eq!(
                            y[r * n + j].to_bits(),
                            want.to_bits(),
                            "{dtype:?} m={m} n={n} row {r} col {j}"
                        );
                    }
                }
            }
        }
        check::<BlockQ4_0>(GgmlDType::Q4_0);
        check::<BlockQ8_0>(GgmlDType::Q8_0);
    }

    #[test]
    fn every_instruction_set_agrees_with_the_portable_kernel() {
        let (n, k) = (24, 512);
        for dtype in ALL {
            let fast = pack(&quantized(dtype, n, k, 3)).unwrap();
            let x = noise(8 * k, 100);
            with_acts(&x, 8, k, Formats::of([fast.kind]), |acts| {
                let gbytes = fast.group_bytes();
                for grp in 0..n / G {
                    let w = &fast.data[grp * gbytes..][..gbytes];
                    let want = Isa::Portable.group_dots::<8>(fast.kind, w, acts, 0);
                    for isa in Isa::available() {
                        let eight = isa.group_dots::<8>(fast.kind, w, acts, 0);
                        assert_eq!(eight, want, "{isa:?} {dtype:?}");
                        let four = isa.group_dots::<4>(fast.kind, w, acts, 0);
                        assert_eq!(four, want[..4], "{isa:?} {dtype:?}");
                        let one = isa.group_dots::<1>(fast.kind, w, acts, 2);
                        assert_eq!(one[0], want[2], "{isa:?} {dtype:?}");
                        if fast.kind.block_values() == QK_K {
                            // The 256-bit K kernels, which `group_dots` passes over when the
                            // CPU has AVX-512.
                            let nb = k / QK_K;
                            let y = isa.group_dots_k(fast.kind, w, acts.row_k(3), nb);
                            assert_eq!(y, want[3], "{isa:?} {dtype:?} 256-bit");
                        }
                    }
                    // The 256-bit multi-row K kernels, which CPUs with AVX-512 pass over.
                    #[cfg(target_arch = "x86_64")]
                    if matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K) {
                        let nb = k / QK_K;
                        let a = std::array::from_fn(|i| acts.row_k(i).as_ptr());
                        macro_rules! four {
                            ($isa:ident) => {
                                // SAFETY: the CPU has this ISA's features (`available`); `w`
                                // holds `nb` group super-blocks and each row `nb` activation
                                // super-blocks.
                                unsafe {
                                    match fast.kind {
                                        WeightFormat::Q4K => {
                                            x86::$isa::q4k5k::<4, false>(w.as_ptr(), a, nb)
                                        }
                                        WeightFormat::Q5K => {
                                            x86::$isa::q4k5k::<4, true>(w.as_ptr(), a, nb)
                                        }
                                        _ => x86::$isa::q6k::<4>(w.as_ptr(), a, nb),
                                    }
                                }
                            };
                        }
                        for isa in Isa::available() {
                            let four = match isa {
                                Isa::Portable => continue,
                                Isa::Avx2 => four!(avx2),
                                Isa::Avx512Vnni => four!(avx512_vnni),
                                Isa::AvxVnni => four!(avx_vnni),
                            };
                            assert_eq!(four, want[..4], "{isa:?} 256-bit multi-row {dtype:?}");
                        }
                    }
                }
                // The two-group kernels, on groups 0 and 1.
                #[cfg(target_arch = "x86_64")]
                for isa in Isa::available()
                    .into_iter()
                    .filter(|i| i.pair_rows(fast.kind).is_some())
                {
                    let w = &fast.data[..2 * gbytes];
                    let eight = isa.pair_dots::<8>(fast.kind, w, gbytes, acts, 0, true);
                    let four = isa.pair_dots::<4>(fast.kind, w, gbytes, acts, 4, false);
                    for half in 0..2 {
                        let w = &fast.data[half * gbytes..][..gbytes];
                        let want = Isa::Portable.group_dots::<8>(fast.kind, w, acts, 0);
                        assert_eq!(eight[half], want, "{isa:?} {dtype:?} two groups");
                        assert_eq!(four[half], want[4..], "{isa:?} {dtype:?} two groups");
                    }
                }
            });
        }
    }

    /// AMX's tile products give the portable kernel's bits for every row: pairs of groups, a
    /// group without a neighbour, two weights at once (the fused gate/up call) and rows left to
    /// the VNNI kernels. Where the CPU or the OS offers no AMX there is nothing to compare: it
    /// says so.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn amx_agrees_with_the_portable_kernel() {
        if !amx::available() {
            eprintln!("no AMX on this machine (or not granted by the OS): nothing to compare");
            return;
        }
        let (n, k) = (24, 768);
        for dtype in ALL {
            let a = pack(&quantized(dtype, n, k, 5)).unwrap();
            let b = pack(&quantized(dtype, n, k, 6)).unwrap();
            let Some(min) = amx::min_rows(a.kind) else {
                continue;
            };
            // The fewest rows the tiles take, and more: a pass of 32 rows, one of 16, the
            // rest left to the VNNI kernels.
            for m in [min, min + 53] {
                let x = noise(m * k, 101 + m as u64);
                with_acts(&x, m, k, Formats::of([a.kind]), |acts| {
                    let gbytes = a.group_bytes();
                    assert_eq!(span(a.kind, m), 2);
                    let mut got = vec![[[[f32::NAN; G]; 2]; 3]; m];
                    let ws = [&a.data[..], &b.data[..]];
                    for grps in [0..2, 2..3] {
                        span_rows(
                            Isa::best(),
                            a.kind,
                            ws,
                            gbytes,
                            grps,
                            acts,
                            m,
                            |g, r, ys| {
                                got[r][g] = ys.map(|y| *y);
                            },
                        );
                    }
                    for (r, got) in got.iter().enumerate() {
                        for (grp, got) in got.iter().enumerate() {
                            for (w, got) in ws.iter().zip(got) {
                                let w = &w[grp * gbytes..][..gbytes];
                                let want = Isa::Portable.group_dots::<1>(a.kind, w, acts, r)[0];
                                assert_eq!(*got, want, "{dtype:?} m={m} row {r} of group {grp}");
                            }
                        }
                    }
                });
            }
        }
    }

    #[test]
    fn activation_quantization_is_the_same_on_every_instruction_set() {
        // Random rows, and a row scaled to d = 1 whose values tie at .5 (rounded away from 0).
        let mut x = noise(8 * 64, 31);
        // amax 127 makes d = 1, so i - 15.5 are exact ties.
        let ties = (0..32).map(|i| if i == 0 { -127.0 } else { i as f32 - 15.5 });
        x.extend(ties);
        x.extend([0f32; 32]);
        let n = x.len() / QK;
        let mut want = vec![ActBlock::default(); n];
        packed::quantize_row(&x, &mut want);
        // The K formats' super-blocks too: the largest magnitude twice (the first one's sign is
        // the scale's), and all zeros.
        let mut xk = noise(4 * QK_K, 32);
        xk[300] = 9.0;
        xk[301] = -9.0;
        xk[600] = -9.0;
        xk[700] = 9.0;
        xk[800..].fill(0.0);
        xk.extend(x.iter().take(QK_K));
        xk.extend([0f32; QK_K]);
        let nk = xk.len() / QK_K;
        let mut want_k = vec![ActBlockK::default(); nk];
        packed::quantize_row_k(&xk, &mut want_k);
        for isa in Isa::available() {
            let mut got = vec![ActBlock::default(); n];
            quantize_row(isa, &x, &mut got);
            assert_eq!(got, want, "{isa:?}");
            let mut got = vec![ActBlockK::default(); nk];
            quantize_row_k(isa, &xk, &mut got);
            assert_eq!(got, want_k, "{isa:?} super-blocks");
        }
    }

    #[test]
    fn gated_equals_candle_ops() {
        use crate::layers::Gate;
        let (m, n, k) = (6, 40, 128);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1] {
            let (g, u) = (quantized(dtype, n, k, 11), quantized(dtype, n, k, 12));
            let x = Tensor::from_vec(noise(m * k, 5), (1, m, k), &Device::Cpu).unwrap();
            let (fg, fu) = (pack(&g).unwrap(), pack(&u).unwrap());
            let gx = g.forward(&x).unwrap();
            let ux = u.forward(&x).unwrap();
            let fused = |gate: Gate| {
                let y = gated(|v| gate.group(v), &fg, &fu, &x).unwrap();
                y.expect("kernels apply")
            };
            // Candle's functions by other formulas (a vector exp): equal to rounding.
            let candle: [(Gate, Tensor); 2] = [
                (Gate::Silu, candle_nn::ops::silu(&gx).unwrap()),
                (Gate::GeluTanh, gx.gelu().unwrap()),
            ];
            for (gate, act) in candle {
                let want = (act * &ux).unwrap();
                let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let got = fused(gate).flatten_all().unwrap();
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (g, w) in got.to_vec1::<f32>().unwrap().iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-6 * scale,
                        "{gate:?} {dtype:?}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn embedding_equals_candle_bit_for_bit() {
        for dtype in ALL {
            let w = quantized(dtype, 19, 512, 9);
            let ids = [0u32, 18, 7, 8, 7];
            let want = w
                .embedding(&Tensor::new(&ids[..], &Device::Cpu).unwrap())
                .unwrap();
            let fast = pack(&w).unwrap();
            let got = fast.embedding(&ids).unwrap();
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, bits(&want), "{dtype:?}");
            assert!(
                fast.embedding(&[19]).is_err(),
                "an id past the last row is refused"
            );
        }
    }

    /// Q4_K, Q5_K and Q6_K sum each super-block exactly where candle rounds lane by lane (and
    /// its repacked kernels, taken for n a multiple of 16 on some CPUs, round otherwise again):
    /// the results agree to rounding, at every shape the tail paths take and at a repacked one.
    #[test]
    fn k_formats_near_candle() {
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            for (m, n, k) in [
                (1, 7, 512),
                (1, 72, 4608),
                (3, 130, 768),
                (5, 33, 1024),
                (9, 300, 512),
                (5, 64, 1024),
            ] {
                let w = quantized(dtype, n, k, (m * n * k) as u64);
                let (_, want, got) = candle_and_packed(&w, m, k, 8);
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{dtype:?} m={m} n={n} k={k}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The exact-sum K kernels against the f64 sum of the same quantized operands, dequantized
    /// from the GGUF blocks as ggml does: nearer to it than candle's lane-by-lane rounding.
    #[test]
    fn exact_sum_k_formats_are_nearer_the_true_sum_than_candle() {
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f64();
        // Value x of a GGUF Q4_K / Q6_K super-block `b`, dequantized in f64 (exactly).
        let q4k = |b: &[u8], x: usize| {
            let sb = x / 32;
            let (sc, mn) = packed::scale_min_k4(sb, &b[4..16]);
            let byte = b[16 + 32 * (sb / 2) + x % 32];
            let q = if sb.is_multiple_of(2) {
                byte & 0xF
            } else {
                byte >> 4
            };
            f16(&b[0..]) * (sc as f64 * q as f64) - f16(&b[2..]) * mn as f64
        };
        let q6k = |b: &[u8], x: usize| {
            let (half, v, l) = (x / 128, x % 128 / 32, x % 32);
            let ql = b[64 * half + 32 * (v % 2) + l];
            let low = if v < 2 { ql & 0xF } else { ql >> 4 };
            let high = (b[128 + 32 * half + l] >> (2 * v)) & 3;
            let q = (low | high << 4) as i32 - 32;
            let sc = b[192 + 8 * half + 2 * v + l / 16] as i8;
            f16(&b[208..]) * (sc as f64 * q as f64)
        };
        for (dtype, bytes_per, value) in [
            (GgmlDType::Q4K, 144, &q4k as &dyn Fn(&[u8], usize) -> f64),
            (GgmlDType::Q6K, 210, &q6k),
        ] {
            let (m, n, k) = (4, 72, 4096);
            let nb = k / QK_K;
            let w = quantized(dtype, n, k, 5);
            let QMatMul::QTensor(q) = &w else {
                panic!("quantized")
            };
            let bytes = q.data().unwrap();
            let (x, candle, ours) = candle_and_packed(&w, m, k, 9);
            let (mut err_ours, mut err_candle) = (0f64, 0f64);
            for r in 0..m {
                let mut acts = vec![ActBlockK::default(); nb];
                packed::quantize_row_k(&x[r * k..][..k], &mut acts);
                for j in 0..n {
                    let mut exact = 0f64;
                    for (i, y) in acts.iter().enumerate() {
                        let b = &bytes[(j * nb + i) * bytes_per..][..bytes_per];
                        for (x, &a) in y.qs.iter().enumerate() {
                            exact += y.d as f64 * value(b, x) * a as f64;
                        }
                    }
                    err_ours += (ours[r * n + j] as f64 - exact).abs();
                    err_candle += (candle[r * n + j] as f64 - exact).abs();
                }
            }
            eprintln!("{dtype:?} summed error: ours {err_ours:e}, candle {err_candle:e}");
            assert!(
                err_ours < err_candle,
                "{dtype:?}: ours {err_ours:e}, candle {err_candle:e}"
            );
        }
    }
}
