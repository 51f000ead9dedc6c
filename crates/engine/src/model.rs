//! A loaded model: weights on a device, its tokenizer and chat template, and a KV cache.
//!
//! Models load only from files the verifier handed over (`candor_verify::VerifiedFile`): the
//! engine maps the very handle that was hashed, then checks it was not changed since.

use crate::chat::{ChatTemplate, GEMMA_TEMPLATE};
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::kernels;
use crate::kv_cache::CacheType;
use crate::models::{gemma::Gemma, llama::Llama};
use crate::pool;
use crate::sequence::{SeqStep, Sequence};
use crate::tokenizer::Tokenizer;
use crate::weights::{GgufPart, Weights};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candor_verify::manifest::{FileFormat, FileRole};
use candor_verify::VerifiedFile;
use memmap2::Mmap;
use serde::Serialize;
use std::io::Cursor;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl DeviceKind {
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda if !cfg!(feature = "cuda") => Err(Error::Device(
                "this build has no CUDA support; rebuild with `--features cuda` (see the README, \"Building for an NVIDIA GPU\")".into(),
            )),
            DeviceKind::Metal if !cfg!(feature = "metal") => Err(Error::Device(
                "this build has no Metal support; rebuild with `--features metal` on macOS".into(),
            )),
            DeviceKind::Cuda => Device::new_cuda(0)
                .map_err(|e| Error::Device(format!("no usable CUDA GPU: {e}"))),
            DeviceKind::Metal => Device::new_metal(0)
                .map_err(|e| Error::Device(format!("no usable Metal GPU: {e}"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceKind,
    /// Context size to allocate; defaults to the model's trained context, capped at 4096.
    pub ctx_size: Option<usize>,
    /// Sequences that will hold a context each at once (the server's slots): the memory
    /// check counts this many KV caches.
    pub sequences: usize,
    /// KV cache positions the sequences share at most (the server's `--kv-budget`): the memory
    /// check counts these instead of a full context per sequence.
    pub kv_budget: Option<usize>,
    /// The KV cache's number format (default: f16 on the CPU; accelerators keep f32).
    pub cache_type: Option<CacheType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceKind::Cpu,
            ctx_size: None,
            sequences: 1,
            kv_budget: None,
            cache_type: None,
        }
    }
}

/// Facts about a loaded model, for `show`, `bench` and the server.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModelInfo {
    pub architecture: Architecture,
    pub format: &'static str,
    /// Dominant weight type, e.g. "Q4_1" or "F32".
    pub weight_type: String,
    pub parameters: u64,
    pub context_length: usize,
    pub ctx_size: usize,
    pub layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab_size: usize,
    pub rope_theta: f64,
    pub has_chat_template: bool,
    /// Bytes the weights take in memory as the engine holds them.
    pub weight_bytes: u64,
    /// The number format of the KV cache.
    pub cache_type: CacheType,
}

enum Network {
    Llama(Llama),
    Gemma(Gemma),
}

pub struct Model {
    net: Network,
    cfg: ModelConfig,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    info: LoadedModelInfo,
    device: Device,
    /// The sequence `generate` and `forward` continue (`candor run`, `chat`, `bench`).
    seq: Sequence,
}

/// The bytes of one verified file, mapped from the handle that was hashed.
struct Mapped<'a> {
    file: &'a VerifiedFile,
    map: Mmap,
}

impl Mapped<'_> {
    fn name(&self) -> &str {
        self.file.rel_path()
    }
    fn bytes(&self) -> &[u8] {
        &self.map
    }
}

#[allow(unsafe_code)] // mmap of a verified file
fn map(file: &VerifiedFile) -> Result<Mapped<'_>> {
    // SAFETY: the mapping is read-only; the verifier refuses files other users can write, and
    // `check_unchanged` below confirms the handle still has the size and times it had when it
    // was hashed, so the bytes read are the bytes verified.
    let map = unsafe { Mmap::map(file.file())? };
    file.check_unchanged()
        .map_err(|e| Error::ChangedAfterVerification {
            path: file.rel_path().to_string(),
            why: e.to_string(),
        })?;
    Ok(Mapped { file, map })
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

