//! autark-quantize: reads Hugging Face folders and GGUF files, chooses a type per tensor (a
//! recipe), and streams tensors one at a time into an `.autark` file: peak memory stays near
//! the largest tensor, not the model.
#![forbid(unsafe_code)]

pub mod error;
pub mod gguf;
pub mod hf;
mod pretok;
pub mod recipe;
pub mod search;
pub mod tokenizer;

use std::io::Read;
use std::path::{Path, PathBuf};

use autark_format::arch::SlidingWindow;
use autark_format::{
    expected_tensors, Architecture, ExpectedTensor, FfnActivation, Metadata, ModelConfig, Provenance, RopeLayout,
    SourceFile, TensorSpec, TokenizerMeta, Writer,
};
use autark_kernels::pool::{for_each_chunks2, Pool};
use autark_kernels::{blocks, DType, TensorLayout};
use sha2::{Digest, Sha256};

pub use error::{QuantizeError, Result};
pub use recipe::{Method, Recipe};

use crate::error::io_err;

/// Where a source tensor's bytes live.
#[derive(Debug, Clone)]
enum Origin {
    Gguf(usize),
    Safetensors(hf::StTensor),
    /// Rows `first..first + rows` of a fused source tensor (Phi-3's qkv and gate/up projections):
    /// rows are whole blocks of any type, so the split is lossless.
    Rows {
        base: Box<Origin>,
        first: usize,
        rows: usize,
        row_bytes: usize,
    },
    /// A Hugging Face q or k projection (or its bias) with its rows in GGUF's interleaved RoPE
    /// order: per head of `head_dim` rows, row 2i is source row i and row 2i + 1 is source row
    /// head_dim/2 + i (llama.cpp's `LlamaModel.permute`), so that an HF import stores the bytes
    /// a GGUF import of the same weights stores. Rows move whole: lossless.
    RopeRows {
        base: Box<Origin>,
        head_dim: usize,
        row_bytes: usize,
    },
    /// A Gemma RMSNorm weight `w` of type `dtype`, stored as f32 `1 + w` (Gemma scales by `1 + w`;
    /// GGUF files and the runtime carry the sum, as llama.cpp's converter writes it).
    PlusOne {
        base: Box<Origin>,
        dtype: DType,
    },
}

/// A tensor of the source model, under its `.autark` name.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    origin: Origin,
}

/// A model to import: configuration, tokenizer and tensors, read lazily.
pub struct Source {
    pub architecture: Architecture,
    pub config: ModelConfig,
    pub tokenizer: TokenizerMeta,
    pub tensors: Vec<SourceTensor>,
    /// Files the model was read from (for provenance).
    pub files: Vec<PathBuf>,
    /// Things the user should know (ignored tensors, fallbacks).
    pub notes: Vec<String>,
    /// Tensors of a type this version cannot read (name, ggml type code).
    pub unsupported: Vec<(String, u32)>,
    gguf: Option<gguf::Gguf>,
}

impl Source {
    /// Opens a GGUF file or a Hugging Face folder.
    pub fn open(path: &Path) -> Result<Source> {
        if path.is_dir() {
            return Self::open_hf(path);
        }
        let mut magic = [0u8; 4];
        let mut f = std::fs::File::open(path).map_err(io_err(path))?;
        if f.read_exact(&mut magic).is_ok() && &magic == b"GGUF" {
            return Self::open_gguf(path);
        }
        Err(QuantizeError::UnknownInput { path: path.to_path_buf() })
    }

