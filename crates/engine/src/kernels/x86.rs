//! x86-64 kernels over the packed layout (see `packed.rs`), in two flavours chosen at run time:
//! AVX-VNNI (`vpdpbusd`: four u8·i8 products summed into each i32 lane in one instruction) and
//! plain AVX2 (`vpmaddubsw` + `vpmaddwd`), plus 512-bit K kernels for AVX-512 CPUs
//! (`vpmaddubsw`, or `vpdpbusd` for Q5_K and Q6_K where the CPU has AVX512-VNNI) and, with
//! AVX512-VNNI, kernels that take two groups at once (every format but Q2_K and Q3_K) and
//! one-row kernels for Q4_0, Q4_1, Q5_0 and Q5_1 (`ref_one`). All compute the exact integer
//! sums, then round in the order `packed::group_dot_scalar` / `group_dot_k_scalar` define, lane
//! r being row r of the group.
//!
//! # Safety (all kernels)
//! The CPU must have the features named in the kernel's `target_feature`; `w` must point at `nb`
//! packed group blocks of the kernel's type and each activation pointer at `nb` blocks.

use super::packed::{q3k_vector, q4k_vector, q6k_base, ActBlock, ActBlockK, QK, QK_K};
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

// VNNI: products accumulate in i32 lanes directly. `dpbusd` is the module's `vpdpbusd`, in the
// VEX (AVX-VNNI) or EVEX (AVX512-VNNI) encoding (see `isa_kernels`).
macro_rules! dp_vnni {
    ($acc:expr, $u:expr, $s:expr) => {
        dpbusd($acc, $u, $s)
    };
}
macro_rules! finish_vnni {
    ($acc:expr) => {
        $acc
    };
}
// Packed Q8_0 bytes are q + 128: Σ(q + 128)·x − 128·Σx, so a block's sum starts at −128·Σx.
macro_rules! dot8_vnni {
    (start $sum:expr) => {
        _mm256_set1_epi32(-128 * $sum)
    };
    ($acc:expr, $v:expr, $x:expr) => {
        dpbusd($acc, $v, $x)
    };
}
macro_rules! dp2_vnni {
    ($acc:expr, $u0:expr, $s0:expr, $u1:expr, $s1:expr) => {
        dpbusd(dpbusd($acc, $u0, $s0), $u1, $s1)
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
// Q8_0 on AVX2: back to signed bytes, then candle's sign trick (|w| · sign(x, w)); a pair of
// products, at most 2·128·127, fits the i16 lane.
macro_rules! dot8_avx2 {
    (start $sum:expr) => {{
        let _ = $sum;
        _mm256_setzero_si256()
    }};
    ($acc:expr, $v:expr, $x:expr) => {{
        let q = _mm256_xor_si256($v, _mm256_set1_epi8(-128));
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8($x, q));
        _mm256_add_epi32($acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }};
}

/// Decoding (one activation row) uses each weight byte once, and the hardware prefetcher
/// alone leaves the kernels waiting on memory: [`prefetch_stream`] asks for the block's bytes
/// ahead. Prompt batches reuse each block and need no help.
#[inline(always)]
unsafe fn prefetch_ahead<const M: usize>(b: *const u8, len: usize) {
    if M == 1 {
        prefetch_stream(b, len);
    }
}

/// Asks for the `len` bytes 4 KiB on from `b` into L1, and those 12 KiB on into L2, so that two
/// levels of requests are in flight (measured on a Sapphire Rapids Xeon, the 1.7B shape, Q4_K_M,
/// a decoding step: 72 → 62 ms at one thread, 40 → 34 at two, against the L1 request alone;
/// the L2 one alone 67 and 37, and 8–48 KiB on all level. Earlier: 2 KiB gave +20% over none,
/// 4 KiB 5–15% more than 2, 8 KiB less). The bandwidth probe reads the same way.
#[inline(always)]
pub(super) unsafe fn prefetch_stream(b: *const u8, len: usize) {
    const NEAR: usize = 4096;
    const FAR: usize = 3 * NEAR;
    for c in (0..len).step_by(64) {
        // A prefetch never faults, so past the buffer's end is harmless.
        _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(NEAR + c) as *const i8);
        _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(FAR + c) as *const i8);
    }
}

/// The two-group kernels read a pair as two streams `gbytes` apart, a few KiB each, too short
/// for the hardware prefetcher to get ahead of. When `next` (the call's rows are the first to
/// read this pair, so its bytes come from memory, as in batched decoding) ask for the same
/// `len` bytes of the next pair, into L2, while this one is multiplied (measured: the 1.7B
/// shape, Q4_K_M, eight decoding rows a step at 2 threads 93 → 73 ms; 4 KiB ahead within
/// each stream gave 84, two pairs ahead no more than one).
#[inline(always)]
unsafe fn prefetch_next_pair(next: bool, b: *const u8, gbytes: usize, len: usize) {
    if next {
        for c in (0..len).step_by(64) {
            // A prefetch never faults, so past the matrix's end is harmless.
            _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(2 * gbytes + c) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(3 * gbytes + c) as *const i8);
        }
    }
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
                prefetch_ahead::<M>(b, 160);
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
            rows_out(&sum)
        }
    };
}

/// Where the parts of a Q4_0, Q4_1 (`min`), Q5_0 (`fifth`) or Q5_1 (both) group block lie:
/// d[8] from byte 0, then m[8] (`min`) from 16, the fifth bits (`fifth`) from `base`, the
/// nibbles from `nibbles`, `stride` bytes in all; and the offset every value carries, which
/// enters each block once through Σq (x = d·(q − offset), or d·q + m).
struct RefBlock {
    base: usize,
    nibbles: usize,
    stride: usize,
    offset: i32,
}

impl RefBlock {
    #[inline(always)]
    const fn of(fifth: bool, min: bool) -> RefBlock {
        let base = if min { 32 } else { 16 };
        let nibbles = if fifth { base + 32 } else { base };
        let offset = match (fifth, min) {
            (_, true) => 0,
            (false, false) => 8,
            (true, false) => 16,
        };
        RefBlock {
            base,
            nibbles,
            stride: nibbles + 128,
            offset,
        }
    }
}

macro_rules! ref_kernel {
    ($name:ident, $features:literal, $dp2:ident, fifth: $fifth:literal, min: $min:literal) => {
        /// Dot products of one group with `M` activation rows in candle's reference order
        /// (exact integer sum per block, then `sumi·d·d'` (+ `m·s`)) for Q4_0 (x = d·(q − 8)),
        /// Q5_0 (`$fifth`, x = d·(q − 16)) or Q5_1 (`$fifth`, `$min`, x = d·q + m). The offset
        /// enters once per block through Σq.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            w: *const u8,
            a: [*const ActBlock; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let RefBlock {
                base,
                nibbles,
                stride,
                offset,
            } = RefBlock::of($fifth, $min);
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
                let b = w.add(i * stride);
                prefetch_ahead::<M>(b, stride);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                let mut acc: [__m256i; M] =
                    std::array::from_fn(|r| _mm256_set1_epi32(-offset * (*a[r].add(i)).sum));
                for c in 0..4 {
                    let fifth = |at: usize| {
                        if !$fifth {
                            return _mm256_setzero_si256();
                        }
                        let h = _mm256_set1_epi32((b.add(at) as *const i32).read_unaligned());
                        let h = _mm256_and_si256(_mm256_shuffle_epi8(h, spread), bit);
                        _mm256_and_si256(_mm256_cmpeq_epi8(h, bit), five)
                    };
                    let v = _mm256_loadu_si256(b.add(nibbles + 32 * c) as *const __m256i);
                    let lo = _mm256_or_si256(_mm256_and_si256(v, low), fifth(base + 8 * c));
                    let hi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                        fifth(base + 8 * c + 4),
                    );
                    for r in 0..M {
                        let q = (*a[r].add(i)).qs.as_ptr();
                        acc[r] = $dp2!(acc[r], lo, bcast4!(q, 4 * c), hi, bcast4!(q, 16 + 4 * c));
                    }
                }
                for r in 0..M {
                    let ab = &*a[r].add(i);
                    let si = _mm256_cvtepi32_ps(acc[r]);
                    let t1 = _mm256_mul_ps(_mm256_mul_ps(si, d), _mm256_set1_ps(ab.d));
                    let t = if $min {
                        let m = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
                        _mm256_add_ps(t1, _mm256_mul_ps(m, _mm256_set1_ps(ab.s)))
                    } else {
                        t1
                    };
                    sum[r] = _mm256_add_ps(sum[r], t);
                }
            }
            rows_out(&sum)
        }
    };
}

