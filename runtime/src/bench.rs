//! Speed measurements for any front end (`autark bench` prints them): prompt processing and
//! generation in tokens/s by llama-bench's method, and the memory read bandwidth that bounds
//! generation on models larger than the cache.

use std::sync::Arc;
use std::time::Instant;

use autark_format::{AutarkFile, FormatError};
use autark_kernels::ops::{argmax, sum_u64};
use rayon::prelude::*;

use crate::{
    CacheType, Constraint, GenerateParams, Model, Result, RuntimeError, SamplerParams, Session, SessionParams,
    SpecMode, SpeculativeParams,
};

/// The tests of one `run_bench` call.
#[derive(Clone)]
pub struct BenchParams {
    /// Prompt tokens evaluated as one batch (the pp test; 0 = none).
    pub n_prompt: usize,
    /// Tokens generated one step at a time (the tg test; 0 = none).
    pub n_gen: usize,
    /// Timed repetitions after one warm-up.
    pub repetitions: usize,
    /// Threads (0 = one per core).
    pub n_threads: usize,
    /// Tokens already in the context when each test starts (llama-bench's `-d`), evaluated
    /// before the timed part.
    pub n_depth: usize,
    /// KV cache types (keys, values).
    pub cache: [CacheType; 2],
    /// Where the forward pass runs.
    pub device: crate::session::Device,
    /// A real prompt instead of pseudo-random tokens: the pp test evaluates it, and the tg test
    /// generates from it through `Session::generate_continue` (which decodes speculatively,
    /// with `speculative`, and samples, with `temperature`), stopping early at an
    /// end-of-generation token.
    pub prompt: Option<Vec<u32>>,
    pub speculative: SpeculativeParams,
    /// Sampling temperature of the generation-loop tg test (0 = greedy), and its seed; other
    /// sampler settings are the defaults.
    pub temperature: f32,
    pub seed: u64,
    /// The draft model, for `SpecMode::Draft`.
    pub draft: Option<Arc<Model>>,
    /// Constrain the tg test's tokens (greedy under the mask, which is computed every step; the
    /// constraint starts over whenever its output is complete).
    pub constraint: Option<Constraint>,
    /// Sequences the tg test decodes together (a server's continuous batching: each step
    /// evaluates one token of every sequence in one pass, `Session::eval_together`); its
    /// tokens/s counts all of them. 0 or 1 = one sequence. Plain greedy tg only.
    pub sequences: usize,
}

/// The timings of one test.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// Prompt tokens of a pp test (0 for tg).
    pub n_prompt: usize,
    /// Generated tokens of a tg test (0 for pp).
    pub n_gen: usize,
    /// Context depth the test started from.
    pub n_depth: usize,
    /// Threads the session ran on.
    pub n_threads: usize,
    /// Sequences a tg test decoded together (1 otherwise).
    pub n_sequences: usize,
    /// Tokens/s of each timed repetition.
    pub samples_ts: Vec<f64>,
    /// The session's memory (KV cache and scratch; of all sequences' sessions), in bytes.
    pub session_bytes: usize,
    /// Speculative decoding in the tg test: tokens drafted and accepted, over all timed
    /// repetitions.
    pub drafted: usize,
    pub accepted: usize,
    /// A tg test's mean time per token outside the forward pass, in seconds: sampling and, with
    /// a constraint, whatever of the mask's work the forward pass did not hide (None for pp tests
    /// and generation-loop tests).
    pub outside_forward: Option<f64>,
}

impl BenchResult {
    /// Mean and sample standard deviation of `samples_ts`.
    pub fn mean_sd(&self) -> (f64, f64) {
        let v = &self.samples_ts;
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        (mean, var.sqrt())
    }
}

