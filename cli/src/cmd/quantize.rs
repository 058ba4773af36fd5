//! `autark quantize`: a recipe from the command line, the calibration run, a progress bar, the
//! summary.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use autark_quantize::{Progress, Recipe};
use autark_runtime::Model;

use super::{read_text, say, CliError, Result};
use crate::QuantizeArgs;

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let (input, output, dtype) = (&a.input, &a.output, &a.dtype);
    // A usage error (exit code 2), with the recipe's own message.
    let mut recipe = Recipe::named(dtype).map_err(|e| CliError::Usage(e.to_string()))?;
    if a.rtn {
        recipe.method = autark_quantize::Method::Rtn;
    }
    recipe.interleave = a.layout == "rows16";
    recipe.conformance = !a.no_conformance;
    recipe.threads = a.threads;
    if let Some(text) = &a.calibration {
        let (importance, what) = calibrate(input, output, text, a.calibration_tokens)?;
        recipe.importance = Some(Arc::new(importance));
        recipe.calibration = Some(what);
    }
    for o in &a.tensor_type {
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
    if a.verbose {
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

/// Converts `input` to a temporary f16 model next to `output` and runs it over up to
/// `max_tokens` tokens of `text` (`autark_runtime::calibrate`): the importance of every linear
/// layer's input columns, by weight name, with a description for the provenance.
fn calibrate(
    input: &Path,
    output: &Path,
    text: &Path,
    max_tokens: usize,
) -> Result<(HashMap<String, Vec<f32>>, String)> {
    let t0 = Instant::now();
    let content = read_text(text)?;
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = TempFile(output.with_file_name(format!(".{name}.calibration-{}.autark", std::process::id())));
    autark_quantize::quantize(input, &tmp.0, &Recipe::new(autark_kernels::DType::F16)?, &mut |_| {})?;
    let model = Arc::new(Model::load(&tmp.0)?);
    let progress = &mut |i, n| eprint!("\rcalibration: window {i}/{n}");
    let (importance, tokens) = autark_runtime::calibrate::calibrate(&model, &content, max_tokens, progress)?;
    let what = format!("{}, {tokens} tokens", text.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    eprintln!("\rcalibration: {what} in {:.1} s", t0.elapsed().as_secs_f64());
    Ok((importance, what))
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
