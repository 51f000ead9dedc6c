//! A short probe of how fast this machine streams memory into the cores: the bound that
//! decoding speed is measured against (bytes read per token / bytes per second). It reads with
//! the widest loads the CPU has and asks for the bytes ahead as the decode kernels do: the
//! eight-lane loop it had before, which the compiler turned into 128-bit shuffles, read 10.6
//! GB/s on one core of a Sapphire Rapids Xeon where 512-bit loads read 16.9 (and C's 17.7);
//! without the prefetches it read 16.0–16.8 where the kernels, with them, streamed more
//! (shares of 100–105%), with them 17.7–18.3.

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
    // Backed as the packed weights are, with distinct values so the pages are really
    // backed, not the shared zero page.
    let chunk = super::arena::Chunk::new(BUFFER);
    // SAFETY: the chunk holds BUFFER zeroed bytes, 2 MiB-aligned (so aligned for u64), and is
    // this function's alone while `buffer` lives.
    let buffer: &mut [u64] =
        unsafe { std::slice::from_raw_parts_mut(chunk.as_ptr() as *mut u64, words) };
    for (i, w) in buffer.iter_mut().enumerate() {
        *w = i as u64;
    }
    let buffer = &*buffer;
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
        // The compiler vectorizes the inner sum with the build's widest vectors (256-bit ones
        // read as fast as an explicit 256-bit loop, measured).
        words.chunks(16).fold(0, |a, c| {
            // SAFETY: a prefetch reads nothing and never faults; SSE is part of x86-64.
            unsafe { super::x86::prefetch_stream(c.as_ptr().cast(), 128) };
            c.iter().fold(a, |a, &w| a.wrapping_add(w))
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    words.iter().fold(0, |a, &w| a.wrapping_add(w))
}

/// Two chains of 512-bit loads, so that the loop is bound by the loads, not by the adds, each
/// asked for ahead as the decode kernels ask for weights.
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
        super::x86::prefetch_stream(c.as_ptr() as *const u8, 128);
        a = _mm512_add_epi64(a, _mm512_loadu_si512(c.as_ptr() as *const _));
        b = _mm512_add_epi64(b, _mm512_loadu_si512(c[8..].as_ptr() as *const _));
    }
    (_mm512_reduce_add_epi64(_mm512_add_epi64(a, b)) as u64).wrapping_add(tail)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_word() {
        let words: Vec<u64> = (1..=1003).collect();
        assert_eq!(super::sum(&words), 1003 * 1004 / 2);
    }
}