macro_rules! q8_0_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        /// Q8_0 dot products of one group with `M` activation rows in candle's reference order
        /// (exact integer sum per block, then `sumi·d·d'`), each weight vector loaded once for
        /// all the rows.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            w: *const u8,
            a: [*const ActBlock; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let mut sum = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * 272);
                prefetch_ahead::<M>(b, 272);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                let mut acc: [__m256i; M] = std::array::from_fn(|r| $dot!(start(*a[r].add(i)).sum));
                for c in 0..8 {
                    let v = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
                    for r in 0..M {
                        let q = (*a[r].add(i)).qs.as_ptr();
                        acc[r] = $dot!(acc[r], v, bcast4!(q, 4 * c));
                    }
                }
                for r in 0..M {
                    let si = _mm256_cvtepi32_ps(acc[r]);
                    let t = _mm256_mul_ps(_mm256_mul_ps(si, d), _mm256_set1_ps((*a[r].add(i)).d));
                    sum[r] = _mm256_add_ps(sum[r], t);
                }
            }
            rows_out(&sum)
        }
    };
}

// AVX2's `vpdpbusd`: four u8·i8 products per i32 lane, exact while each pair of products fits
// in i16 (the K formats' values are below 64).
macro_rules! dp4_avx2 {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm256_add_epi32(
            $acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16($u, $s), _mm256_set1_epi16(1)),
        )
    };
}

/// Q4_K / Q5_K and Q6_K kernels for `M` activation rows: each sub-block's products summed over
/// its values with `$dp` (four per i32 lane, one lane per weight row), then weighted by the
/// sub-block's scale, all exact; each weight vector is unpacked once for all `M` rows.
macro_rules! k_kernels {
    ($features:literal, $dp:ident) => {
        /// Q4_K (or, `FIVE`, Q5_K) dot products of one group with `M` activation rows.
        // `r` indexes three arrays of rows.
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        pub unsafe fn q4k5k<const M: usize, const FIVE: bool>(
            w: *const u8,
            a: [*const ActBlockK; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let low = _mm256_set1_epi8(0x0F);
            let one = _mm256_set1_epi8(1);
            let mut acc = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * k_stride(FIVE));
                prefetch_ahead::<M>(b, k_stride(FIVE));
                let ys: [&ActBlockK; M] = std::array::from_fn(|r| &*a[r].add(i));
                let mut sums = [_mm256_setzero_si256(); M];
                // Sub-block s: the low (s even) or high nibbles of chunk s / 2.
                for s in 0..8 {
                    let mut t = [_mm256_setzero_si256(); M];
                    for l in 0..8 {
                        let at = b.add(160 + 32 * q4k_vector(s / 2, l));
                        let v = _mm256_loadu_si256(at as *const __m256i);
                        let v = if s % 2 == 0 {
                            v
                        } else {
                            _mm256_srli_epi16(v, 4)
                        };
                        let mut v = _mm256_and_si256(v, low);
                        if FIVE {
                            // Bit s of each `qh` byte, moved to bit 4.
                            let h = _mm256_loadu_si256(b.add(1184 + 32 * l) as *const __m256i);
                            let h = _mm256_srl_epi16(h, _mm_cvtsi32_si128(s as i32));
                            v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
                        }
                        for r in 0..M {
                            t[r] = $dp!(t[r], v, bcast4!(ys[r].qs.as_ptr(), 32 * s + 4 * l));
                        }
                    }
                    let sc = _mm_loadl_epi64(b.add(32 + 8 * s) as *const __m128i);
                    let sc = _mm256_cvtepu8_epi32(sc);
                    for r in 0..M {
                        sums[r] = _mm256_add_epi32(sums[r], _mm256_mullo_epi32(t[r], sc));
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                let dminw = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
                for r in 0..M {
                    let mins = Some((dminw, k_mins(b, ys[r])));
                    acc[r] = k_finish(acc[r], ys[r], dw, sums[r], mins);
                }
            }
            rows_out(&acc)
        }

        /// Q6_K dot products of one group with `M` activation rows: Σ scale·Σ q·x, less 32
        /// times Σ scale·Σ x (`q6k_offsets`) for the stored values' offset.
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        pub unsafe fn q6k<const M: usize>(
            w: *const u8,
            a: [*const ActBlockK; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let mut acc = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * 1680);
                prefetch_ahead::<M>(b, 1680);
                let ys: [&ActBlockK; M] = std::array::from_fn(|r| &*a[r].add(i));
                let mut sums = [_mm256_setzero_si256(); M];
                // Sub-block u (16 values): lanes 4h..4h+4 of value vector v of chunk j.
                for u in 0..16 {
                    let (j, v, h) = (u / 8, u % 8 / 2, u % 2);
                    let mut t = [_mm256_setzero_si256(); M];
                    for l in 4 * h..4 * h + 4 {
                        let q = q6k_values(b, j, v, l);
                        for r in 0..M {
                            let at = 128 * j + 32 * v + 4 * l;
                            t[r] = $dp!(t[r], q, bcast4!(ys[r].qs.as_ptr(), at));
                        }
                    }
                    let sc = _mm_loadl_epi64(b.add(16 + 8 * u) as *const __m128i);
                    let sc = _mm256_cvtepi8_epi32(sc);
                    for r in 0..M {
                        sums[r] = _mm256_add_epi32(sums[r], _mm256_mullo_epi32(t[r], sc));
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                for r in 0..M {
                    let offsets = _mm256_slli_epi32(q6k_offsets(b, ys[r]), 5);
                    let sum = _mm256_sub_epi32(sums[r], offsets);
                    acc[r] = k_finish(acc[r], ys[r], dw, sum, None);
                }
            }
            rows_out(&acc)
        }
    };
}

/// One module of 32-value-block kernels per instruction set, with the same function names;
/// VNNI modules name their `vpdpbusd` encoding.
macro_rules! isa_kernels {
    ($module:ident, $features:literal, $dp:ident, $finish:ident, $dp2:ident, $dot8:ident,
     $dp4:ident $(, dpbusd = $dpbusd:ident)?) => {
        pub mod $module {
            use super::*;
            $(
                #[inline]
                #[target_feature(enable = $features)]
                unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
                    $dpbusd(acc, u, s)
                }
            )?
            q4_1_kernel!(q4_1, $features, $dp, $finish);
            ref_kernel!(q4_0, $features, $dp2, fifth: false, min: false);
            ref_kernel!(q5_0, $features, $dp2, fifth: true, min: false);
            ref_kernel!(q5_1, $features, $dp2, fifth: true, min: true);
            q8_0_kernel!(q8_0, $features, $dot8);
            k_kernels!($features, $dp4);
        }
    };
}

isa_kernels!(
    avx2,
    "avx2,fma,f16c",
    dp_avx2,
    finish_avx2,
    dp2_avx2,
    dot8_avx2,
    dp4_avx2
);
isa_kernels!(
    avx_vnni,
    "avx2,fma,f16c,avxvnni",
    dp_vnni,
    finish_vnni,
    dp2_vnni,
    dot8_vnni,
    dp_vnni,
    dpbusd = _mm256_dpbusd_avx_epi32
);
// AVX512-VNNI's 256-bit form, for CPUs that have it but not AVX-VNNI (Zen 4, Ice Lake).
isa_kernels!(
    avx512_vnni,
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    dp_vnni,
    finish_vnni,
    dp2_vnni,
    dot8_vnni,
    dp_vnni,
    dpbusd = _mm256_dpbusd_epi32
);

/// One activation block's scale d = max|x|/127 and its 32 values round(x/d) (written to `qs`),
/// as `packed::quantize_row` computes them.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_block(x: *const f32, qs: *mut i8) -> f32 {
    let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.add(8 * i)));
    let d = amax32(&v) / 127.0;
    round32(&v, if d != 0.0 { 1.0 / d } else { 0.0 }, qs);
    d
}