impl Model {
    /// Loads a model from the files the verifier handed over. One .gguf file, or a
    /// Hugging Face directory (config.json, *.safetensors, tokenizer.json, ...).
    pub fn load(files: &[VerifiedFile], opts: &LoadOptions) -> Result<Self> {
        keep_freed_buffers();
        let device = opts.device.device()?;
        let mapped = files.iter().map(map).collect::<Result<Vec<_>>>()?;
        let mut gguf = Vec::new();
        let mut shards = Vec::new();
        // The verifier validated every weights file's header and records the format it
        // showed; the engine goes by that and does not inspect the bytes a second time.
        for m in mapped
            .iter()
            .filter(|m| m.file.role() == Some(FileRole::Weights))
        {
            match m.file.format() {
                // Several are the parts of a split model (the verifier checked they are).
                Some(FileFormat::Gguf) => gguf.push(m),
                Some(FileFormat::Safetensors) => shards.push(m),
                _ => {
                    return Err(Error::Unsupported(format!(
                        "`{}` holds weights in a format candor does not load; it loads GGUF and safetensors",
                        m.name()
                    )))
                }
            }
        }
        match (gguf.is_empty(), shards.is_empty()) {
            (false, true) => Self::load_gguf(&gguf, opts, device),
            (true, false) => Self::load_hf(&mapped, &shards, opts, device),
            (false, false) => Err(Error::Unsupported(
                "both GGUF and safetensors weights in one model".into(),
            )),
            (true, true) => Err(Error::NoWeights),
        }
    }

    /// A GGUF model: one file, or the parts of a split one (the first holds the metadata).
    fn load_gguf(files: &[&Mapped], opts: &LoadOptions, device: Device) -> Result<Self> {
        let mut parts = Vec::with_capacity(files.len());
        for m in files {
            let content = gguf_file::Content::read(&mut Cursor::new(m.bytes()))
                .map_err(|e| Error::malformed(format!("{}: GGUF: {e}", m.name())))?;
            let no = match content.metadata.get("split.no") {
                Some(v) => v
                    .to_u16()
                    .map(u64::from)
                    .or_else(|_| v.to_u32().map(u64::from)),
                None => Ok(0),
            }
            .map_err(|e| Error::malformed(format!("{}: split.no: {e}", m.name())))?;
            parts.push((no, content, &m.map));
        }
        parts.sort_by_key(|(no, ..)| *no);
        if parts
            .iter()
            .enumerate()
            .any(|(i, (no, ..))| *no != i as u64)
        {
            return Err(Error::malformed(
                "the GGUF files are not the parts of one split model, each once",
            ));
        }
        let content = &parts[0].1;
        let cfg = ModelConfig::from_gguf(content)?;
        let tokenizer = Tokenizer::from_gguf(content)?;
        let template = match content.metadata.get("tokenizer.chat_template") {
            Some(gguf_file::Value::String(s)) => Some(s.clone()),
            _ if cfg.gemma.is_some() => Some(GEMMA_TEMPLATE.to_string()),
            _ => None,
        };
        let weights = Weights::Gguf(
            parts
                .iter()
                .map(|(_, content, map)| GgufPart { content, map })
                .collect(),
        );
        Self::build(cfg, &weights, tokenizer, template, opts, device)
    }

