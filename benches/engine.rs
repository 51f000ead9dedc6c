//! Engine micro-benchmarks on the default model (SmolLM2-135M-Instruct Q4_1): tokenizer encode,
//! one decode step, one prompt batch, sampling, and greedy generation with and without a JSON
//! Schema constraint (the grammar's cost per token). `cargo bench --bench engine`.
//!
//! `stock_candle_*` run the same steps on the same file with candle-transformers' own
//! `quantized_llama` (unverified, loaded straight from the file), so one run gives the ratio to
//! stock candle. Set `RAYON_NUM_THREADS` to fix the thread count of both. candle's own thread
//! pool, which stock candle multiplies with, is started with its workers before anything else
//! here; a `candor` process starts it without them when candor's kernels take every matrix
//! (see `settle_candle_pool` in the engine), so `candor bench` measures candor alone.
//!
//! The model is loaded through the verifier as the CLI does. It is looked up, in order, in
//! `CANDOR_BENCH_MODEL` (a model directory, verified as an unlisted model) and in the end-to-end
//! tests' candor home under the target directory (`cargo test --test smollm2_reference` pulls
//! it there). Without either, the model benchmarks print why and measure nothing. Reports only;
//! never fails on a time. For a whole-run comparison with llama-bench use `candor bench`.

use candor_engine::sampling::{Sampler, SamplingParams};
use candor_engine::{
    GenerateParams, Grammar, GrammarKind, LoadOptions, Message, Model, SeqStep, Sequence,
};
use candor_verify::{verify, NoProgress, VerifyOptions};
use divan::counter::ItemsCount;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";
const PROMPT_TOKENS: usize = 128;
/// Tokens already in the cache when one decode step is timed.
const DECODE_CONTEXT: usize = 64;

fn main() {
    // Before candor's first model load, so stock candle keeps its matmul threads.
    candle_core::utils::barrier_pool();
    divan::main();
}

/// The default model's directory in the end-to-end tests' candor home.
fn test_home_model_dir() -> Result<(PathBuf, PathBuf), String> {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("candor-test-home");
    let dir = home.join("models").join(DEFAULT_MODEL);
    if !dir.is_dir() {
        return Err(format!(
            "no model: set CANDOR_BENCH_MODEL or run `cargo test --release --test smollm2_reference` first ({} is missing)",
            dir.display()
        ));
    }
    Ok((home, dir))
}

fn load() -> Result<Model, String> {
    let (files, _keep) = if let Some(dir) = std::env::var_os("CANDOR_BENCH_MODEL") {
        let opts = VerifyOptions {
            allow_unlisted: true,
            ..Default::default()
        };
        let v = verify(None, &PathBuf::from(dir), &opts, &NoProgress)
            .map_err(|e| e.to_string())?
            .allowed()
            .map_err(|r| r.decision.summary())?;
        (v.files, ())
    } else {
        let (home, dir) = test_home_model_dir()?;
        let manifest = candor::home::Home::at(&home)
            .and_then(|h| h.manifest(DEFAULT_MODEL))
            .map_err(|e| e.to_string())?
            .ok_or("the default manifest is not bundled")?;
        let opts = VerifyOptions {
            cache_dir: Some(home.clone()),
            ..Default::default()
        };
        let v = verify(Some(&manifest), &dir, &opts, &NoProgress)
            .map_err(|e| e.to_string())?
            .allowed()
            .map_err(|r| r.decision.summary())?;
        (v.files, ())
    };
    Model::load(&files, &LoadOptions::default()).map_err(|e| e.to_string())
}

fn model() -> Option<&'static Mutex<Model>> {
    static MODEL: OnceLock<Option<Mutex<Model>>> = OnceLock::new();
    MODEL
        .get_or_init(|| match load() {
            Ok(m) => Some(Mutex::new(m)),
            Err(e) => {
                eprintln!("engine benchmarks skipped: {e}");
                None
            }
        })
        .as_ref()
}

