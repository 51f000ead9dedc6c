//! Block formats and dot products. Weight blocks are read straight from candle's storage:
//! Q4_1 = f16 d, f16 m, 16 bytes of nibbles (value j is the low nibble of byte j, value j+16 the
//! high one), x = d·q + m; Q8_0 = f16 d, 32 i8, x = d·q.

use super::{Kind, SendPtr};
use half::f16;

pub const QK: usize = 32;

/// One activation block: ggml's Q8_1 (d = max|x|/127, q = round(x/d), s = d·Σq), with d and s
/// rounded to f16 as ggml stores them, kept as f32 for the kernels.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct ActBlock {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// Quantizes `x` (a multiple of 32 long) into `out`, rounding exactly as candle's and ggml's
/// reference `quantize_row_q8_1`.
pub fn quantize_row(x: &[f32], out: &mut [ActBlock]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in ob.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        let dh = f16::from_f32(d);
        ob.d = dh.to_f32();
        ob.s = (f16::from_f32(sum as f32) * dh).to_f32();
    }
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Portable dot product of one weight row (`kind` blocks) with an activation row.
pub fn dot_scalar(kind: Kind, w: &[u8], a: &[ActBlock]) -> f32 {
    let mut sum = 0f32;
    match kind {
        Kind::Q4_1 => {
            for (wb, ab) in w.chunks_exact(20).zip(a) {
                let mut si = 0i32;
                for j in 0..QK / 2 {
                    let q = wb[4 + j];
                    si += (q & 0x0F) as i32 * ab.qs[j] as i32
                        + (q >> 4) as i32 * ab.qs[j + 16] as i32;
                }
                sum += si as f32 * f16_at(wb, 0) * ab.d + f16_at(wb, 2) * ab.s;
            }
        }
        Kind::Q8_0 => {
            for (wb, ab) in w.chunks_exact(34).zip(a) {
                let mut si = 0i32;
                for j in 0..QK {
                    si += (wb[2 + j] as i8) as i32 * ab.qs[j] as i32;
                }
                sum += si as f32 * f16_at(wb, 0) * ab.d;
            }
        }
    }
    sum
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Dot product of one weight row with an activation row, fastest available way.
#[allow(dead_code)]
pub fn dot(kind: Kind, w: &[u8], a: &[ActBlock]) -> f32 {
    let nb = a.len().min(w.len() / kind.block_bytes());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2/FMA/F16C (checked above); the row holds `nb` blocks.
        return unsafe { avx2::dot::<1>(kind, [w.as_ptr()], a.as_ptr(), nb)[0] };
    }
    dot_scalar(kind, &w[..nb * kind.block_bytes()], &a[..nb])
}

/// Dot products of weight rows c0..c1 (at most 4) with one activation row.
#[inline]
#[allow(clippy::too_many_arguments)]
fn dots4(
    simd: bool,
    kind: Kind,
    w: &[u8],
    rb: usize,
    c0: usize,
    c1: usize,
    a: &[ActBlock],
) -> [f32; 4] {
    let mut v = [0f32; 4];
    let nb = a.len();
    #[cfg(target_arch = "x86_64")]
    if simd {
        if kind == Kind::Q4_1 {
            if c1 - c0 == 4 {
                let p = w[c0 * rb..c1 * rb].as_ptr();
                // SAFETY: AVX2/FMA/F16C are present (`simd`); rows c0..c0+4 of `nb` blocks
                // each lie inside `w` (sliced above) and `a` holds `nb` blocks.
                return unsafe {
                    avx2::dot4_q4_1([p, p.add(rb), p.add(2 * rb), p.add(3 * rb)], a.as_ptr(), nb)
                };
            }
            for c in c0..c1 {
                v[c - c0] = dot_scalar(kind, &w[c * rb..(c + 1) * rb], a);
            }
            return v;
        }
        if c1 - c0 == 4 {
            let p = w[c0 * rb..c1 * rb].as_ptr();
            // SAFETY: AVX2/FMA/F16C are present (`simd`); rows c0..c0+4 of `nb` blocks each
            // lie inside `w` (sliced above) and `a` holds `nb` blocks.
            return unsafe {
                avx2::dot::<4>(
                    kind,
                    [p, p.add(rb), p.add(2 * rb), p.add(3 * rb)],
                    a.as_ptr(),
                    nb,
                )
            };
        }
        for c in c0..c1 {
            // SAFETY: as above, one row.
            v[c - c0] = unsafe {
                avx2::dot::<1>(kind, [w[c * rb..(c + 1) * rb].as_ptr()], a.as_ptr(), nb)[0]
            };
        }
        return v;
    }
    let _ = (simd, nb);
    for c in c0..c1 {
        v[c - c0] = dot_scalar(kind, &w[c * rb..(c + 1) * rb], a);
    }
    v
}

