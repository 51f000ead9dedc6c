//! Time `sha256_file` on a file: `hash_bench FILE [RUNS]` (prints the best run).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: hash_bench FILE [RUNS]");
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(10);
    let f = std::fs::File::open(&path).expect("open");
    if std::env::var_os("HEADER").is_some() {
        header_time(&f);
        return;
    }
    let mut best = f64::MAX;
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (d, n) = candor_verify::sha256_file(&f, &candor_verify::NoProgress).expect("hash");
        best = best.min(t.elapsed().as_secs_f64());
        size = n;
        std::hint::black_box(d);
    }
    println!(
        "{size} bytes: best {:.1} ms, {:.0} MB/s",
        best * 1e3,
        size as f64 / best / 1e6
    );
}

#[allow(dead_code)]
fn header_time(f: &std::fs::File) {
    for _ in 0..5 {
        let t = Instant::now();
        let h = candor_verify::formats::gguf::GgufHeader::read(f);
        println!(
            "gguf header: {:.2} ms ({})",
            t.elapsed().as_secs_f64() * 1e3,
            h.map(|h| h.metadata.len()).unwrap_or(0)
        );
    }
}
