//! `autark perplexity`: perplexity of a text (llama-perplexity's method, see
//! `autark_runtime::perplexity`), and KL divergence against a reference model's saved
//! log-probabilities.
//!
//! Log-probability file (`--save-logits`, read by `--kl-base`), little-endian:
//! `b"ATKL"`, u32 version (1), u32 vocabulary size, u32 n_ctx, u32 windows, u32 scored tokens per
//! window; then the evaluated token ids, u32 × windows × n_ctx; then the natural-log probabilities
//! of every scored position, f16 × windows × scored × vocabulary.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use autark_runtime::perplexity::{KlStats, NllStats, Windows};
use autark_runtime::{Model, Session, SessionParams};
use half::f16;

use super::{io, read_text, CliError, Result};
use crate::PerplexityArgs;

const MAGIC: &[u8; 4] = b"ATKL";
const VERSION: u32 = 1;

pub fn run(o: PerplexityArgs) -> Result<()> {
    let text = read_text(&o.text)?;
    let model = Arc::new(Model::load(&o.model)?);
    let vocab = model.config().vocab_size;
    let windows = Windows::new(model.tokenizer(), &text, o.n_ctx, o.chunks)?;
    let (n_ctx, n_chunks, n_scored) = (windows.n_ctx(), windows.n_chunks(), windows.n_scored());
    let header =
        Header { vocab: vocab as u32, n_ctx: n_ctx as u32, n_chunks: n_chunks as u32, n_scored: n_scored as u32 };
    let all_tokens: Vec<u32> = (0..n_chunks).flat_map(|i| windows.window(i)).collect();

    let mut base = match &o.kl_base {
        Some(p) => Some(BaseReader::open(p, &header, &all_tokens)?),
        None => None,
    };
    let mut save = match &o.save_logits {
        Some(p) => Some(LogitsWriter::create(p, &header, &all_tokens)?),
        None => None,
    };

    let params = SessionParams {
        n_ctx,
        n_threads: o.threads,
        n_batch: n_ctx.min(512),
        cache_type_k: o.cache.k,
        cache_type_v: o.cache.v,
        device: o.cache.device.runtime(),
        ..Default::default()
    };
    let mut session = Session::new(Arc::clone(&model), params)?;
    eprintln!(
        "perplexity: {} tokens, {n_chunks} window(s) of {n_ctx}, {n_scored} scored per window, {} threads",
        windows.n_text_tokens(),
        session.n_threads()
    );
    let mut nll = NllStats::default();
    let mut kl = KlStats::default();
    let mut base_row = vec![0f32; vocab];
    let mut logits = Vec::new();
    let t0 = std::time::Instant::now();
    for i in 0..n_chunks {
        windows.evaluate(&mut session, i, &mut logits, |_, logprobs, target| {
            nll.push(-(logprobs[target as usize] as f64));
            if let Some(w) = save.as_mut() {
                w.row(logprobs)?;
            }
            if let Some(b) = base.as_mut() {
                b.row(&mut base_row)?;
                kl.push(&base_row, logprobs);
            }
            Ok(())
        })?;
        eprint!("[{}]{:.4},", i + 1, nll.ppl());
    }
    eprintln!();
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(w) = save {
        w.finish()?;
    }

    if o.json {
        let mut j = serde_json::json!({
            "model": o.model.display().to_string(),
            "text": o.text.display().to_string(),
            "n_ctx": n_ctx,
            "n_chunks": n_chunks,
            "n_tokens": nll.count(),
            "ppl": nll.ppl(),
            "ppl_stderr": nll.ppl_stderr(),
            "seconds": seconds,
        });
        if o.kl_base.is_some() {
            let m = j.as_object_mut().expect("object");
            m.insert("kld_mean".into(), kl.mean().into());
            m.insert("kld_stderr".into(), kl.stderr().into());
            m.insert("kld_median".into(), kl.quantile(0.5).into());
            m.insert("kld_p99".into(), kl.quantile(0.99).into());
            m.insert("kld_max".into(), kl.quantile(1.0).into());
            m.insert("top1_agreement".into(), kl.top1_agreement().into());
        }
        super::say!("{j}");
    } else {
        super::say!(
            "Final estimate: PPL = {:.4} +/- {:.5}  ({} tokens, {seconds:.1} s)",
            nll.ppl(),
            nll.ppl_stderr(),
            nll.count()
        );
        if o.kl_base.is_some() {
            super::say!("Mean KLD: {:.6} ± {:.6}", kl.mean(), kl.stderr());
            super::say!(
                "Median KLD: {:.6}   99.0% KLD: {:.6}   Max KLD: {:.6}",
                kl.quantile(0.5),
                kl.quantile(0.99),
                kl.quantile(1.0)
            );
            super::say!("Same top token: {:.3}%", 100.0 * kl.top1_agreement());
        }
    }
    Ok(())
}

