//! Hugging Face model folders: `config.json`, single or sharded `*.safetensors`
//! (`model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`.
//!
//! safetensors files are read by their header (8-byte little-endian length, JSON of
//! `{name: {dtype, shape, data_offsets}}`), validated against the file size, then one tensor at
//! a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use autark_format::arch::SlidingWindow;
use autark_format::{Architecture, FfnActivation, ModelConfig, RopeLayout, RopeScaling};
use autark_kernels::DType;
use serde_json::Value as J;

use crate::error::{io_err, QuantizeError, Result};

/// Header of a safetensors file larger than this is refused (the format's own reference
/// implementation uses 100 MB).
const MAX_HEADER: u64 = 100 << 20;

#[derive(Debug, Clone)]
pub struct StTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub file: PathBuf,
    /// Absolute offset in `file`.
    pub offset: u64,
    pub nbytes: u64,
}

/// Reads and validates the header of one safetensors file.
pub fn read_safetensors_header(path: &Path) -> Result<Vec<StTensor>> {
    let bad = |what: String| QuantizeError::Safetensors { path: path.to_path_buf(), what };
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| bad("file shorter than its 8-byte header length".into()))?;
    let hlen = u64::from_le_bytes(n);
    if hlen > MAX_HEADER || hlen > len - 8 {
        return Err(bad(format!("header length {hlen} exceeds the file ({len} bytes)")));
    }
    let mut h = vec![0u8; hlen as usize];
    f.read_exact(&mut h).map_err(io_err(path))?;
    let header: BTreeMap<String, J> = serde_json::from_slice(&h).map_err(|e| bad(format!("header JSON: {e}")))?;
    let data_start = 8 + hlen;
    let data_len = len - data_start;
    let mut out = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dt = v.get("dtype").and_then(J::as_str).ok_or_else(|| bad(format!("{name}: no dtype")))?;
        let dtype = match dt {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            other => {
                return Err(QuantizeError::UnsupportedType { name, what: format!("safetensors dtype {other}") });
            }
        };
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(J::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| bad(format!("{name}: bad shape")))?;
        let offs = v
            .get("data_offsets")
            .and_then(J::as_array)
            .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
            .ok_or_else(|| bad(format!("{name}: bad data_offsets")))?;
        let elems = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let want = elems.and_then(|e| e.checked_mul(dtype.block_bytes() as u64));
        if offs.0 > offs.1 || offs.1 > data_len || Some(offs.1 - offs.0) != want {
            return Err(bad(format!(
                "{name}: data_offsets {offs:?} do not match shape {shape:?} {dt} within {data_len} data bytes"
            )));
        }
        out.push(StTensor {
            name,
            dtype,
            shape,
            file: path.to_path_buf(),
            offset: data_start + offs.0,
            nbytes: offs.1 - offs.0,
        });
    }
    let mut by_off: Vec<&StTensor> = out.iter().filter(|t| t.nbytes > 0).collect();
    by_off.sort_by_key(|t| t.offset);
    for w in by_off.windows(2) {
        if w[0].offset + w[0].nbytes > w[1].offset {
            return Err(bad(format!("tensors {} and {} overlap", w[0].name, w[1].name)));
        }
    }
    Ok(out)
}

pub fn read_tensor(t: &StTensor) -> Result<Vec<u8>> {
    let mut f = File::open(&t.file).map_err(io_err(&t.file))?;
    f.seek(SeekFrom::Start(t.offset)).map_err(io_err(&t.file))?;
    let mut buf = vec![0u8; t.nbytes as usize];
    f.read_exact(&mut buf).map_err(io_err(&t.file))?;
    Ok(buf)
}

/// The safetensors files of a folder: the shards named by the index, or every `*.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let j = read_json(&index)?;
        let map = j
            .get("weight_map")
            .and_then(J::as_object)
            .ok_or_else(|| QuantizeError::HfConfig { path: index.clone(), what: "no weight_map".into() })?;
        let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
        files.sort();
        files.dedup();
        for f in &files {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(QuantizeError::HfConfig {
                    path: index.clone(),
                    what: format!("shard name {f:?} leaves the folder"),
                });
            }
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(QuantizeError::HfConfig { path: dir.to_path_buf(), what: "no *.safetensors files".into() });
    }
    Ok(files)
}

