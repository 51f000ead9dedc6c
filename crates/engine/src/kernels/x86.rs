//! x86-64 kernels over the packed layout (see `packed.rs`), in two flavours chosen at run time:
//! AVX-VNNI (`vpdpbusd`: four u8·i8 products summed into each i32 lane in one instruction) and
//! plain AVX2 (`vpmaddubsw` + `vpmaddwd`). Both compute the exact integer sums, then round in
//! the order `packed::group_dot_scalar` defines, lane r being row r of the group.
//!
//! # Safety (all kernels)
//! The CPU must have the features named in the kernel's `target_feature`; `w` must point at `nb`
//! packed group blocks of the kernel's type and each activation pointer at `nb` blocks.

use super::packed::{ActBlock, QK};
use std::arch::x86_64::*;

const _: () = assert!(QK == 32);

/// The four activation bytes `q[at..at + 4]` in every i32 lane.
macro_rules! bcast4 {
    ($q:expr, $at:expr) => {
        _mm256_set1_epi32(($q.add($at) as *const i32).read_unaligned())
    };
}

// The helpers are macros, not functions, so that they always expand inside a kernel that has
// the features their intrinsics need.

// AVX-VNNI: products accumulate in i32 lanes directly.
macro_rules! dp_vnni {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm256_dpbusd_avx_epi32($acc, $u, $s)
    };
}
macro_rules! finish_vnni {
    ($acc:expr) => {
        $acc
    };
}
// Packed Q8_0 bytes are q + 128: Σ(q + 128)·x − 128·Σx (the correction `c` starts the sum).
macro_rules! dot8_vnni {
    ($v:expr, $x:expr, $c:expr) => {
        _mm256_dpbusd_avx_epi32(_mm256_set1_epi32($c), $v, $x)
    };
}

macro_rules! dp2_vnni {
    ($acc:expr, $u0:expr, $s0:expr, $u1:expr, $s1:expr) => {
        _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32($acc, $u0, $s0), $u1, $s1)
    };
}

// AVX2: pairs of products in i16 lanes. A Q4_1 lane sums at most 16 products of 15·127, which
// fits in i16, so the i16 sums are widened once per block.
macro_rules! dp_avx2 {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm256_add_epi16($acc, _mm256_maddubs_epi16($u, $s))
    };
}
macro_rules! finish_avx2 {
    ($acc:expr) => {
        _mm256_madd_epi16($acc, _mm256_set1_epi16(1))
    };
}
// Two vectors of 5-bit values: four products of at most 31·128 per i16 lane still fit.
macro_rules! dp2_avx2 {
    ($acc:expr, $u0:expr, $s0:expr, $u1:expr, $s1:expr) => {{
        let p = _mm256_add_epi16(
            _mm256_maddubs_epi16($u0, $s0),
            _mm256_maddubs_epi16($u1, $s1),
        );
        _mm256_add_epi32($acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }};
}
// Q8_0 on AVX2: back to signed bytes, then candle's sign trick (|w| · sign(x, w)).
macro_rules! dot8_avx2 {
    ($v:expr, $x:expr, $c:expr) => {{
        let _ = $c;
        let q = _mm256_xor_si256($v, _mm256_set1_epi8(-128));
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8($x, q));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }};
}

macro_rules! q4_1_kernel {
    ($name:ident, $features:literal, $dp:ident, $finish:ident) => {
        /// Q4_1 dot products of one group with `M` activation rows.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            w: *const u8,
            a: [*const ActBlock; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let low = _mm256_set1_epi8(0x0F);
            let mut sum = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * 160);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                let m = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
                let mut acc = [_mm256_setzero_si256(); M];
                for c in 0..4 {
                    let v = _mm256_loadu_si256(b.add(32 + 32 * c) as *const __m256i);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    for r in 0..M {
                        let q = (*a[r].add(i)).qs.as_ptr();
                        acc[r] = $dp!(acc[r], lo, bcast4!(q, 4 * c));
                        acc[r] = $dp!(acc[r], hi, bcast4!(q, 16 + 4 * c));
                    }
                }
                for r in 0..M {
                    let ab = &*a[r].add(i);
                    let si = _mm256_cvtepi32_ps($finish!(acc[r]));
                    let t1 = _mm256_mul_ps(_mm256_mul_ps(si, d), _mm256_set1_ps(ab.d));
                    let t2 = _mm256_mul_ps(m, _mm256_set1_ps(ab.s));
                    sum[r] = _mm256_add_ps(sum[r], _mm256_add_ps(t1, t2));
                }
            }
            let mut out = [[0f32; 8]; M];
            for r in 0..M {
                _mm256_storeu_ps(out[r].as_mut_ptr(), sum[r]);
            }
            out
        }
    };
}