/// Fixed pseudo-random token ids, as `candor bench` and llama-bench use.
fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| ((i.wrapping_mul(2654435761) >> 7) % vocab as u64) as u32)
        .collect()
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Verification happens before a \
single byte of the weights is used: candor hashes every file, compares the digests with the \
manifest, and only then hands the open handles to the engine, which maps exactly those bytes. \
Numbers like 3.14159 and 2,718 and code such as `fn main() { println!(\"hi\"); }` exercise \
the pre-tokenizer as well.";

#[divan::bench(sample_count = 50)]
fn tokenizer_encode(bencher: divan::Bencher) {
    let Some(m) = model() else { return };
    let m = m.lock().unwrap_or_else(|e| e.into_inner());
    let tok = m.tokenizer();
    bencher
        .counter(divan::counter::BytesCount::new(TEXT.len()))
        .bench_local(|| tok.encode(divan::black_box(TEXT), false).expect("encode"));
}

#[divan::bench(sample_count = 30, sample_size = 4)]
fn decode_step(bencher: divan::Bencher) {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let vocab = m.tokenizer().vocab_size();
    let ctx = tokens(DECODE_CONTEXT + 1, vocab);
    m.reset();
    m.forward(&ctx[..DECODE_CONTEXT], false).expect("prompt");
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        m.truncate(DECODE_CONTEXT);
        m.forward(&ctx[DECODE_CONTEXT..], false)
            .expect("decode step")
    });
}

/// One decoding step of eight sequences at once, as the server's batch makes it: one token
/// each after a context of `DECODE_CONTEXT` (items: tokens, so per-token time compares with
/// `decode_step`'s).
#[divan::bench(sample_count = 30, sample_size = 4)]
fn decode_step_batch_8(bencher: divan::Bencher) {
    let Some(m) = model() else { return };
    let m = m.lock().unwrap_or_else(|e| e.into_inner());
    let vocab = m.tokenizer().vocab_size();
    let mut seqs: Vec<Sequence> = (0..8u32)
        .map(|i| {
            let mut seq = m.new_sequence();
            let ctx = tokens(DECODE_CONTEXT + i as usize, vocab);
            let mut steps = [SeqStep {
                ids: &ctx,
                seq: &mut seq,
            }];
            m.forward_batch(&mut steps, false).expect("prompt");
            seq
        })
        .collect();
    let next = tokens(8, vocab);
    let lengths: Vec<usize> = seqs.iter().map(Sequence::len).collect();
    bencher.counter(ItemsCount::new(8usize)).bench_local(|| {
        let mut steps: Vec<SeqStep> = seqs
            .iter_mut()
            .zip(&lengths)
            .zip(&next)
            .map(|((seq, &len), id)| {
                seq.truncate(len);
                SeqStep {
                    ids: std::slice::from_ref(id),
                    seq,
                }
            })
            .collect();
        m.forward_batch(&mut steps, false).expect("decode step")
    });
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn prompt_batch_128(bencher: divan::Bencher) {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let vocab = m.tokenizer().vocab_size();
    let ids = tokens(PROMPT_TOKENS, vocab);
    bencher
        .counter(ItemsCount::new(PROMPT_TOKENS))
        .bench_local(|| {
            m.reset();
            m.forward(&ids, false).expect("prompt batch")
        });
}

#[divan::bench(sample_count = 50)]
fn sampling_top_k_top_p(bencher: divan::Bencher) {
    let vocab = 49152;
    let logits: Vec<f32> = (0..vocab as u32)
        .map(|i| ((i.wrapping_mul(2654435761) >> 9) % 2000) as f32 / 100.0 - 10.0)
        .collect();
    let history: Vec<u32> = (0..64).collect();
    let mut sampler = Sampler::new(SamplingParams::default()).expect("sampler");
    bencher.bench_local(|| {
        let mut l = logits.clone();
        sampler.sample(&mut l, &history)
    });
}

/// A JSON Schema as apps send them: nested objects, enums, bounded arrays and numbers.
fn person_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "languages": {"type": "array", "minItems": 1, "maxItems": 3,
                          "items": {"enum": ["English", "French", "German", "Japanese"]}},
            "address": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 40},
                "country": {"enum": ["France", "Germany", "Japan", "Brazil"]}},
                "required": ["city", "country"], "additionalProperties": false},
            "motto": {"type": "string", "maxLength": 60}
        },
        "required": ["name", "age", "languages", "address", "motto"],
        "additionalProperties": false
    })
}