/// One activation super-block for the K formats, as `packed::quantize_row_k` computes it.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_block_k(x: *const f32, out: &mut ActBlockK) {
    let v: [[__m256; 4]; 8] =
        std::array::from_fn(|c| std::array::from_fn(|i| _mm256_loadu_ps(x.add(32 * c + 8 * i))));
    let amax = v.iter().map(|v| amax32(v)).fold(0f32, f32::max);
    // The scale takes the sign of the first value of largest magnitude.
    let Some(max) = (0..QK_K)
        .map(|i| *x.add(i))
        .find(|v| v.abs() == amax && amax > 0.0)
    else {
        *out = ActBlockK::default();
        return;
    };
    let iscale = -127f32 / max;
    for (c, v) in v.iter().enumerate() {
        round32(v, iscale, out.qs.as_mut_ptr().add(32 * c));
    }
    for (s, q) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| v as i16).sum();
    }
    out.d = 1.0 / iscale;
}

/// max |v| over 32 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn amax32(v: &[__m256; 4]) -> f32 {
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_and_ps(v[0], abs), _mm256_and_ps(v[1], abs)),
        _mm256_max_ps(_mm256_and_ps(v[2], abs), _mm256_and_ps(v[3], abs)),
    );
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// round(v·scale) of 32 floats, saturated to i8, written to `qs`: round-half-away-from-zero
/// is trunc(p + copysign(largest float below 0.5, p)), exact for |p| < 2^23.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round32(v: &[__m256; 4], scale: f32, qs: *mut i8) {
    let scale = _mm256_set1_ps(scale);
    let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    let below_half = _mm256_set1_ps(f32::from_bits(0x3eff_ffff));
    let q = v.map(|v| {
        let p = _mm256_mul_ps(v, scale);
        let bump = _mm256_or_ps(_mm256_and_ps(p, sign), below_half);
        _mm256_cvttps_epi32(_mm256_add_ps(p, bump))
    });
    // Saturating packs, as `as i8` saturates; then undo their per-128-bit-lane interleave.
    let q16 = [
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    ];
    let q8 = _mm256_packs_epi16(q16[0], q16[1]);
    let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(qs as *mut __m256i, q8);
}

/// The eight lanes of each of `M` vectors.
#[target_feature(enable = "avx")]
unsafe fn rows_out<const M: usize>(v: &[__m256; M]) -> [[f32; 8]; M] {
    let mut out = [[0f32; 8]; M];
    for (o, v) in out.iter_mut().zip(v) {
        _mm256_storeu_ps(o.as_mut_ptr(), *v);
    }
    out
}

/// Candle's `hsum_float_8` order, lane-wise over eight vectors.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum8(acc: &[__m256; 8]) -> __m256 {
    let lo = _mm256_add_ps(_mm256_add_ps(acc[4], acc[0]), _mm256_add_ps(acc[6], acc[2]));
    let hi = _mm256_add_ps(_mm256_add_ps(acc[5], acc[1]), _mm256_add_ps(acc[7], acc[3]));
    _mm256_add_ps(lo, hi)
}

/// Eight per-row scales (u8 or i8 at `p`) as i16 pairs, one pair per row's i32 lane.
macro_rules! scales16 {
    ($p:expr, $widen:ident) => {{
        let x = _mm_loadl_epi64($p as *const __m128i);
        $widen(_mm_unpacklo_epi8(x, x))
    }};
}

/// The 6-bit values (0..64, one byte each) of a packed Q6_K super-block `b` that value vector
/// v (0..4) of half j holds in lane group l: values 128j + 32v + 4l.. of each row
/// (`q6k_base`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn q6k_values(b: *const u8, j: usize, v: usize, l: usize) -> __m256i {
    let base = b.add(q6k_base(j, l));
    let ql = _mm256_loadu_si256(base.add(64 * (v % 2)) as *const __m256i);
    let ql = if v < 2 { ql } else { _mm256_srli_epi16(ql, 4) };
    // Bits 2v, 2v+1 of each `qh` byte, moved to bits 4 and 5.
    let qh = _mm256_loadu_si256(base.add(128) as *const __m256i);
    let qh = match v {
        0 => _mm256_slli_epi16(qh, 4),
        1 => _mm256_slli_epi16(qh, 2),
        2 => qh,
        _ => _mm256_srli_epi16(qh, 2),
    };
    _mm256_or_si256(
        _mm256_and_si256(ql, _mm256_set1_epi8(0x0F)),
        _mm256_and_si256(qh, _mm256_set1_epi8(0x30)),
    )
}

/// Σ min·Σx over the eight sub-blocks of a Q4_K / Q5_K super-block `b`, per row (exact).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_mins(b: *const u8, y: &ActBlockK) -> __m256i {
    let mut total = _mm256_setzero_si256();
    for p in 0..4 {
        let mins = _mm256_cvtepu8_epi16(_mm_loadu_si128(b.add(96 + 16 * p) as *const __m128i));
        let s0 = y.bsums[4 * p].wrapping_add(y.bsums[4 * p + 1]) as u16 as u32;
        let s1 = y.bsums[4 * p + 2].wrapping_add(y.bsums[4 * p + 3]) as u16 as u32;
        let sums = _mm256_set1_epi32((s0 | s1 << 16) as i32);
        total = _mm256_add_epi32(total, _mm256_madd_epi16(mins, sums));
    }
    total
}

/// Adds one K super-block's exact sums to a row's accumulator `acc` as `packed` defines it:
/// `fma(d·d', sum, acc)`, then, with `mins` (Q4_K, Q5_K), `fma(−d'·dmin, mins, ·)`. `dw` and
/// `dminw` are the group's eight row scales.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k_finish(
    acc: __m256,
    y: &ActBlockK,
    dw: __m256,
    sum: __m256i,
    mins: Option<(__m256, __m256i)>,
) -> __m256 {
    let d = _mm256_mul_ps(dw, _mm256_set1_ps(y.d));
    let acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc);
    match mins {
        Some((dminw, m)) => {
            let dmin = _mm256_mul_ps(dminw, _mm256_set1_ps(-y.d));
            _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(m), acc)
        }
        None => acc,
    }
}

