//! `Model`: a mapped `.autark` file, its configuration, tokenizer and the tensor views a
//! forward pass needs, checked at load. Immutable, `Send + Sync`, shared by sessions.

use std::path::Path;

use autark_format::{AutarkFile, Metadata, ModelConfig};
use autark_kernels::ops::{cast_f32, WeightView};
use autark_kernels::DType;

use crate::error::{Result, RuntimeError};
use crate::tokenizer::Tokenizer;

/// Index of a tensor in the file's table.
pub(crate) type T = usize;

pub(crate) struct Layer {
    pub attn_norm: T,
    pub wq: T,
    pub wk: T,
    pub wv: T,
    pub bq: Option<T>,
    pub bk: Option<T>,
    pub bv: Option<T>,
    /// Per-head RMSNorm weights of queries and keys (Qwen3).
    pub q_norm: Option<T>,
    pub k_norm: Option<T>,
    /// Norms of the attention and FFN outputs (Gemma 3).
    pub post_attn_norm: Option<T>,
    pub post_ffn_norm: Option<T>,
    pub wo: T,
    pub ffn_norm: T,
    pub w_gate: T,
    pub w_up: T,
    pub w_down: T,
}

pub struct Model {
    file: AutarkFile,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) layers: Vec<Layer>,
    pub(crate) token_embd: T,
    pub(crate) output_norm: T,
    /// The output head (the embedding when tied).
    pub(crate) output: T,
}

const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3"];

impl Model {
    /// Maps and validates `path`; checks every tensor the architecture needs.
    pub fn load(path: &Path) -> Result<Model> {
        let file = AutarkFile::open(path)?;
        let meta = file.metadata();
        if !SUPPORTED.contains(&meta.architecture.as_str()) {
            return Err(RuntimeError::UnsupportedArchitecture(meta.architecture.clone()));
        }
        let c = &meta.config;
        let tokenizer = Tokenizer::from_meta(&meta.tokenizer, c.vocab_size)?;
        let (q, kv) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let find = |name: String, shape: &[usize], matrix: bool| -> Result<T> {
            let i = file
                .tensors()
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| RuntimeError::MissingTensor(name.clone()))?;
            let t = &file.tensors()[i];
            if t.shape != shape {
                return Err(RuntimeError::BadTensor { name, what: format!("shape {:?}, expected {shape:?}", t.shape) });
            }
            if !matrix && t.dtype != DType::F32 {
                return Err(RuntimeError::BadTensor { name, what: format!("{} (vectors must be f32)", t.dtype) });
            }
            Ok(i)
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let n = |s: &str| format!("blk.{l}.{s}");
            let bias = |s: &str, rows| if c.attn_qkv_bias { find(n(s), &[rows], false).map(Some) } else { Ok(None) };
            let qk_norm = |s: &str| if c.attn_qk_norm { find(n(s), &[c.head_dim], false).map(Some) } else { Ok(None) };
            let post_norm = |s: &str| if c.post_norms { find(n(s), &[c.d_model], false).map(Some) } else { Ok(None) };
            layers.push(Layer {
                attn_norm: find(n("attn_norm.weight"), &[c.d_model], false)?,
                wq: find(n("attn_q.weight"), &[q, c.d_model], true)?,
                wk: find(n("attn_k.weight"), &[kv, c.d_model], true)?,
                wv: find(n("attn_v.weight"), &[kv, c.d_model], true)?,
                bq: bias("attn_q.bias", q)?,
                bk: bias("attn_k.bias", kv)?,
                bv: bias("attn_v.bias", kv)?,
                q_norm: qk_norm("attn_q_norm.weight")?,
                k_norm: qk_norm("attn_k_norm.weight")?,
                post_attn_norm: post_norm("post_attention_norm.weight")?,
                post_ffn_norm: post_norm("post_ffw_norm.weight")?,
                wo: find(n("attn_output.weight"), &[c.d_model, q], true)?,
                ffn_norm: find(n("ffn_norm.weight"), &[c.d_model], false)?,
                w_gate: find(n("ffn_gate.weight"), &[c.ffn_dim, c.d_model], true)?,
                w_up: find(n("ffn_up.weight"), &[c.ffn_dim, c.d_model], true)?,
                w_down: find(n("ffn_down.weight"), &[c.d_model, c.ffn_dim], true)?,
            });
        }
        let token_embd = find("token_embd.weight".into(), &[c.vocab_size, c.d_model], true)?;
        let output_norm = find("output_norm.weight".into(), &[c.d_model], false)?;
        let output = if c.tied_embeddings {
            token_embd
        } else {
            find("output.weight".into(), &[c.vocab_size, c.d_model], true)?
        };
        let model = Model { file, tokenizer, layers, token_embd, output_norm, output };
        // Build every view once so that a bad dtype or alignment fails here, not mid-generation.
        for i in 0..model.file.tensors().len() {
            let t = &model.file.tensors()[i];
            if t.shape.len() == 2 {
                model.try_weight(i)?;
            } else {
                model.try_vector(i)?;
            }
        }
        Ok(model)
    }

    pub fn metadata(&self) -> &Metadata {
        self.file.metadata()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.file.metadata().config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn file(&self) -> &AutarkFile {
        &self.file
    }

    /// Parameters (elements of all tensors).
    pub fn n_params(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements() as u64).sum()
    }

    fn try_weight(&self, i: T) -> Result<WeightView<'_>> {
        let t = &self.file.tensors()[i];
        WeightView::with_layout(t.dtype, t.layout, t.shape[0], t.shape[1], self.file.data(t))
            .map_err(|e| RuntimeError::BadTensor { name: t.name.clone(), what: e.to_string() })
    }

    fn try_vector(&self, i: T) -> Result<&[f32]> {
        let t = &self.file.tensors()[i];
        cast_f32(self.file.data(t)).map_err(|e| RuntimeError::BadTensor { name: t.name.clone(), what: e.to_string() })
    }

    /// A weight matrix view (validated at load).
    pub(crate) fn weight(&self, i: T) -> WeightView<'_> {
        self.try_weight(i).expect("validated at load")
    }

    /// An f32 vector (validated at load).
    pub(crate) fn vector(&self, i: T) -> &[f32] {
        self.try_vector(i).expect("validated at load")
    }
}

#[cfg(test)]
const _: () = {
    const fn shareable<X: Send + Sync>() {}
    shareable::<Model>();
};
