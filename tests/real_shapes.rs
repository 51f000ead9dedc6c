//! Models at real models' shapes (random weights written by `shape-gguf`): one at SmolLM2-1.7B's
//! size loads holding its weights once (peak memory within the file's size, the KV cache and
//! 10%), and a model split in parts as llama.cpp's gguf-split writes it loads as the whole file.

mod common;

use candor_engine::LoadOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The peak-memory test measures the whole process: the tests here run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A generated file (or its parts), written once per target directory: the generator is
/// deterministic.
fn generated(name: &str, args: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("shapes")
        .join(name);
    let done = dir.join("complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tokenizer = common::default_model_dir().join(common::DEFAULT_FILE);
        let out = Command::new(env!("CARGO_BIN_EXE_shape-gguf"))
            .args(args)
            .arg("--tokenizer-from")
            .arg(&tokenizer)
            .arg("-o")
            .arg(dir.join(format!("{name}.gguf")))
            .output()
            .unwrap();
        assert!(out.status.success(), "shape-gguf: {out:?}");
        std::fs::write(&done, "").unwrap();
    }
    dir
}

fn smollm2_1_7b_shape() -> PathBuf {
    let dir = generated(
        "smollm2-1.7b-q4_k_m",
        &["--shape", "smollm2-1.7b", "--quant", "q4_k_m"],
    );
    dir.join("smollm2-1.7b-q4_k_m.gguf")
}

/// A /proc/self/status field in bytes (Linux).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Starts a new peak-RSS measurement: writing 5 to clear_refs resets VmHWM to the current RSS.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[test]
#[cfg(target_os = "linux")]
fn a_real_size_model_is_held_once() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let file = smollm2_1_7b_shape();
    let file_size = std::fs::metadata(&file).unwrap().len();
    assert!(
        file_size > 1_000_000_000,
        "the 1.7B shape is {file_size} bytes"
    );
    let verified = common::verify_unlisted(&file);

    let before = status_bytes("VmRSS:");
    reset_peak();
    let ctx = 64;
    let opts = LoadOptions {
        ctx_size: Some(ctx),
        ..Default::default()
    };
    let mut model = candor_engine::Model::load(&verified.files, &opts).unwrap();
    let prompt = model.tokenizer().encode("Once upon a time", true).unwrap();
    let logits = model.forward(&prompt, false).unwrap();
    let logits: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        logits.iter().all(|x| x.is_finite()),
        "random weights gave non-finite logits"
    );
    let peak = status_bytes("VmHWM:") - before;

    let cfg = model.config();
    let kv = (cfg.n_layers * cfg.kv_bytes_per_position(model.info().cache_type) * ctx) as u64;
    let allowed = (file_size + kv) * 11 / 10;
    let mib = |b: u64| b >> 20;
    assert!(
        peak <= allowed,
        "loading and running a {} MiB file took {} MiB at peak, more than the file, its {} MiB of KV cache and 10% ({} MiB)",
        mib(file_size),
        mib(peak),
        mib(kv),
        mib(allowed)
    );
    eprintln!(
        "peak {} MiB for a {} MiB file ({:.1}%)",
        mib(peak),
        mib(file_size),
        peak as f64 / file_size as f64 * 100.0
    );
}

/// The logits after "Once upon a time" of the model at `target`.
fn logits(target: &Path) -> Vec<f32> {
    let mut model = common::load_unlisted(target);
    let prompt = model.tokenizer().encode("Once upon a time", true).unwrap();
    let logits = model.forward(&prompt, false).unwrap();
    logits.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_split_model_loads_as_the_whole_file() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shape = [
        "--shape",
        "smollm2-1.7b",
        "--quant",
        "q4_0",
        "--layers",
        "2",
    ];
    let whole = generated("smollm2-1.7b-2-layers", &shape);
    let split = generated(
        "smollm2-1.7b-2-layers-split",
        &[&shape[..], &["--split", "3"]].concat(),
    );
    let first = split.join("smollm2-1.7b-2-layers-split-00001-of-00003.gguf");
    // Given one part, the verifier takes its siblings too.
    let verified = common::verify_unlisted(&first);
    assert_eq!(verified.files.len(), 3, "every part is verified");
    let expected = logits(&whole.join("smollm2-1.7b-2-layers.gguf"));
    assert!(expected.iter().all(|x| x.is_finite()));
    assert_eq!(
        logits(&first),
        expected,
        "the parts hold the same model, bit for bit"
    );
    assert_eq!(logits(&split), expected, "as a directory too");
}
