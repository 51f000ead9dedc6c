//! The KV cache's stored formats back to f32, as the attention kernel reads a block of
//! positions: f16 (kept as bits) and q8_0 (int8 values, one f16 scale per 32). The vector
//! forms give the portable loops' results exactly (both conversions are exact in f32, and a
//! q8_0 value is one product).

use crate::kv_cache::Q8_BLOCK;

// The widest vector form this build has; each converts what it can and says how much.
#[cfg(all(
    target_arch = "x86_64",
    not(target_feature = "avx512f"),
    target_feature = "avx2",
    target_feature = "f16c"
))]
use avx2 as simd;
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
use avx512 as simd;
#[cfg(not(all(
    target_arch = "x86_64",
    any(
        target_feature = "avx512f",
        all(target_feature = "avx2", target_feature = "f16c")
    )
)))]
use none as simd;

/// `dst[i] = f32(src[i])` for f16 bits `src`.
pub(crate) fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let done = simd::f16_to_f32(src, dst);
    portable_f16(&src[done..], &mut dst[done..]);
}

fn portable_f16(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = half::f16::from_bits(s).to_f32();
    }
}

/// `dst[i] = quants[i] · f32(scales[i / 32])`, whole blocks.
pub(crate) fn q8_0_to_f32(quants: &[i8], scales: &[u16], dst: &mut [f32]) {
    assert!(quants.len() == dst.len() && quants.len() == scales.len() * Q8_BLOCK);
    let done = simd::q8_0_to_f32(quants, scales, dst);
    portable_q8_0(
        &quants[done..],
        &scales[done / Q8_BLOCK..],
        &mut dst[done..],
    );
}

fn portable_q8_0(quants: &[i8], scales: &[u16], dst: &mut [f32]) {
    for ((d, q), &s) in dst
        .chunks_exact_mut(Q8_BLOCK)
        .zip(quants.chunks_exact(Q8_BLOCK))
        .zip(scales)
    {
        let s = half::f16::from_bits(s).to_f32();
        for (d, &q) in d.iter_mut().zip(q) {
            *d = f32::from(q) * s;
        }
    }
}

/// Keys in the cache's chunked layout (`kv_cache::KEY_CHUNK` positions × `dim`, dimension by
/// dimension) from q8_0: value (i, lane) of a chunk is `quants[i·16 + lane]` times the scale of
/// block `i / 32` of that lane's position, which lies at `scales[(i / 32)·16 + lane]`. Written
/// for whole rows of 16 lanes, which the compiler vectorizes.
pub(crate) fn q8_0_keys_to_f32(quants: &[i8], scales: &[u16], dim: usize, dst: &mut [f32]) {
    const LANES: usize = crate::kv_cache::KEY_CHUNK;
    let chunk = dim * LANES;
    assert!(quants.len() == dst.len() && quants.len() == scales.len() * Q8_BLOCK);
    assert!(dim.is_multiple_of(Q8_BLOCK) && dst.len().is_multiple_of(chunk));
    let mut s = vec![0f32; chunk / Q8_BLOCK];
    for ((d, q), bits) in dst
        .chunks_exact_mut(chunk)
        .zip(quants.chunks_exact(chunk))
        .zip(scales.chunks_exact(chunk / Q8_BLOCK))
    {
        f16_to_f32(bits, &mut s);
        for (i, (d, q)) in d
            .chunks_exact_mut(LANES)
            .zip(q.chunks_exact(LANES))
            .enumerate()
        {
            let s: &[f32; LANES] = s[i / Q8_BLOCK * LANES..][..LANES]
                .try_into()
                .expect("lanes");
            let q: &[i8; LANES] = q.try_into().expect("lanes");
            let d: &mut [f32; LANES] = d.try_into().expect("lanes");
            *d = std::array::from_fn(|l| f32::from(q[l]) * s[l]);
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
mod avx512 {
    use crate::kv_cache::Q8_BLOCK;
    use std::arch::x86_64::*;

    /// Converts whole runs of 16; returns how many values it converted.
    pub(super) fn f16_to_f32(src: &[u16], dst: &mut [f32]) -> usize {
        for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
            // SAFETY: AVX-512F is enabled at build time; `s` holds 16 halves (32 bytes) and
            // `d` 16 floats.
            unsafe {
                let h = _mm256_loadu_si256(s.as_ptr().cast());
                _mm512_storeu_ps(d.as_mut_ptr(), _mm512_cvtph_ps(h));
            }
        }
        src.len() / 16 * 16
    }

    /// Converts every block; returns how many values it converted.
    pub(super) fn q8_0_to_f32(quants: &[i8], scales: &[u16], dst: &mut [f32]) -> usize {
        for ((q, d), &s) in quants
            .chunks_exact(Q8_BLOCK)
            .zip(dst.chunks_exact_mut(Q8_BLOCK))
            .zip(scales)
        {
            let scale = half::f16::from_bits(s).to_f32();
            for part in 0..2 {
                // SAFETY: AVX-512F is enabled at build time; `q` holds 32 bytes and `d` 32
                // floats, and each part reads and writes 16.
                unsafe {
                    let scale = _mm512_set1_ps(scale);
                    let bytes = _mm_loadu_si128(q.as_ptr().add(16 * part).cast());
                    let v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), scale);
                    _mm512_storeu_ps(d.as_mut_ptr().add(16 * part), v);
                }
            }
        }
        quants.len()
    }
}

