//! A short probe of how fast this machine streams memory into the cores: the bound that
//! decoding speed is measured against (bytes read per token / bytes per second). It reads with
//! the widest loads the CPU has: a loop the compiler vectorizes on its own read 10.6 GB/s on
//! one core of a Sapphire Rapids Xeon where 512-bit loads read 16.9 (and C's 17.7).

use std::time::Instant;

/// Bytes the probe reads per pass: far beyond any core's caches, small enough to take well
/// under a second.
const BUFFER: usize = 512 << 20;
/// Passes; the fastest counts (the first also faults the pages in).
const PASSES: usize = 4;

/// Read bandwidth in bytes per second with `threads` threads, each summing its own share of a
/// buffer as the decode kernels stream weights.
pub fn read_bandwidth(threads: usize) -> f64 {
    let threads = threads.max(1);
    let words = BUFFER / 8;
    // Distinct values so the pages are really backed, not the shared zero page.
    let buffer: Vec<u64> = (0..words as u64).collect();
    let share = words.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let workers: Vec<_> = buffer
                .chunks(share)
                .map(|part| s.spawn(move || sum(part)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_secs_f64());
    }
    BUFFER as f64 / best
}

/// The wrapping sum of `words`, read with the widest loads this CPU has.
fn sum(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked).
            return unsafe { sum_512(words) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked).
            return unsafe { sum_256(words) };
        }
    }
    words.iter().fold(0, |a, &w| a.wrapping_add(w))
}

/// Two chains of 512-bit loads, so that the loop is bound by the loads, not by the adds.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn sum_512(words: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let chunks = words.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(0, |a: u64, &w| a.wrapping_add(w));
    let (mut a, mut b) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for c in chunks {
        a = _mm512_add_epi64(a, _mm512_loadu_si512(c.as_ptr() as *const _));
        b = _mm512_add_epi64(b, _mm512_loadu_si512(c[8..].as_ptr() as *const _));
    }
    (_mm512_reduce_add_epi64(_mm512_add_epi64(a, b)) as u64).wrapping_add(tail)
}

/// As [`sum_512`], with 256-bit loads.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn sum_256(words: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let chunks = words.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(0, |a: u64, &w| a.wrapping_add(w));
    let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for c in chunks {
        a = _mm256_add_epi64(a, _mm256_loadu_si256(c.as_ptr() as *const __m256i));
        b = _mm256_add_epi64(b, _mm256_loadu_si256(c[4..].as_ptr() as *const __m256i));
    }
    let mut lanes = [0u64; 4];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, _mm256_add_epi64(a, b));
    lanes.iter().fold(tail, |a, &l| a.wrapping_add(l))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_word() {
        let words: Vec<u64> = (1..=1003).collect();
        assert_eq!(super::sum(&words), 1003 * 1004 / 2);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked).
            assert_eq!(unsafe { super::sum_256(&words) }, 1003 * 1004 / 2);
        }
    }
}