/// Σ scale·bsum over a Q6_K super-block's sixteen sub-blocks of 16, per row (exact): the
/// part of Σ scale·Σ(q − 32)·x that the offset 32 takes away, divided by 32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_offsets(b: *const u8, y: &ActBlockK) -> __m256i {
    let mut total = _mm256_setzero_si256();
    for i in 0..8 {
        let lo = _mm_loadl_epi64(b.add(16 + 16 * i) as *const __m128i);
        let hi = _mm_loadl_epi64(b.add(24 + 16 * i) as *const __m128i);
        let pairs = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(lo, hi));
        let s = (y.bsums.as_ptr().add(2 * i) as *const i32).read_unaligned();
        total = _mm256_add_epi32(total, _mm256_madd_epi16(pairs, _mm256_set1_epi32(s)));
    }
    total
}

/// Bytes of one packed Q4_K (or, `FIVE`, Q5_K) group super-block.
const fn k_stride(five: bool) -> usize {
    if five {
        1440
    } else {
        1184
    }
}

/// Q2_K (`MINS`) or Q3_K dot products of one group with one activation row, in candle's AVX2
/// order. Q2_K: each super-block's mins enter the lanes first (lane l: sub-blocks 2l and
/// 2l+1). Q3_K: the 2-bit values and the "minus 4 unless the high bit is set" part are
/// multiplied separately (`vpmaddubsw` takes unsigned weights). Then each lane is weighted by
/// its sub-block scale.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q2k3k<const MINS: bool>(w: *const u8, a: *const ActBlockK, nb: usize) -> [f32; 8] {
    let three = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    let (stride, scales_at, qs_at) = k23_layout(MINS);
    let shift = |v: __m256i, s: usize| _mm256_srl_epi16(v, _mm_cvtsi32_si128(s as i32));
    let mut acc = [_mm256_setzero_ps(); 8];
    for i in 0..nb {
        let b = w.add(i * stride);
        let y = &*a.add(i);
        let q = y.qs.as_ptr();
        let d = _mm256_mul_ps(
            _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i)),
            _mm256_set1_ps(y.d),
        );
        if MINS {
            let dmin = _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i)),
                _mm256_set1_ps(-y.d),
            );
            for (l, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(q2k_mins(b, y, l)), *acc);
            }
        }
        let sc: [__m256i; 16] =
            std::array::from_fn(|u| k23_scales::<MINS>(b.add(scales_at + 8 * u)));
        let mut lanes = [_mm256_setzero_si256(); 8];
        for (l, lane) in lanes.iter_mut().enumerate() {
            let hbits = (!MINS).then(|| _mm256_loadu_si256(b.add(656 + 32 * l) as *const __m256i));
            for j in 0..2 {
                let qv = _mm256_loadu_si256(b.add(qs_at + 32 * q3k_vector(j, l)) as *const __m256i);
                for t in 0..4 {
                    let low = _mm256_and_si256(shift(qv, 2 * t), three);
                    let x = bcast4!(q, 128 * j + 32 * t + 4 * l);
                    let mut p = _mm256_maddubs_epi16(low, x);
                    if let Some(h) = hbits {
                        // 4 where the high bit is clear: the −4 of those values.
                        let clear = _mm256_andnot_si256(shift(h, 4 * j + t), one);
                        p = _mm256_sub_epi16(
                            p,
                            _mm256_maddubs_epi16(_mm256_slli_epi16(clear, 2), x),
                        );
                    }
                    let u = 8 * j + 2 * t + usize::from(l >= 4);
                    *lane = _mm256_add_epi32(*lane, _mm256_madd_epi16(p, sc[u]));
                }
            }
        }
        for (acc, lane) in acc.iter_mut().zip(&lanes) {
            *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*lane), *acc);
        }
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), hsum8(&acc));
    out
}

/// (group super-block bytes, offset of the scales, offset of the 2-bit vectors) of packed
/// Q2_K (`mins`) or Q3_K (see `packed`).
const fn k23_layout(mins: bool) -> (usize, usize, usize) {
    if mins {
        (800, 32, 288)
    } else {
        (912, 16, 144)
    }
}

/// Eight rows' sub-block scales as i16 pairs: Q2_K's are unsigned 4-bit, Q3_K's signed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k23_scales<const MINS: bool>(p: *const u8) -> __m256i {
    if MINS {
        scales16!(p, _mm256_cvtepu8_epi16)
    } else {
        scales16!(p, _mm256_cvtepi8_epi16)
    }
}

/// Lane l of a Q2_K super-block's mins term for activation `y`: per row, the exact
/// m(2l)·s(2l) + m(2l+1)·s(2l+1) of candle's `vpmaddwd` over mins and block sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2k_mins(b: *const u8, y: &ActBlockK, l: usize) -> __m256i {
    let mins = _mm256_cvtepu8_epi16(_mm_loadu_si128(b.add(160 + 16 * l) as *const __m128i));
    let s0 = y.bsums[2 * l] as u16 as u32;
    let s1 = y.bsums[2 * l + 1] as u16 as u32;
    _mm256_madd_epi16(mins, _mm256_set1_epi32((s0 | s1 << 16) as i32))
}

/// Q2_K (`MINS`) or Q3_K dot products of one group with `M` activation rows, 512 bits wide:
/// each register holds lane l of both 128-value halves, whose integer sums are added before
/// the lane is rounded, so the arithmetic stays `q2k3k`'s.
// `l` indexes the accumulators and computes the offsets.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn q2k3k_512<const M: usize, const MINS: bool>(
    w: *const u8,
    a: [*const ActBlockK; M],
    nb: usize,
) -> [[f32; 8]; M] {
    let three = _mm512_set1_epi8(3);
    let one = _mm512_set1_epi8(1);
    let (stride, scales_at, qs_at) = k23_layout(MINS);
    let mut acc = [[_mm256_setzero_ps(); 8]; M];
    for i in 0..nb {
        let b = w.add(i * stride);
        let ys: [&ActBlockK; M] = std::array::from_fn(|r| &*a[r].add(i));
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
        let sc = |u: usize| k23_scales::<MINS>(b.add(scales_at + 8 * u));
        // Scales for value vector t, lanes 0..4 (h = 0) or 4..8 (h = 1): sub-block 2t+h in
        // half 0, 8+2t+h in half 1.
        let scales: [[__m512i; 2]; 4] = std::array::from_fn(|t| {
            std::array::from_fn(|h| {
                _mm512_inserti64x4(_mm512_castsi256_si512(sc(2 * t + h)), sc(8 + 2 * t + h), 1)
            })
        });
        for l in 0..8 {
            if MINS {
                // Q2_K: the mins enter lane l first (sub-blocks 2l and 2l+1).
                let dmin = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
                for r in 0..M {
                    let v = q2k_mins(b, ys[r], l);
                    let dm = _mm256_mul_ps(dmin, _mm256_set1_ps(-ys[r].d));
                    acc[r][l] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(v), acc[r][l]);
                }
            }
            let qv = _mm512_loadu_si512(b.add(qs_at + 32 * q3k_vector(0, l)) as *const _);
            // Q3_K: 4 where the high bit of the value is clear (bit 4j+t of its hmask byte).
            let hbits = (!MINS).then(|| {
                let h = _mm256_loadu_si256(b.add(656 + 32 * l) as *const __m256i);
                _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1)
            });
            let vals: [(__m512i, Option<__m512i>); 4] = std::array::from_fn(|t| {
                let low =
                    _mm512_and_si512(_mm512_srl_epi16(qv, _mm_cvtsi32_si128(2 * t as i32)), three);
                let minus = hbits.map(|h| {
                    let shift = _mm512_inserti64x4(
                        _mm512_set1_epi16(t as i16),
                        _mm256_set1_epi16(4 + t as i16),
                        1,
                    );
                    let clear = _mm512_andnot_si512(_mm512_srlv_epi16(h, shift), one);
                    _mm512_slli_epi16(clear, 2)
                });
                (low, minus)
            });
            let h = usize::from(l >= 4);
            for r in 0..M {
                let q = ys[r].qs.as_ptr();
                let mut lane = _mm512_setzero_si512();
                for (t, (low, minus)) in vals.iter().enumerate() {
                    let at = 32 * t + 4 * l;
                    let d0 = (q.add(at) as *const i32).read_unaligned();
                    let d1 = (q.add(at + 128) as *const i32).read_unaligned();
                    let x = _mm512_mask_set1_epi32(_mm512_set1_epi32(d0), 0xFF00, d1);
                    let mut p = _mm512_maddubs_epi16(*low, x);
                    if let Some(minus) = minus {
                        p = _mm512_sub_epi16(p, _mm512_maddubs_epi16(*minus, x));
                    }
                    lane = _mm512_add_epi32(lane, _mm512_madd_epi16(p, scales[t][h]));
                }
                let sum = _mm256_add_epi32(
                    _mm512_castsi512_si256(lane),
                    _mm512_extracti64x4_epi64(lane, 1),
                );
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(ys[r].d));
                acc[r][l] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[r][l]);
            }
        }
    }
    let mut out = [[0f32; 8]; M];
    for r in 0..M {
        _mm256_storeu_ps(out[r].as_mut_ptr(), hsum8(&acc[r]));
    }
    out
}

