//! Writes a GGUF with random weights at the exact shapes of a real model, for measuring speed and
//! memory at sizes the hub would otherwise have to supply (speed and memory do not depend on the
//! weights' values). The tokenizer is a real one, copied from a GGUF given with `--tokenizer-from`
//! (the default model's), its vocabulary padded with unused tokens to the shape's size.
//!
//!     cargo run --release --bin shape-gguf -- --shape llama-3.1-8b --quant q4_k_m \
//!         --tokenizer-from models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf \
//!         -o models/shapes/llama-3.1-8b-q4_k_m.gguf
//!
//! Quantized types per tensor follow llama-quantize's choices for the file type: Q4_K_M keeps the
//! output (or tied embeddings) in Q6_K and the V and down projections of some layers too.
//! Block scales are drawn so that activations stay finite; the text they produce is noise.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candor_verify::formats::gguf::build::{str_bytes, GgufBuilder};
use half::f16;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// A model's shape: what its GGUF's hyperparameters and tensors must be.
struct Shape {
    name: &'static str,
    arch: &'static str,
    hidden: usize,
    layers: usize,
    ffn: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context: usize,
    rope_base: f32,
    rms_eps: f32,
    tied: bool,
    qkv_bias: bool,
    /// Llama 3.1 RoPE scaling (factor), stored as llama.cpp does: a `rope_freqs` tensor.
    llama3_rope: Option<f32>,
    /// Gemma 2: post-norms, soft-capping and sliding windows.
    gemma2: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "smollm2-1.7b",
        arch: "llama",
        hidden: 2048,
        layers: 24,
        ffn: 8192,
        heads: 32,
        kv_heads: 32,
        head_dim: 64,
        vocab: 49152,
        context: 8192,
        rope_base: 130000.0,
        rms_eps: 1e-5,
        tied: true,
        qkv_bias: false,
        llama3_rope: None,
        gemma2: false,
    },
    Shape {
        name: "llama-3.2-3b",
        arch: "llama",
        hidden: 3072,
        layers: 28,
        ffn: 8192,
        heads: 24,
        kv_heads: 8,
        head_dim: 128,
        vocab: 128256,
        context: 131072,
        rope_base: 500000.0,
        rms_eps: 1e-5,
        tied: true,
        qkv_bias: false,
        llama3_rope: Some(32.0),
        gemma2: false,
    },
    Shape {
        name: "llama-3.1-8b",
        arch: "llama",
        hidden: 4096,
        layers: 32,
        ffn: 14336,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        vocab: 128256,
        context: 131072,
        rope_base: 500000.0,
        rms_eps: 1e-5,
        tied: false,
        qkv_bias: false,
        llama3_rope: Some(8.0),
        gemma2: false,
    },
    Shape {
        name: "qwen2.5-7b",
        arch: "qwen2",
        hidden: 3584,
        layers: 28,
        ffn: 18944,
        heads: 28,
        kv_heads: 4,
        head_dim: 128,
        vocab: 152064,
        context: 32768,
        rope_base: 1000000.0,
        rms_eps: 1e-6,
        tied: false,
        qkv_bias: true,
        llama3_rope: None,
        gemma2: false,
    },
    Shape {
        name: "gemma-2-2b",
        arch: "gemma2",
        hidden: 2304,
        layers: 26,
        ffn: 9216,
        heads: 8,
        kv_heads: 4,
        head_dim: 256,
        vocab: 256000,
        context: 8192,
        rope_base: 10000.0,
        rms_eps: 1e-6,
        tied: true,
        qkv_bias: false,
        llama3_rope: None,
        gemma2: true,
    },
];

/// GGUF tensor types written here (ggml's numbering) and their blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    F32,
    Q4_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl Ty {
    fn ggml_id(self) -> u32 {
        match self {
            Ty::F32 => 0,
            Ty::Q4_0 => 2,
            Ty::Q8_0 => 8,
            Ty::Q4K => 12,
            Ty::Q6K => 14,
        }
    }
    /// (values per block, bytes per block)
    fn block(self) -> (usize, usize) {
        match self {
            Ty::F32 => (1, 4),
            Ty::Q4_0 => (32, 18),
            Ty::Q8_0 => (32, 34),
            Ty::Q4K => (256, 144),
            Ty::Q6K => (256, 210),
        }
    }
}