#[derive(PartialEq, Eq, Debug)]
struct Header {
    vocab: u32,
    n_ctx: u32,
    n_chunks: u32,
    n_scored: u32,
}

/// Writes a log-probability file to a temporary name, renamed over `path` when complete.
struct LogitsWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    buf: Vec<u8>,
}

impl LogitsWriter {
    fn create(path: &Path, h: &Header, tokens: &[u32]) -> Result<LogitsWriter> {
        let name = path.file_name().ok_or_else(|| CliError::Usage(format!("{}: not a file name", path.display())))?;
        let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io(&tmp))?);
        let mut head = Vec::with_capacity(24 + tokens.len() * 4);
        head.extend_from_slice(MAGIC);
        for v in [VERSION, h.vocab, h.n_ctx, h.n_chunks, h.n_scored] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        tokens.iter().for_each(|t| head.extend_from_slice(&t.to_le_bytes()));
        out.write_all(&head).map_err(io(&tmp))?;
        Ok(LogitsWriter { out, tmp, path: path.to_path_buf(), buf: Vec::new() })
    }

    fn row(&mut self, logprobs: &[f32]) -> autark_runtime::Result<()> {
        self.buf.clear();
        self.buf.extend(logprobs.iter().flat_map(|&l| f16::from_f32(l).to_le_bytes()));
        self.out.write_all(&self.buf).map_err(|e| autark_runtime::RuntimeError::InvalidArgument {
            name: "save-logits",
            what: format!("{}: {e}", self.tmp.display()),
        })
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(io(&self.tmp))?;
        self.out.get_ref().sync_all().map_err(io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))
    }
}

impl Drop for LogitsWriter {
    fn drop(&mut self) {
        // Removes the temporary file of an unfinished write (after a rename it is gone already).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Reads a log-probability file written by `--save-logits`, checking that it describes the same
/// windows of the same tokens.
struct BaseReader {
    input: BufReader<File>,
    path: PathBuf,
    buf: Vec<u8>,
}

impl BaseReader {
    fn open(path: &Path, want: &Header, tokens: &[u32]) -> Result<BaseReader> {
        let bad = |what: String| CliError::Usage(format!("--kl-base {}: {what}", path.display()));
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 24];
        input.read_exact(&mut head).map_err(|_| bad("too short for a header".into()))?;
        if &head[..4] != MAGIC {
            return Err(bad("not an autark log-probability file (wrong magic)".into()));
        }
        let word = |i: usize| u32::from_le_bytes(head[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes"));
        if word(0) != VERSION {
            return Err(bad(format!("version {} (this build reads {VERSION})", word(0))));
        }
        let got = Header { vocab: word(1), n_ctx: word(2), n_chunks: word(3), n_scored: word(4) };
        if got != *want {
            return Err(bad(format!(
                "recorded for vocabulary {}, n_ctx {}, {} window(s); this run has vocabulary {}, n_ctx {}, {} window(s)",
                got.vocab, got.n_ctx, got.n_chunks, want.vocab, want.n_ctx, want.n_chunks
            )));
        }
        let expected =
            24 + tokens.len() as u64 * 4 + u64::from(got.n_chunks) * u64::from(got.n_scored) * u64::from(got.vocab) * 2;
        if len != expected {
            return Err(bad(format!("{len} bytes, expected {expected} (truncated or not this run's file)")));
        }
        let mut recorded = vec![0u8; tokens.len() * 4];
        input.read_exact(&mut recorded).map_err(io(path))?;
        let same =
            recorded.chunks_exact(4).zip(tokens).all(|(b, &t)| u32::from_le_bytes(b.try_into().expect("4")) == t);
        if !same {
            return Err(bad("recorded for different tokens (another text or tokenizer)".into()));
        }
        Ok(BaseReader { input, path: path.to_path_buf(), buf: vec![0u8; want.vocab as usize * 2] })
    }

    fn row(&mut self, out: &mut [f32]) -> autark_runtime::Result<()> {
        self.input.read_exact(&mut self.buf).map_err(|e| autark_runtime::RuntimeError::InvalidArgument {
            name: "kl-base",
            what: format!("{}: {e}", self.path.display()),
        })?;
        for (o, b) in out.iter_mut().zip(self.buf.chunks_exact(2)) {
            *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
        }
        Ok(())
    }
}
