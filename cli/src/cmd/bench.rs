//! `autark bench`: the tables and JSON lines of `autark_runtime::bench` (speed by llama-bench's
//! method, and the memory bandwidth probe).

use std::io::Write;
use std::path::Path;

use autark_format::AutarkFile;
use autark_runtime::bench::{peak_rss, run_bench, BandwidthProbe, BenchParams};
use autark_runtime::Constraint;

use autark_runtime::{ChatMessage, Prompt, SpecMode};

use super::{load, read_text, say, CliError, Result};
use crate::BenchArgs;

pub fn run(a: BenchArgs) -> Result<()> {
    match (a.memory, &a.model) {
        (true, model) => bench_memory(&a.threads, a.repetitions, a.memory_mib, model.as_deref()),
        (false, Some(model)) => bench(model, &a),
        (false, None) => Err(CliError::Usage("give a model or --memory".into())),
    }
}

fn bench(path: &Path, a: &BenchArgs) -> Result<()> {
    let (model, load_s) = load(path)?;
    let threads = thread_counts(&a.threads)?;
    let spec = a.spec.params();
    let draft = match (&a.spec.draft, spec.mode) {
        (Some(d), SpecMode::Draft) => Some(load(d)?.0),
        (None, SpecMode::Draft) => return Err(CliError::Usage("--speculative draft needs --draft MODEL".into())),
        (Some(_), _) => return Err(CliError::Usage("--draft is for --speculative draft".into())),
        _ => None,
    };
    let prompt = match &a.prompt_file {
        Some(f) => {
            let text = read_text(f)?;
            let messages = [ChatMessage::new("user", &text)];
            Some(model.prompt_tokens(if a.chat { Prompt::Chat(&messages) } else { Prompt::Text(&text) })?)
        }
        None => None,
    };
    let json = a.json;
    let cache = [a.cache.k, a.cache.v];
    let isa = autark_kernels::kernels().isa.name();
    let c = model.config();
    let size = model.file().file_len();
    let constraint = a.json_schema.as_deref().map(read_text).transpose()?.map(Constraint::JsonSchema);
    if !json {
        say!(
            "model: {} ({:.1} MiB, {} layers, width {}), kernels: {isa}, KV cache {}/{}, load {:.3}s{}",
            path.display(),
            size as f64 / 1048576.0,
            c.n_layers,
            c.d_model,
            cache[0].name(),
            cache[1].name(),
            load_s,
            a.json_schema.as_ref().map(|f| format!(", tg constrained by {}", f.display())).unwrap_or_default()
        );
        say!("| threads | test | t/s |");
        say!("|---:|---|---:|");
    }
    for n_threads in threads {
        let p = BenchParams {
            n_prompt: a.n_prompt,
            n_gen: a.n_gen,
            repetitions: a.repetitions,
            n_threads,
            n_depth: a.n_depth,
            cache,
            device: a.cache.device.runtime(),
            prompt: prompt.clone(),
            speculative: spec,
            temperature: a.temp,
            seed: a.seed,
            draft: draft.clone(),
            constraint: constraint.clone(),
            sequences: a.parallel,
        };
        for r in run_bench(&model, &p)? {
            let (avg, sd) = r.mean_sd();
            if json {
                let o = serde_json::json!({"model": path.display().to_string(), "model_size": size, "n_prompt": r.n_prompt,
                    "n_gen": r.n_gen, "n_threads": r.n_threads, "n_sequences": r.n_sequences, "avg_ts": avg, "stddev_ts": sd, "samples_ts": r.samples_ts,
                    "n_depth": r.n_depth, "type_k": cache[0].name(), "type_v": cache[1].name(), "isa": isa, "device": a.cache.device.runtime().name(), "load_seconds": load_s, "peak_rss_bytes": peak_rss().unwrap_or(0), "session_bytes": r.session_bytes,
                    "speculative": spec.mode.name(), "draft_max": spec.draft_max, "n_drafted": r.drafted, "n_accepted": r.accepted,
                    "acceptance": r.accepted as f64 / r.drafted.max(1) as f64, "temperature": a.temp,
                    "outside_forward_us": r.outside_forward.map(|s| s * 1e6),
                    "json_schema": a.json_schema.as_ref().map(|f| f.display().to_string())});
                say!("{o}");
            } else {
                let mut test = if r.n_prompt > 0 { format!("pp{}", r.n_prompt) } else { format!("tg{}", r.n_gen) };
                if r.n_depth > 0 {
                    test += &format!(" @ d{}", r.n_depth);
                }
                if r.n_sequences > 1 {
                    test += &format!(" × {} sequences", r.n_sequences);
                }
                if r.n_gen > 0 && spec.mode != SpecMode::Off {
                    let rate = 100.0 * r.accepted as f64 / r.drafted.max(1) as f64;
                    test +=
                        &format!(" {} ({} of {} drafts accepted, {rate:.0}%)", spec.mode.name(), r.accepted, r.drafted);
                }
                if let Some(o) = r.outside_forward.filter(|_| constraint.is_some()) {
                    test += &format!(" (per token outside the forward pass: {:.0} µs)", o * 1e6);
                }
                say!("| {} | {test} | {avg:.1} ± {sd:.1} |", r.n_threads);
            }
        }
    }
    if !json {
        say!("peak RSS {:.1} MiB", peak_rss().unwrap_or(0) as f64 / 1048576.0);
    }
    Ok(())
}

fn bench_memory(threads: &str, reps: usize, mib: u64, model: Option<&Path>) -> Result<()> {
    let threads = thread_counts(threads)?;
    let file = model.map(AutarkFile::open).transpose()?;
    let probe = BandwidthProbe::new(file.as_ref(), (mib as usize) << 20)?;
    let size = if mib.is_multiple_of(1024) { format!("{} GiB", mib / 1024) } else { format!("{mib} MiB") };
    match model {
        Some(m) => {
            say!(
                "| threads | read GB/s ({size}, best of {}) | {} ({:.1} MB of tensors) GB/s |",
                reps.max(1),
                m.display(),
                probe.file_bytes() as f64 / 1e6
            );
            say!("|---:|---:|---:|");
        }
        None => {
            say!("| threads | read GB/s ({size}, best of {}) |", reps.max(1));
            say!("|---:|---:|");
        }
    }
    for t in threads {
        let b = probe.measure(t, reps)?;
        match b.file_gbs {
            Some(file) => say!("| {} | {:.1} | {file:.1} |", b.n_threads, b.buffer_gbs),
            None => say!("| {} | {:.1} |", b.n_threads, b.buffer_gbs),
        }
    }
    Ok(())
}

/// `-t 1,2,4`.
fn thread_counts(threads: &str) -> Result<Vec<usize>> {
    threads
        .split(',')
        .map(|t| t.trim().parse().map_err(|_| CliError::Usage(format!("bad thread count {t:?}"))))
        .collect()
}