/// Greedy generation of up to 128 tokens after a chat prompt; items are generated tokens.
fn bench_generation(bencher: divan::Bencher, grammar: Option<Grammar>) {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let messages = [Message::new(
        "user",
        "Describe Amélie, a 34-year-old French teacher in Lyon who speaks French and English. \
         Answer in JSON.",
    )];
    let text = m
        .chat_template()
        .and_then(|t| t.render(&messages, true))
        .expect("chat template");
    let prompt = m.tokenizer().encode(&text, false).expect("encode");
    let params = GenerateParams {
        max_tokens: 128,
        sampling: SamplingParams::greedy(),
        grammar,
        ..Default::default()
    };
    let mut run = || {
        // The prompt stays cached: only its last token is fed again.
        m.generate(&prompt, &params, &mut |_| true)
            .expect("generate")
            .tokens
            .len()
    };
    let n = run();
    bencher.counter(ItemsCount::new(n)).bench_local(run);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn generate_unconstrained(bencher: divan::Bencher) {
    bench_generation(bencher, None);
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn generate_json_schema(bencher: divan::Bencher) {
    let g = Grammar::new(GrammarKind::JsonSchema(person_schema()), "bench");
    bench_generation(bencher, Some(g));
}

/// candle-transformers' `quantized_llama` on the same GGUF file, as a stock-candle user runs it.
fn stock_candle() -> Option<&'static candle_transformers::models::quantized_llama::ModelWeights> {
    use candle_core::quantized::gguf_file;
    static MODEL: OnceLock<Option<candle_transformers::models::quantized_llama::ModelWeights>> =
        OnceLock::new();
    MODEL
        .get_or_init(|| {
            let load = || -> Result<_, String> {
                let dir = match std::env::var_os("CANDOR_BENCH_MODEL") {
                    Some(d) => PathBuf::from(d),
                    None => test_home_model_dir()?.1,
                };
                let path = std::fs::read_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.extension().is_some_and(|x| x == "gguf"))
                    .ok_or_else(|| format!("no .gguf file in {}", dir.display()))?;
                let mut f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                let ct = gguf_file::Content::read(&mut f).map_err(|e| e.to_string())?;
                candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
                    ct,
                    &mut f,
                    &candle_core::Device::Cpu,
                )
                .map_err(|e| e.to_string())
            };
            load()
                .map_err(|e| eprintln!("stock candle benchmarks skipped: {e}"))
                .ok()
        })
        .as_ref()
}

fn ids_tensor(ids: &[u32]) -> candle_core::Tensor {
    candle_core::Tensor::new(ids, &candle_core::Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("token tensor")
}

#[divan::bench(sample_count = 30, sample_size = 1)]
fn stock_candle_decode_step(bencher: divan::Bencher) {
    let Some(stock) = stock_candle() else { return };
    let ctx = tokens(DECODE_CONTEXT + 1, 49152);
    // Stock candle's cache grows by concatenation and cannot be truncated: each sample starts
    // from a copy of the model after the same 64-token prompt.
    let mut primed = stock.clone();
    primed
        .forward(&ids_tensor(&ctx[..DECODE_CONTEXT]), 0)
        .expect("prompt");
    let step = ids_tensor(&ctx[DECODE_CONTEXT..]);
    bencher
        .counter(ItemsCount::new(1usize))
        .with_inputs(|| primed.clone())
        .bench_local_values(|mut m| m.forward(&step, DECODE_CONTEXT).expect("decode step"));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn stock_candle_prompt_batch_128(bencher: divan::Bencher) {
    let Some(stock) = stock_candle() else { return };
    let ids = ids_tensor(&tokens(PROMPT_TOKENS, 49152));
    bencher
        .counter(ItemsCount::new(PROMPT_TOKENS))
        .with_inputs(|| stock.clone())
        .bench_local_values(|mut m| m.forward(&ids, 0).expect("prompt batch"));
}