pub fn read_json(path: &Path) -> Result<J> {
    let b = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&b)
        .map_err(|e| QuantizeError::HfConfig { path: path.to_path_buf(), what: format!("invalid JSON: {e}") })
}

/// `config.json` → the family (`architectures[0]`, see `autark_format::arch::FAMILIES`) and the
/// model configuration.
pub fn parse_config(path: &Path) -> Result<(Architecture, ModelConfig)> {
    let c = read_json(path)?;
    let arch = c
        .get("architectures")
        .and_then(J::as_array)
        .and_then(|a| a.first())
        .and_then(J::as_str)
        .ok_or_else(|| QuantizeError::MissingKey { key: "architectures".into() })?;
    let family = Architecture::from_hf_class(arch)
        .ok_or_else(|| QuantizeError::UnknownArchitecture {
            got: arch.into(),
            supported: Architecture::supported_hf_classes(),
        })?
        .family();
    let u = |k: &str| -> Result<usize> {
        c.get(k).and_then(J::as_u64).map(|v| v as usize).ok_or_else(|| QuantizeError::MissingKey { key: k.into() })
    };
    let f = |k: &str, d: f64| c.get(k).and_then(J::as_f64).unwrap_or(d) as f32;
    let d_model = u("hidden_size")?;
    let n_heads = u("num_attention_heads")?;
    if n_heads == 0 {
        return Err(QuantizeError::HfConfig { path: path.into(), what: "num_attention_heads is 0".into() });
    }
    let n_kv_heads = u("num_key_value_heads").unwrap_or(n_heads);
    let head_dim = c.get("head_dim").and_then(J::as_u64).map(|v| v as usize).unwrap_or(d_model / n_heads);
    let rope_scaling = match c.get("rope_scaling") {
        None | Some(J::Null) => None,
        Some(s) => {
            let ty = s.get("rope_type").or_else(|| s.get("type")).and_then(J::as_str).unwrap_or("default");
            let g = |k: &str| s.get(k).and_then(J::as_f64).map(|v| v as f32);
            match ty {
                "default" => None,
                "linear" => Some(RopeScaling::Linear { factor: g("factor").unwrap_or(1.0) }),
                "llama3" => Some(RopeScaling::Llama3 {
                    factor: g("factor").unwrap_or(8.0),
                    low_freq_factor: g("low_freq_factor").unwrap_or(1.0),
                    high_freq_factor: g("high_freq_factor").unwrap_or(4.0),
                    original_context_length: s
                        .get("original_max_position_embeddings")
                        .and_then(J::as_u64)
                        .unwrap_or(8192) as usize,
                }),
                other => {
                    return Err(QuantizeError::HfConfig {
                        path: path.into(),
                        what: format!("rope_scaling type {other:?} is not supported"),
                    })
                }
            }
        }
    };
    if let Some(p) = c.get("partial_rotary_factor").and_then(J::as_f64).filter(|p| *p != 1.0) {
        return Err(QuantizeError::HfConfig {
            path: path.into(),
            what: format!("partial_rotary_factor {p} (rotary embedding on part of each head) is not supported"),
        });
    }
    let enabled = match family.sliding_window {
        SlidingWindow::Never => false,
        SlidingWindow::Always => true,
        SlidingWindow::IfEnabled => c.get("use_sliding_window").and_then(J::as_bool) == Some(true),
    };
    let sliding_window = c.get("sliding_window").and_then(J::as_u64).map(|v| v as usize).filter(|_| enabled);
    let gemma = family.gemma;
    if gemma {
        for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if c.get(k).is_some_and(|v| !v.is_null()) {
                return Err(QuantizeError::HfConfig { path: path.into(), what: format!("{k} is not supported") });
            }
        }
        if let Some(a) = c.get("hidden_activation").and_then(J::as_str).filter(|a| *a != "gelu_pytorch_tanh") {
            return Err(QuantizeError::HfConfig { path: path.into(), what: format!("hidden_activation {a:?}") });
        }
    }
    let cfg = ModelConfig {
        n_layers: u("num_hidden_layers")?,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: u("intermediate_size")?,
        vocab_size: u("vocab_size")?,
        context_length: u("max_position_embeddings").unwrap_or(4096),
        rope_theta: f("rope_theta", 10000.0),
        rope_layout: RopeLayout::Neox,
        rope_scaling,
        norm_eps: f("rms_norm_eps", 1e-6),
        tied_embeddings: c.get("tie_word_embeddings").and_then(J::as_bool).unwrap_or(gemma),
        attn_qkv_bias: family.qkv_bias || c.get("attention_bias").and_then(J::as_bool).unwrap_or(false),
        attn_qk_norm: family.qk_norm,
        embedding_scale: gemma.then(|| (d_model as f32).sqrt()),
        ffn_activation: gemma.then_some(FfnActivation::GeluTanh),
        post_norms: gemma,
        // 1/sqrt(query_pre_attn_scalar); none when that is the default 1/sqrt(head_dim), as a
        // GGUF file of the same model says it (the same file from either source).
        attention_scale: match c.get("query_pre_attn_scalar").and_then(J::as_f64) {
            Some(s) if gemma && s != head_dim as f64 => Some((1.0 / s.sqrt()) as f32),
            _ => None,
        },
        sliding_window_pattern: if gemma { Some(gemma_pattern(&c, path)?) } else { None },
        rope_theta_local: gemma.then(|| f("rope_local_base_freq", 10000.0)),
        sliding_window,
        rope_freq_factors: None,
    };
    // Checked here, before anyone plans tensors or buffers from these numbers.
    cfg.validate()?;
    Ok((family.arch, cfg))
}