    fn open_hf(dir: &Path) -> Result<Source> {
        let cfg_path = dir.join("config.json");
        let (architecture, config) = hf::parse_config(&cfg_path)?;
        // Hyper-parameters are checked before anything is planned from them (a config claiming
        // 2^40 layers must not make us allocate a tensor list that long).
        config.validate()?;
        let cfg_json = hf::read_json(&cfg_path)?;
        let tokenizer = tokenizer::from_hf(dir, &cfg_json)?;
        let files = hf::weight_files(dir)?;
        let mut tensors = Vec::new();
        let mut notes = Vec::new();
        for f in &files {
            for t in hf::read_safetensors_header(f)? {
                match hf::map_name_for(architecture, &t.name) {
                    Some(name) if name == "output.weight" && config.tied_embeddings => {
                        notes.push("lm_head.weight ignored: the model ties its output to the embedding".into());
                    }
                    Some(name) if architecture.family().gemma && name.ends_with("norm.weight") => {
                        tensors.push(SourceTensor {
                            name,
                            dtype: DType::F32,
                            shape: t.shape.clone(),
                            origin: Origin::PlusOne { dtype: t.dtype, base: Box::new(Origin::Safetensors(t)) },
                        })
                    }
                    Some(name) => tensors.push(SourceTensor {
                        name,
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                        origin: Origin::Safetensors(t),
                    }),
                    None => notes.push(format!("{} ignored: not used by the runtime", t.name)),
                }
            }
        }
        split_fused(&mut tensors, &config, &mut notes)?;
        let mut config = config;
        // Families whose GGUF files store q/k in the interleaved RoPE order (Llama, Mistral) get
        // that order from Hugging Face folders too: one file per model, whatever the source.
        if architecture.family().gguf_rope == RopeLayout::Interleaved && config.rope_layout != RopeLayout::Interleaved {
            for t in tensors.iter_mut().filter(|t| {
                t.name.starts_with("blk.")
                    && [".attn_q.weight", ".attn_k.weight", ".attn_q.bias", ".attn_k.bias"]
                        .iter()
                        .any(|s| t.name.ends_with(s))
            }) {
                let cols = if t.shape.len() == 2 { t.shape[1] } else { 1 };
                let row_bytes = t
                    .dtype
                    .row_bytes(cols)
                    .map_err(|e| QuantizeError::Tensor { name: t.name.clone(), what: e.to_string() })?;
                t.origin = Origin::RopeRows { base: Box::new(t.origin.clone()), head_dim: config.head_dim, row_bytes };
            }
            config.rope_layout = RopeLayout::Interleaved;
            notes.push("q/k projections: rows reordered into GGUF's interleaved RoPE layout (lossless)".into());
        }
        if !config.tied_embeddings && !tensors.iter().any(|t| t.name == "output.weight") {
            notes.push("no lm_head.weight: the output head is tied to the embedding".into());
            config.tied_embeddings = true;
        }
        let mut files = files;
        files.insert(0, cfg_path);
        files.push(dir.join("tokenizer.json"));
        Ok(Source { architecture, config, tokenizer, tensors, files, notes, unsupported: Vec::new(), gguf: None })
    }