/// The activation bytes a 512-bit K register multiplies: `q[at..at + 4]` in lanes 0..8 (the
/// first chunk) and `q[at + apart..]` in lanes 8..16 (the second).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn chunk_pair(q: *const i8, at: usize, apart: usize) -> __m512i {
    let d0 = (q.add(at) as *const i32).read_unaligned();
    let d1 = (q.add(at + apart) as *const i32).read_unaligned();
    _mm512_mask_set1_epi32(_mm512_set1_epi32(d0), 0xFF00, d1)
}

/// A 512-bit register's two chunk halves added: each group row's sum.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fold_chunks(v: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1))
}

/// Q4_K (or, `FIVE`, Q5_K) dot products of one group with `M` activation rows, 512 bits wide:
/// each register holds the same lane of two 64-value chunks (2p, 2p + 1). Exact sums, the bits
/// of every other Q4_K / Q5_K kernel.
macro_rules! q4k5k_512_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dp:ident) => {
        $(#[$doc])*
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize, const FIVE: bool>(
            w: *const u8,
            a: [*const ActBlockK; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let low = _mm512_set1_epi8(0x0F);
            let bit4 = _mm512_set1_epi8(0x10);
            // `(a & c) | b`: a nibble below its fifth bit already in place.
            let merge = |a: __m512i, b: __m512i| _mm512_ternarylogic_epi32::<0xEC>(a, b, low);
            let mut acc = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * k_stride(FIVE));
                prefetch_ahead::<M>(b, k_stride(FIVE));
                let ys: [&ActBlockK; M] = std::array::from_fn(|r| &*a[r].add(i));
                let sc = |s: usize| _mm_loadl_epi64(b.add(32 + 8 * s) as *const __m128i);
                let mut sums = [_mm512_setzero_si512(); M];
                for p in 0..2 {
                    // t[r][0]: the low nibbles, sub-blocks 4p (chunk 2p, low half) and 4p + 2
                    // (chunk 2p + 1, high half); t[r][1]: the high nibbles, 4p + 1 and 4p + 3.
                    let mut t = [[_mm512_setzero_si512(); 2]; M];
                    for l in 0..8 {
                        let at = b.add(160 + 32 * q4k_vector(2 * p, l));
                        let v = _mm512_loadu_si512(at as *const _);
                        let hi = _mm512_srli_epi16(v, 4);
                        let vals = if FIVE {
                            // Bit s of each `qh` byte (sub-block s) moved to bit 4.
                            let h = _mm256_loadu_si256(b.add(1184 + 32 * l) as *const __m256i);
                            let h = _mm512_broadcast_i64x4(h);
                            let fifth = |s0: i16, s1: i16| {
                                let to4 = |s: i16| (4 - s).max(0);
                                let from4 = |s: i16| (s - 4).max(0);
                                let pair = |c0: i16, c1: i16| {
                                    let c0 = _mm512_set1_epi16(c0);
                                    _mm512_inserti64x4(c0, _mm256_set1_epi16(c1), 1)
                                };
                                let x = _mm512_sllv_epi16(h, pair(to4(s0), to4(s1)));
                                let x = _mm512_srlv_epi16(x, pair(from4(s0), from4(s1)));
                                _mm512_and_si512(x, bit4)
                            };
                            let s = 4 * p as i16;
                            [merge(v, fifth(s, s + 2)), merge(hi, fifth(s + 1, s + 3))]
                        } else {
                            [_mm512_and_si512(v, low), _mm512_and_si512(hi, low)]
                        };
                        for r in 0..M {
                            let q = ys[r].qs.as_ptr();
                            for (half, vals) in vals.iter().enumerate() {
                                let x = chunk_pair(q, 128 * p + 32 * half + 4 * l, 64);
                                t[r][half] = $dp!(t[r][half], *vals, x);
                            }
                        }
                    }
                    for half in 0..2 {
                        let pair = _mm_unpacklo_epi64(sc(4 * p + half), sc(4 * p + 2 + half));
                        let s = _mm512_cvtepu8_epi32(pair);
                        for r in 0..M {
                            sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(t[r][half], s));
                        }
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                let dminw = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
                for r in 0..M {
                    let mins = Some((dminw, k_mins(b, ys[r])));
                    acc[r] = k_finish(acc[r], ys[r], dw, fold_chunks(sums[r]), mins);
                }
            }
            rows_out(&acc)
        }
    };
}