/// Gemma 3's attention layout as a period: every `pattern`-th layer attends globally. Read from
/// `layer_types` (newer configs; must be periodic) or `sliding_window_pattern` (default 6).
fn gemma_pattern(c: &J, path: &Path) -> Result<usize> {
    let bad = |what: String| QuantizeError::HfConfig { path: path.into(), what };
    let Some(types) = c.get("layer_types").and_then(J::as_array) else {
        return Ok(c.get("sliding_window_pattern").and_then(J::as_u64).unwrap_or(6).max(1) as usize);
    };
    let global: Vec<bool> = types.iter().map(|t| t.as_str() == Some("full_attention")).collect();
    let Some(first) = global.iter().position(|g| *g) else {
        return Ok(global.len() + 1); // no global layer at all
    };
    let pattern = first + 1;
    if global.iter().enumerate().any(|(l, g)| *g != ((l + 1) % pattern == 0)) {
        return Err(bad(format!("layer_types is not periodic (first global layer {first})")));
    }
    Ok(pattern)
}

/// `map_name` for an architecture: Gemma 3's `post_attention_layernorm` normalises the attention
/// output (`post_attention_norm`), where Llama's feeds the FFN (`ffn_norm`, which Gemma 3 calls
/// `pre_feedforward_layernorm`).
pub fn map_name_for(arch: Architecture, hf: &str) -> Option<String> {
    if arch.family().gemma {
        if let Some(stem) = hf.strip_suffix(".post_attention_layernorm.weight") {
            let n: usize = stem.strip_prefix("model.layers.")?.parse().ok()?;
            return Some(format!("blk.{n}.post_attention_norm.weight"));
        }
    }
    map_name(hf)
}

/// HF tensor name → GGUF-style name used in `.autark` files; `None` for tensors the runtime
/// does not use (e.g. `rotary_emb.inv_freq`).
pub fn map_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (n, tail) = rest.split_once('.')?;
    let n: usize = n.parse().ok()?;
    let mapped = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.qkv_proj.weight" => "attn_qkv.weight",
        "mlp.gate_up_proj.weight" => "ffn_gate_up.weight",
        "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
        "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{n}.{mapped}"))
}
