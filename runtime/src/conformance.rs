//! The conformance record (docs/NUMERICS.md, "Conformance record"): a fixed probe (a few
//! prompts, a few greedy steps each) whose logits the quantizer hashes with the scalar kernels
//! and stores in the file, and which `autark verify --conformance` (C:
//! `autark_model_verify_conformance`) runs again with this machine's kernels and compares bit
//! for bit. Under the numerical contract every ISA reproduces the record exactly.

use std::sync::Arc;

use autark_format::{Conformance, ConformanceProbe};
use autark_kernels::ops::argmax;
use sha2::{Digest, Sha256};

use crate::{Model, Prompt, Result, Session, SessionParams};

/// The probe's definition; a record of another version is not compared.
pub const VERSION: u32 = 1;

/// The probe's prompts (plain text, the model's BOS rule).
pub const PROMPTS: [&str; 2] = ["Once upon a time, in a village by the sea,", "def fibonacci(n):\n    \"\"\"Return"];

/// Steps per prompt: the prompt (one batch), then each greedy token fed back, one at a time.
pub const STEPS: usize = 6;

/// The first 16 hex digits of the SHA-256 of `logits` (little-endian f32 bytes).
pub fn logits_hash(logits: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in logits {
        h.update(v.to_le_bytes());
    }
    autark_format::hex(&h.finalize()[..8])
}

/// Runs the probe with the current kernels (`autark_kernels::dispatch::with_isa` chooses them,
/// for the session's pool too) on `n_threads` (0: every core) and returns its record, labelled
/// with the kernel set's name.
pub fn record(model: &Arc<Model>, n_threads: usize) -> Result<Conformance> {
    let mut probes = Vec::with_capacity(PROMPTS.len());
    for text in PROMPTS {
        let prompt = model.prompt_tokens(Prompt::Text(text))?;
        if prompt.is_empty() {
            continue;
        }
        let mut probe = ConformanceProbe { prompt, logits: Vec::new(), tokens: Vec::new() };
        run(model, n_threads, &probe.prompt, STEPS, &mut |step, logits| {
            probe.logits.push(logits_hash(logits));
            probe.tokens.push(argmax(logits) as u32);
            (step + 1 < STEPS).then(|| *probe.tokens.last().expect("pushed"))
        })?;
        probes.push(probe);
    }
    let kernels = autark_kernels::kernels().isa.name().to_string();
    Ok(Conformance { version: VERSION, kernels, probes })
}

/// Where a run first differs from a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// Index of the prompt in the record.
    pub probe: usize,
    /// The step: 0 = the prompt's last position, k = the k-th greedy token fed back.
    pub step: usize,
    pub recorded: String,
    pub got: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "prompt {} step {}: logits hash {} (recorded {})", self.probe, self.step, self.got, self.recorded)
    }
}

/// The outcome of `verify`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every step's logits are the recorded bits (`steps` compared).
    Identical {
        steps: usize,
    },
    Differs(Divergence),
    /// The file holds no record (written before records, or with `--no-conformance`).
    NoRecord,
    /// The record is of another probe version; it cannot be compared.
    OtherVersion(u32),
}

/// Runs the file's probe again with the current kernels, feeding back the recorded tokens, and
/// compares every step's logits hash with the record; stops at the first difference.
pub fn verify(model: &Arc<Model>, n_threads: usize) -> Result<Verdict> {
    let Some(rec) = model.metadata().conformance.clone() else {
        return Ok(Verdict::NoRecord);
    };
    if rec.version != VERSION {
        return Ok(Verdict::OtherVersion(rec.version));
    }
    let mut steps = 0;
    for (i, p) in rec.probes.iter().enumerate() {
        let mut first: Option<Divergence> = None;
        let mut compared = 0;
        run(model, n_threads, &p.prompt, p.logits.len(), &mut |step, logits| {
            compared += 1;
            let got = logits_hash(logits);
            let recorded = p.logits.get(step).cloned().unwrap_or_default();
            if got != recorded {
                first = Some(Divergence { probe: i, step, recorded, got });
                return None;
            }
            steps += 1;
            // Feed the recorded token, so that every later step is comparable too.
            (step + 1 < p.logits.len()).then(|| p.tokens.get(step).copied()).flatten()
        })?;
        if let Some(d) = first {
            return Ok(Verdict::Differs(d));
        }
        if compared < p.logits.len() || p.tokens.len() < p.logits.len() {
            let step = compared.min(p.tokens.len());
            let recorded = p.logits.get(step).cloned().unwrap_or_default();
            return Ok(Verdict::Differs(Divergence { probe: i, step, recorded, got: "(not reached)".into() }));
        }
    }
    Ok(Verdict::Identical { steps })
}

/// Evaluates `prompt` in one batch, then calls `step(k, logits)` for step k = 0, 1, …, feeding
/// back the token it returns, until it returns `None` or `steps` steps were taken.
fn run(
    model: &Arc<Model>,
    n_threads: usize,
    prompt: &[u32],
    steps: usize,
    step: &mut dyn FnMut(usize, &[f32]) -> Option<u32>,
) -> Result<()> {
    let n_ctx = prompt.len() + steps.max(1);
    let params = SessionParams { n_ctx, n_threads, n_batch: prompt.len().max(1), ..Default::default() };
    let mut s = Session::new(Arc::clone(model), params)?;
    s.eval(prompt)?;
    let mut k = 0;
    while let Some(next) = step(k, s.logits()) {
        if s.tokens().len() >= s.n_ctx() {
            break;
        }
        s.eval(&[next])?;
        k += 1;
    }
    Ok(())
}