/// The file types llama-quantize names, with its per-tensor choices.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quant {
    Q4KM,
    Q8_0,
    Q4_0,
}

impl Quant {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "q4_k_m" => Quant::Q4KM,
            "q8_0" => Quant::Q8_0,
            "q4_0" => Quant::Q4_0,
            _ => bail!("unknown quantization `{s}`: choose q4_k_m, q8_0 or q4_0"),
        })
    }
    /// `general.file_type` (llama.cpp's `llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            Quant::Q4KM => 15,
            Quant::Q8_0 => 7,
            Quant::Q4_0 => 2,
        }
    }
    fn base(self) -> Ty {
        match self {
            Quant::Q4KM => Ty::Q4K,
            Quant::Q8_0 => Ty::Q8_0,
            Quant::Q4_0 => Ty::Q4_0,
        }
    }
    /// The output matrix (or the embeddings a tied model uses as its output).
    fn output(self) -> Ty {
        match self {
            Quant::Q8_0 => Ty::Q8_0,
            _ => Ty::Q6K,
        }
    }
    /// V and down projections: Q4_K_M gives the first and last eighth of the layers and every
    /// third between them six bits (llama.cpp's `use_more_bits`).
    fn more_bits(self, layer: usize, layers: usize) -> Ty {
        let (i, n) = (layer as i64, layers as i64);
        let more = i < n / 8 || i >= 7 * n / 8 || (i - n / 8).rem_euclid(3) == 2;
        match self {
            Quant::Q4KM if more => Ty::Q6K,
            q => q.base(),
        }
    }
}

struct TensorSpec {
    name: String,
    /// (rows, columns); a vector has one row.
    dims: (usize, usize),
    ty: Ty,
    fill: Fill,
}

#[derive(Clone, Copy)]
enum Fill {
    Ones,
    Zeros,
    /// Llama 3 RoPE frequency factors for this scaling factor.
    Llama3Rope(f32),
    Random,
}

impl TensorSpec {
    fn bytes(&self) -> usize {
        let (bs, ts) = self.ty.block();
        self.dims.0 * self.dims.1 / bs * ts
    }
}