    fn open_gguf(path: &Path) -> Result<Source> {
        use gguf::Value;
        let g = gguf::Gguf::open(path)?;
        let arch = g.get("general.architecture").and_then(Value::as_str).unwrap_or("").to_string();
        let family = Architecture::from_name(&arch)
            .ok_or_else(|| QuantizeError::UnknownArchitecture {
                got: arch.clone(),
                supported: format!("{} (GGUF)", Architecture::supported_names()),
            })?
            .family();
        let gemma = family.gemma;
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| -> Result<usize> {
            g.get(&key(k))
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| QuantizeError::MissingKey { key: key(k) })
        };
        let (tokenizer, mut notes) = tokenizer::from_gguf(&g)?;
        let d_model = u("embedding_length")?;
        let n_heads = u("attention.head_count")?;
        if n_heads == 0 {
            return Err(QuantizeError::GgufInvalid("attention.head_count is 0".into()));
        }
        let vocab_size = g.get("tokenizer.ggml.tokens").and_then(Value::as_array).map(|a| a.len()).unwrap_or(0);
        let rope_scaling = match g.get(&key("rope.scaling.type")).and_then(Value::as_str) {
            Some("linear") => g
                .get(&key("rope.scaling.factor"))
                .and_then(Value::as_f32)
                .map(|factor| autark_format::RopeScaling::Linear { factor }),
            Some("none") | None => None,
            Some(other) => {
                return Err(QuantizeError::GgufInvalid(format!("rope scaling {other:?} is not supported")));
            }
        };
        let mut tensors = Vec::new();
        let mut unsupported = Vec::new();
        for (i, t) in g.tensors.iter().enumerate() {
            match t.dtype() {
                Ok(dtype) => tensors.push(SourceTensor {
                    name: t.name.clone(),
                    dtype,
                    shape: t.shape.clone(),
                    origin: Origin::Gguf(i),
                }),
                // Fails the import only if the architecture needs the tensor (see `quantize`).
                Err(_) => unsupported.push((t.name.clone(), t.type_code)),
            }
        }
        let has = |n: &str| g.tensors.iter().any(|t| t.name == n);
        if has("rope_factors_long.weight") {
            return Err(QuantizeError::GgufInvalid(
                "LongRoPE scaling (rope_factors_long/short, Phi-3 128k) is not supported".into(),
            ));
        }
        let config = ModelConfig {
            n_layers: u("block_count")?,
            d_model,
            n_heads,
            n_kv_heads: u("attention.head_count_kv").unwrap_or(n_heads),
            head_dim: u("attention.key_length").unwrap_or(d_model / n_heads),
            ffn_dim: u("feed_forward_length")?,
            vocab_size: u("vocab_size").unwrap_or(vocab_size),
            context_length: u("context_length").unwrap_or(4096),
            rope_theta: g.get(&key("rope.freq_base")).and_then(Value::as_f32).unwrap_or(10000.0),
            rope_layout: family.gguf_rope,
            rope_scaling,
            norm_eps: g.get(&key("attention.layer_norm_rms_epsilon")).and_then(Value::as_f32).unwrap_or(1e-5),
            tied_embeddings: !has("output.weight"),
            attn_qkv_bias: has("blk.0.attn_q.bias"),
            attn_qk_norm: family.qk_norm,
            // Gemma 3 as llama.cpp runs it: embeddings × √d_model, GELU(tanh), post-norms (the
            // converter already stored norm weights as 1 + w), every 6th layer global and the
            // others sliding with RoPE base 10 000, q·k scaled by the file's
            // `attention.scale` or else llama.cpp's rule (`gemma3_gguf_attention_scale`).
            embedding_scale: gemma.then(|| (d_model as f32).sqrt()),
            ffn_activation: gemma.then_some(FfnActivation::GeluTanh),
            post_norms: gemma,
            attention_scale: match g.get(&key("attention.scale")).and_then(Value::as_f32) {
                Some(s) if gemma => Some(s),
                _ if gemma => autark_format::arch::gemma3_gguf_attention_scale(u("block_count")?, d_model, n_heads),
                _ => None,
            },
            sliding_window_pattern: gemma.then_some(6),
            rope_theta_local: gemma.then_some(10000.0),
            // GGUF files carry a window only where llama.cpp uses one (Phi-3, Gemma 3; Mistral's
            // converter drops it).
            sliding_window: match family.sliding_window {
                SlidingWindow::Always if family.arch != Architecture::Mistral => {
                    g.get(&key("attention.sliding_window")).and_then(Value::as_u64).map(|v| v as usize)
                }
                _ => None,
            },
            rope_freq_factors: match g.tensor("rope_freqs.weight") {
                Some(t) if t.type_code == 0 => {
                    let b = g.read(t)?;
                    Some(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
                }
                Some(_) => return Err(QuantizeError::GgufInvalid("rope_freqs.weight is not f32".into())),
                None => None,
            },
        };
        config.validate()?;
        split_fused(&mut tensors, &config, &mut notes)?;
        for t in &tensors {
            if matches!(t.dtype, DType::Q4K | DType::Q5K | DType::Q6K | DType::BF16) {
                notes.push(format!(
                    "{}: {} is dequantized and re-quantized unless kept (--type keep copies K-quant tensors)",
                    t.name, t.dtype
                ));
            }
        }
        Ok(Source {
            architecture: family.arch,
            config,
            tokenizer,
            tensors,
            files: vec![path.to_path_buf()],
            notes,
            unsupported,
            gguf: Some(g),
        })
    }

