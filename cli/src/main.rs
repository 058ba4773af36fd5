//! `autark`: quantize, inspect, verify, run, chat, bench, serve. A thin layer over the library crates.
//!
//! Exit codes: 0 success; 1 the operation failed (message on stderr); 2 bad command line;
//! 3 `verify` found corrupted tensors; 4 a constrained generation (`--json-schema`, `--regex`,
//! `--grammar`, `--tools`) stopped before its output was complete.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use autark_runtime::{CacheType, SpecMode, ToolChoice, DEFAULTS};
use clap::{Args, Parser, Subcommand};
use cmd::{bench, chat, debug, inspect, perplexity, quantize, run, CliError};

mod cmd;

#[derive(Parser)]
#[command(name = "autark", version, about = "Quantize and run open language models on edge devices")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert a Hugging Face folder or a GGUF file into a .autark file.
    Quantize(QuantizeArgs),
    /// Show a .autark file's metadata and tensor table.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every tensor's SHA-256, and that the tokenizer and chat template load and work;
    /// with --conformance, that this machine's kernels reproduce the file's conformance record
    /// bit for bit (exit code 5 and the first differing step when not).
    Verify {
        file: PathBuf,
        #[arg(long)]
        conformance: bool,
        /// Threads for --conformance (0 = all cores).
        #[arg(short, long, default_value_t = 0)]
        threads: usize,
    },
    /// Write one tensor, dequantized, as raw little-endian f32.
    Dump {
        file: PathBuf,
        tensor: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Generate text from a prompt (or continue a saved state).
    Run {
        model: PathBuf,
        /// The prompt; with --load-state, text appended to the saved context first.
        #[arg(short, long, required_unless_present = "load_state")]
        prompt: Option<String>,
        /// Tokens to generate.
        #[arg(short = 'n', long, default_value_t = DEFAULTS.generate.max_tokens)]
        n_predict: usize,
        /// Render the prompt as one user message with the model's chat template.
        #[arg(long)]
        chat: bool,
        /// System message (with --chat).
        #[arg(long)]
        system: Option<String>,
        /// Jinja chat template for --chat, instead of the model's (or for a model without one).
        #[arg(long, value_name = "FILE", requires = "chat")]
        chat_template: Option<PathBuf>,
        /// Save the session's state (context, KV cache, the generation) here afterwards.
        #[arg(long)]
        save_state: Option<PathBuf>,
        /// Start from a state saved with --save-state: without -p the generation continues
        /// exactly where it stopped.
        #[arg(long, conflicts_with = "chat")]
        load_state: Option<PathBuf>,
        #[command(flatten)]
        s: SampleArgs,
    },
    /// Interactive chat with streaming output and history (/reset, /exit).
    Chat {
        model: PathBuf,
        #[arg(long)]
        system: Option<String>,
        #[arg(short = 'n', long, default_value_t = 512)]
        n_predict: usize,
        /// Jinja chat template, instead of the model's (or for a model without one).
        #[arg(long, value_name = "FILE")]
        chat_template: Option<PathBuf>,
        /// Keep the conversation in this file: resumed from it if it exists, saved after every
        /// reply.
        #[arg(long)]
        session: Option<PathBuf>,
        #[command(flatten)]
        s: SampleArgs,
    },
    /// Print the token ids of a text as JSON.
    Tokenize {
        model: PathBuf,
        #[arg(short, long)]
        prompt: String,
        /// Render as one user message with the chat template (generation prompt added).
        #[arg(long)]
        chat: bool,
        /// Do not add special tokens (BOS).
        #[arg(long)]
        no_special: bool,
    },
    /// Write the logits of every position of one prefill as raw little-endian f32 [T, vocab].
    Logits(LogitsArgs),
    /// Perplexity of a text file, computed as llama-perplexity does (second half of each window
    /// scored); KL divergence against a reference model's saved log-probabilities.
    Perplexity(PerplexityArgs),
    /// Measure prompt processing and generation speed (tokens/s), load time and memory.
    Bench(BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (docs/SERVER.md).
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    model: PathBuf,
    /// Address to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = autark_server::DEFAULT_PORT)]
    port: u16,
    /// Requests generated at the same time (slots).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Tokens each slot holds: prompt and output.
    #[arg(long, default_value_t = 2048)]
    ctx_per_slot: usize,
    /// Requests that may wait for a slot; more are refused with 503.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// KV cache memory the running requests share, MiB (default: every slot's whole context).
    /// Each request reserves the KV of its prompt and max_tokens; requests wait while it is spent.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    kv_budget_mib: Option<u64>,
    /// Require `Authorization: Bearer KEY` on /v1/* (default: $AUTARK_API_KEY if set).
    #[arg(long, env = "AUTARK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Worker threads (0 = one per core).
    #[arg(short = 't', long, default_value_t = DEFAULTS.session.n_threads)]
    threads: usize,
    /// A web origin whose pages may call the API from a browser (CORS), e.g.
    /// http://localhost:3000; repeatable; `*` allows any page. Default: none.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Keep each idle slot's last conversation in its KV cache and send a request to the slot
    /// whose tokens begin like its prompt: a chat's next turn evaluates only what is new.
    /// Idle slots then keep their memory (released when the KV budget needs it).
    #[arg(long)]
    prompt_cache: bool,
}

#[derive(Args)]
struct QuantizeArgs {
    /// GGUF file or folder with config.json, *.safetensors, tokenizer.json.
    input: PathBuf,
    /// Output .autark file (written to a temporary file, renamed when complete).
    #[arg(short, long)]
    output: PathBuf,
    /// Type of the linear weights (q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, f32)
    /// or a preset: q4_k_m, q5_k_m (llama.cpp's Q4_K_M / Q5_K_M rules and fallbacks),
    /// q4_mixed, q4_1_mixed (4-bit, with attention values and the edge layers' FFN down at
    /// q8_0), keep (every tensor as the source stores it: GGUF K-quants copied losslessly).
    #[arg(short = 't', long = "type", default_value = "q4_0")]
    dtype: String,
    /// Per-tensor override PATTERN=TYPE (glob with *, last match wins); repeatable.
    #[arg(long = "tensor-type")]
    tensor_type: Vec<String>,
    /// 4-bit scales by plain round-to-nearest (ggml's reference quantizers, bit for bit)
    /// instead of the default per-block scale search.
    #[arg(long, conflicts_with = "calibration")]
    rtn: bool,
    /// Calibration text: run the model (as f16) over it first and weight each weight
    /// column's quantization error by the mean square of the activations it meets.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Tokens of calibration text to use (whole windows of 512).
    #[arg(long, default_value_t = 8192)]
    calibration_tokens: usize,
    /// Block order of q4_0, q4_1, q5_0, q5_1, q8_0 and K-quant matrices: rows16 (16 rows
    /// interleaved, what the kernels read fastest; any matrix whose row count is a multiple of
    /// 16) or rows (GGUF's row after row).
    #[arg(long, default_value = "rows16", value_parser = ["rows16", "rows"])]
    layout: String,
    /// Do not store a conformance record (the scalar kernels' logits for a fixed probe, which
    /// `autark verify --conformance` compares on any machine; docs/NUMERICS.md).
    #[arg(long)]
    no_conformance: bool,
    /// Threads that quantize each tensor's rows and run the conformance probe (0 = all cores);
    /// the file is the same bytes on any number.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print every tensor's type and RMS error.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args)]
struct LogitsArgs {
    model: PathBuf,
    /// Comma-separated token ids.
    #[arg(long, conflicts_with = "prompt")]
    tokens: Option<String>,
    #[arg(short, long)]
    prompt: Option<String>,
    #[arg(short, long)]
    output: PathBuf,
    /// Threads (0 = all cores).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Tokens per forward batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Args)]
struct PerplexityArgs {
    model: PathBuf,
    /// UTF-8 text to score.
    #[arg(short = 'f', long = "file")]
    text: PathBuf,
    /// Window (context) length in tokens.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    n_ctx: usize,
    /// Score at most this many windows (default: as many as the text holds).
    #[arg(long)]
    chunks: Option<usize>,
    /// Threads (0 = all cores).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Save this model's log-probabilities of every scored token (f16) for a later --kl-base.
    #[arg(long)]
    save_logits: Option<PathBuf>,
    /// Report KL divergence from the log-probabilities saved with --save-logits by a
    /// reference model (same text, n_ctx and windows).
    #[arg(long)]
    kl_base: Option<PathBuf>,
    /// One JSON object on stdout: ppl, ppl_stderr, n_tokens (and kld_*, top1_agreement).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Model to measure (not needed with --memory).
    #[arg(required_unless_present = "memory")]
    model: Option<PathBuf>,
    /// Measure memory read bandwidth instead (GB/s over a 4 GiB buffer, per thread count):
    /// the limit for generation speed on models larger than the cache. With a model, also
    /// the rate of reading all its tensors through the file mapping, as generation does.
    #[arg(long)]
    memory: bool,
    /// The --memory probe's buffer in MiB (a device with less memory than 4 GiB needs less; the
    /// buffer should still be several times the last-level cache).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    memory_mib: u64,
    /// Prompt tokens (pp).
    #[arg(short = 'p', long, default_value_t = 128)]
    n_prompt: usize,
    /// Generated tokens (tg).
    #[arg(short = 'n', long, default_value_t = 64)]
    n_gen: usize,
    /// Timed repetitions (after one warm-up); mean ± standard deviation is reported.
    #[arg(short, long, default_value_t = 5)]
    repetitions: usize,
    /// Comma-separated thread counts.
    #[arg(short, long, default_value = "0")]
    threads: String,
    /// Tokens already in the context when each test starts (llama-bench's -d).
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    n_depth: usize,
    #[command(flatten)]
    cache: CacheArgs,
    /// A text file: the pp test evaluates it (instead of -p random tokens) and the tg test
    /// generates from it, greedily, through the generation loop (with --speculative).
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// With --prompt-file: render it as one user message with the chat template.
    #[arg(long, requires = "prompt_file")]
    chat: bool,
    /// Temperature of the tg test through the generation loop (0 = greedy, as llama-bench).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Seed of a sampled tg test (each repetition draws the same text).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    spec: SpecArgs,
    /// One JSON object per line per test (llama-bench's jsonl keys n_prompt, n_gen,
    /// n_threads, avg_ts, stddev_ts, plus autark's own).
    #[arg(long)]
    json: bool,
    /// Constrain the generated tokens (tg) by this JSON Schema: the mask is computed and
    /// applied at every step, as in `autark run --json-schema`.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// Decode N sequences together in the tg test (as `autark serve --parallel N` steps its
    /// slots: one forward pass per step for all of them); t/s counts every sequence's tokens.
    #[arg(long, value_name = "N", default_value_t = 1)]
    parallel: usize,
}

#[derive(Args, Clone)]
struct SampleArgs {
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.temperature)]
    temp: f32,
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.top_k)]
    top_k: usize,
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.top_p)]
    top_p: f32,
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.min_p)]
    min_p: f32,
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.repeat_penalty)]
    repeat_penalty: f32,
    /// Recent tokens the penalties look at.
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.repeat_last_n)]
    repeat_last_n: usize,
    /// Subtracted from a recent token's logit once per occurrence (0 = off).
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.frequency_penalty, allow_hyphen_values = true)]
    frequency_penalty: f32,
    /// Subtracted once from the logit of every recent token (0 = off).
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.presence_penalty, allow_hyphen_values = true)]
    presence_penalty: f32,
    #[arg(long, default_value_t = DEFAULTS.generate.sampler.seed)]
    seed: u64,
    /// Context length (0 = model's, capped at 4096).
    #[arg(short = 'c', long, default_value_t = DEFAULTS.session.n_ctx)]
    ctx: usize,
    /// Threads (0 = all cores).
    #[arg(short, long, default_value_t = DEFAULTS.session.n_threads)]
    threads: usize,
    /// Stop generation before this string; repeatable.
    #[arg(long)]
    stop: Vec<String>,
    #[command(flatten)]
    cache: CacheArgs,
    /// When the context is full, drop the oldest half of it (after --keep tokens) and go on.
    #[arg(long)]
    context_shift: bool,
    /// Tokens at the start of the context that a context shift keeps.
    #[arg(long, default_value_t = DEFAULTS.generate.n_keep)]
    keep: usize,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    constraint: ConstraintArgs,
    /// With --tools: `required` (the reply is one call) or `auto` (a call, or a text reply
    /// instead; what begins like a call is held to being a valid one).
    #[arg(long, value_parser = tool_choice, default_value = "required", requires = "tools")]
    tool_choice: ToolChoice,
}