fn tensors(s: &Shape, q: Quant, layers: usize) -> Vec<TensorSpec> {
    let t = |name: String, dims, ty, fill| TensorSpec {
        name,
        dims,
        ty,
        fill,
    };
    let (h, qd, kvd) = (s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let mut v = Vec::new();
    if let Some(factor) = s.llama3_rope {
        let d = (1, s.head_dim / 2);
        v.push(t(
            "rope_freqs.weight".into(),
            d,
            Ty::F32,
            Fill::Llama3Rope(factor),
        ));
    }
    let embd_ty = if s.tied { q.output() } else { q.base() };
    v.push(t(
        "token_embd.weight".into(),
        (s.vocab, h),
        embd_ty,
        Fill::Random,
    ));
    let norm = |name: String| t(name, (1, h), Ty::F32, Fill::Ones);
    for l in 0..layers {
        let b = |n: &str| format!("blk.{l}.{n}");
        v.push(norm(b("attn_norm.weight")));
        v.push(t(b("attn_q.weight"), (qd, h), q.base(), Fill::Random));
        v.push(t(b("attn_k.weight"), (kvd, h), q.base(), Fill::Random));
        let v_ty = q.more_bits(l, layers);
        v.push(t(b("attn_v.weight"), (kvd, h), v_ty, Fill::Random));
        if s.qkv_bias {
            for (n, d) in [
                ("attn_q.bias", qd),
                ("attn_k.bias", kvd),
                ("attn_v.bias", kvd),
            ] {
                v.push(t(b(n), (1, d), Ty::F32, Fill::Zeros));
            }
        }
        v.push(t(b("attn_output.weight"), (h, qd), q.base(), Fill::Random));
        if s.gemma2 {
            v.push(norm(b("post_attention_norm.weight")));
        }
        v.push(norm(b("ffn_norm.weight")));
        v.push(t(b("ffn_gate.weight"), (s.ffn, h), q.base(), Fill::Random));
        v.push(t(b("ffn_up.weight"), (s.ffn, h), q.base(), Fill::Random));
        let down_ty = q.more_bits(l, layers);
        v.push(t(b("ffn_down.weight"), (h, s.ffn), down_ty, Fill::Random));
        if s.gemma2 {
            v.push(norm(b("post_ffw_norm.weight")));
        }
    }
    v.push(norm("output_norm.weight".into()));
    if !s.tied {
        v.push(t(
            "output.weight".into(),
            (s.vocab, h),
            q.output(),
            Fill::Random,
        ));
    }
    v
}

fn metadata(
    s: &Shape,
    q: Quant,
    layers: usize,
    tokenizer: &gguf_file::Content,
) -> Result<Vec<(String, Value)>> {
    let a = s.arch;
    let mut md = vec![
        ("general.architecture".to_string(), Value::String(a.into())),
        (
            "general.name".into(),
            Value::String(format!("random weights, {} shape", s.name)),
        ),
        ("general.file_type".into(), Value::U32(q.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        (format!("{a}.context_length"), Value::U32(s.context as u32)),
        (format!("{a}.embedding_length"), Value::U32(s.hidden as u32)),
        (format!("{a}.block_count"), Value::U32(layers as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(s.ffn as u32)),
        (
            format!("{a}.attention.head_count"),
            Value::U32(s.heads as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(s.kv_heads as u32),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(s.rms_eps),
        ),
        (format!("{a}.rope.freq_base"), Value::F32(s.rope_base)),
        (
            format!("{a}.attention.key_length"),
            Value::U32(s.head_dim as u32),
        ),
        (
            format!("{a}.attention.value_length"),
            Value::U32(s.head_dim as u32),
        ),
    ];
    if a == "llama" {
        md.push((
            format!("{a}.rope.dimension_count"),
            Value::U32(s.head_dim as u32),
        ));
        md.push((format!("{a}.vocab_size"), Value::U32(s.vocab as u32)));
    }
    if s.gemma2 {
        md.push((format!("{a}.attention.sliding_window"), Value::U32(4096)));
        md.push((format!("{a}.attn_logit_softcapping"), Value::F32(50.0)));
        md.push((format!("{a}.final_logit_softcapping"), Value::F32(30.0)));
    }
    let mut keys: Vec<&String> = tokenizer
        .metadata
        .keys()
        .filter(|k| k.starts_with("tokenizer."))
        .collect();
    keys.sort();
    for k in keys {
        let value = tokenizer.metadata[k].clone();
        md.push((k.clone(), pad_vocab(k, value, s.vocab)?));
    }
    Ok(md)
}

/// Pads the per-token arrays of a tokenizer to `vocab` entries with unused tokens.
fn pad_vocab(key: &str, value: Value, vocab: usize) -> Result<Value> {
    let Value::Array(mut items) = value else {
        return Ok(value);
    };
    let len = items.len();
    let pad = match key {
        "tokenizer.ggml.tokens" => |i: usize| Value::String(format!("<|unused_{i}|>")),
        // llama.cpp's LLAMA_TOKEN_TYPE_UNUSED
        "tokenizer.ggml.token_type" => |_| Value::I32(5),
        "tokenizer.ggml.scores" => |_| Value::F32(0.0),
        _ => return Ok(Value::Array(items)),
    };
    if len > vocab {
        bail!("the tokenizer has {len} tokens, more than the shape's {vocab}");
    }
    items.extend((len..vocab).map(pad));
    Ok(Value::Array(items))
}

/// GGUF's metadata value types.
fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// A metadata value's bytes as GGUF stores them (after its type).
fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::U8(x) => x.to_le_bytes().to_vec(),
        Value::I8(x) => x.to_le_bytes().to_vec(),
        Value::U16(x) => x.to_le_bytes().to_vec(),
        Value::I16(x) => x.to_le_bytes().to_vec(),
        Value::U32(x) => x.to_le_bytes().to_vec(),
        Value::I32(x) => x.to_le_bytes().to_vec(),
        Value::U64(x) => x.to_le_bytes().to_vec(),
        Value::I64(x) => x.to_le_bytes().to_vec(),
        Value::F32(x) => x.to_le_bytes().to_vec(),
        Value::F64(x) => x.to_le_bytes().to_vec(),
        Value::Bool(x) => vec![*x as u8],
        Value::String(s) => str_bytes(s.as_bytes()),
        Value::Array(items) => {
            let ty = items.first().map_or(4u32, type_id);
            let mut out = ty.to_le_bytes().to_vec();
            out.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| out.extend(value_bytes(i)));
            out
        }
    }
}

const ALIGN: usize = 32;

fn pad_to(w: &mut impl Write, written: usize) -> Result<usize> {
    let pad = (ALIGN - written % ALIGN) % ALIGN;
    w.write_all(&vec![0u8; pad])?;
    Ok(pad)
}

/// Random blocks of `ty` with scales that keep a row's dot product near unit size.
fn fill_random(rng: &mut SmallRng, ty: Ty, cols: usize, buf: &mut [u8]) {
    rng.fill_bytes(buf);
    let (_, ts) = ty.block();
    let sigma = 1.0 / (cols as f32).sqrt();
    let h = |x: f32| f16::from_f32(x).to_le_bytes();
    for b in buf.chunks_exact_mut(ts) {
        let jitter = rng.random_range(0.5f32..1.5);
        match ty {
            Ty::Q4_0 => b[..2].copy_from_slice(&h(sigma / 4.6 * jitter)),
            Ty::Q8_0 => b[..2].copy_from_slice(&h(sigma / 73.0 * jitter)),
            Ty::Q4K => {
                // w = d·sc·q − dmin·m: dmin centres the 4-bit values.
                let d = sigma / 145.0 * jitter;
                b[..2].copy_from_slice(&h(d));
                b[2..4].copy_from_slice(&h(d * 7.5));
            }
            Ty::Q6K => b[208..210].copy_from_slice(&h(sigma / 1369.0 * jitter)),
            Ty::F32 => unreachable!("float tensors are not random"),
        }
    }
}

fn write_data(w: &mut impl Write, t: &TensorSpec, rng: &mut SmallRng) -> Result<()> {
    let (rows, cols) = t.dims;
    match t.fill {
        Fill::Ones | Fill::Zeros => {
            let x: f32 = if matches!(t.fill, Fill::Ones) {
                1.0
            } else {
                0.0
            };
            for _ in 0..rows * cols {
                w.write_all(&x.to_le_bytes())?;
            }
        }
        Fill::Llama3Rope(factor) => {
            for f in llama3_rope_factors(factor, cols * 2) {
                w.write_all(&f.to_le_bytes())?;
            }
        }
        Fill::Random => {
            let row_bytes = t.bytes() / rows;
            let rows_per_chunk = ((8 << 20) / row_bytes).max(1);
            let mut buf = vec![0u8; rows_per_chunk * row_bytes];
            let mut left = rows;
            while left > 0 {
                let n = left.min(rows_per_chunk);
                let chunk = &mut buf[..n * row_bytes];
                fill_random(rng, t.ty, cols, chunk);
                w.write_all(chunk)?;
                left -= n;
            }
        }
    }
    Ok(())
}

/// The divisors llama.cpp stores for Llama 3.1's RoPE scaling (low 1, high 4, 8192 tokens).
fn llama3_rope_factors(factor: f32, head_dim: usize) -> Vec<f32> {
    let (low, high, old_ctx) = (1.0f32, 4.0f32, 8192.0f32);
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 500000f32.powf(-((2 * i) as f32) / head_dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// One GGUF file: header, metadata, tensor infos, then the tensors' data, each aligned.
fn write_file<T: std::borrow::Borrow<TensorSpec>>(
    out: &std::path::Path,
    md: &[(String, Value)],
    specs: &[T],
    rng: &mut SmallRng,
) -> Result<()> {
    let mut w = BufWriter::with_capacity(
        8 << 20,
        File::create(out).with_context(|| out.display().to_string())?,
    );
    // The header as the verifier's GGUF builder writes it: metadata, then tensor infos.
    let mut header = GgufBuilder::new();
    for (k, v) in md {
        header = header.kv_raw(k, type_id(v), value_bytes(v));
    }
    let mut offset = 0u64;
    for t in specs {
        let t = t.borrow();
        // GGUF lists dimensions innermost first.
        let dims = match t.dims {
            (1, cols) => vec![cols as u64],
            (rows, cols) => vec![cols as u64, rows as u64],
        };
        header
            .tensors
            .push((t.name.clone(), dims, t.ty.ggml_id(), offset));
        offset += (t.bytes().div_ceil(ALIGN) * ALIGN) as u64;
    }
    let header = header.header_bytes();
    w.write_all(&header)?;
    pad_to(&mut w, header.len())?;
    for t in specs {
        let t = t.borrow();
        write_data(&mut w, t, rng)?;
        pad_to(&mut w, t.bytes())?;
    }
    Ok(w.flush()?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut shape, mut quant, mut tok, mut out, mut layers) = (None, None, None, None, None);
    let mut split = 1usize;
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--shape" => shape = Some(value()?),
            "--quant" => quant = Some(Quant::parse(&value()?)?),
            "--tokenizer-from" => tok = Some(PathBuf::from(value()?)),
            "-o" | "--output" => out = Some(PathBuf::from(value()?)),
            "--layers" => layers = Some(value()?.parse::<usize>().context("--layers")?),
            // Written as llama.cpp's gguf-split does: OUT-00001-of-0000N.gguf and so on.
            "--split" => split = value()?.parse::<usize>().context("--split")?.clamp(1, 999),
            "--list" => {
                for s in SHAPES {
                    println!("{}", s.name);
                }
                return Ok(());
            }
            _ => bail!(
                "usage: shape-gguf --shape NAME --quant q4_k_m|q8_0|q4_0 --tokenizer-from GGUF -o OUT [--layers N] [--split N] | --list"
            ),
        }
    }
    let name = shape.context("--shape is required (see --list)")?;
    let s = SHAPES
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("unknown shape `{name}` (see --list)"))?;
    let q = quant.context("--quant is required")?;
    let tok = tok.context("--tokenizer-from is required: a GGUF whose tokenizer to copy")?;
    let out = out.context("-o is required")?;
    // Fewer layers keep a test's file small; every other dimension stays the shape's.
    let layers = layers.unwrap_or(s.layers);

    let source =
        gguf_file::Content::read(&mut File::open(&tok).with_context(|| tok.display().to_string())?)
            .with_context(|| format!("reading {}", tok.display()))?;
    let md = metadata(s, q, layers, &source)?;
    let specs = tensors(s, q, layers);

    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let total: usize = specs.iter().map(TensorSpec::bytes).sum();
    if split <= 1 {
        write_file(&out, &md, &specs, &mut rng)?;
    } else {
        // llama.cpp's gguf-split layout: consecutive tensors per part, the metadata in the first,
        // every part naming its place.
        let stem = out.to_string_lossy();
        let stem = stem.strip_suffix(".gguf").unwrap_or(&stem);
        let per_part = total.div_ceil(split);
        let mut groups: Vec<Vec<&TensorSpec>> = vec![Vec::new()];
        let mut in_part = 0;
        for t in &specs {
            if in_part >= per_part && groups.len() < split {
                groups.push(Vec::new());
                in_part = 0;
            }
            groups.last_mut().unwrap_or_else(|| unreachable!()).push(t);
            in_part += t.bytes();
        }
        if groups.len() != split {
            bail!("{} tensors cannot fill {split} parts", specs.len());
        }
        for (i, group) in groups.iter().enumerate() {
            let mut part_md = if i == 0 { md.clone() } else { Vec::new() };
            part_md.push(("split.no".into(), Value::U16(i as u16)));
            part_md.push(("split.count".into(), Value::U16(split as u16)));
            part_md.push(("split.tensors.count".into(), Value::I32(specs.len() as i32)));
            let path = PathBuf::from(format!("{stem}-{:05}-of-{split:05}.gguf", i + 1));
            write_file(&path, &part_md, group, &mut rng)?;
        }
    }
    println!(
        "{}: {} {} layers, {:.2} GB of tensors{}",
        out.display(),
        s.name,
        layers,
        total as f64 / 1e9,
        if split > 1 {
            format!(", in {split} parts")
        } else {
            String::new()
        }
    );
    Ok(())
}
