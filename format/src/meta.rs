//! The JSON metadata document (docs/FORMAT.md, "Metadata").

use serde::{Deserialize, Serialize};

use crate::{FormatError, Result};

/// How RoPE pairs the dimensions of a head: `(2i, 2i+1)` (GGUF's permuted Llama weights) or
/// `(i, i + head_dim/2)` (Hugging Face, GPT-NeoX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeLayout {
    Interleaved,
    Neox,
}

/// The gate activation of the FFN (`down(act(gate(x)) · up(x))`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnActivation {
    #[default]
    Silu,
    /// GELU with the tanh approximation (Gemma).
    GeluTanh,
}

impl std::fmt::Display for RopeLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RopeLayout::Interleaved => "interleaved",
            RopeLayout::Neox => "neox",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format: String,
    pub architecture: String,
    pub config: ModelConfig,
    pub tokenizer: TokenizerMeta,
    #[serde(default)]
    pub provenance: Option<Provenance>,
    /// The conformance record (docs/NUMERICS.md): what the scalar kernels computed for a fixed
    /// probe when the file was written. Optional; readers before it ignore the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conformance: Option<Conformance>,
}

/// A fixed probe's greedy run, as the quantizer's scalar kernels computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conformance {
    /// The probe's definition version (`autark_runtime::conformance::VERSION`).
    pub version: u32,
    /// The kernel set that computed it (`scalar`).
    pub kernels: String,
    pub probes: Vec<ConformanceProbe>,
}

/// One prompt of the probe: its token ids, then per step (the prompt's last position, then each
/// greedy token fed back) the logits' hash and their first maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConformanceProbe {
    pub prompt: Vec<u32>,
    /// The first 16 hex digits of the SHA-256 of each step's logits (little-endian f32).
    pub logits: Vec<String>,
    /// Each step's greedy token (the first maximum of its logits).
    pub tokens: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_theta: f32,
    pub rope_layout: RopeLayout,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    pub norm_eps: f32,
    pub tied_embeddings: bool,
    #[serde(default)]
    pub attn_qkv_bias: bool,
    /// RMSNorm over each query and key head (weights `attn_q_norm`, `attn_k_norm`, `[head_dim]`)
    /// before RoPE, as Qwen3 has.
    #[serde(default)]
    pub attn_qk_norm: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Per-frequency divisors of the RoPE frequencies (`head_dim / 2` values), as llama.cpp's
    /// `rope_freqs.weight` carries them for Llama 3.1+ GGUF files.
    #[serde(default)]
    pub rope_freq_factors: Option<Vec<f32>>,
    // ---- Gemma-style variations; absent means the Llama behaviour ----
    /// Multiplies the embedding rows (Gemma: √d_model).
    #[serde(default)]
    pub embedding_scale: Option<f32>,
    /// Gate activation of the FFN (absent: SiLU).
    #[serde(default)]
    pub ffn_activation: Option<FfnActivation>,
    /// RMSNorms on the attention and FFN outputs before the residual add (`post_attention_norm`,
    /// `post_ffw_norm`).
    #[serde(default)]
    pub post_norms: bool,
    /// Multiplier of q·k (absent: 1/√head_dim).
    #[serde(default)]
    pub attention_scale: Option<f32>,
    /// With `sliding_window`: layer `l` attends globally iff `(l + 1) % pattern == 0`, the others
    /// through the window (absent: every layer uses the window).
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// RoPE base of the sliding-window layers, which also skip `rope_scaling` (absent: as global).
    #[serde(default)]
    pub rope_theta_local: Option<f32>,
}

impl ModelConfig {
    /// Whether layer `l` attends through the sliding window.
    pub fn is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_window_pattern.is_none_or(|p| !(l + 1).is_multiple_of(p))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RopeScaling {
    Linear { factor: f32 },
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context_length: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerMeta {
    /// The Hugging Face `tokenizer.json` document.
    pub hf_json: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_ids: Vec<u32>,
    #[serde(default)]
    pub add_bos: bool,
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub bos_token: Option<String>,
    #[serde(default)]
    pub eos_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub tool: String,
    pub created: String,
    pub sources: Vec<SourceFile>,
    pub recipe: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Upper bounds that keep a hostile file from asking for absurd allocations later.
const MAX_LAYERS: usize = 1 << 12;
const MAX_WIDTH: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;
const MAX_CONTEXT: usize = 1 << 24;

impl Metadata {
    /// Checks the values the runtime sizes buffers from.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FormatError::MetadataValue(m));
        if self.format != "autark" {
            return bad(format!("format is {:?}, expected \"autark\"", self.format));
        }
        self.config.validate()
    }
}

impl ModelConfig {
    /// Checks the hyper-parameters that buffers are sized from (also run by importers before
    /// they plan tensors from a source's configuration).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FormatError::MetadataValue(m));
        let c = self;
        let ranges = [
            ("n_layers", c.n_layers, MAX_LAYERS),
            ("d_model", c.d_model, MAX_WIDTH),
            ("n_heads", c.n_heads, MAX_WIDTH),
            ("n_kv_heads", c.n_kv_heads, MAX_WIDTH),
            ("head_dim", c.head_dim, MAX_WIDTH),
            ("ffn_dim", c.ffn_dim, MAX_WIDTH * 4),
            ("vocab_size", c.vocab_size, MAX_VOCAB),
            ("context_length", c.context_length, MAX_CONTEXT),
        ];
        for (name, v, max) in ranges {
            if v == 0 || v > max {
                return bad(format!("config.{name} = {v} is outside 1..={max}"));
            }
        }
        if !c.n_heads.is_multiple_of(c.n_kv_heads) {
            return bad(format!("n_heads {} is not a multiple of n_kv_heads {}", c.n_heads, c.n_kv_heads));
        }
        if !c.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} is odd", c.head_dim));
        }
        if !(c.rope_theta.is_finite() && c.rope_theta > 0.0 && c.norm_eps.is_finite() && c.norm_eps >= 0.0) {
            return bad("rope_theta or norm_eps is not a positive finite number".into());
        }
        if let Some(f) = &c.rope_freq_factors {
            if f.len() != c.head_dim / 2 || f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return bad(format!(
                    "rope_freq_factors: {} values, expected {} positive numbers",
                    f.len(),
                    c.head_dim / 2
                ));
            }
        }
        let positive = |v: Option<f32>| v.is_none_or(|v| v.is_finite() && v > 0.0);
        if !(positive(c.embedding_scale) && positive(c.attention_scale) && positive(c.rope_theta_local)) {
            return bad("embedding_scale, attention_scale or rope_theta_local is not a positive finite number".into());
        }
        if c.sliding_window == Some(0) || c.sliding_window_pattern == Some(0) {
            return bad("sliding_window and sliding_window_pattern must be at least 1".into());
        }
        Ok(())
    }
}