    /// Reads one tensor's raw bytes in its source type.
    pub fn read(&self, t: &SourceTensor) -> Result<Vec<u8>> {
        self.read_origin(&t.origin)
    }

    fn read_origin(&self, origin: &Origin) -> Result<Vec<u8>> {
        match origin {
            Origin::Gguf(i) => {
                let g = self.gguf.as_ref().expect("GGUF tensor without GGUF source");
                g.read(&g.tensors[*i])
            }
            Origin::Safetensors(st) => hf::read_tensor(st),
            Origin::PlusOne { base, dtype } => {
                let raw = self.read_origin(base)?;
                let n = raw.len() / (dtype.block_bytes() / dtype.block_len()).max(1);
                let mut v = vec![0f32; n];
                blocks::dequantize_bytes(*dtype, &raw, &mut v)
                    .map_err(|e| QuantizeError::GgufInvalid(format!("norm weight: {e}")))?;
                Ok(v.iter().flat_map(|w| (1.0 + w).to_le_bytes()).collect())
            }
            Origin::RopeRows { base, head_dim, row_bytes } => {
                let all = self.read_origin(base)?;
                let (head, half) = (head_dim * row_bytes, head_dim / 2);
                if head == 0 || all.len() % head != 0 || head_dim % 2 != 0 {
                    return Err(QuantizeError::Tensor {
                        name: "q/k projection".into(),
                        what: format!(
                            "{} bytes are not whole heads of {head_dim} rows of {row_bytes} bytes",
                            all.len()
                        ),
                    });
                }
                let mut out = Vec::with_capacity(all.len());
                for h in all.chunks_exact(head) {
                    for i in 0..half {
                        out.extend_from_slice(&h[i * row_bytes..(i + 1) * row_bytes]);
                        out.extend_from_slice(&h[(half + i) * row_bytes..(half + i + 1) * row_bytes]);
                    }
                }
                Ok(out)
            }
            Origin::Rows { base, first, rows, row_bytes } => {
                let all = self.read_origin(base)?;
                let (start, end) = (first * row_bytes, (first + rows) * row_bytes);
                all.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
                    QuantizeError::GgufInvalid(format!("fused tensor holds {} bytes, rows end at {end}", all.len()))
                })
            }
        }
    }

    /// The tensors the architecture needs, with their shapes, in file order.
    pub fn expected_tensors(&self) -> Vec<ExpectedTensor> {
        expected_tensors(&self.config)
    }
}

/// Replaces fused projections by their parts, as row ranges: `attn_qkv` (rows q, k, v) and
/// `ffn_gate_up` — or, in Phi-3 GGUF files, an `ffn_up` twice the FFN width — (rows gate, up).
fn split_fused(tensors: &mut Vec<SourceTensor>, c: &ModelConfig, notes: &mut Vec<String>) -> Result<()> {
    let (q, kv) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let mut out = Vec::with_capacity(tensors.len() + 2 * c.n_layers);
    for t in tensors.drain(..) {
        let (layer, part) = match t.name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
            Some((l, p)) => (l.to_string(), p.to_string()),
            None => {
                out.push(t);
                continue;
            }
        };
        let parts: Vec<(&str, usize)> = match part.as_str() {
            "attn_qkv.weight" => vec![("attn_q.weight", q), ("attn_k.weight", kv), ("attn_v.weight", kv)],
            "ffn_gate_up.weight" => vec![("ffn_gate.weight", c.ffn_dim), ("ffn_up.weight", c.ffn_dim)],
            "ffn_up.weight" if t.shape.first() == Some(&(2 * c.ffn_dim)) => {
                vec![("ffn_gate.weight", c.ffn_dim), ("ffn_up.weight", c.ffn_dim)]
            }
            _ => {
                out.push(t);
                continue;
            }
        };
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let (Some(&have), 2) = (t.shape.first(), t.shape.len()) else {
            return Err(QuantizeError::Shape { name: t.name.clone(), expected: vec![rows, c.d_model], got: t.shape });
        };
        if have != rows {
            return Err(QuantizeError::Shape { name: t.name.clone(), expected: vec![rows, c.d_model], got: t.shape });
        }
        let row_bytes = t
            .dtype
            .row_bytes(t.shape[1])
            .map_err(|e| QuantizeError::Tensor { name: t.name.clone(), what: e.to_string() })?;
        let mut first = 0;
        for (name, n) in &parts {
            out.push(SourceTensor {
                name: format!("blk.{layer}.{name}"),
                dtype: t.dtype,
                shape: vec![*n, t.shape[1]],
                origin: Origin::Rows { base: Box::new(t.origin.clone()), first, rows: *n, row_bytes },
            });
            first += n;
        }
        if layer == "0" {
            notes.push(format!("{}: fused tensor split into {} by rows (lossless)", t.name, parts.len()));
        }
    }
    *tensors = out;
    Ok(())
}