/// Structured output (docs/STRUCTURED.md): at most one constraint.
#[derive(Args, Clone, Default)]
#[group(multiple = false)]
pub struct ConstraintArgs {
    /// The output is one JSON value valid under this JSON Schema file.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
    /// The whole output matches this regular expression.
    #[arg(long, value_name = "RE")]
    pub regex: Option<String>,
    /// The output matches this grammar file (llguidance's Lark syntax).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
    /// Tools the model calls one of: a JSON array of OpenAI-style function definitions. The reply
    /// is constrained to one call, printed as JSON `[{"name": …, "arguments": {…}}]` (chat only;
    /// with `--tool-choice auto` it may be text instead, printed as text).
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
}

/// Speculative decoding (docs/RUNTIME.md): the output is the same as without it.
#[derive(Args, Clone)]
struct SpecArgs {
    /// Draft tokens and verify them in one batch: lookup (n-grams of the prompt and output so
    /// far) or draft (a smaller model, --draft). Default: off, or draft with --draft.
    #[arg(long, value_parser = spec_mode)]
    speculative: Option<SpecMode>,
    /// The draft model (.autark with the same tokenizer vocabulary).
    #[arg(long, value_name = "MODEL")]
    draft: Option<PathBuf>,
    /// Most tokens drafted per step (fewer, down to --draft-min, while drafts are rejected).
    #[arg(long, default_value_t = DEFAULTS.generate.speculative.draft_max)]
    draft_max: usize,
    /// Fewest tokens drafted per step whenever there is something to draft, whatever the
    /// measured acceptance says (0: the drafter may draft none).
    #[arg(long, default_value_t = DEFAULTS.generate.speculative.draft_min)]
    draft_min: usize,
}

