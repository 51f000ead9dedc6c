//! SHA-256 throughput of the verifier's file hash (`candor_verify::sha256_file`) on a generated
//! file. Reports only; never fails on a time. `cargo bench --bench hashing`.

use candor_verify::{sha256_file, NoProgress};
use divan::counter::BytesCount;
use std::io::Write;

const SIZE: usize = 64 << 20;

fn main() {
    divan::main();
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn sha256_file_64mib(bencher: divan::Bencher) {
    let mut file = tempfile::tempfile().expect("temp file");
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for _ in 0..SIZE / chunk.len() {
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
    bencher
        .counter(BytesCount::new(SIZE))
        .bench_local(|| sha256_file(&file, &NoProgress).expect("hash"));
}
