//! The kernel's vector code, for the widest vectors the build targets (candor builds for the
//! CPU it runs on): the two products in 256-bit vectors with AVX2 and FMA, 512-bit with
//! AVX-512 (scores: `ROWS` query vectors × two vectors of keys a step; weighted sums: four
//! weight rows × two or four vectors of dimensions; each output one chain of fused
//! multiply-adds, as in the portable loops), and with AVX-512 the softmax's exponentials.
//! Keys and values load from f32 or, converted as they load (exactly), from f16.

#![allow(unsafe_op_in_unsafe_fn)]

use super::{Elem, KEY_CHUNK};
use std::arch::x86_64::*;

/// A vector of f32 lanes and the operations the products take.
pub trait Vector: Copy {
    const LANES: usize;
    /// Query vectors a score tile holds, and dimension vectors per row a weighted-sum
    /// tile holds (registers permitting: 16 of them, or 32 with AVX-512).
    const ROWS: usize;
    const WIDE: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// LANES f16 values (their bits) at `p`, as f32.
    unsafe fn load_f16(p: *const u16) -> Self;
    /// LANES values of the cache at `p`, as f32.
    #[inline(always)]
    unsafe fn load_elem<E: Elem>(p: *const E) -> Self {
        if E::F16 {
            Self::load_f16(p.cast())
        } else {
            Self::load(p.cast())
        }
    }
    unsafe fn store(self, p: *mut f32);
    /// `a·b + self`, rounded once.
    unsafe fn fma(self, a: Self, b: Self) -> Self;
}

/// One width's intrinsics as a [`Vector`].
macro_rules! vector {
    ($v:ty, $lanes:literal, $rows:literal, $wide:literal, $zero:ident, $splat:ident, $load:ident, $load_f16:expr, $store:ident, $fma:ident) => {
        impl Vector for $v {
            const LANES: usize = $lanes;
            const ROWS: usize = $rows;
            const WIDE: usize = $wide;
            #[inline(always)]
            unsafe fn zero() -> Self {
                $zero()
            }
            #[inline(always)]
            unsafe fn splat(x: f32) -> Self {
                $splat(x)
            }
            #[inline(always)]
            unsafe fn load(p: *const f32) -> Self {
                $load(p)
            }
            #[inline(always)]
            unsafe fn load_f16(p: *const u16) -> Self {
                $load_f16(p)
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                $store(p, self)
            }
            #[inline(always)]
            unsafe fn fma(self, a: Self, b: Self) -> Self {
                $fma(a, b, self)
            }
        }
    };
}
vector!(
    __m256,
    8,
    4,
    2,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    |p: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
    _mm256_storeu_ps,
    _mm256_fmadd_ps
);
#[cfg(target_feature = "avx512f")]
vector!(
    __m512,
    16,
    8,
    4,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    |p: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
    _mm512_storeu_ps,
    _mm512_fmadd_ps
);

/// `f::<V, E, R>(args)` with R = `n` as a constant (1 to 8), which the register tiles need.
macro_rules! with_count {
    ($n:expr, $f:ident::<$v:ty, $e:ty>($($arg:expr),*)) => {
        match $n {
            1 => $f::<$v, $e, 1>($($arg),*),
            2 => $f::<$v, $e, 2>($($arg),*),
            3 => $f::<$v, $e, 3>($($arg),*),
            4 => $f::<$v, $e, 4>($($arg),*),
            5 => $f::<$v, $e, 5>($($arg),*),
            6 => $f::<$v, $e, 6>($($arg),*),
            7 => $f::<$v, $e, 7>($($arg),*),
            _ => $f::<$v, $e, 8>($($arg),*),
        }
    };
}

/// The widest vector this build targets.
#[cfg(target_feature = "avx512f")]
pub type Widest = __m512;
#[cfg(not(target_feature = "avx512f"))]
pub type Widest = __m256;

/// `super::score`, `V::ROWS` (at most 8) query vectors at a time.
pub fn score<V: Vector, E: Elem>(queries: &[&[f32]], keys: &[E], n: usize, out: &mut [f32]) {
    let dim = keys.len() / n;
    for (qs, out) in queries.chunks(V::ROWS).zip(out.chunks_mut(V::ROWS * n)) {
        with_count!(qs.len(), score_rows::<V, E>(qs, keys, dim, n, out));
    }
}