macro_rules! q5_0_kernel {
    ($name:ident, $features:literal, $dp2:ident) => {
        /// Q5_0 dot products of one group with `M` activation rows.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            w: *const u8,
            a: [*const ActBlock; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let low = _mm256_set1_epi8(0x0F);
            let five = _mm256_set1_epi8(0x10);
            // Byte i of a vector takes bit i % 8 of byte i / 8 of a u32.
            let spread = _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            );
            let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            let mut sum = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * 176);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                let mut acc: [__m256i; M] =
                    std::array::from_fn(|r| _mm256_set1_epi32(-16 * (*a[r].add(i)).sum));
                for c in 0..4 {
                    let fifth = |at: usize| {
                        let h = _mm256_set1_epi32((b.add(at) as *const i32).read_unaligned());
                        let h = _mm256_and_si256(_mm256_shuffle_epi8(h, spread), bit);
                        _mm256_and_si256(_mm256_cmpeq_epi8(h, bit), five)
                    };
                    let v = _mm256_loadu_si256(b.add(48 + 32 * c) as *const __m256i);
                    let lo = _mm256_or_si256(_mm256_and_si256(v, low), fifth(16 + 8 * c));
                    let hi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                        fifth(16 + 8 * c + 4),
                    );
                    for r in 0..M {
                        let q = (*a[r].add(i)).qs.as_ptr();
                        acc[r] = $dp2!(acc[r], lo, bcast4!(q, 4 * c), hi, bcast4!(q, 16 + 4 * c));
                    }
                }
                for r in 0..M {
                    let ab = &*a[r].add(i);
                    let si = _mm256_cvtepi32_ps(acc[r]);
                    sum[r] = _mm256_add_ps(
                        sum[r],
                        _mm256_mul_ps(_mm256_mul_ps(si, d), _mm256_set1_ps(ab.d)),
                    );
                }
            }
            let mut out = [[0f32; 8]; M];
            for r in 0..M {
                _mm256_storeu_ps(out[r].as_mut_ptr(), sum[r]);
            }
            out
        }
    };
}

macro_rules! q8_0_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// Q8_0 dot products of one group with one activation row.
        #[target_feature(enable = $features)]
        pub unsafe fn $name(w: *const u8, a: *const ActBlock, nb: usize) -> [f32; 8] {
            let mut acc = [_mm256_setzero_ps(); 8];
            for i in 0..nb {
                let b = w.add(i * 272);
                let ab = &*a.add(i);
                let dd = _mm256_mul_ps(
                    _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i)),
                    _mm256_set1_ps(ab.d),
                );
                for c in 0..8 {
                    let v = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
                    let s = $dot!(v, bcast4!(ab.qs.as_ptr(), 4 * c), ab.c[c]);
                    acc[c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[c]);
                }
            }
            // candle's `hsum_float_8` order, lane-wise.
            let lo = _mm256_add_ps(_mm256_add_ps(acc[4], acc[0]), _mm256_add_ps(acc[6], acc[2]));
            let hi = _mm256_add_ps(_mm256_add_ps(acc[5], acc[1]), _mm256_add_ps(acc[7], acc[3]));
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(lo, hi));
            out
        }
    };
}

q4_1_kernel!(q4_1_vnni, "avx2,fma,f16c,avxvnni", dp_vnni, finish_vnni);
q4_1_kernel!(q4_1_avx2, "avx2,fma,f16c", dp_avx2, finish_avx2);
q5_0_kernel!(q5_0_vnni, "avx2,fma,f16c,avxvnni", dp2_vnni);
q5_0_kernel!(q5_0_avx2, "avx2,fma,f16c", dp2_avx2);
q8_0_kernel!(q8_0_vnni, "avx2,fma,f16c,avxvnni", dot8_vnni);
q8_0_kernel!(q8_0_avx2, "avx2,fma,f16c", dot8_avx2);
