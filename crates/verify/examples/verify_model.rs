//! Verify a model against a manifest and print the report and timings:
//! `cargo run --release -p candor-verify --example verify_model -- MANIFEST TARGET [CACHE_DIR] [--rehash] [--json]`

use std::{path::PathBuf, time::Instant};

use candor_verify::{verify, Manifest, NoProgress, VerifyOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: Vec<&String> = args.iter().filter(|a| a.starts_with("--")).collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() < 2 {
        eprintln!("usage: verify_model MANIFEST|- TARGET [CACHE_DIR] [--rehash] [--json]");
        std::process::exit(2);
    }
    let manifest = (pos[0] != "-").then(|| {
        Manifest::load(&PathBuf::from(pos[0])).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        })
    });
    let opts = VerifyOptions {
        rehash: flags.iter().any(|f| *f == "--rehash"),
        cache_dir: pos.get(2).map(PathBuf::from),
        allow_unlisted: flags.iter().any(|f| *f == "--allow-unlisted"),
        ..Default::default()
    };
    let t = Instant::now();
    let r = verify(
        manifest.as_ref(),
        &PathBuf::from(pos[1]),
        &opts,
        &NoProgress,
    );
    let elapsed = t.elapsed();
    let json = flags.iter().any(|f| *f == "--json");
    let verdict = r.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let report = verdict.report();
    if json {
        println!("{}", report.to_json())
    } else {
        print!("{}", report.render())
    }
    eprintln!("decided in {:.3} ms", elapsed.as_secs_f64() * 1000.0);
    if !report.decision.allowed() {
        std::process::exit(1);
    }
}
