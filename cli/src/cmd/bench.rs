//! `autark bench`: prompt and generation speed (llama-bench's method), and the memory
//! bandwidth probe.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use autark_format::AutarkFile;
use autark_runtime::{Session, SessionParams};

use super::{io, load, say, CliError, Result};

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
pub fn bench(path: &Path, n_prompt: usize, n_gen: usize, reps: usize, threads: &str, json: bool) -> Result<()> {
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
pub fn bench_memory(threads: &str, reps: usize, model: Option<&Path>) -> Result<()> {
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