/// Where a session runs: the device of its forward pass and the types of its KV cache.
#[derive(Args, Clone, Copy)]
struct CacheArgs {
    /// Device of the forward pass: cpu, or cuda (a build with the `cuda` feature; docs/CUDA.md).
    #[arg(long, value_enum, default_value = "cpu")]
    device: cmd::device::Device,
    /// KV cache type of the keys: f32, f16 or q8_0.
    #[arg(long = "cache-type-k", default_value = DEFAULTS.session.cache_type_k.name(), value_parser = cache_type)]
    k: CacheType,
    /// KV cache type of the values: f32, f16 or q8_0.
    #[arg(long = "cache-type-v", default_value = DEFAULTS.session.cache_type_v.name(), value_parser = cache_type)]
    v: CacheType,
}

fn spec_mode(s: &str) -> Result<SpecMode, String> {
    SpecMode::parse(s).ok_or_else(|| format!("unknown speculative mode {s:?} (off, lookup or draft)"))
}

fn tool_choice(s: &str) -> Result<ToolChoice, String> {
    ToolChoice::parse(s).ok_or_else(|| format!("unknown tool choice {s:?} (required or auto)"))
}

fn cache_type(s: &str) -> Result<CacheType, String> {
    CacheType::parse(s).ok_or_else(|| format!("unknown cache type {s:?} (one of {})", CacheType::names()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Corrupted(n)) => {
            eprintln!("autark: verify failed: {n} corrupted tensor(s)");
            ExitCode::from(3)
        }
        Err(e @ CliError::Incomplete { .. }) => {
            eprintln!("autark: {e}");
            ExitCode::from(4)
        }
        Err(e @ CliError::NotConformant(_)) => {
            eprintln!("autark: {e}");
            ExitCode::from(5)
        }
        Err(e @ CliError::Usage(_)) => {
            eprintln!("autark: error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("autark: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli) -> cmd::Result<()> {
    let device = match &cli.cmd {
        Cmd::Run { s, .. } | Cmd::Chat { s, .. } => Some(s.cache.device),
        Cmd::Logits(a) => Some(a.cache.device),
        Cmd::Perplexity(a) => Some(a.cache.device),
        Cmd::Bench(a) => Some(a.cache.device),
        _ => None,
    };
    if let Some(d) = device {
        cmd::device::require(d)?;
    }
    match cli.cmd {
        Cmd::Quantize(a) => quantize::quantize(a),
        Cmd::Inspect { file, json } => inspect::inspect(&file, json),
        Cmd::Verify { file, conformance, threads } => inspect::verify(&file, conformance.then_some(threads)),
        Cmd::Dump { file, tensor, output } => debug::dump(&file, &tensor, &output),
        Cmd::Run { model, prompt, n_predict, chat, system, chat_template, save_state, load_state, s } => run::run(
            &model,
            run::Start {
                prompt: prompt.as_deref(),
                chat,
                system,
                template: chat_template.as_deref(),
                load: load_state.as_deref(),
            },
            n_predict,
            save_state.as_deref(),
            &s,
        ),
        Cmd::Chat { model, system, n_predict, chat_template, session, s } => {
            chat::chat(&model, system, n_predict, chat_template.as_deref(), session.as_deref(), &s)
        }
        Cmd::Tokenize { model, prompt, chat, no_special } => debug::tokenize(&model, &prompt, chat, no_special),
        Cmd::Logits(a) => debug::logits(a),
        Cmd::Perplexity(a) => perplexity::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Serve(a) => {
            let mut p = autark_server::ServeParams::new(a.model);
            p.host = a.host;
            p.port = a.port;
            p.parallel = a.parallel;
            p.ctx_per_slot = a.ctx_per_slot;
            p.max_queue = a.max_queue;
            p.kv_budget = a.kv_budget_mib.map(|m| (m as usize) << 20);
            p.api_key = a.api_key.filter(|k| !k.is_empty());
            p.threads = a.threads;
            p.cors_origins = a.cors_origins;
            p.prompt_cache = a.prompt_cache;
            autark_server::serve(p).map_err(CliError::from)
        }
    }
}
