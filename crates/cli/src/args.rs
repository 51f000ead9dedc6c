//! Every command's arguments, in one place.

use candor_engine::CacheType;
use candor_verify::Level;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";

const ENVIRONMENT: &str = "\
Environment:
  CANDOR_HOME   pulled models, verification cache, license acceptances, candor.toml policy
                (default ~/.cache/candor)
  HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT   honoured as by Hugging Face tools";

/// `--help`'s closing text: the exit codes (from the one list of them) and the environment.
fn after_help() -> String {
    format!("{}\n{ENVIRONMENT}", crate::error::ExitCode::help())
}

#[derive(Parser, Debug)]
#[command(name = "candor", version, about = "Local LLM inference that proves what it runs", after_help = after_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fetch a model's files and check them against its manifest.
    Pull(PullArgs),
    /// Check a model against its manifest, license, openness and policy.
    Verify(VerifyArgs),
    /// Show what a model is: architecture, size, license terms, openness, verification state.
    Show(ShowArgs),
    /// List models on this machine (or the shipped manifests with --available).
    List(ListArgs),
    /// Complete a prompt.
    Run(RunArgs),
    /// Chat interactively (one message per line when stdin is not a terminal).
    Chat(ChatArgs),
    /// Measure prompt processing and generation speed, like llama-bench.
    Bench(BenchArgs),
    /// Perplexity of a text file.
    Perplexity(PerplexityArgs),
    /// Print the token ids of a text.
    Tokenize(TokenizeArgs),
    /// Serve verified models over HTTP: the OpenAI and the Ollama APIs.
    Serve(ServeArgs),
    /// Write or inspect manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Licenses that must be accepted before use.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Print a shell completion script, e.g. `candor completions bash > ~/.local/share/bash-completion/completions/candor`.
    Completions(CompletionsArgs),
    /// Print candor's man page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

/// An openness level as the command line spells it.
fn openness_level(s: &str) -> Result<Level, String> {
    s.parse().map_err(|_| {
        let levels: Vec<&str> = Level::ALL.iter().map(|l| l.as_str()).collect();
        format!("unknown openness level (levels: {})", levels.join(", "))
    })
}

/// How a command decides whether a model may be used.
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Policy file (default: candor.toml in CANDOR_HOME, if present).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Allow a model that no manifest lists (it is still hashed and reported).
    #[arg(long)]
    pub allow_unlisted: bool,
    /// Load a model whose claimed openness exceeds what it achieves; LEVEL must be the achieved level.
    #[arg(long, value_name = "LEVEL", value_parser = openness_level)]
    pub accept_openness: Option<Level>,
    /// Hash every file even if the verification cache knows it.
    #[arg(long)]
    pub rehash: bool,
}

/// Which model to load.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Manifest id, .gguf file or safetensors model directory.
    #[arg(short, long, default_value = DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Where and how a model runs, and what may be loaded: shared by every model-running command.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Threads for inference (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, up to 4096).
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// Number format of the KV cache on the CPU: f16 (default), q8_0 (about half of f16's
    /// memory) or f32.
    #[arg(long, value_name = "TYPE")]
    pub cache_type: Option<CacheType>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda,
    Metal,
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 299792458)]
    pub seed: u64,
    /// Stop before this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Manifest id.
    pub model: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Manifest id, .gguf file or model directory.
    pub model: String,
    /// Check the file or directory against this manifest file.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Require at least this openness level.
    #[arg(long, value_name = "LEVEL", value_parser = openness_level)]
    pub require: Option<Level>,
    /// Verify this OpenSSF model-signing bundle (model.sig) over the model directory; with
    /// --public-key or --certificate-chain. A model without a manifest is then vouched for by it.
    #[arg(long, value_name = "FILE", requires = "signature_key")]
    pub signature: Option<PathBuf>,
    #[command(flatten)]
    pub signature_key: SignatureKeyArgs,
    /// Accept files in the directory that the signature does not cover (they are reported).
    #[arg(long, requires = "signature")]
    pub ignore_unsigned_files: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// What `verify --signature` checks the bundle with: a key or a certificate chain, not both.
#[derive(Args, Debug)]
#[group(id = "signature_key", multiple = false, requires = "signature")]
pub struct SignatureKeyArgs {
    /// The EC public key (PEM, P-256/P-384/P-521) the signature must verify with.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Trusted root certificates (PEM) the bundle's signing certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub certificate_chain: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub model: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// List the shipped manifests instead: models candor knows how to fetch and check.
    #[arg(long)]
    pub available: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The prompt (read from stdin when absent).
    pub prompt: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Apply the model's chat template to the prompt as one user turn.
    #[arg(long)]
    pub chat: bool,
    /// System prompt (with --chat).
    #[arg(long)]
    pub system: Option<String>,
    /// Print one JSON object with the text and statistics instead of streaming.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub grammar: GrammarArgs,
    /// With --chat, leave out a thinking model's reasoning (shown dimmed otherwise).
    #[arg(long)]
    pub hide_thinking: bool,
    /// With --json: each generated token's log-probability and this many likeliest
    /// alternatives (0-20).
    #[arg(long, value_name = "N", requires = "json", value_parser = clap::value_parser!(u8).range(0..=20))]
    pub logprobs: Option<u8>,
}

