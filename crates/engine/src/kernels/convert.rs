//! The KV cache's stored formats back to f32, as the attention kernel reads a block of
//! positions: f16 (kept as bits) and q8_0 (int8 values, one f16 scale per 32). Both are exact
//! in f32 (a q8_0 value is one product), so any vector form gives the same bits: the f16 one is
//! the `half` crate's (F16C where the CPU has it), the q8_0 ones are loops over whole blocks
//! that the compiler vectorizes.

use crate::kv_cache::Q8_BLOCK;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

/// `dst[i] = f32(src[i])` for f16 bits `src`.
pub(crate) fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    src.reinterpret_cast::<half::f16>()
        .convert_to_f32_slice(dst);
}

/// `dst[i] = quants[i] · f32(scales[i / 32])`, whole blocks.
pub(crate) fn q8_0_to_f32(quants: &[i8], scales: &[u16], dst: &mut [f32]) {
    assert!(quants.len() == dst.len() && quants.len() == scales.len() * Q8_BLOCK);
    for ((d, q), &s) in dst
        .chunks_exact_mut(Q8_BLOCK)
        .zip(quants.chunks_exact(Q8_BLOCK))
        .zip(scales)
    {
        let s = half::f16::from_bits(s).to_f32();
        let q: &[i8; Q8_BLOCK] = q.try_into().expect("block");
        let d: &mut [f32; Q8_BLOCK] = d.try_into().expect("block");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every conversion is the exact value: each half as `half` converts one value, odd lengths
    /// and extremes included; each q8_0 value its quant times its block's scale.
    #[test]
    fn conversions_are_exact() {
        let halves: Vec<u16> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 16) as u16)
            .filter(|&b| !half::f16::from_bits(b).is_nan())
            .take(517)
            .collect();
        let mut a = vec![0f32; halves.len()];
        f16_to_f32(&halves, &mut a);
        for (a, &h) in a.iter().zip(&halves) {
            assert_eq!(a.to_bits(), half::f16::from_bits(h).to_f32().to_bits());
        }

        let quants: Vec<i8> = (0..4 * Q8_BLOCK)
            .map(|i| (i as i32 * 37 % 255 - 127) as i8)
            .collect();
        let scales = [0.5f32, -0.0, 3.0e-3, 1000.0].map(|s| half::f16::from_f32(s).to_bits());
        let mut a = vec![0f32; quants.len()];
        q8_0_to_f32(&quants, &scales, &mut a);
        for (i, a) in a.iter().enumerate() {
            let s = half::f16::from_bits(scales[i / Q8_BLOCK]).to_f32();
            assert_eq!(a.to_bits(), (f32::from(quants[i]) * s).to_bits());
        }
        assert_eq!(a[1], f32::from(quants[1]) * 0.5);
    }
}
