//! `candor bench`: prompt processing (ppN) and generation (tgN) speed, measured like llama-bench:
//! one warm-up, then `-r` repetitions, mean ± standard deviation of tokens per second. With
//! `--serve URL`, a server is measured instead (see [`serve`]).

mod serve;

use crate::args::{BenchArgs, DeviceArg, ModelArgs};
use crate::home::Home;
use crate::load::{load, Loaded};
use anyhow::Result;
use candor_engine::Model;
use serde::Serialize;
use std::time::Instant;

#[derive(Serialize)]
struct Test {
    model_filename: String,
    model_type: String,
    model_size: u64,
    model_n_params: u64,
    n_threads: usize,
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    /// The KV cache's number format, keys and values (llama-bench's fields).
    type_k: &'static str,
    type_v: &'static str,
    backend: &'static str,
    avg_ns: u64,
    stddev_ns: u64,
    avg_ts: f64,
    stddev_ts: f64,
    samples_ns: Vec<u64>,
    samples_ts: Vec<f64>,
    model_sha256: String,
    root_digest: Option<String>,
    build_commit: &'static str,
    build_features: Vec<&'static str>,
    cpu_features: Vec<&'static str>,
    /// What candor's own CPU kernels run on this machine (chosen at run time).
    kernels: String,
    verify_ms: f64,
    load_ms: f64,
    ttft_ms: f64,
    /// The process's peak resident memory after the tests (Linux's VmHWM).
    peak_rss_bytes: Option<u64>,
    /// Decoding tests: bytes a step reads at the test's average context (weights once, the
    /// cached keys and values attended to).
    bytes_per_token: Option<u64>,
    /// Decoding tests: read bandwidth from the probe, bytes per second, at `n_threads`.
    memory_bandwidth: Option<f64>,
    /// Decoding tests: avg_ts as a share of bandwidth / bytes_per_token.
    share_of_bound: Option<f64>,
}