/// Q6_K dot products of one group with `M` activation rows, 512 bits wide: each register holds
/// the same lane of both 128-value chunks, so half the instructions of the 256-bit kernels
/// unpack and multiply the same bytes. Exact sums, the bits of every other Q6_K kernel.
macro_rules! q6k_512_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dp:ident) => {
        $(#[$doc])*
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            w: *const u8,
            a: [*const ActBlockK; M],
            nb: usize,
        ) -> [[f32; 8]; M] {
            let low = _mm512_set1_epi8(0x0F);
            let high = _mm512_set1_epi8(0x30);
            // `(a & c) | b`: a nibble below two high bits already in place.
            let merge = |a: __m512i, b: __m512i| _mm512_ternarylogic_epi32::<0xEC>(a, b, low);
            let mut acc = [_mm256_setzero_ps(); M];
            for i in 0..nb {
                let b = w.add(i * 1680);
                prefetch_ahead::<M>(b, 1680);
                let ys: [&ActBlockK; M] = std::array::from_fn(|r| &*a[r].add(i));
                let sc = |u: usize| _mm_loadl_epi64(b.add(16 + 8 * u) as *const __m128i);
                let mut sums = [_mm512_setzero_si512(); M];
                // Lanes 0..4 (h = 0) or 4..8 of value vector v hold sub-block 2v + h of chunk
                // 0 (low half) and 8 + 2v + h of chunk 1 (high half).
                for h in 0..2 {
                    let mut t = [[_mm512_setzero_si512(); 4]; M];
                    for l in 4 * h..4 * h + 4 {
                        let base = b.add(q6k_base(0, l));
                        let qa = _mm512_loadu_si512(base as *const _);
                        let qb = _mm512_loadu_si512(base.add(64) as *const _);
                        let qh = _mm512_loadu_si512(base.add(128) as *const _);
                        let qh_at = |bits: __m512i| _mm512_and_si512(bits, high);
                        let vals = [
                            merge(qa, qh_at(_mm512_slli_epi16(qh, 4))),
                            merge(qb, qh_at(_mm512_slli_epi16(qh, 2))),
                            merge(_mm512_srli_epi16(qa, 4), qh_at(qh)),
                            merge(_mm512_srli_epi16(qb, 4), qh_at(_mm512_srli_epi16(qh, 2))),
                        ];
                        for r in 0..M {
                            let q = ys[r].qs.as_ptr();
                            for (v, vals) in vals.iter().enumerate() {
                                let x = chunk_pair(q, 32 * v + 4 * l, 128);
                                t[r][v] = $dp!(t[r][v], *vals, x);
                            }
                        }
                    }
                    for v in 0..4 {
                        let pair = _mm_unpacklo_epi64(sc(2 * v + h), sc(8 + 2 * v + h));
                        let s = _mm512_cvtepi8_epi32(pair);
                        for r in 0..M {
                            sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(t[r][v], s));
                        }
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
                for r in 0..M {
                    let offsets = _mm256_slli_epi32(q6k_offsets(b, ys[r]), 5);
                    let sum = _mm256_sub_epi32(fold_chunks(sums[r]), offsets);
                    acc[r] = k_finish(acc[r], ys[r], dw, sum, None);
                }
            }
            rows_out(&acc)
        }
    };
}

// Four u8·i8 products into each i32 lane: one `vpdpbusd`, or `vpmaddubsw` + `vpmaddwd` (two
// 6-bit·i8 products fit an i16).
macro_rules! dp512_vnni {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm512_dpbusd_epi32($acc, $u, $s)
    };
}
macro_rules! dp512_bw {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm512_add_epi32(
            $acc,
            _mm512_madd_epi16(_mm512_maddubs_epi16($u, $s), _mm512_set1_epi16(1)),
        )
    };
}
q4k5k_512_kernel!(
    /// For AVX-512 CPUs without VNNI.
    q4k5k_512,
    "avx512f,avx512bw,avx2,fma,f16c",
    dp512_bw
);
q4k5k_512_kernel!(
    /// On AVX512-VNNI's `vpdpbusd` (Q5_K: its fifth bits make the unpacking the heavy part).
    q4k5k_vnni512,
    "avx512f,avx512bw,avx512vnni,avx2,fma,f16c",
    dp512_vnni
);
q6k_512_kernel!(
    /// For AVX-512 CPUs without VNNI.
    q6k_512,
    "avx512f,avx512bw,avx2,fma,f16c",
    dp512_bw
);
q6k_512_kernel!(
    /// On AVX512-VNNI's `vpdpbusd`.
    q6k_vnni512,
    "avx512f,avx512bw,avx512vnni,avx2,fma,f16c",
    dp512_vnni
);

/// Two neighbouring groups' 16 bytes at `at` (the second `gbytes` after the first) as one
/// 256-bit vector, first group low.
#[inline(always)]
pub(super) unsafe fn pair128(at: *const u8, gbytes: usize) -> __m256i {
    let lo = _mm_loadu_si128(at as *const __m128i);
    let hi = _mm_loadu_si128(at.add(gbytes) as *const __m128i);
    _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1)
}

/// The same for 32 bytes, as one 512-bit vector.
#[inline(always)]
unsafe fn pair256(at: *const u8, gbytes: usize) -> __m512i {
    let lo = _mm256_loadu_si256(at as *const __m256i);
    let hi = _mm256_loadu_si256(at.add(gbytes) as *const __m256i);
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// Q4_0, Q4_1, Q5_0 (`FIFTH`) or Q5_1 (`FIFTH`, `MIN`) dot products of two neighbouring groups
/// (`gbytes` apart: 16 weight rows, one per i32 lane of a 512-bit vector) with `M` activation
/// rows. Each lane takes the steps of the 256-bit kernels' lanes in the same order (an exact
/// integer sum per block, the offset through Σq, then the block's float steps), so the bits are
/// theirs: a 512-bit `vpdpbusd` issues as often as a 256-bit one on the CPUs that have it, and
/// each row's activations are broadcast once for both groups. `next`: fetch the next pair's
/// bytes meanwhile ([`prefetch_next_pair`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn ref_pair<const M: usize, const FIFTH: bool, const MIN: bool>(
    w: *const u8,
    gbytes: usize,
    next: bool,
    a: [*const ActBlock; M],
    nb: usize,
) -> [[[f32; 8]; M]; 2] {
    let RefBlock {
        base,
        nibbles,
        stride,
        offset,
    } = RefBlock::of(FIFTH, MIN);
    let low = _mm512_set1_epi8(0x0F);
    let five = _mm512_set1_epi8(0x10);
    // Byte i of each 256-bit half takes bit i % 8 of byte i / 8 of its group's u32.
    let spread = _mm512_broadcast_i64x4(_mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    ));
    let bit = _mm512_set1_epi64(0x8040_2010_0804_0201u64 as i64);
    let mut sum = [_mm512_setzero_ps(); M];
    for i in 0..nb {
        let b = w.add(i * stride);
        prefetch_next_pair(next, b, gbytes, stride);
        let d = _mm512_cvtph_ps(pair128(b, gbytes));
        let m = if MIN {
            _mm512_cvtph_ps(pair128(b.add(16), gbytes))
        } else {
            _mm512_setzero_ps()
        };
        let mut acc: [__m512i; M] =
            std::array::from_fn(|r| _mm512_set1_epi32(-offset * (*a[r].add(i)).sum));
        // The values' fifth bits (16 where set) added to the nibbles `v`.
        let fifth = |v: __m512i, at: usize| {
            if !FIFTH {
                return v;
            }
            let u32_at = |half: usize| (b.add(half * gbytes + at) as *const i32).read_unaligned();
            let h = _mm512_inserti64x4(
                _mm512_set1_epi32(u32_at(0)),
                _mm256_set1_epi32(u32_at(1)),
                1,
            );
            let set = _mm512_test_epi8_mask(_mm512_shuffle_epi8(h, spread), bit);
            _mm512_mask_add_epi8(v, set, v, five)
        };
        for c in 0..4 {
            let v = pair256(b.add(nibbles + 32 * c), gbytes);
            let lo = fifth(_mm512_and_si512(v, low), base + 8 * c);
            let hi = fifth(
                _mm512_and_si512(_mm512_srli_epi16(v, 4), low),
                base + 8 * c + 4,
            );
            for r in 0..M {
                let q = (*a[r].add(i)).qs.as_ptr();
                acc[r] = _mm512_dpbusd_epi32(acc[r], lo, bcast4_512(q, 4 * c));
                acc[r] = _mm512_dpbusd_epi32(acc[r], hi, bcast4_512(q, 16 + 4 * c));
            }
        }
        for r in 0..M {
            let ab = &*a[r].add(i);
            let si = _mm512_cvtepi32_ps(acc[r]);
            let t = _mm512_mul_ps(_mm512_mul_ps(si, d), _mm512_set1_ps(ab.d));
            let t = if MIN {
                _mm512_add_ps(t, _mm512_mul_ps(m, _mm512_set1_ps(ab.s)))
            } else {
                t
            };
            sum[r] = _mm512_add_ps(sum[r], t);
        }
    }
    pair_out(&sum)
}