/// llama-bench's method: a warm-up, then `repetitions` timed runs of each test on a context
/// holding `n_depth` tokens (none by default); pp = one batch of `n_prompt` tokens, tg =
/// `n_gen` single-token steps. Returns the pp test, then the tg test (each if asked for).
pub fn run_bench(model: &Arc<Model>, p: &BenchParams) -> Result<Vec<BenchResult>> {
    let vocab = model.config().vocab_size as u32;
    // A fixed pseudo-random prompt (token ids), so runs are comparable.
    let tokens = |n: usize, salt: u32| -> Vec<u32> {
        (0..n as u32).map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 7) % vocab).collect()
    };
    let prompt = p.prompt.clone().unwrap_or_else(|| tokens(p.n_prompt.max(1), 0));
    let n_prompt = if p.prompt.is_some() { prompt.len() } else { p.n_prompt };
    let depth = tokens(p.n_depth, 1 << 20);
    let params = SessionParams {
        n_ctx: p.n_depth + prompt.len().max(n_prompt) + p.n_gen + 1,
        n_threads: p.n_threads,
        n_batch: 512,
        cache_type_k: p.cache[0],
        cache_type_v: p.cache[1],
        device: p.device,
        ..Default::default()
    };
    let mut s = Session::new(Arc::clone(model), params)?;
    s.set_draft_model(p.draft.clone())?;
    let k = p.sequences.max(1);
    if k > 1
        && (p.constraint.is_some() || p.prompt.is_some() || p.speculative.mode != SpecMode::Off || p.temperature > 0.0)
    {
        return Err(RuntimeError::InvalidArgument {
            name: "sequences",
            what: "several sequences are measured with plain greedy decoding only".into(),
        });
    }
    // The other sequences, on the first one's threads (as a server's slots).
    let mut others = (1..k).map(|_| Session::new_beside(&s, params)).collect::<Result<Vec<_>>>()?;
    let all_bytes = s.memory_bytes() + others.iter().map(Session::memory_bytes).sum::<usize>();
    let fresh = p.constraint.as_ref().map(|c| model.compile_constraint(c).map(Box::new)).transpose()?;
    // The tg test through the generation loop (a real prompt, or speculative decoding).
    // (A constraint keeps the plain loop, which restarts it whenever its output is complete.)
    let generate =
        p.constraint.is_none() && (p.prompt.is_some() || p.speculative.mode != SpecMode::Off || p.temperature > 0.0);
    let gen = GenerateParams {
        max_tokens: p.n_gen,
        sampler: SamplerParams { temperature: p.temperature, seed: p.seed, ..Default::default() },
        speculative: p.speculative,
        ..Default::default()
    };
    // Tokens/s, the tokens drafted and accepted, and the seconds outside the forward pass.
    // Back to the depth: cut the context there, or evaluate it again where the cache cannot be
    // cut (sliding-window rings).
    let to_depth = |s: &mut Session| -> Result<()> {
        s.truncate(p.n_depth);
        if s.tokens().len() != p.n_depth {
            s.reset();
            if !depth.is_empty() {
                s.eval(&depth)?;
            }
        }
        Ok(())
    };
    let mut test = |s: &mut Session, n_prompt: usize, n_gen: usize| -> Result<(f64, usize, usize, f64)> {
        to_depth(s)?;
        if k > 1 && n_gen > 0 {
            // Every sequence starts from its own token; each step evaluates all of them together.
            for o in others.iter_mut() {
                to_depth(o)?;
            }
            let mut next: Vec<[u32; 1]> = tokens(k, 1 << 21).into_iter().map(|t| [t]).collect();
            let t0 = Instant::now();
            for _ in 0..n_gen {
                let mut work: Vec<(&mut Session, &[u32])> =
                    std::iter::once(&mut *s).chain(others.iter_mut()).zip(&next).map(|(s, t)| (s, &t[..])).collect();
                Session::eval_together(&mut work)?;
                let picked: Vec<u32> = work.iter().map(|(s, _)| argmax(s.logits()) as u32).collect();
                drop(work);
                next.iter_mut().zip(picked).for_each(|(t, p)| t[0] = p);
            }
            return Ok(((k * n_gen) as f64 / t0.elapsed().as_secs_f64(), 0, 0, 0.0));
        }
        if generate && n_gen > 0 {
            s.eval(&prompt)?;
            let t0 = Instant::now();
            let stats = s.generate_continue(&gen, &mut |_| true)?;
            let tps = stats.generated_tokens as f64 / t0.elapsed().as_secs_f64();
            return Ok((tps, stats.drafted_tokens, stats.accepted_drafts, 0.0));
        }
        let t0 = Instant::now();
        if n_prompt > 0 {
            s.eval(&prompt[..n_prompt])?;
        }
        let mut next = prompt[0];
        let mut guide = fresh.clone();
        let mut forward = std::time::Duration::ZERO;
        let t_gen = Instant::now();
        for _ in 0..n_gen {
            if fresh.is_none() && s.on_gpu() {
                // As greedy generation on a GPU: the argmax on the device, only the token back.
                let t = Instant::now();
                next = s.eval_argmax(&[next])?;
                forward += t.elapsed();
                continue;
            }
            forward += crate::generate::eval_ahead(s, &[next], &mut guide)?;
            next = match (guide.as_mut(), &fresh) {
                (Some(g), Some(fresh)) => {
                    let t = argmax(g.mask(s.logits())?) as u32;
                    if !g.is_end(t) {
                        g.accept(t)?;
                    }
                    if g.is_end(t) || g.is_finished() {
                        *g = fresh.clone();
                    }
                    t
                }
                _ => argmax(s.logits()) as u32,
            };
        }
        let outside = t_gen.elapsed().saturating_sub(forward).as_secs_f64();
        s.sync_logits()?;
        Ok(((n_prompt + n_gen) as f64 / t0.elapsed().as_secs_f64(), 0, 0, outside))
    };
    let mut results = Vec::new();
    for (np, ng) in [(n_prompt, 0), (0, p.n_gen)] {
        if np + ng == 0 {
            continue;
        }
        test(&mut s, np, ng)?; // warm-up
        let (mut samples_ts, mut drafted, mut accepted, mut outside) = (Vec::new(), 0, 0, 0.0);
        for _ in 0..p.repetitions.max(1) {
            let (tps, d, a, o) = test(&mut s, np, ng)?;
            samples_ts.push(tps);
            (drafted, accepted, outside) = (drafted + d, accepted + a, outside + o);
        }
        let steps = (ng * p.repetitions.max(1)) as f64;
        results.push(BenchResult {
            n_prompt: np,
            n_gen: ng,
            n_depth: p.n_depth,
            n_threads: s.n_threads(),
            n_sequences: if ng > 0 { k } else { 1 },
            samples_ts,
            session_bytes: if ng > 0 { all_bytes } else { s.memory_bytes() },
            drafted,
            accepted,
            outside_forward: (ng > 0 && !generate && k == 1).then(|| outside / steps),
        });
    }
    Ok(results)
}