pub fn run(home: &Home, args: &BenchArgs) -> Result<()> {
    if let Some(url) = &args.serve.url {
        return serve::run(url, args);
    }
    let model_args = args.model_args();
    let mut loaded = load(home, &model_args)?;
    let vocab = loaded.model.tokenizer().vocab_size() as u64;
    // Fixed pseudo-random tokens, as llama-bench uses: content does not change the cost.
    let random = |n: usize, offset: u64| -> Vec<u32> {
        (offset..offset + n as u64)
            .map(|i| ((i.wrapping_mul(2654435761) >> 7) % vocab) as u32)
            .collect()
    };
    let tokens = random(args.n_prompt.max(1), 0);
    let depth = random(args.n_depth, 1 << 20);
    // Time to first token: a prompt pass plus reading the logits, once, cold.
    let t = Instant::now();
    loaded.model.reset();
    loaded.model.forward(&tokens, false)?;
    let ttft_ms = t.elapsed().as_secs_f64() * 1e3;
    // The context every test starts from, filled once: each test then rewinds to it.
    loaded.model.reset();
    if !depth.is_empty() {
        loaded.model.forward(&depth, false)?;
    }

    let mut tests = Vec::new();
    for (n_prompt, n_gen) in [(args.n_prompt, 0), (0, args.n_gen)] {
        if n_prompt + n_gen == 0 {
            continue;
        }
        let once = |model: &mut Model| {
            timed_pass(
                model,
                depth.len(),
                &tokens[..n_prompt.max(1)],
                [n_prompt, n_gen],
            )
        };
        once(&mut loaded.model)?; // warm-up
        let samples: Vec<u64> = (0..args.repetitions.max(1))
            .map(|_| once(&mut loaded.model))
            .collect::<Result<_>>()?;
        tests.push(record(
            &loaded,
            &model_args,
            [n_prompt, n_gen, depth.len()],
            samples,
            ttft_ms,
        ));
    }
    let peak_rss_bytes = peak_rss_bytes();
    // Decoding is bound by memory reads: probe them once the tests are done (the probe's
    // buffer would otherwise count in the peak).
    let probe = (args.n_gen > 0 && args.runtime.device == DeviceArg::Cpu)
        .then(|| candor_engine::memory_read_bandwidth(candle_core::utils::get_num_threads()));
    for t in &mut tests {
        t.peak_rss_bytes = peak_rss_bytes;
        if let (Some(bw), true) = (probe, t.n_gen > 0) {
            let bytes = loaded.model.bytes_read_per_token(t.n_depth + t.n_gen / 2);
            t.bytes_per_token = Some(bytes);
            t.memory_bandwidth = Some(bw);
            t.share_of_bound = Some(t.avg_ts * bytes as f64 / bw);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tests)?);
        return Ok(());
    }
    print_table(&tests);
    if let Some(t) = tests.first() {
        eprintln!(
            "candor: verify {:.1} ms, load {:.1} ms, time to first token {:.1} ms ({} prompt tokens), KV cache {}, build {} [{}], cpu [{}], kernels {}",
            t.verify_ms,
            t.load_ms,
            t.ttft_ms,
            tokens.len(),
            t.type_k,
            t.build_commit,
            t.build_features.join(","),
            t.cpu_features.join(","),
            t.kernels
        );
    }
    if let Some(t) = tests.iter().find(|t| t.share_of_bound.is_some()) {
        let (bytes, bw) = (
            t.bytes_per_token.unwrap_or(0),
            t.memory_bandwidth.unwrap_or(0.0),
        );
        eprintln!(
            "candor: a decoding step reads {:.1} MB; memory reads at {:.1} GB/s ({} threads, probe): bound {:.1} tok/s; peak RSS {:.0} MiB",
            bytes as f64 / 1e6,
            bw / 1e9,
            t.n_threads,
            bw / bytes.max(1) as f64,
            t.peak_rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

/// One timed run after the depth context (what the model holds when the benchmark starts): a
/// prompt pass over `n_prompt` tokens, or `n_gen` greedy decode steps from the first token.
/// Nanoseconds.
fn timed_pass(
    model: &mut Model,
    depth: usize,
    tokens: &[u32],
    [n_prompt, n_gen]: [usize; 2],
) -> Result<u64> {
    model.truncate(depth);
    let t = Instant::now();
    if n_prompt > 0 {
        model.forward(&tokens[..n_prompt], false)?;
    } else {
        let mut next = tokens[0];
        for _ in 0..n_gen {
            let logits = model.forward(&[next], false)?;
            next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        }
    }
    Ok(t.elapsed().as_nanos() as u64)
}

/// A test's record, in llama-bench's JSON field names where they exist.
fn record(
    loaded: &Loaded,
    args: &ModelArgs,
    [n_prompt, n_gen, n_depth]: [usize; 3],
    samples: Vec<u64>,
    ttft_ms: f64,
) -> Test {
    let info = loaded.model.info();
    let n = (n_prompt + n_gen) as f64;
    let ts: Vec<f64> = samples.iter().map(|&ns| n / (ns as f64 / 1e9)).collect();
    let (avg_ns, sd_ns) = mean_sd(&samples.iter().map(|&x| x as f64).collect::<Vec<_>>());
    let (avg_ts, sd_ts) = mean_sd(&ts);
    let v = &loaded.verification;
    Test {
        model_filename: args.model.clone(),
        model_type: format!("{} {}", info.architecture.name(), info.weight_type),
        model_size: v.weights().map(|f| f.size()).sum(),
        model_n_params: info.parameters,
        // What the engine sized its compute pool by: --threads reaches it through
        // RAYON_NUM_THREADS (set when loading), else candle's default.
        n_threads: candle_core::utils::get_num_threads(),
        n_prompt,
        n_gen,
        n_depth,
        type_k: info.cache_type.name(),
        type_v: info.cache_type.name(),
        backend: match args.runtime.device {
            DeviceArg::Cpu => "CPU",
            DeviceArg::Cuda => "CUDA",
            DeviceArg::Metal => "Metal",
        },
        avg_ns: avg_ns as u64,
        stddev_ns: sd_ns as u64,
        avg_ts,
        stddev_ts: sd_ts,
        samples_ns: samples,
        samples_ts: ts,
        model_sha256: v
            .weights()
            .next()
            .map(|w| w.sha256_hex())
            .unwrap_or_default(),
        root_digest: v.report.root_digest.clone(),
        build_commit: env!("CANDOR_COMMIT"),
        build_features: build_features(),
        cpu_features: cpu_features(),
        kernels: candor_engine::kernel_instruction_sets(),
        verify_ms: loaded.verify_time.as_secs_f64() * 1e3,
        load_ms: loaded.load_time.as_secs_f64() * 1e3,
        ttft_ms,
        peak_rss_bytes: None,
        bytes_per_token: None,
        memory_bandwidth: None,
        share_of_bound: None,
    }
}

/// The Markdown table llama-bench prints.
fn print_table(tests: &[Test]) {
    let mut table = crate::table::markdown([
        "model", "size", "params", "backend", "threads", "test", "t/s", "of bound",
    ]);
    for column in [1, 2, 4, 6, 7] {
        crate::table::align_right(&mut table, column);
    }
    for t in tests {
        let mut name = if t.n_prompt > 0 {
            format!("pp{}", t.n_prompt)
        } else {
            format!("tg{}", t.n_gen)
        };
        if t.n_depth > 0 {
            // llama-bench's name for a test after a filled context.
            name += &format!(" @ d{}", t.n_depth);
        }
        table.add_row([
            t.model_type.clone(),
            format!("{:.2} MiB", t.model_size as f64 / (1 << 20) as f64),
            format!("{:.2} M", t.model_n_params as f64 / 1e6),
            t.backend.to_string(),
            t.n_threads.to_string(),
            name,
            format!("{:.2} ± {:.2}", t.avg_ts, t.stddev_ts),
            t.share_of_bound
                .map(|s| format!("{:.0}%", s * 100.0))
                .unwrap_or_default(),
        ]);
    }
    crate::table::print(&table);
}

/// Peak resident memory of this process, where the system reports it (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn build_features() -> Vec<&'static str> {
    let f = enabled([
        ("cuda", cfg!(feature = "cuda")),
        ("metal", cfg!(feature = "metal")),
    ]);
    if f.is_empty() {
        vec!["cpu"]
    } else {
        f
    }
}

/// Instruction sets this binary was compiled to use.
fn cpu_features() -> Vec<&'static str> {
    enabled([
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("f16c", cfg!(target_feature = "f16c")),
        ("avx512f", cfg!(target_feature = "avx512f")),
        ("neon", cfg!(target_feature = "neon")),
    ])
}

/// The names whose flag is set.
fn enabled<const N: usize>(flags: [(&'static str, bool); N]) -> Vec<&'static str> {
    flags
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name)
        .collect()
}