#[cfg(all(
    target_arch = "x86_64",
    not(target_feature = "avx512f"),
    target_feature = "avx2",
    target_feature = "f16c"
))]
mod avx2 {
    use crate::kv_cache::Q8_BLOCK;
    use std::arch::x86_64::*;

    /// Converts whole runs of 8; returns how many values it converted.
    pub(super) fn f16_to_f32(src: &[u16], dst: &mut [f32]) -> usize {
        for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
            // SAFETY: AVX2 and F16C are enabled at build time; `s` holds 8 halves (16 bytes)
            // and `d` 8 floats.
            unsafe {
                let h = _mm_loadu_si128(s.as_ptr().cast());
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
        }
        src.len() / 8 * 8
    }

    /// Converts every block; returns how many values it converted.
    pub(super) fn q8_0_to_f32(quants: &[i8], scales: &[u16], dst: &mut [f32]) -> usize {
        for ((q, d), &s) in quants
            .chunks_exact(Q8_BLOCK)
            .zip(dst.chunks_exact_mut(Q8_BLOCK))
            .zip(scales)
        {
            let scale = half::f16::from_bits(s).to_f32();
            for part in 0..4 {
                // SAFETY: AVX2 is enabled at build time; `q` holds 32 bytes and `d` 32 floats,
                // and each part reads and writes 8.
                unsafe {
                    let scale = _mm256_set1_ps(scale);
                    let bytes = _mm_loadl_epi64(q.as_ptr().add(8 * part).cast());
                    let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), scale);
                    _mm256_storeu_ps(d.as_mut_ptr().add(8 * part), v);
                }
            }
        }
        quants.len()
    }
}

/// No vector form: the portable loops convert everything.
#[cfg(not(all(
    target_arch = "x86_64",
    any(
        target_feature = "avx512f",
        all(target_feature = "avx2", target_feature = "f16c")
    )
)))]
mod none {
    pub(super) fn f16_to_f32(_: &[u16], _: &mut [f32]) -> usize {
        0
    }

    pub(super) fn q8_0_to_f32(_: &[i8], _: &[u16], _: &mut [f32]) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector conversions give the portable loops' bits, odd lengths and extremes included.
    #[test]
    fn vector_forms_equal_the_portable_loops() {
        let halves: Vec<u16> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 16) as u16)
            .filter(|&b| !half::f16::from_bits(b).is_nan())
            .take(517)
            .collect();
        let (mut a, mut b) = (vec![0f32; halves.len()], vec![0f32; halves.len()]);
        f16_to_f32(&halves, &mut a);
        portable_f16(&halves, &mut b);
        assert_eq!(a, b);

        let quants: Vec<i8> = (0..4 * Q8_BLOCK)
            .map(|i| (i as i32 * 37 % 255 - 127) as i8)
            .collect();
        let scales = [0.5f32, -0.0, 3.0e-3, 1000.0].map(|s| half::f16::from_f32(s).to_bits());
        let (mut a, mut b) = (vec![0f32; quants.len()], vec![0f32; quants.len()]);
        q8_0_to_f32(&quants, &scales, &mut a);
        portable_q8_0(&quants, &scales, &mut b);
        assert_eq!(a, b);
        assert_eq!(a[1], f32::from(quants[1]) * 0.5);
    }
}