/// Per-tensor result of a quantization.
#[derive(Debug, Clone)]
pub struct TensorReport {
    pub name: String,
    pub source: DType,
    pub target: DType,
    pub shape: Vec<usize>,
    pub bytes: u64,
    /// Copied byte for byte (no re-quantization).
    pub copied: bool,
    /// RMS of (dequantized output − source), and relative to the RMS of the source.
    pub rms_error: f64,
    pub rel_rms_error: f64,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub tensors: Vec<TensorReport>,
    pub file_bytes: u64,
    pub n_params: u64,
    pub notes: Vec<String>,
}

impl Summary {
    /// Bits per weight over all tensors.
    pub fn bits_per_weight(&self) -> f64 {
        let bytes: u64 = self.tensors.iter().map(|t| t.bytes).sum();
        bytes as f64 * 8.0 / self.n_params.max(1) as f64
    }
}

/// Progress events for a progress bar.
pub enum Progress<'a> {
    Start { n_tensors: usize },
    Tensor { index: usize, name: &'a str },
}

/// Converts `input` into `output` following `recipe`. The output is written to a temporary
/// file and renamed into place at the end; on any error an existing `output` is untouched.
pub fn quantize(
    input: &Path,
    output: &Path,
    recipe: &Recipe,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary> {
    let src = Source::open(input)?;
    let recipe = &recipe.for_model(src.config.n_layers, src.config.tied_embeddings);
    if let Ok(out) = output.canonicalize() {
        for f in &src.files {
            if f.canonicalize().is_ok_and(|f| f == out) {
                return Err(QuantizeError::OutputIsInput { out: output.to_path_buf() });
            }
        }
    }
    // The tokenizer and chat template must load and work as the runtime will use them.
    let mut notes = src.notes.clone();
    let probe = autark_runtime::probe::check(&src.tokenizer, src.config.vocab_size)
        .map_err(|source| QuantizeError::UnusableTokenizer { source })?;
    if !probe.round_trip {
        notes.push("the tokenizer does not decode its probe text back exactly (it normalizes text)".into());
    }
    // Check every needed tensor and shape before writing anything.
    let expected = src.expected_tensors();
    let mut plan = Vec::with_capacity(expected.len());
    for ExpectedTensor { name, shape, .. } in &expected {
        let Some(t) = src.tensors.iter().find(|t| &t.name == name) else {
            return Err(match src.unsupported.iter().find(|(n, _)| n == name) {
                Some((_, code)) => {
                    QuantizeError::UnsupportedType { name: name.clone(), what: format!("ggml type {code}") }
                }
                None => QuantizeError::MissingTensor(name.clone()),
            });
        };
        if &t.shape != shape {
            return Err(QuantizeError::Shape { name: name.clone(), expected: shape.clone(), got: t.shape.clone() });
        }
        let (target, note) = recipe.type_for(name, shape, t.dtype);
        notes.extend(note);
        plan.push((t, target));
    }
    let specs: Vec<TensorSpec> = plan
        .iter()
        .map(|(t, d)| TensorSpec {
            layout: layout_for(recipe, *d, &t.shape),
            ..TensorSpec::new(t.name.clone(), *d, t.shape.clone())
        })
        .collect();
    let sources = src.files.iter().map(|f| hash_file(f)).collect::<Result<Vec<_>>>()?;
    let metadata = Metadata {
        format: "autark".into(),
        architecture: src.architecture.name().into(),
        config: src.config.clone(),
        tokenizer: src.tokenizer.clone(),
        provenance: Some(Provenance {
            tool: format!("autark {}", env!("CARGO_PKG_VERSION")),
            created: utc_now(),
            sources,
            recipe: recipe.to_json(),
        }),
        conformance: None,
    };
    // With a conformance record, the tensors go to a staging file first: the record comes from
    // running the model they make, and the metadata precedes the tensors in the file.
    let staged = recipe.conformance.then(|| Staged(autark_format::temp_path(&autark_format::temp_path(output))));
    let mut writer = Writer::create(staged.as_ref().map_or(output, |s| &s.0), &metadata, &specs)?;
    progress(Progress::Start { n_tensors: plan.len() });
    let threads = if recipe.threads == 0 { autark_kernels::pool::cores() } else { recipe.threads };
    // The rows of each tensor go over the kernels' fork-join pool (one thread if no helper can
    // be started).
    let pool = Pool::new(threads).or_else(|_| Pool::new(1)).map_err(io_err(output))?;
    let mut reports = Vec::with_capacity(plan.len());
    let mut out = Vec::new();
    let mut interleaved = Vec::new();
    for (index, (t, target)) in plan.iter().enumerate() {
        progress(Progress::Tensor { index, name: &t.name });
        let raw = src.read(t)?;
        let importance = recipe.importance.as_ref().and_then(|m| m.get(&t.name)).map(Vec::as_slice);
        let rep = pool.install(|| convert(t, *target, recipe.method, importance, raw, &mut out))?;
        if layout_for(recipe, *target, &t.shape) == TensorLayout::Rows16 {
            let rows = t.shape[0];
            autark_kernels::interleave::interleave(*target, rows, t.shape[1], &out, &mut interleaved)?;
            std::mem::swap(&mut out, &mut interleaved);
        }
        writer.write_tensor(&t.name, &out)?;
        reports.push(rep);
    }
    writer.finish()?;
    if let Some(staged) = &staged {
        add_conformance(&staged.0, output, threads)?;
    }
    let file_bytes = std::fs::metadata(output).map_err(io_err(output))?.len();
    let n_params = plan.iter().map(|(t, _)| t.shape.iter().product::<usize>() as u64).sum();
    Ok(Summary { tensors: reports, file_bytes, n_params, notes })
}

/// A staging file, deleted when dropped.
struct Staged(std::path::PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the conformance probe on the model at `staged` with the scalar kernels (on `threads`;
/// the bits do not depend on it) and writes the file again to `output` with the record in its
/// metadata.
fn add_conformance(staged: &Path, output: &Path, threads: usize) -> Result<()> {
    use autark_runtime::{conformance, Model};
    let model = std::sync::Arc::new(Model::load(staged).map_err(|source| QuantizeError::Conformance { source })?);
    let record =
        autark_kernels::dispatch::with_isa(autark_kernels::Isa::Scalar, || conformance::record(&model, threads))
            .map_err(|source| QuantizeError::Conformance { source })?;
    let metadata = autark_format::Metadata { conformance: Some(record), ..model.metadata().clone() };
    model.file().rewrite(&metadata, output)?;
    Ok(())
}

/// The layout a tensor of `dtype` and `shape` is written in.
fn layout_for(recipe: &Recipe, dtype: DType, shape: &[usize]) -> TensorLayout {
    if recipe.interleave && TensorLayout::Rows16.check(dtype, shape).is_ok() {
        TensorLayout::Rows16
    } else {
        TensorLayout::RowMajor
    }
}

/// One tensor from its source bytes into `target` bytes in `out`, with its error report. The
/// rows are shared out over the current pool (each row's bytes depend only on the row; the
/// error sums are added up row by row in order, so the report does not depend on the thread
/// count; of several failing rows, the first row's error is returned).
fn convert(
    t: &SourceTensor,
    target: DType,
    method: Method,
    importance: Option<&[f32]>,
    raw: Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<TensorReport> {
    let n: usize = t.shape.iter().product();
    let cols = *t.shape.last().unwrap_or(&1);
    let report = |copied, rms_error, rel_rms_error, bytes| TensorReport {
        name: t.name.clone(),
        source: t.dtype,
        target,
        shape: t.shape.clone(),
        bytes,
        copied,
        rms_error,
        rel_rms_error,
    };
    if t.dtype == target {
        *out = raw;
        return Ok(report(true, 0.0, 0.0, out.len() as u64));
    }
    let rows = n.checked_div(cols).unwrap_or(0);
    let (src_row, dst_row) = (t.dtype.row_bytes(cols)?, target.row_bytes(cols)?);
    let first_error = FirstError::default();
    let mut f = vec![0f32; n];
    for_each_chunks2(&mut f, cols, &mut [0u8; 0], 0, rows, true, &|r, x, _| {
        first_error.keep(r, blocks::dequantize_bytes(t.dtype, &raw[r * src_row..(r + 1) * src_row], x));
    });
    first_error.take()?;
    drop(raw);
    if let Some(i) = f.iter().position(|v| !v.is_finite()) {
        return Err(QuantizeError::Tensor {
            name: t.name.clone(),
            what: format!("value {} at index {i} is not finite", f[i]),
        });
    }
    out.clear();
    out.resize(dst_row * rows, 0);
    // (squared error, squared value) of each row.
    let mut sums = vec![(0f64, 0f64); rows];
    let importance = importance.filter(|i| i.len() == cols);
    for_each_chunks2(out, dst_row, &mut sums, 1, rows, true, &|r, dst, sum| {
        let x = &f[r * cols..(r + 1) * cols];
        let (mut row, mut back, mut weights) = (Vec::new(), vec![0f32; cols], Vec::new());
        let quantized = match method {
            Method::Search => {
                search::row_weights(x, importance, &mut weights);
                search::quantize_bytes_weighted(target, x, &weights, &mut row)
            }
            Method::Rtn => blocks::quantize_bytes(target, x, &mut row),
        };
        let checked = quantized.and_then(|()| blocks::dequantize_bytes(target, &row, &mut back));
        if first_error.keep(r, checked) {
            for (a, b) in x.iter().zip(&back) {
                sum[0].0 += ((a - b) as f64).powi(2);
                sum[0].1 += (*a as f64).powi(2);
            }
            dst.copy_from_slice(&row);
        }
    });
    first_error.take()?;
    let (se, ss) = sums.iter().fold((0f64, 0f64), |(se, ss), (e, s)| (se + e, ss + s));
    let rms = (se / n.max(1) as f64).sqrt();
    let rel = if ss > 0.0 { (se / ss).sqrt() } else { 0.0 };
    Ok(report(false, rms, rel, out.len() as u64))
}

/// The error of the lowest-numbered failing row of a parallel loop.
#[derive(Default)]
struct FirstError(std::sync::Mutex<Option<(usize, QuantizeError)>>);

impl FirstError {
    /// Keeps row `r`'s error if it is the first so far; true if `result` is Ok.
    fn keep<E: Into<QuantizeError>>(&self, r: usize, result: std::result::Result<(), E>) -> bool {
        let Err(e) = result else { return true };
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if first.as_ref().is_none_or(|(k, _)| r < *k) {
            *first = Some((r, e.into()));
        }
        false
    }

    fn take(&self) -> Result<()> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

fn hash_file(path: &Path) -> Result<SourceFile> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SourceFile { name, sha256: autark_format::hex(&h.finalize()), bytes })
}

/// Current UTC time as RFC 3339, without a date library (days-from-civil inverse, H. Hinnant).
fn utc_now() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