/// What the output must match: constrained decoding, so it cannot be malformed.
#[derive(Args, Debug, Clone, Default)]
#[group(multiple = false)]
pub struct GrammarArgs {
    /// JSON that validates against the JSON Schema in FILE.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
    /// Text in the language of the Lark grammar in FILE (llguidance's dialect).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
    /// Text that matches the regular expression RE in full.
    #[arg(long, value_name = "RE")]
    pub regex: Option<String>,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long)]
    pub system: Option<String>,
    /// Leave out a thinking model's reasoning (shown dimmed otherwise).
    #[arg(long)]
    pub hide_thinking: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Manifest id, .gguf file or safetensors model directory (default: the default model).
    /// With --serve: the model name sent to the server (default: the first it lists).
    #[arg(short, long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Prompt tokens to process.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions (after one warm-up).
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Tokens already in the context before each test (llama-bench's -d): measures prompt
    /// processing and decoding after a long conversation. Filled once, not timed.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    pub n_depth: usize,
    #[command(flatten)]
    pub serve: ServeBenchArgs,
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The model to load for a local benchmark.
    pub fn model_args(&self) -> ModelArgs {
        ModelArgs {
            model: self.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into()),
            runtime: self.runtime.clone(),
        }
    }
}

/// `candor bench --serve URL`: concurrent streaming clients against an OpenAI-compatible server.
#[derive(Args, Debug)]
#[group(id = "serve_bench", multiple = true)]
pub struct ServeBenchArgs {
    /// Benchmark the OpenAI-compatible server at URL (candor serve, llama-server, vLLM, ...)
    /// instead of loading a model here, e.g. http://127.0.0.1:8080.
    #[arg(
        long = "serve",
        id = "serve",
        value_name = "URL",
        conflicts_with_all = [
            "n_prompt", "n_gen", "repetitions", "n_depth", "device", "threads", "ctx_size",
            "policy", "allow_unlisted", "accept_openness", "rehash",
        ]
    )]
    pub url: Option<String>,
    /// Concurrent streaming clients, one level after another.
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "1,2,4,8,16",
        requires = "serve"
    )]
    pub clients: Vec<usize>,
    /// Requests per level (default: twice its clients; at least as many as the clients).
    #[arg(long, requires = "serve")]
    pub requests: Option<usize>,
    /// Prompt length, in random words of about one token each.
    #[arg(long, default_value_t = 128, requires = "serve")]
    pub prompt_tokens: usize,
    /// max_tokens of each request.
    #[arg(long, default_value_t = 128, requires = "serve")]
    pub output_tokens: usize,
    #[arg(
        long = "temp",
        alias = "temperature",
        default_value_t = 0.8,
        requires = "serve"
    )]
    pub temperature: f32,
    /// Seed of the random prompts.
    #[arg(long, default_value_t = 299792458, requires = "serve")]
    pub seed: u64,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    #[arg(long, value_enum, default_value_t = ServeEndpoint::Chat, requires = "serve")]
    pub endpoint: ServeEndpoint,
    /// Seconds one request may take, from sending it to the end of its stream.
    #[arg(long, value_name = "SECS", default_value_t = 300, requires = "serve")]
    pub timeout: u64,
}

/// Which OpenAI endpoint `bench --serve` streams from.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEndpoint {
    /// /v1/chat/completions, the prompt as one user message.
    Chat,
    /// /v1/completions, the raw prompt.
    Completions,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to score.
    #[arg(short, long)]
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model to serve: manifest id, .gguf file or model directory (repeatable; default: the
    /// default model). Each is verified first; one that fails is not served.
    #[arg(short, long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 and /api requests.
    #[arg(
        long,
        env = "CANDOR_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Requests that may wait per model; more get 429.
    #[arg(long, default_value_t = 64)]
    pub queue_size: usize,
    /// Requests each model generates at once, sharing every forward pass (continuous
    /// batching). Each holds up to --ctx-size tokens of KV cache.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// KV cache positions (tokens) all of a model's slots share, instead of a full context
    /// each: a request reserves its prompt and max_tokens, and waits in the queue until they
    /// fit. The memory check at startup counts this budget.
    #[arg(long, value_name = "TOKENS")]
    pub kv_budget: Option<usize>,
    /// Tokens one forward pass feeds at most: one per decoding request, then chunks of the
    /// prompts being read.
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Read every prompt from its first token instead of reusing the KV cache of the longest
    /// prefix a free slot holds (system prompts, chats resent in full). On the CPU reuse gives
    /// the same tokens; on a GPU it can round differently in the last bits.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Tokens to generate when a request gives no max_tokens.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    pub text: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Do not add the tokens the tokenizer adds by default (e.g. BOS).
    #[arg(long)]
    pub no_special: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write candor.1 and candor-COMMAND.1 for every command here instead of printing candor.1.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Write a self-attested manifest for the model files in DIR.
    Init {
        dir: PathBuf,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Manifest id (default: the directory name).
        #[arg(long)]
        id: Option<String>,
    },
    /// Write a manifest from the file sizes and hashes a Hugging Face repo publishes at a commit
    /// (into CANDOR_HOME/manifests, for `candor pull`).
    Import {
        /// hf:OWNER/REPO@COMMIT, with the full 40-hex commit id (only a commit pins content).
        #[arg(value_name = "hf:OWNER/REPO@COMMIT")]
        source: String,
        /// Files to list, as paths in the repo (default: its GGUF or safetensors weights and
        /// the tokenizer, config and card files next to them).
        files: Vec<String>,
        /// Output file (default: CANDOR_HOME/manifests/ID.toml).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Manifest id (default: the GGUF file's name, else the repo's name, lowercased).
        #[arg(long)]
        id: Option<String>,
        /// Replace an existing manifest file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LicenseCommand {
    /// Show a model's license terms and record that you accept them.
    Accept {
        model: String,
        /// Accept without asking.
        #[arg(long)]
        yes: bool,
    },
}