    fn load_hf(
        all: &[Mapped],
        shards: &[&Mapped],
        opts: &LoadOptions,
        device: Device,
    ) -> Result<Self> {
        let find = |n: &str| all.iter().find(|m| file_name(m.name()) == n);
        let json = |n: &str| -> Result<Option<serde_json::Value>> {
            find(n)
                .map(|m| {
                    serde_json::from_slice(m.bytes())
                        .map_err(|e| Error::malformed(format!("{n}: {e}")))
                })
                .transpose()
        };
        let config = find("config.json").ok_or_else(|| {
            Error::malformed("a safetensors model needs its config.json next to the weights")
        })?;
        let cfg = ModelConfig::from_hf_json(config.bytes())?;
        let tok_config = json("tokenizer_config.json")?;
        let gen_config = json("generation_config.json")?;
        let tokenizer = match find("tokenizer.json") {
            Some(t) => Tokenizer::from_json(t.bytes(), tok_config.as_ref(), gen_config.as_ref())?,
            None => {
                return Err(Error::Tokenizer(
                    "the model directory has no tokenizer.json; candor needs it to run".into(),
                ))
            }
        };
        let template = match find("chat_template.jinja") {
            Some(t) => Some(String::from_utf8_lossy(t.bytes()).into_owned()),
            None => tok_config
                .as_ref()
                .and_then(|c| c.get("chat_template"))
                .and_then(|t| t.as_str())
                .map(str::to_string),
        };
        let bytes: Vec<&[u8]> = shards.iter().map(|s| s.bytes()).collect();
        let weights = Weights::safetensors(cfg.arch, &bytes)?;
        Self::build(cfg, &weights, tokenizer, template, opts, device)
    }