/// Peak resident memory of this process (VmHWM), in bytes, where /proc is available.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Read bandwidth: the best of `reps` passes summing a buffer (`autark bench --memory`: 4 GiB by
/// default, far larger than any cache; less on devices with less memory), split over the
/// threads, with 256-bit loads (`ops::sum_u64`). The buffer asks for transparent huge pages, as
/// a mapped model file gets (large folios), so page size does not separate the probe from
/// generation; with a model, its mapping is read the same way.
pub struct BandwidthProbe<'a> {
    buf: memmap2::MmapMut,
    /// The model's tensors, if the probe reads a model too.
    tensors: Option<Vec<&'a [u8]>>,
}

/// One thread count's bandwidths, in GB/s.
#[derive(Clone, Debug)]
pub struct Bandwidth {
    pub n_threads: usize,
    pub buffer_gbs: f64,
    /// Reading the model's tensors through its mapping (with a model).
    pub file_gbs: Option<f64>,
}

impl<'a> BandwidthProbe<'a> {
    /// Fills a buffer of `bytes` (at least 8); with `file`, the probe also reads all of its
    /// tensors.
    pub fn new(file: Option<&'a AutarkFile>, bytes: usize) -> Result<BandwidthProbe<'a>> {
        let bytes = bytes.max(8) / 8 * 8;
        let mut buf = memmap2::MmapMut::map_anon(bytes).map_err(|source| FormatError::Io {
            path: format!("<anonymous buffer of {} MiB>", bytes >> 20).into(),
            source,
        })?;
        #[cfg(target_os = "linux")]
        let _ = buf.advise(memmap2::Advice::HugePage); // a hint: without it the probe still runs
        for (i, c) in buf.chunks_exact_mut(8).enumerate() {
            c.copy_from_slice(&(i as u64).to_le_bytes());
        }
        let tensors = file.map(|f| f.tensors().iter().map(|t| f.data(t)).collect());
        Ok(BandwidthProbe { buf, tensors })
    }

    /// Bytes of tensor data one pass over the model reads (whole u64s of each tensor).
    pub fn file_bytes(&self) -> usize {
        self.tensors.iter().flatten().map(|t| t.len() / 8 * 8).sum()
    }

    /// The best of `reps` passes (and a warm-up) on `threads` threads (0 = one per core).
    pub fn measure(&self, threads: usize, reps: usize) -> Result<Bandwidth> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| RuntimeError::ThreadPool(e.to_string()))?;
        // One contiguous share per thread, as the matrix products split rows.
        let sum = |x: &[u8]| {
            let x = &x[..x.len() / 8 * 8];
            x.par_chunks(share(x.len(), threads)).map(sum_u64).reduce(|| 0, u64::wrapping_add)
        };
        let best = |bytes: usize, pass: &(dyn Fn() -> u64 + Sync)| {
            let mut gbs = 0f64;
            for _ in 0..reps.max(1) + 1 {
                let t0 = Instant::now();
                std::hint::black_box(pool.install(pass));
                gbs = gbs.max(bytes as f64 / t0.elapsed().as_secs_f64() / 1e9);
            }
            gbs
        };
        let n = (self.buf.len() / 8) as u64;
        let buffer_gbs = best(self.buf.len(), &|| {
            let s = sum(&self.buf);
            assert_eq!(s, n.wrapping_mul(n - 1) / 2, "bandwidth probe: wrong sum");
            s
        });
        // Tensor after tensor, as generation reads the matrices.
        let file = |t: &Vec<&[u8]>| best(self.file_bytes(), &|| t.iter().fold(0, |acc, x| acc.wrapping_add(sum(x))));
        Ok(Bandwidth { n_threads: pool.current_num_threads(), buffer_gbs, file_gbs: self.tensors.as_ref().map(file) })
    }
}

/// Bytes per thread when `len` bytes are split in `threads` contiguous shares of whole u64s.
fn share(len: usize, threads: usize) -> usize {
    (len.div_ceil(threads.max(1)).div_ceil(128) * 128).max(128)
}