fn score_rows<V: Vector, E: Elem, const R: usize>(
    qs: &[&[f32]],
    keys: &[E],
    dim: usize,
    n: usize,
    out: &mut [f32],
) {
    assert!(qs.len() == R && out.len() == R * n && keys.len() == n * dim);
    assert!(n.is_multiple_of(KEY_CHUNK) && KEY_CHUNK.is_multiple_of(V::LANES));
    let q: [*const f32; R] = std::array::from_fn(|r| qs[r].as_ptr());
    let mut j = 0;
    // `score_tile` reads C vectors of keys from key j (j + C·LANES <= n, within whole
    // chunks), dim floats of each query, and writes C·LANES floats of each output row.
    while j + 2 * V::LANES <= n {
        // SAFETY: the vector's instructions are enabled at build time; bounds as above.
        unsafe { score_tile::<V, E, R, 2>(q, keys, dim, out, n, j) };
        j += 2 * V::LANES;
    }
    while j < n {
        // SAFETY: as above, one vector.
        unsafe { score_tile::<V, E, R, 1>(q, keys, dim, out, n, j) };
        j += V::LANES;
    }
}

#[inline(always)]
unsafe fn score_tile<V: Vector, E: Elem, const R: usize, const C: usize>(
    q: [*const f32; R],
    keys: &[E],
    dim: usize,
    out: &mut [f32],
    n: usize,
    j: usize,
) {
    // Vector c holds keys j + c·LANES.. of one dimension: in chunk (key / 16), lane key % 16.
    let at: [usize; C] = std::array::from_fn(|c| {
        let key = j + c * V::LANES;
        key / KEY_CHUNK * KEY_CHUNK * dim + key % KEY_CHUNK
    });
    let mut acc = [[V::zero(); C]; R];
    for i in 0..dim {
        let k: [V; C] =
            std::array::from_fn(|c| V::load_elem(keys.as_ptr().add(at[c] + i * KEY_CHUNK)));
        for r in 0..R {
            let qv = V::splat(*q[r].add(i));
            for c in 0..C {
                acc[r][c] = acc[r][c].fma(qv, k[c]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (c, a) in acc.iter().enumerate() {
            a.store(out.as_mut_ptr().add(r * n + j + c * V::LANES));
        }
    }
}

/// `super::weigh`, four weight rows at a time; heads a multiple of the lanes wide.
pub fn weigh<V: Vector, E: Elem>(w: &[f32], n: usize, values: &[E], acc: &mut [f32]) {
    const ROWS: usize = 4;
    let dim = acc.len() / (w.len() / n);
    for (w, acc) in w.chunks(ROWS * n).zip(acc.chunks_mut(ROWS * dim)) {
        with_count!(acc.len() / dim, weigh_rows::<V, E>(w, n, values, acc));
    }
}

fn weigh_rows<V: Vector, E: Elem, const R: usize>(
    w: &[f32],
    n: usize,
    values: &[E],
    acc: &mut [f32],
) {
    let dim = acc.len() / R;
    assert!(dim.is_multiple_of(V::LANES) && w.len() == R * n && values.len() <= n * dim);
    let mut i = 0;
    // `weigh_tile` reads columns i..i + C·LANES (within dim) of the rows of `values`, each
    // row's first n weights, and writes those columns of `acc`'s R rows.
    while i + V::WIDE * V::LANES <= dim {
        // SAFETY: the vector's instructions are enabled at build time; bounds as above.
        unsafe {
            match V::WIDE {
                2 => weigh_tile::<V, E, R, 2>(w, n, values, acc, i),
                _ => weigh_tile::<V, E, R, 4>(w, n, values, acc, i),
            }
        }
        i += V::WIDE * V::LANES;
    }
    while i < dim {
        // SAFETY: as above, one vector.
        unsafe { weigh_tile::<V, E, R, 1>(w, n, values, acc, i) };
        i += V::LANES;
    }
}

#[inline(always)]
unsafe fn weigh_tile<V: Vector, E: Elem, const R: usize, const C: usize>(
    w: &[f32],
    n: usize,
    values: &[E],
    acc: &mut [f32],
    i: usize,
) {
    let dim = acc.len() / R;
    let mut s = [[V::zero(); C]; R];
    for j in 0..values.len() / dim {
        let v = values.as_ptr().add(j * dim + i);
        let vv: [V; C] = std::array::from_fn(|c| V::load_elem(v.add(c * V::LANES)));
        for (r, s) in s.iter_mut().enumerate() {
            let wv = V::splat(*w.get_unchecked(r * n + j));
            for (s, v) in s.iter_mut().zip(&vv) {
                *s = s.fma(wv, *v);
            }
        }
    }
    for (r, s) in s.iter().enumerate() {
        for (c, s) in s.iter().enumerate() {
            s.store(acc.as_mut_ptr().add(r * dim + i + c * V::LANES));
        }
    }
}

/// `super::exp_sum` sixteen lanes at a time, bit for bit: the portable `exp`'s operations
/// in the same order (`activation::exp`; AVX-512's `scalef` multiplies by the same exact
/// power of two), summed into eight lanes half a vector after the other.
#[cfg(target_feature = "avx512f")]
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