    fn build(
        cfg: ModelConfig,
        weights: &Weights,
        tokenizer: Tokenizer,
        template: Option<String>,
        opts: &LoadOptions,
        device: Device,
    ) -> Result<Self> {
        let ctx_size = opts.ctx_size.unwrap_or(cfg.context_length.min(4096));
        if ctx_size == 0 {
            return Err(Error::InvalidOption(
                "context size must be at least 1".into(),
            ));
        }
        if ctx_size > cfg.context_length {
            tracing::warn!(
                "context size {ctx_size} exceeds the {} tokens the model was trained for",
                cfg.context_length
            );
        }
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::malformed(format!(
                "the tokenizer has {} tokens but the embedding only {} rows",
                tokenizer.vocab_size(),
                cfg.vocab_size
            )));
        }
        let chat_template = template
            .map(|t| ChatTemplate::new(t, tokenizer.bos(), tokenizer.eos()))
            .transpose()?;
        let cache_type = cache_type(opts.cache_type, &device, cfg.head_dim)?;
        if device.is_cpu() {
            check_memory(
                &cfg,
                weights,
                cache_type,
                ctx_size,
                opts.sequences.max(1),
                opts.kv_budget,
            )?;
            pool::settle_candle_pool(weights.needs_candle_quantized_matmul());
            release_freed_heap();
            kernels::arena::new_model();
        }
        let net = match cfg.arch {
            Architecture::Gemma2 | Architecture::Gemma3 => {
                Network::Gemma(Gemma::load(&cfg, weights, ctx_size, &device)?)
            }
            _ => Network::Llama(Llama::load(&cfg, weights, ctx_size, &device)?),
        };
        let info = LoadedModelInfo {
            architecture: cfg.arch,
            format: weights.format(),
            weight_type: weight_type(weights),
            parameters: weights.parameters(),
            context_length: cfg.context_length,
            ctx_size,
            layers: cfg.n_layers,
            hidden_size: cfg.hidden_size,
            heads: cfg.n_heads,
            kv_heads: cfg.n_kv_heads,
            vocab_size: cfg.vocab_size,
            rope_theta: cfg.rope_theta,
            has_chat_template: chat_template.is_some(),
            weight_bytes: weights.loaded_bytes(),
            cache_type,
        };
        let n_layers = cfg.n_layers;
        Ok(Self {
            net,
            cfg,
            tokenizer,
            chat_template,
            seq: Sequence::new(n_layers, ctx_size, cache_type),
            info,
            device,
        })
    }

    pub fn info(&self) -> &LoadedModelInfo {
        &self.info
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.chat_template.as_ref().ok_or_else(|| {
            Error::ChatTemplate(
                "the model has no chat template; use plain completion instead".into(),
            )
        })
    }

    /// Tokens currently held in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        self.seq.tokens()
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Keeps the first `len` cached tokens and forgets the rest.
    pub fn truncate(&mut self, len: usize) {
        self.seq.truncate(len);
    }

    /// Bytes one decoding step reads from memory at least, `context` tokens in: every weight
    /// matrix once (of an embedding table not shared with the output, one row: estimated from
    /// the average bytes per parameter) and each layer's cached keys and values over the
    /// positions it attends to. What bounds decoding speed on a CPU.
    pub fn bytes_read_per_token(&self, context: usize) -> u64 {
        let cfg = &self.cfg;
        let mut weights = self.info.weight_bytes as f64;
        if !cfg.tie_word_embeddings {
            let per_param = weights / self.info.parameters.max(1) as f64;
            weights -= (cfg.vocab_size - 1) as f64 * cfg.hidden_size as f64 * per_param;
        }
        let kv: usize = (0..cfg.n_layers)
            .map(|l| cfg.layer_window(l).map_or(context, |w| context.min(w)))
            .map(|positions| positions * cfg.kv_bytes_per_position(self.info.cache_type))
            .sum();
        weights.max(0.0) as u64 + kv as u64
    }

    /// A new, empty sequence for [`Model::forward_batch`], with room for the context size.
    pub fn new_sequence(&self) -> Sequence {
        Sequence::new(self.cfg.n_layers, self.info.ctx_size, self.info.cache_type)
    }

    /// Feeds `ids` after the cached tokens in one batch and returns logits as (n, vocab):
    /// every position when `all_logits`, else the last one only.
    pub fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Tensor> {
        let mut seq = std::mem::take(&mut self.seq);
        let logits = self.forward_batch(&mut [SeqStep { ids, seq: &mut seq }], all_logits);
        self.seq = seq;
        logits
    }

    /// Why `ids` cannot follow the `cached` tokens of a sequence, if they cannot: nothing to
    /// feed, past the context, or a token outside the vocabulary.
    pub fn check_step(&self, cached: usize, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if cached + ids.len() > self.info.ctx_size {
            return Err(Error::PromptTooLong {
                tokens: cached + ids.len(),
                context: self.info.ctx_size,
                max: self.cfg.context_length,
            });
        }
        let vocab = self.cfg.vocab_size.max(self.tokenizer.vocab_size());
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidOption(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        Ok(())
    }

    /// Feeds each step's tokens after its sequence's cached ones, all in one forward pass, and
    /// returns logits as (n, vocab): every row when `all_logits`, else one row per step, in
    /// order. A step's results do not depend on the others: the matrix kernels treat each row
    /// on its own and attention runs per sequence. On an error no sequence is extended.
    pub fn forward_batch(&self, steps: &mut [SeqStep], all_logits: bool) -> Result<Tensor> {
        if steps.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        for s in steps.iter() {
            self.check_step(s.seq.len(), s.ids)?;
        }
        let before: Vec<usize> = steps.iter().map(|s| s.seq.len()).collect();
        let rows = steps.iter().map(|s| s.ids.len()).sum();
        let net = &self.net;
        let step = || match net {
            Network::Llama(m) => m.forward(steps, all_logits),
            Network::Gemma(m) => m.forward(steps, all_logits),
        };
        let logits = pool::run(rows, self.info.weight_bytes, step);
        match logits {
            Ok(l) => {
                for s in steps.iter_mut() {
                    s.seq.extend(s.ids);
                }
                Ok(l.to_dtype(DType::F32)?)
            }
            Err(e) => {
                // Leave every cache consistent with its tokens after a failed step.
                for (s, len) in steps.iter_mut().zip(before) {
                    s.seq.truncate(len);
                }
                Err(e)
            }
        }
    }
}

/// Keeps glibc's malloc from handing freed multi-megabyte buffers (a prompt's activations)
/// back to the kernel after every op: with its defaults, each such tensor is a fresh mmap whose
/// pages fault in again, which cost a 512-token prompt a fifth of its speed (785k page faults
/// instead of 65k). Buffers up to 32 MiB come from the heap and up to 64 MiB of free heap top
/// is kept. Process-wide, set once; other allocators and platforms are left alone.
#[allow(unsafe_code)] // mallopt
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes malloc's thresholds; any value is valid.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        });
    }
}