/// One weight of a batched int8 matmul: `dst (m, n) = x · Wᵀ`.
pub struct Job<'a> {
    pub kind: Kind,
    pub w: &'a [u8],
    pub n: usize,
    pub dst: SendPtr,
}

thread_local! {
    static ACTS: std::cell::RefCell<Vec<ActBlock>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Quantizes the m rows of `x` (m, k) and runs `f` on them.
fn with_acts<R>(x: &[f32], m: usize, k: usize, f: impl FnOnce(&[ActBlock]) -> R) -> R {
    let nb = k / QK;
    ACTS.with(|acts| {
        let mut acts = acts.borrow_mut();
        acts.clear();
        acts.resize(m * nb, ActBlock::default());
        for (xr, ar) in x.chunks_exact(k).take(m).zip(acts.chunks_exact_mut(nb)) {
            quantize_row(xr, ar);
        }
        f(&acts)
    })
}

/// Several weights sharing the input `x` (m, k): one activation quantization, one pool
/// dispatch; weight rows are split across the pool in groups of four.
/// Every job's `dst` must point at m × n writable f32s.
pub fn matmul_int8(jobs: &[Job], x: &[f32], m: usize, k: usize) {
    let nb = k / QK;
    with_acts(x, m, k, |acts| {
        let simd = has_avx2();
        let mut starts = Vec::with_capacity(jobs.len() + 1);
        let mut total = 0;
        for j in jobs {
            starts.push(total);
            total += j.n.div_ceil(4);
        }
        let pool = candle_core::utils::barrier_pool();
        pool.execute_chunked(total, |range| {
            for g in range {
                let ji = starts.partition_point(|&s| s <= g) - 1;
                let job = &jobs[ji];
                let rb = nb * job.kind.block_bytes();
                let c0 = (g - starts[ji]) * 4;
                let c1 = job.n.min(c0 + 4);
                for r in 0..m {
                    let v = dots4(
                        simd,
                        job.kind,
                        job.w,
                        rb,
                        c0,
                        c1,
                        &acts[r * nb..(r + 1) * nb],
                    );
                    for c in c0..c1 {
                        // SAFETY: (r, c) is inside this job's dst (m × n) and only this group
                        // writes columns c0..c1 of it.
                        unsafe { *job.dst.0.add(r * job.n + c) = v[c - c0] };
                    }
                }
            }
        });
    });
}

/// `dst (m, n) = silu(x · Gᵀ) ⊙ (x · Uᵀ)`: the SwiGLU gate and up projections in one pass.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_int8(
    kind: Kind,
    wg: &[u8],
    wu: &[u8],
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
) {
    let nb = k / QK;
    let rb = nb * kind.block_bytes();
    let out = SendPtr(dst.as_mut_ptr());
    with_acts(x, m, k, |acts| {
        let simd = has_avx2();
        let pool = candle_core::utils::barrier_pool();
        pool.execute_chunked(n.div_ceil(4), |range| {
            let out = out;
            for g in range {
                let c0 = g * 4;
                let c1 = n.min(c0 + 4);
                for r in 0..m {
                    let a = &acts[r * nb..(r + 1) * nb];
                    let gv = dots4(simd, kind, wg, rb, c0, c1, a);
                    let uv = dots4(simd, kind, wu, rb, c0, c1, a);
                    for c in c0..c1 {
                        let g = gv[c - c0];
                        // SAFETY: (r, c) is inside dst (m × n); only this group writes c0..c1.
                        unsafe { *out.0.add(r * n + c) = g / (1.0 + (-g).exp()) * uv[c - c0] };
                    }
                }
            }
        });
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ActBlock, Kind};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Dot products of 4 Q4_1 weight rows with one activation row, rounding exactly as the
    /// scalar reference (candle's and ggml's generic `vec_dot_q4_1_q8_1`): per block, the
    /// integer dot is exact, then `(sumi·d)·d' + m·s` is added in block order in f32, one lane
    /// per row. Greedy outputs therefore match candle's quantized models token for token.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; each `w[r]` must point at `nb` readable Q4_1
    /// blocks and `a` at `nb` activation blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4_q4_1(w: [*const u8; 4], a: *const ActBlock, nb: usize) -> [f32; 4] {
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0F);
        let mut sum = _mm_setzero_ps();
        for i in 0..nb {
            let ab = a.add(i);
            let qy = _mm256_loadu_si256((*ab).qs.as_ptr() as *const __m256i);
            let mut p = [_mm256_setzero_si256(); 4];
            let mut dm = [_mm_setzero_ps(); 4];
            for r in 0..4 {
                let wb = w[r].add(i * 20);
                dm[r] = _mm_cvtph_ps(_mm_cvtsi32_si128((wb as *const i32).read_unaligned()));
                let t = _mm_loadu_si128(wb.add(4) as *const __m128i);
                let qx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
                p[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
            }
            // Exact integer sums of the four rows: [S0, S1, S2, S3].
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
            let si = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            // [d0, d1, m0, m1], [d2, d3, m2, m3] → d = [d0..d3], m = [m0..m3].
            let a01 = _mm_unpacklo_ps(dm[0], dm[1]);
            let a23 = _mm_unpacklo_ps(dm[2], dm[3]);
            let d = _mm_movelh_ps(a01, a23);
            let m = _mm_movehl_ps(a23, a01);
            let t1 = _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps(si), d), _mm_set1_ps((*ab).d));
            let t2 = _mm_mul_ps(m, _mm_set1_ps((*ab).s));
            sum = _mm_add_ps(sum, _mm_add_ps(t1, t2));
        }
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sum);
        out
    }

    /// Dot products of `R` weight rows (each `nb` blocks of `kind`) with one activation row.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; each `w[r]` must point at `nb` readable blocks
    /// and `a` at `nb` activation blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot<const R: usize>(
        kind: Kind,
        w: [*const u8; R],
        a: *const ActBlock,
        nb: usize,
    ) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut macc = [_mm_setzero_ps(); R];
        let ones = _mm256_set1_epi16(1);
        match kind {
            Kind::Q4_1 => {
                let low = _mm256_set1_epi8(0x0F);
                for i in 0..nb {
                    let ab = a.add(i);
                    // [d, s] of the activation block.
                    let ads = _mm_castpd_ps(_mm_load_sd(ab as *const f64));
                    let qy = _mm256_loadu_si256((*ab).qs.as_ptr() as *const __m256i);
                    for r in 0..R {
                        let wb = w[r].add(i * 20);
                        // [d, m] of the weight block, f16 → f32.
                        let dm =
                            _mm_cvtph_ps(_mm_cvtsi32_si128((wb as *const i32).read_unaligned()));
                        let prod = _mm_mul_ps(dm, ads); // [d·d', m·s]
                        macc[r] = _mm_add_ps(macc[r], prod);
                        let t = _mm_loadu_si128(wb.add(4) as *const __m128i);
                        let qx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
                        acc[r] = _mm256_fmadd_ps(
                            _mm256_broadcastss_ps(prod),
                            _mm256_cvtepi32_ps(p),
                            acc[r],
                        );
                    }
                }
            }
            Kind::Q8_0 => {
                for i in 0..nb {
                    let ab = a.add(i);
                    let ad = _mm_load_ss(&(*ab).d);
                    let qy = _mm256_loadu_si256((*ab).qs.as_ptr() as *const __m256i);
                    for r in 0..R {
                        let wb = w[r].add(i * 34);
                        let d = _mm_cvtph_ps(_mm_cvtsi32_si128(
                            (wb as *const u16).read_unaligned() as i32,
                        ));
                        let prod = _mm_mul_ss(d, ad);
                        let qx = _mm256_loadu_si256(wb.add(2) as *const __m256i);
                        let ax = _mm256_sign_epi8(qx, qx);
                        let sy = _mm256_sign_epi8(qy, qx);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
                        acc[r] = _mm256_fmadd_ps(
                            _mm256_broadcastss_ps(prod),
                            _mm256_cvtepi32_ps(p),
                            acc[r],
                        );
                    }
                }
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            let m = match kind {
                Kind::Q4_1 => _mm_cvtss_f32(_mm_movehdup_ps(macc[r])),
                Kind::Q8_0 => 0.0,
            };
            out[r] = hsum(acc[r]) + m;
        }
        out
    }
}