/// One activation row's dot products with one group of Q4_0, Q4_1 (`MIN`), Q5_0 (`FIFTH`) or
/// Q5_1 (both), 512 bits wide: a vector holds a chunk's low nibbles in its lower half and its
/// high nibbles in its upper half, so a block takes four `vpdpbusd` instead of eight and half
/// the unpacking (a 5-bit block's fifth bits are one byte mask). Lanes r and r + 8 hold row r's
/// two halves; their exact integer sums added, the block takes the 256-bit kernels' float
/// steps: their bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn ref_one<const FIFTH: bool, const MIN: bool>(
    w: *const u8,
    a: *const ActBlock,
    nb: usize,
) -> [f32; 8] {
    let block = RefBlock::of(FIFTH, MIN);
    let (low, five) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x10));
    // Chunk c multiplies activations 4c..4c+4 (low nibbles) and 16+4c..16+4c+4 (high ones):
    // dword c of the row in the lower half, dword 4 + c in the upper.
    let picks: [__m512i; 4] = std::array::from_fn(|c| {
        let c = c as i32;
        _mm512_inserti64x4(_mm512_set1_epi32(c), _mm256_set1_epi32(4 + c), 1)
    });
    let mut sum = _mm256_setzero_ps();
    for i in 0..nb {
        let b = w.add(i * block.stride);
        prefetch_stream(b, block.stride);
        let ab = &*a.add(i);
        let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
        let x = _mm512_zextsi256_si512(_mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i));
        // The offset once per row: in the lower half only.
        let mut acc = _mm512_maskz_mov_epi32(0x00FF, _mm512_set1_epi32(-block.offset * ab.sum));
        for (c, pick) in picks.iter().enumerate() {
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                b.add(block.nibbles + 32 * c) as *const __m256i
            ));
            let v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF_0000, v, 4), low);
            let v = if FIFTH {
                let bits = (b.add(block.base + 8 * c) as *const u64).read_unaligned();
                _mm512_mask_add_epi8(v, bits, v, five)
            } else {
                v
            };
            acc = _mm512_dpbusd_epi32(acc, v, _mm512_permutexvar_epi32(*pick, x));
        }
        let acc = _mm256_add_epi32(
            _mm512_castsi512_si256(acc),
            _mm512_extracti64x4_epi64(acc, 1),
        );
        let si = _mm256_cvtepi32_ps(acc);
        let t = _mm256_mul_ps(_mm256_mul_ps(si, d), _mm256_set1_ps(ab.d));
        let t = if MIN {
            let m = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
            _mm256_add_ps(t, _mm256_mul_ps(m, _mm256_set1_ps(ab.s)))
        } else {
            t
        };
        sum = _mm256_add_ps(sum, t);
    }
    rows_out(&[sum])[0]
}

/// Q8_0 dot products of two neighbouring groups with `M` activation rows, as [`ref_pair`]
/// (the steps of the 256-bit Q8_0 kernels' lanes).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q8_0_pair<const M: usize>(
    w: *const u8,
    gbytes: usize,
    next: bool,
    a: [*const ActBlock; M],
    nb: usize,
) -> [[[f32; 8]; M]; 2] {
    let mut sum = [_mm512_setzero_ps(); M];
    for i in 0..nb {
        let b = w.add(i * 272);
        prefetch_next_pair(next, b, gbytes, 272);
        let d = _mm512_cvtph_ps(pair128(b, gbytes));
        // Packed bytes are q + 128 (see `dot8_vnni`).
        let mut acc: [__m512i; M] =
            std::array::from_fn(|r| _mm512_set1_epi32(-128 * (*a[r].add(i)).sum));
        for c in 0..8 {
            let v = pair256(b.add(16 + 32 * c), gbytes);
            for r in 0..M {
                let q = (*a[r].add(i)).qs.as_ptr();
                acc[r] = _mm512_dpbusd_epi32(acc[r], v, bcast4_512(q, 4 * c));
            }
        }
        for r in 0..M {
            let si = _mm512_cvtepi32_ps(acc[r]);
            let t = _mm512_mul_ps(_mm512_mul_ps(si, d), _mm512_set1_ps((*a[r].add(i)).d));
            sum[r] = _mm512_add_ps(sum[r], t);
        }
    }
    pair_out(&sum)
}

/// The frame of the K formats' two-group kernels: for each of the `nb` super-blocks (`stride`
/// bytes a group), the next pair's bytes asked for when `next` ([`prefetch_next_pair`]),
/// `block`'s exact integer sums of the `M` rows (and the groups' mins, where the format has
/// them), then [`k_finish_pair`]'s float steps.
#[inline(always)]
unsafe fn k_pair<const M: usize>(
    (w, gbytes, stride): (*const u8, usize, usize),
    next: bool,
    a: [*const ActBlockK; M],
    nb: usize,
    mut block: impl FnMut(*const u8, &[&ActBlockK; M]) -> ([__m512i; M], KMins),
) -> [[[f32; 8]; M]; 2] {
    let mut acc = [_mm512_setzero_ps(); M];
    for i in 0..nb {
        let b = w.add(i * stride);
        prefetch_next_pair(next, b, gbytes, stride);
        let ys: [&ActBlockK; M] = std::array::from_fn(|r| &*a[r].add(i));
        let (sums, mins) = block(b, &ys);
        let dw = _mm512_cvtph_ps(pair128(b, gbytes));
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = k_finish_pair(*acc, ys[r], dw, sums[r], mins);
        }
    }
    pair_out(&acc)
}

/// Q4_K (or, `FIVE`, Q5_K) dot products of two neighbouring groups with `M` activation rows,
/// as [`ref_pair`]: each lane takes the steps of the 256-bit `q4k5k` kernels' lanes.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q4k5k_pair<const M: usize, const FIVE: bool>(
    w: *const u8,
    gbytes: usize,
    next: bool,
    a: [*const ActBlockK; M],
    nb: usize,
) -> [[[f32; 8]; M]; 2] {
    let low = _mm512_set1_epi8(0x0F);
    let bit4 = _mm512_set1_epi8(0x10);
    k_pair((w, gbytes, k_stride(FIVE)), next, a, nb, |b, ys| {
        let mut sums = [_mm512_setzero_si512(); M];
        for s in 0..8 {
            let mut t = [_mm512_setzero_si512(); M];
            for l in 0..8 {
                let v = pair256(b.add(160 + 32 * q4k_vector(s / 2, l)), gbytes);
                let v = if s % 2 == 0 {
                    v
                } else {
                    _mm512_srli_epi16(v, 4)
                };
                let v = if FIVE {
                    // Bit s of each `qh` byte (sub-block s) moved to bit 4, below the nibble.
                    let h = pair256(b.add(1184 + 32 * l), gbytes);
                    let h = if s <= 4 {
                        _mm512_sll_epi16(h, _mm_cvtsi32_si128(4 - s as i32))
                    } else {
                        _mm512_srl_epi16(h, _mm_cvtsi32_si128(s as i32 - 4))
                    };
                    // `(v & low) | (h & bit4)`.
                    _mm512_ternarylogic_epi32::<0xEC>(v, _mm512_and_si512(h, bit4), low)
                } else {
                    _mm512_and_si512(v, low)
                };
                for r in 0..M {
                    let x = bcast4_512(ys[r].qs.as_ptr(), 32 * s + 4 * l);
                    t[r] = _mm512_dpbusd_epi32(t[r], v, x);
                }
            }
            let sc = _mm512_cvtepu8_epi32(pair64(b.add(32 + 8 * s), gbytes));
            for r in 0..M {
                sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(t[r], sc));
            }
        }
        let dminw = _mm512_cvtph_ps(pair128(b.add(16), gbytes));
        (sums, Some((dminw, k_min_pairs(b, gbytes))))
    })
}

