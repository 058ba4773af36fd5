//! `autark inspect` and `autark verify`: a file's metadata, tensor table and checksums.

use std::io::Write;
use std::path::Path;

use autark_format::AutarkFile;

use super::{say, CliError, Result};

pub fn inspect(path: &Path, json: bool) -> Result<()> {
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
    match &m.conformance {
        Some(c) => {
            let steps: usize = c.probes.iter().map(|p| p.logits.len()).sum();
            say!(
                "conformance:   probe v{}, {} prompts, {steps} steps, by the {} kernels (autark verify --conformance)",
                c.version,
                c.probes.len(),
                c.kernels
            );
        }
        None => say!("conformance:   none"),
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

/// Every tensor's checksum, then the tokenizer and chat template through the runtime's probe
/// (the check the quantizer ran before writing the file).
/// `autark verify`; `conformance`: also re-run the conformance probe on that many threads.
pub fn verify(path: &Path, conformance: Option<usize>) -> Result<()> {
    let f = AutarkFile::open(path)?;
    let bad = f.verify();
    for n in &bad {
        eprintln!("checksum mismatch: {n}");
    }
    if !bad.is_empty() {
        return Err(CliError::Corrupted(bad.len()));
    }
    say!("{}: {} tensors, all checksums match", path.display(), f.tensors().len());
    let m = f.metadata();
    let p = autark_runtime::probe::check(&m.tokenizer, m.config.vocab_size)?;
    say!(
        "tokenizer: {} tokens, probe text {} tokens{}; chat template: {}",
        p.vocab,
        p.probe_tokens,
        if p.round_trip { ", decodes back exactly" } else { " (normalized: does not decode back exactly)" },
        match p.chat_tokens {
            Some(n) => format!("renders ({n} tokens)"),
            None => "none".into(),
        }
    );
    if let Some(threads) = conformance {
        use autark_runtime::conformance::{verify, Verdict};
        let model = std::sync::Arc::new(autark_runtime::Model::load(path)?);
        let kernels = autark_kernels::kernels().isa.name();
        match verify(&model, threads)? {
            Verdict::Identical { steps } => {
                let rec = model.metadata().conformance.as_ref().map_or("?", |c| c.kernels.as_str());
                say!("conformance: {steps} steps bit-identical with the record ({kernels} kernels here, {rec} in the record)")
            }
            Verdict::Differs(d) => return Err(CliError::NotConformant(format!("{d} ({kernels} kernels)"))),
            Verdict::NoRecord => {
                return Err(CliError::Usage(format!(
                    "{}: no conformance record (written with --no-conformance or by an older autark; quantize it again to add one)",
                    path.display()
                )))
            }
            Verdict::OtherVersion(v) => {
                return Err(CliError::Usage(format!(
                    "{}: the conformance record is of probe version {v}; this autark runs version {}",
                    path.display(),
                    autark_runtime::conformance::VERSION
                )))
            }
        }
    }
    Ok(())
}
