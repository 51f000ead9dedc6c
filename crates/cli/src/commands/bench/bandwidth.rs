//! A short probe of how fast this machine streams memory into the cores: the bound that
//! decoding speed is measured against (bytes read per token / bytes per second).

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

/// Eight independent lanes, so that the loop is bound by loads, not by one chain of adds.
fn sum(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let chunks = words.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(0, |a: u64, &w| a.wrapping_add(w));
    for c in chunks {
        for i in 0..8 {
            lanes[i] = lanes[i].wrapping_add(c[i]);
        }
    }
    lanes.iter().fold(tail, |a, &l| a.wrapping_add(l))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_word() {
        let words: Vec<u64> = (1..=1003).collect();
        assert_eq!(super::sum(&words), 1003 * 1004 / 2);
    }
}