/// Hands the heap memory that loading has freed so far (the tokenizer's build, a 262k-piece
/// vocabulary's merges) back to the kernel before the weights are packed. The packed weights
/// live in their own mappings (`kernels::arena`), not in that freed heap, which
/// `keep_freed_buffers`' trim threshold would otherwise keep resident beside them: Gemma 3
/// 270M's peak RSS 455 -> 373 MiB. glibc only, as there.
#[allow(unsafe_code)] // malloc_trim
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Refuses up front, with the numbers, a model that would not fit in memory, instead of
/// letting the process be killed halfway through loading.
fn check_memory(
    cfg: &ModelConfig,
    weights: &Weights,
    cache_type: CacheType,
    ctx: usize,
    sequences: usize,
    kv_budget: Option<usize>,
) -> Result<()> {
    let mib = |b: u128| (b >> 20) as u64;
    let weights_bytes = weights.loaded_bytes() as u128;
    // Keys and values for every layer, plus the RoPE tables.
    let per_pos =
        (cfg.n_layers * cfg.kv_bytes_per_position(cache_type) + 2 * cfg.head_dim * 4) as u128;
    let positions =
        (ctx as u128 * sequences as u128).min(kv_budget.map_or(u128::MAX, |b| b as u128));
    let cache = per_pos * positions;
    let needed = weights_bytes + cache;
    if let Some(available) = available_memory() {
        if needed > available as u128 {
            return Err(Error::InsufficientMemory {
                needed_mib: mib(needed),
                weights_mib: mib(weights_bytes),
                cache_mib: mib(cache),
                contexts: match (sequences, kv_budget) {
                    (_, Some(b)) if (b as u128) < ctx as u128 * sequences as u128 => {
                        format!("a KV budget of {b} tokens")
                    }
                    (1, _) => format!("a {ctx}-token context"),
                    (n, _) => format!("{n} contexts of {ctx} tokens"),
                },
                fewer: if kv_budget.is_some() {
                    ", a smaller --kv-budget"
                } else if sequences > 1 {
                    ", fewer --parallel slots"
                } else {
                    ""
                },
                available_mib: mib(available as u128),
            });
        }
    }
    Ok(())
}

/// The KV cache's format: the one asked for, else f16 on the CPU. Accelerators attend through
/// candle, whose cache keeps the activations' f32.
fn cache_type(asked: Option<CacheType>, device: &Device, head_dim: usize) -> Result<CacheType> {
    let kind = match asked {
        _ if device.is_cpu() => asked.unwrap_or_default(),
        None | Some(CacheType::F32) => return Ok(CacheType::F32),
        Some(other) => {
            return Err(Error::InvalidOption(format!(
                "a {other} KV cache is for CPU inference; on an accelerator the cache is f32 \
                 (leave out --cache-type)"
            )))
        }
    };
    kind.check_head_dim(head_dim)?;
    Ok(kind)
}

/// Memory the system can still give us (Linux: MemAvailable); None where unknown.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The file's quantization as llama.cpp names it (`general.file_type`, e.g. "Q4_K - Medium"), so
/// `candor bench` rows line up with llama-bench's; else the type holding the most weights.
fn weight_type(w: &Weights) -> String {
    let mut by_type: std::collections::HashMap<String, u64> = Default::default();
    match w {
        Weights::Gguf(parts) => {
            let named = parts[0]
                .content
                .metadata
                .get("general.file_type")
                .and_then(|v| v.to_u32().ok())
                .and_then(llama_ftype_name);
            if let Some(name) = named {
                return name.to_string();
            }
            for t in parts.iter().flat_map(|p| p.content.tensor_infos.values()) {
                let ty = format!("{:?}", t.ggml_dtype);
                // candle spells "Q4K" what ggml spells "Q4_K".
                let ty = match ty.strip_suffix('K') {
                    Some(base) if ty.len() == 3 => format!("{base}_K"),
                    _ => ty,
                };
                *by_type.entry(ty).or_default() += t.shape.elem_count() as u64;
            }
        }
        Weights::Safetensors { shards, .. } => {
            for (_, v) in shards.iter().flat_map(|s| s.tensors()) {
                *by_type.entry(format!("{:?}", v.dtype())).or_default() +=
                    v.shape().iter().product::<usize>() as u64;
            }
        }
    }
    by_type
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_default()
}

/// llama.cpp's names for its `llama_ftype` values (the common ones).
fn llama_ftype_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}
