//! `autark`: quantize, inspect, verify, run, chat, bench. A thin layer over the library crates.
//!
//! Exit codes: 0 success; 1 the operation failed (message on stderr); 2 bad command line;
//! 3 `verify` found corrupted tensors.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use autark_format::AutarkFile;
use autark_quantize::{Progress, Recipe};
use autark_runtime::{ChatMessage, GenerateParams, Model, SamplerParams, Session, SessionParams};
use clap::{Args, Parser, Subcommand};

mod perplexity;

#[derive(Parser)]
#[command(name = "autark", version, about = "Quantize and run open language models on edge devices")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert a Hugging Face folder or a GGUF file into a .autark file.
    Quantize {
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
        /// Block order of q4_0, q4_1 and q8_0 matrices: rows16 (16 rows interleaved, what the
        /// kernels read fastest; any matrix whose row count is a multiple of 16) or rows (GGUF's
        /// row after row).
        #[arg(long, default_value = "rows16", value_parser = ["rows16", "rows"])]
        layout: String,
        /// Print every tensor's type and RMS error.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Show a .autark file's metadata and tensor table.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every tensor's SHA-256.
    Verify { file: PathBuf },
    /// Write one tensor, dequantized, as raw little-endian f32.
    Dump {
        file: PathBuf,
        tensor: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Generate text from a prompt.
    Run {
        model: PathBuf,
        #[arg(short, long)]
        prompt: String,
        /// Tokens to generate.
        #[arg(short = 'n', long, default_value_t = 128)]
        n_predict: usize,
        /// Render the prompt as one user message with the model's chat template.
        #[arg(long)]
        chat: bool,
        /// System message (with --chat).
        #[arg(long)]
        system: Option<String>,
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
    Logits {
        model: PathBuf,
        /// Comma-separated token ids.
        #[arg(long, conflicts_with = "prompt")]
        tokens: Option<String>,
        #[arg(short, long)]
        prompt: Option<String>,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Tokens per forward batch.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Perplexity of a text file, computed as llama-perplexity does (second half of each window
    /// scored); KL divergence against a reference model's saved log-probabilities.
    Perplexity {
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
    },
    /// Measure prompt processing and generation speed (tokens/s), load time and memory.
    Bench {
        /// Model to measure (not needed with --memory).
        #[arg(required_unless_present = "memory")]
        model: Option<PathBuf>,
        /// Measure memory read bandwidth instead (GB/s over a 4 GiB buffer, per thread count):
        /// the limit for generation speed on models larger than the cache. With a model, also
        /// the rate of reading all its tensors through the file mapping, as generation does.
        #[arg(long)]
        memory: bool,
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
        /// One JSON object per line per test (llama-bench's jsonl keys n_prompt, n_gen,
        /// n_threads, avg_ts, stddev_ts, plus autark's own).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct SampleArgs {
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Context length (0 = model's, capped at 4096).
    #[arg(short = 'c', long, default_value_t = 0)]
    ctx: usize,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Stop generation before this string; repeatable.
    #[arg(long)]
    stop: Vec<String>,
}

impl SampleArgs {
    fn sampler(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        }
    }
    fn session(&self) -> SessionParams {
        SessionParams { n_ctx: self.ctx, n_threads: self.threads, ..Default::default() }
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Quantize(#[from] autark_quantize::QuantizeError),
    #[error(transparent)]
    Runtime(#[from] autark_runtime::RuntimeError),
    #[error(transparent)]
    Format(#[from] autark_format::FormatError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
    #[error("{0} corrupted tensor(s)")]
    Corrupted(usize),
}

type Result<T> = std::result::Result<T, CliError>;

/// `println!` that ignores a closed stdout (e.g. `autark inspect … | head`) instead of
/// panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Corrupted(n)) => {
            eprintln!("autark: verify failed: {n} corrupted tensor(s)");
            ExitCode::from(3)
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

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Quantize { input, output, dtype, tensor_type, rtn, calibration, calibration_tokens, layout, verbose } => {
            let calibration = calibration.map(|text| (text, calibration_tokens));
            let method = Flags { rtn, interleave: layout == "rows16" };
            quantize(&input, &output, &dtype, &tensor_type, method, calibration, verbose)
        }
        Cmd::Inspect { file, json } => inspect(&file, json),
        Cmd::Verify { file } => verify(&file),
        Cmd::Dump { file, tensor, output } => dump(&file, &tensor, &output),
        Cmd::Run { model, prompt, n_predict, chat, system, s } => {
            run_prompt(&model, &prompt, n_predict, chat, system, &s)
        }
        Cmd::Chat { model, system, n_predict, s } => chat(&model, system, n_predict, &s),
        Cmd::Tokenize { model, prompt, chat, no_special } => tokenize(&model, &prompt, chat, no_special),
        Cmd::Logits { model, tokens, prompt, output, threads, batch } => {
            logits(&model, tokens, prompt, &output, threads, batch)
        }
        Cmd::Perplexity { model, text, n_ctx, chunks, threads, save_logits, kl_base, json } => {
            perplexity::run(perplexity::Options { model, text, n_ctx, chunks, threads, save_logits, kl_base, json })
        }
        Cmd::Bench { model, memory, n_prompt, n_gen, repetitions, threads, json } => match (memory, model) {
            (true, model) => bench_memory(&threads, repetitions, model.as_deref()),
            (false, Some(model)) => bench(&model, n_prompt, n_gen, repetitions, &threads, json),
            (false, None) => Err(CliError::Usage("give a model or --memory".into())),
        },
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io { path: path.to_path_buf(), source }
}

// ---- quantize, inspect, verify, dump --------------------------------------------------------

/// `quantize`'s switches: `--rtn`, and `--layout rows16` (true) or `rows`.
struct Flags {
    rtn: bool,
    interleave: bool,
}

fn quantize(
    input: &Path,
    output: &Path,
    dtype: &str,
    overrides: &[String],
    flags: Flags,
    calibration: Option<(PathBuf, usize)>,
    verbose: bool,
) -> Result<()> {
    let mut recipe = Recipe::named(dtype).map_err(|_| {
        CliError::Usage(format!("unknown --type {dtype:?} (q4_0, q4_1, q8_0, f16, f32, q4_mixed, q4_1_mixed, keep)"))
    })?;
    if flags.rtn {
        recipe.method = autark_quantize::Method::Rtn;
    }
    recipe.interleave = flags.interleave;
    if let Some((text, tokens)) = calibration {
        let (importance, what) = perplexity::calibrate(input, output, &text, tokens)?;
        recipe.importance = Some(Arc::new(importance));
        recipe.calibration = Some(what);
    }
    for o in overrides {
        recipe.add_override(o)?;
    }
    let t0 = Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let summary = autark_quantize::quantize(input, output, &recipe, &mut |p| match p {
        Progress::Start { n_tensors } => bar.set_length(n_tensors as u64),
        Progress::Tensor { index, name } => {
            bar.set_position(index as u64);
            bar.set_message(name.to_string());
        }
    });
    bar.finish_and_clear();
    let summary = summary?;
    for n in &summary.notes {
        eprintln!("note: {n}");
    }
    let mut by_type = std::collections::BTreeMap::<String, (usize, u64)>::new();
    for t in &summary.tensors {
        let e = by_type.entry(t.target.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.bytes;
    }
    if verbose {
        say!("{:<32} {:>14} {:>6} -> {:<6} {:>12} {:>10}", "tensor", "shape", "from", "to", "rms error", "relative");
        for t in &summary.tensors {
            let shape = format!("{:?}", t.shape);
            let how = if t.copied { "copied".to_string() } else { format!("{:.3e}", t.rms_error) };
            say!(
                "{:<32} {:>14} {:>6} -> {:<6} {:>12} {:>10.5}",
                t.name,
                shape,
                t.source.name(),
                t.target.name(),
                how,
                t.rel_rms_error
            );
        }
    }
    let copied = summary.tensors.iter().filter(|t| t.copied).count();
    say!(
        "wrote {} in {:.1}s: {} tensors ({} copied losslessly), {} parameters, {:.2} MiB, {:.3} bits/weight",
        output.display(),
        t0.elapsed().as_secs_f64(),
        summary.tensors.len(),
        copied,
        summary.n_params,
        summary.file_bytes as f64 / (1u64 << 20) as f64,
        summary.bits_per_weight()
    );
    let types: Vec<String> = by_type
        .iter()
        .map(|(k, (n, b))| format!("{k}: {n} tensors, {:.2} MiB", *b as f64 / (1u64 << 20) as f64))
        .collect();
    say!("types: {}", types.join("; "));
    let mut worst: Vec<_> = summary.tensors.iter().filter(|t| !t.copied).collect();
    worst.sort_by(|a, b| b.rel_rms_error.total_cmp(&a.rel_rms_error));
    if !worst.is_empty() {
        let mean = worst.iter().map(|t| t.rel_rms_error).sum::<f64>() / worst.len() as f64;
        say!("relative RMS error of re-quantized tensors: mean {mean:.5}; largest:");
        for t in worst.iter().take(5) {
            say!(
                "  {:<32} {} -> {}  rms {:.3e}  relative {:.5}",
                t.name,
                t.source.name(),
                t.target.name(),
                t.rms_error,
                t.rel_rms_error
            );
        }
    }
    Ok(())
}

fn inspect(path: &Path, json: bool) -> Result<()> {
    let f = AutarkFile::open(path)?;
    let m = f.metadata();
    if json {
        let mut meta = serde_json::to_value(m).map_err(|e| CliError::Usage(e.to_string()))?;
        if let Some(t) = meta.get_mut("tokenizer").and_then(|t| t.as_object_mut()) {
            let n = m.tokenizer.hf_json.len();
            t.remove("hf_json");
            t.insert("hf_json_bytes".into(), n.into());
        }
        let tensors: Vec<_> = f
            .tensors()
            .iter()
            .map(|t| {
                serde_json::json!({"name": t.name, "dtype": t.dtype.name(), "layout": t.layout.name(), "shape": t.shape,
                    "offset": t.offset, "nbytes": t.nbytes, "sha256": autark_format::hex(&t.sha256)})
            })
            .collect();
        let out = serde_json::json!({"version": format!("{}.{}", f.layout().version.0, f.layout().version.1),
            "metadata": meta, "tensors": tensors, "file_bytes": f.file_len()});
        say!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let c = &m.config;
    say!(
        "file:          {} ({} bytes, format {}.{})",
        path.display(),
        f.file_len(),
        f.layout().version.0,
        f.layout().version.1
    );
    say!("architecture:  {}", m.architecture);
    say!(
        "config:        {} layers, width {}, {} heads / {} kv heads × {}, ffn {}, vocab {}, context {}",
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.ffn_dim,
        c.vocab_size,
        c.context_length
    );
    say!(
        "rope:          theta {}, {} layout, scaling {:?}; norm eps {}; tied output {}; qkv bias {}",
        c.rope_theta,
        c.rope_layout,
        c.rope_scaling,
        c.norm_eps,
        c.tied_embeddings,
        c.attn_qkv_bias
    );
    let t = &m.tokenizer;
    say!(
        "tokenizer:     {} bytes of tokenizer.json, bos {:?}, eos {:?}, add_bos {}, chat template {}",
        t.hf_json.len(),
        t.bos_token_id,
        t.eos_token_ids,
        t.add_bos,
        if t.chat_template.is_some() { "yes" } else { "no" }
    );
    if let Some(p) = &m.provenance {
        say!("provenance:    {} on {}, recipe {}", p.tool, p.created, p.recipe);
        for s in &p.sources {
            say!("  source {} ({} bytes, sha256 {})", s.name, s.bytes, s.sha256);
        }
    }
    let params: usize = f.tensors().iter().map(|t| t.n_elements()).sum();
    let bytes: u64 = f.tensors().iter().map(|t| t.nbytes).sum();
    say!(
        "tensors:       {} ({} parameters, {:.3} bits/weight)",
        f.tensors().len(),
        params,
        bytes as f64 * 8.0 / params.max(1) as f64
    );
    for t in f.tensors() {
        say!(
            "  {:<32} {:<6} {:<6} {:>16} {:>12} bytes @ {}",
            t.name,
            t.dtype.name(),
            t.layout.name(),
            format!("{:?}", t.shape),
            t.nbytes,
            t.offset
        );
    }
    Ok(())
}

fn verify(path: &Path) -> Result<()> {
    let f = AutarkFile::open(path)?;
    let bad = f.verify();
    for n in &bad {
        eprintln!("checksum mismatch: {n}");
    }
    if !bad.is_empty() {
        return Err(CliError::Corrupted(bad.len()));
    }
    say!("{}: {} tensors, all checksums match", path.display(), f.tensors().len());
    Ok(())
}

fn dump(path: &Path, name: &str, output: &Path) -> Result<()> {
    let f = AutarkFile::open(path)?;
    let t = f.tensor(name).ok_or_else(|| CliError::Usage(format!("no tensor {name:?}")))?;
    let cols = *t.shape.last().unwrap_or(&1);
    let mut vals = vec![0f32; t.n_elements()];
    let rb = t.dtype.row_bytes(cols).map_err(autark_format::FormatError::from)?;
    let data = f.data(t);
    let mut row = vec![0u8; rb];
    for (r, dst) in vals.chunks_exact_mut(cols).enumerate() {
        let bytes = match t.layout {
            autark_kernels::TensorLayout::RowMajor => &data[r * rb..(r + 1) * rb],
            autark_kernels::TensorLayout::Rows16 => {
                autark_kernels::interleave::row(t.dtype, cols, data, r, &mut row)
                    .map_err(autark_format::FormatError::from)?;
                &row
            }
        };
        autark_kernels::blocks::dequantize_bytes(t.dtype, bytes, dst).map_err(autark_format::FormatError::from)?;
    }
    write_f32(output, &vals)
}

fn write_f32(path: &Path, vals: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(io(path))
}

// ---- running models -------------------------------------------------------------------------

fn load(path: &Path) -> Result<(Arc<Model>, f64)> {
    let t0 = Instant::now();
    let m = Model::load(path)?;
    Ok((Arc::new(m), t0.elapsed().as_secs_f64()))
}

fn render_user(model: &Model, system: Option<String>, user: &str) -> Result<String> {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(ChatMessage::new("system", &s));
    }
    msgs.push(ChatMessage::new("user", user));
    Ok(autark_runtime::chat::render(model.tokenizer(), &msgs, true)?)
}

fn run_prompt(path: &Path, prompt: &str, n: usize, chat: bool, system: Option<String>, s: &SampleArgs) -> Result<()> {
    let (model, _) = load(path)?;
    let (text, add_special) =
        if chat { (render_user(&model, system, prompt)?, false) } else { (prompt.to_string(), true) };
    let tokens = model.tokenizer().encode(&text, add_special)?;
    let mut session = Session::new(Arc::clone(&model), s.session())?;
    let params = GenerateParams { max_tokens: n, sampler: s.sampler(), stop: s.stop.clone() };
    let mut out = std::io::stdout().lock();
    let stats = session.generate(&tokens, &params, &mut |piece| {
        let _ = out.write_all(piece.as_bytes());
        out.flush().is_ok()
    })?;
    let _ = writeln!(out);
    eprintln!(
        "prompt: {} tokens, {:.1} t/s | generation: {} tokens, {:.1} t/s | stop: {:?} | threads {}",
        stats.prompt_evaluated,
        stats.prompt_tps(),
        stats.generated_tokens,
        stats.generation_tps(),
        stats.stop,
        session.n_threads()
    );
    Ok(())
}

fn chat(path: &Path, system: Option<String>, n: usize, s: &SampleArgs) -> Result<()> {
    let (model, _) = load(path)?;
    let mut session = Session::new(Arc::clone(&model), s.session())?;
    let params = GenerateParams { max_tokens: n, sampler: s.sampler(), stop: s.stop.clone() };
    let mut history: Vec<ChatMessage> = system.iter().map(|s| ChatMessage::new("system", s)).collect();
    let base = history.len();
    eprintln!(
        "autark chat: {} ({} layers). /reset clears the history, /exit or Ctrl-D quits.",
        path.display(),
        model.config().n_layers
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line.map_err(io(Path::new("<stdin>")))?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.truncate(base);
                session.reset();
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", &line));
        let text = autark_runtime::chat::render(model.tokenizer(), &history, true)?;
        let tokens = model.tokenizer().encode(&text, false)?;
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let r = session.generate(&tokens, &params, &mut |piece| {
            reply.push_str(piece);
            let _ = out.write_all(piece.as_bytes());
            out.flush().is_ok()
        });
        let _ = writeln!(out);
        match r {
            Ok(stats) => {
                eprintln!(
                    "[prompt: {} of {} tokens evaluated, {:.1} t/s | generation: {} tokens, {:.1} t/s]",
                    stats.prompt_evaluated,
                    stats.prompt_tokens,
                    stats.prompt_tps(),
                    stats.generated_tokens,
                    stats.generation_tps()
                );
                history.push(ChatMessage::new("assistant", reply.trim()));
            }
            Err(autark_runtime::RuntimeError::ContextOverflow { needed, n_ctx }) => {
                eprintln!("context full ({needed} > {n_ctx} tokens): history cleared");
                history.truncate(base);
                session.reset();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn tokenize(path: &Path, prompt: &str, chat: bool, no_special: bool) -> Result<()> {
    let (model, _) = load(path)?;
    let ids = if chat {
        let text = render_user(&model, None, prompt)?;
        model.tokenizer().encode(&text, false)?
    } else {
        model.tokenizer().encode(prompt, !no_special)?
    };
    say!("{}", serde_json::to_string(&ids).unwrap_or_default());
    Ok(())
}

fn logits(
    path: &Path,
    tokens: Option<String>,
    prompt: Option<String>,
    output: &Path,
    threads: usize,
    n_batch: usize,
) -> Result<()> {
    let (model, _) = load(path)?;
    let ids: Vec<u32> = match (tokens, prompt) {
        (Some(t), _) => t
            .split(',')
            .map(|x| x.trim().parse::<u32>().map_err(|_| CliError::Usage(format!("bad token id {x:?}"))))
            .collect::<Result<_>>()?,
        (None, Some(p)) => model.tokenizer().encode(&p, true)?,
        (None, None) => return Err(CliError::Usage("give --tokens or --prompt".into())),
    };
    let n_ctx = ids.len().max(1);
    let mut session =
        Session::new(Arc::clone(&model), SessionParams { n_ctx, n_threads: threads, n_batch, ..Default::default() })?;
    let mut out = vec![0f32; ids.len() * model.config().vocab_size];
    session.eval_all_logits(&ids, &mut out)?;
    write_f32(output, &out)
}

/// Peak resident memory of this process (VmHWM), in bytes, where /proc is available.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// llama-bench's method: a warm-up, then `reps` timed runs of each test on a fresh context;
/// pp = one batch of `n_prompt` tokens, tg = `n_gen` single-token steps.
fn bench(path: &Path, n_prompt: usize, n_gen: usize, reps: usize, threads: &str, json: bool) -> Result<()> {
    let (model, load_s) = load(path)?;
    let threads: Vec<usize> = threads
        .split(',')
        .map(|t| t.trim().parse().map_err(|_| CliError::Usage(format!("bad thread count {t:?}"))))
        .collect::<Result<_>>()?;
    let reps = reps.max(1);
    let vocab = model.config().vocab_size as u32;
    // A fixed pseudo-random prompt (token ids), so runs are comparable.
    let prompt: Vec<u32> = (0..n_prompt.max(1) as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % vocab).collect();
    let isa = autark_kernels::kernels().isa.name();
    let c = model.config();
    let size = model.file().file_len();
    if !json {
        say!(
            "model: {} ({:.1} MiB, {} layers, width {}), kernels: {isa}, load {:.3}s",
            path.display(),
            size as f64 / 1048576.0,
            c.n_layers,
            c.d_model,
            load_s
        );
        say!("| threads | test | t/s |");
        say!("|---:|---|---:|");
    }
    for &t in &threads {
        let mut s = Session::new(
            Arc::clone(&model),
            SessionParams { n_ctx: n_prompt + n_gen + 1, n_threads: t, n_batch: 512, ..Default::default() },
        )?;
        let mut tests = Vec::new();
        if n_prompt > 0 {
            let run = |s: &mut Session| -> Result<f64> {
                s.reset();
                let t0 = Instant::now();
                s.eval(&prompt[..n_prompt])?;
                Ok(n_prompt as f64 / t0.elapsed().as_secs_f64())
            };
            run(&mut s)?;
            let v = (0..reps).map(|_| run(&mut s)).collect::<Result<Vec<_>>>()?;
            tests.push((n_prompt, 0, v));
        }
        if n_gen > 0 {
            let run = |s: &mut Session| -> Result<f64> {
                s.reset();
                let t0 = Instant::now();
                let mut next = prompt[0];
                for _ in 0..n_gen {
                    s.eval(&[next])?;
                    next = argmax(s.logits());
                }
                Ok(n_gen as f64 / t0.elapsed().as_secs_f64())
            };
            run(&mut s)?;
            let v = (0..reps).map(|_| run(&mut s)).collect::<Result<Vec<_>>>()?;
            tests.push((0, n_gen, v));
        }
        for (np, ng, v) in tests {
            let (avg, sd) = mean_sd(&v);
            if json {
                let o = serde_json::json!({"model": path.display().to_string(), "model_size": size, "n_prompt": np, "n_gen": ng,
                    "n_threads": s.n_threads(), "avg_ts": avg, "stddev_ts": sd, "samples_ts": v, "isa": isa,
                    "load_seconds": load_s, "peak_rss_bytes": peak_rss().unwrap_or(0), "session_bytes": s.memory_bytes()});
                say!("{o}");
            } else {
                let test = if np > 0 { format!("pp{np}") } else { format!("tg{ng}") };
                say!("| {} | {test} | {avg:.1} ± {sd:.1} |", s.n_threads());
            }
        }
    }
    if !json {
        say!("peak RSS {:.1} MiB", peak_rss().unwrap_or(0) as f64 / 1048576.0);
    }
    Ok(())
}

/// Read bandwidth: the best of `reps` passes summing a 4 GiB buffer (far larger than any
/// cache), split over the threads, with 256-bit loads (`ops::sum_u64`). The buffer asks for
/// transparent huge pages, as a mapped model file gets (large folios), so page size does not
/// separate the probe from generation; with a model, its mapping is read the same way.
fn bench_memory(threads: &str, reps: usize, model: Option<&Path>) -> Result<()> {
    let threads: Vec<usize> = threads
        .split(',')
        .map(|t| t.trim().parse().map_err(|_| CliError::Usage(format!("bad thread count {t:?}"))))
        .collect::<Result<_>>()?;
    let n = (4usize << 30) / 8;
    let mut buf = memmap2::MmapMut::map_anon(n * 8).map_err(io(Path::new("<anonymous 4 GiB buffer>")))?;
    #[cfg(target_os = "linux")]
    let _ = buf.advise(memmap2::Advice::HugePage); // a hint: without it the probe still runs
    for (i, c) in buf.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&(i as u64).to_le_bytes());
    }
    let file = model.map(AutarkFile::open).transpose()?;
    let tensors: Vec<&[u8]> = file.iter().flat_map(|f| f.tensors().iter().map(|t| f.data(t))).collect();
    let file_bytes: usize = tensors.iter().map(|t| t.len() / 8 * 8).sum();
    match model {
        Some(m) => {
            say!(
                "| threads | read GB/s (4 GiB, best of {}) | {} ({:.1} MB of tensors) GB/s |",
                reps.max(1),
                m.display(),
                file_bytes as f64 / 1e6
            );
            say!("|---:|---:|---:|");
        }
        None => {
            say!("| threads | read GB/s (4 GiB, best of {}) |", reps.max(1));
            say!("|---:|---:|");
        }
    }
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| CliError::Runtime(autark_runtime::RuntimeError::ThreadPool(e.to_string())))?;
        let mut best = 0f64;
        for _ in 0..reps.max(1) + 1 {
            let t0 = Instant::now();
            let sum: u64 = pool.install(|| {
                use rayon::prelude::*;
                // One contiguous share per thread, as the matrix products split rows.
                buf.par_chunks(share(buf.len(), t)).map(autark_kernels::ops::sum_u64).reduce(|| 0, u64::wrapping_add)
            });
            let gbs = (n * 8) as f64 / t0.elapsed().as_secs_f64() / 1e9;
            assert_eq!(sum, (n as u64).wrapping_mul(n as u64 - 1) / 2, "bandwidth probe: wrong sum");
            best = best.max(gbs);
        }
        if file.is_none() {
            say!("| {} | {best:.1} |", pool.current_num_threads());
            continue;
        }
        let mut best_file = 0f64;
        for _ in 0..reps.max(1) + 1 {
            let t0 = Instant::now();
            let sum: u64 = pool.install(|| {
                use rayon::prelude::*;
                // Tensor after tensor, each split in one contiguous share per thread (as
                // generation reads the matrices).
                tensors.iter().fold(0u64, |acc, x| {
                    let x = &x[..x.len() / 8 * 8];
                    let s = x
                        .par_chunks(share(x.len(), t).max(8))
                        .map(autark_kernels::ops::sum_u64)
                        .reduce(|| 0, u64::wrapping_add);
                    acc.wrapping_add(s)
                })
            });
            std::hint::black_box(sum);
            best_file = best_file.max(file_bytes as f64 / t0.elapsed().as_secs_f64() / 1e9);
        }
        say!("| {} | {best:.1} | {best_file:.1} |", pool.current_num_threads());
    }
    Ok(())
}

/// Bytes per thread when `len` bytes are split in `threads` contiguous shares of whole u64s.
fn share(len: usize, threads: usize) -> usize {
    (len.div_ceil(threads.max(1)).div_ceil(128) * 128).max(128)
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