/// Q6_K dot products of two neighbouring groups with `M` activation rows, as [`ref_pair`]:
/// each lane takes the steps of the 256-bit `q6k` kernels' lanes (exact sums, so the same
/// bits). Value vectors v and v + 2 share their `ql` bytes, so they are unpacked together.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q6k_pair<const M: usize>(
    w: *const u8,
    gbytes: usize,
    next: bool,
    a: [*const ActBlockK; M],
    nb: usize,
) -> [[[f32; 8]; M]; 2] {
    let low = _mm512_set1_epi8(0x0F);
    let high = _mm512_set1_epi8(0x30);
    k_pair((w, gbytes, 1680), next, a, nb, |b, ys| {
        let mut sums = [_mm512_setzero_si512(); M];
        for j in 0..2 {
            for h in 0..2 {
                for vp in 0..2 {
                    // t[0]: sub-block 8j + 2vp + h (value vector vp), t[1]: 8j + 2(vp + 2) + h.
                    let mut t = [[_mm512_setzero_si512(); M]; 2];
                    for l in 4 * h..4 * h + 4 {
                        let base = b.add(q6k_base(j, l));
                        let ql = pair256(base.add(64 * vp), gbytes);
                        let qh = pair256(base.add(128), gbytes);
                        // Bits 2v, 2v + 1 of each `qh` byte at bits 4 and 5.
                        let (h0, h1) = if vp == 0 {
                            (_mm512_slli_epi16(qh, 4), qh)
                        } else {
                            (_mm512_slli_epi16(qh, 2), _mm512_srli_epi16(qh, 2))
                        };
                        // `(a & low) | (b & high)`.
                        let merge = |a: __m512i, b: __m512i| {
                            _mm512_ternarylogic_epi32::<0xEC>(a, _mm512_and_si512(b, high), low)
                        };
                        let vals = [merge(ql, h0), merge(_mm512_srli_epi16(ql, 4), h1)];
                        for r in 0..M {
                            let q = ys[r].qs.as_ptr();
                            for (k, vals) in vals.iter().enumerate() {
                                let x = bcast4_512(q, 128 * j + 32 * (vp + 2 * k) + 4 * l);
                                t[k][r] = _mm512_dpbusd_epi32(t[k][r], *vals, x);
                            }
                        }
                    }
                    for k in 0..2 {
                        let u = 8 * j + 2 * (vp + 2 * k) + h;
                        let sc = _mm512_cvtepi8_epi32(pair64(b.add(16 + 8 * u), gbytes));
                        for r in 0..M {
                            sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(t[k][r], sc));
                        }
                    }
                }
            }
        }
        // `q6k_offsets` on both groups' lanes: the scales of sub-blocks 2p and 2p + 1 as i16
        // pairs, once for every row; each row's sums less 32 times its offset.
        let pairs: [__m512i; 8] = std::array::from_fn(|p| {
            let lo = pair64(b.add(16 + 16 * p), gbytes);
            let hi = pair64(b.add(24 + 16 * p), gbytes);
            let lo16 = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(lo, hi));
            let hi16 = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(lo, hi));
            _mm512_inserti64x4(_mm512_castsi256_si512(lo16), hi16, 1)
        });
        for (sum, y) in sums.iter_mut().zip(ys) {
            let mut offsets = _mm512_setzero_si512();
            for (p, pair) in pairs.iter().enumerate() {
                let s = (y.bsums.as_ptr().add(2 * p) as *const i32).read_unaligned();
                offsets = _mm512_add_epi32(offsets, _mm512_madd_epi16(*pair, _mm512_set1_epi32(s)));
            }
            *sum = _mm512_sub_epi32(*sum, _mm512_slli_epi32(offsets, 5));
        }
        (sums, None)
    })
}

/// The Q4_K / Q5_K mins of sub-blocks 2p and 2p + 1 of both groups' rows (super-block `b`, the
/// second group `gbytes` on) as i16 pairs, p = 0..4: [`k_finish_pair`]'s operands.
#[inline(always)]
pub(super) unsafe fn k_min_pairs(b: *const u8, gbytes: usize) -> [__m512i; 4] {
    std::array::from_fn(|p| _mm512_cvtepu8_epi16(pair128(b.add(96 + 16 * p), gbytes)))
}

/// The Q4_K / Q5_K groups' `dmin` scales and [`k_min_pairs`]; None for Q6_K.
type KMins = Option<(__m512, [__m512i; 4])>;

/// `k_finish` on both groups' sixteen lanes, and with `mins` `k_mins` too: the same float steps
/// in the same order, so the same bits.
#[inline(always)]
pub(super) unsafe fn k_finish_pair(
    acc: __m512,
    y: &ActBlockK,
    dw: __m512,
    sum: __m512i,
    mins: KMins,
) -> __m512 {
    let d = _mm512_mul_ps(dw, _mm512_set1_ps(y.d));
    let acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sum), acc);
    let Some((dminw, pairs)) = mins else {
        return acc;
    };
    let mut m = _mm512_setzero_si512();
    for (p, pair) in pairs.iter().enumerate() {
        let s0 = y.bsums[4 * p].wrapping_add(y.bsums[4 * p + 1]) as u16 as u32;
        let s1 = y.bsums[4 * p + 2].wrapping_add(y.bsums[4 * p + 3]) as u16 as u32;
        m = _mm512_add_epi32(
            m,
            _mm512_madd_epi16(*pair, _mm512_set1_epi32((s0 | s1 << 16) as i32)),
        );
    }
    let dmin = _mm512_mul_ps(dminw, _mm512_set1_ps(-y.d));
    _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(m), acc)
}

/// Two neighbouring groups' 8 bytes at `at` as one 128-bit vector, first group low.
#[inline(always)]
unsafe fn pair64(at: *const u8, gbytes: usize) -> __m128i {
    let lo = _mm_loadl_epi64(at as *const __m128i);
    let hi = _mm_loadl_epi64(at.add(gbytes) as *const __m128i);
    _mm_unpacklo_epi64(lo, hi)
}

/// Four activation bytes at `q + at`, in every i32 lane of a 512-bit vector.
#[inline(always)]
unsafe fn bcast4_512(q: *const i8, at: usize) -> __m512i {
    _mm512_set1_epi32((q.add(at) as *const i32).read_unaligned())
}

/// Each row's 16 lanes as the two groups' outputs.
#[inline(always)]
pub(super) unsafe fn pair_out<const M: usize>(sum: &[__m512; M]) -> [[[f32; 8]; M]; 2] {
    let mut out = [[[0f32; 8]; M]; 2];
    for (r, s) in sum.iter().enumerate() {
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), *s);
        out[0][r].copy_from_slice(&lanes[..8]);
        out[1][r].copy_from_slice(&lanes[8..]);
    }
    out
}
