//! Model knowledge, in one place: the families the runtime executes, how each one's source
//! files describe it, and the tensors an `.autark` file of a configuration holds. The quantizer
//! plans its import from this table and the runtime checks a file against it; a new family is a
//! new row of `FAMILIES` plus its forward-pass differences (docs/ARCHITECTURE.md).

use crate::{Metadata, ModelConfig, RopeLayout};

impl Metadata {
    /// The family, if this runtime knows it (the field stays a string so that a file of a newer
    /// family still opens for `inspect` and fails with a clear error where it would run).
    pub fn arch(&self) -> Option<Architecture> {
        Architecture::from_name(&self.architecture)
    }
}

/// A model family the runtime executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma3,
}

/// When the family's configuration enables a sliding attention window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    Never,
    /// Whenever the source gives `sliding_window`.
    Always,
    /// Only with `use_sliding_window: true` (Qwen2/Qwen3 `config.json`).
    IfEnabled,
}

/// One family: its names in the source formats and what sets it apart from Llama.
#[derive(Debug)]
pub struct Family {
    pub arch: Architecture,
    /// The name in `.autark` metadata and in GGUF's `general.architecture`.
    pub name: &'static str,
    /// `architectures[0]` of a Hugging Face `config.json`.
    pub hf_class: &'static str,
    /// RoPE layout of the family's GGUF files (llama.cpp's converter permutes Llama-style q/k
    /// weights into interleaved pairs); Hugging Face weights are always `Neox`.
    pub gguf_rope: RopeLayout,
    /// Biases on q, k and v always (Qwen2); others read `attention_bias`.
    pub qkv_bias: bool,
    /// RMSNorm of each query and key head before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    pub sliding_window: SlidingWindow,
    /// Gemma's differences: embeddings × √d_model, GELU(tanh), norms of the attention and FFN
    /// outputs, norm weights stored as `1 + w`, alternating local/global layers with their own
    /// RoPE base, embeddings tied unless stated.
    pub gemma: bool,
}

/// Every family, in the order error messages list them.
pub const FAMILIES: &[Family] = &[
    family(Architecture::Llama, "llama", "LlamaForCausalLM", RopeLayout::Interleaved),
    family(Architecture::Mistral, "mistral", "MistralForCausalLM", RopeLayout::Interleaved),
    Family { qkv_bias: true, ..family(Architecture::Qwen2, "qwen2", "Qwen2ForCausalLM", RopeLayout::Neox) },
    Family { qk_norm: true, ..family(Architecture::Qwen3, "qwen3", "Qwen3ForCausalLM", RopeLayout::Neox) },
    family(Architecture::Phi3, "phi3", "Phi3ForCausalLM", RopeLayout::Neox),
    Family {
        qk_norm: true,
        gemma: true,
        ..family(Architecture::Gemma3, "gemma3", "Gemma3ForCausalLM", RopeLayout::Neox)
    },
];

const fn family(arch: Architecture, name: &'static str, hf_class: &'static str, gguf_rope: RopeLayout) -> Family {
    let sliding_window = match arch {
        Architecture::Mistral | Architecture::Phi3 | Architecture::Gemma3 => SlidingWindow::Always,
        Architecture::Qwen2 | Architecture::Qwen3 => SlidingWindow::IfEnabled,
        Architecture::Llama => SlidingWindow::Never,
    };
    Family { arch, name, hf_class, gguf_rope, qkv_bias: false, qk_norm: false, sliding_window, gemma: false }
}

impl Architecture {
    pub fn family(self) -> &'static Family {
        FAMILIES.iter().find(|f| f.arch == self).expect("every architecture has a row")
    }

    pub fn name(self) -> &'static str {
        self.family().name
    }

    /// From the `.autark` / GGUF name.
    pub fn from_name(name: &str) -> Option<Architecture> {
        FAMILIES.iter().find(|f| f.name == name).map(|f| f.arch)
    }

    /// From a Hugging Face `architectures[0]` class name.
    pub fn from_hf_class(class: &str) -> Option<Architecture> {
        FAMILIES.iter().find(|f| f.hf_class == class).map(|f| f.arch)
    }

    /// Every family, in `FAMILIES` order.
    pub fn all() -> impl Iterator<Item = Architecture> {
        FAMILIES.iter().map(|f| f.arch)
    }

    /// "llama, mistral, …": the list every "supported architectures" message prints.
    pub fn supported_names() -> String {
        FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
    }

    /// "LlamaForCausalLM, …".
    pub fn supported_hf_classes() -> String {
        FAMILIES.iter().map(|f| f.hf_class).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Gemma 3's q·k scale in GGUF files, which carry no `query_pre_attn_scalar`: llama.cpp scales
/// by 1/√(d_model / n_heads) for the 27B model (62 layers, the one Gemma 3 whose
/// `query_pre_attn_scalar` is not `head_dim`) and by 1/√head_dim otherwise. A file's own
/// `gemma3.attention.scale` takes precedence over this rule (see the GGUF importer).
pub fn gemma3_gguf_attention_scale(n_layers: usize, d_model: usize, n_heads: usize) -> Option<f32> {
    (n_layers == 62).then(|| 1.0 / ((d_model / n_heads) as f32).sqrt())
}

/// What a tensor is for; with a layer number, this names it (docs/FORMAT.md, "Tensor names").
/// Per-layer roles come last, in `Role::LAYER` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    TokenEmbd,
    OutputNorm,
    /// The output head (absent when tied to the embedding).
    Output,
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Bq,
    Bk,
    Bv,
    QNorm,
    KNorm,
    Wo,
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
    PostFfnNorm,
}

impl Role {
    /// Roles of a layer's tensors, in file order.
    pub const LAYER: [Role; 16] = [
        Role::AttnNorm,
        Role::Wq,
        Role::Wk,
        Role::Wv,
        Role::Bq,
        Role::Bk,
        Role::Bv,
        Role::QNorm,
        Role::KNorm,
        Role::Wo,
        Role::PostAttnNorm,
        Role::FfnNorm,
        Role::Gate,
        Role::Up,
        Role::Down,
        Role::PostFfnNorm,
    ];

    /// Position in `LAYER`, for per-layer roles (declared in that order).
    pub fn layer_index(self) -> Option<usize> {
        (self as usize).checked_sub(Role::AttnNorm as usize)
    }

    /// The name without the `blk.{l}.` prefix.
    pub fn suffix(self) -> &'static str {
        match self {
            Role::TokenEmbd => "token_embd.weight",
            Role::OutputNorm => "output_norm.weight",
            Role::Output => "output.weight",
            Role::AttnNorm => "attn_norm.weight",
            Role::Wq => "attn_q.weight",
            Role::Wk => "attn_k.weight",
            Role::Wv => "attn_v.weight",
            Role::Bq => "attn_q.bias",
            Role::Bk => "attn_k.bias",
            Role::Bv => "attn_v.bias",
            Role::QNorm => "attn_q_norm.weight",
            Role::KNorm => "attn_k_norm.weight",
            Role::Wo => "attn_output.weight",
            Role::PostAttnNorm => "post_attention_norm.weight",
            Role::FfnNorm => "ffn_norm.weight",
            Role::Gate => "ffn_gate.weight",
            Role::Up => "ffn_up.weight",
            Role::Down => "ffn_down.weight",
            Role::PostFfnNorm => "post_ffw_norm.weight",
        }
    }

    /// Matrices may have any stored type; vectors (norms, biases) are f32.
    pub fn is_matrix(self) -> bool {
        matches!(self, Role::TokenEmbd | Role::Output | Role::Wq | Role::Wk | Role::Wv | Role::Wo)
            || matches!(self, Role::Gate | Role::Up | Role::Down)
    }

    /// The shape of this role's tensor under `c`, or `None` if `c` has no such tensor.
    pub fn shape(self, c: &ModelConfig) -> Option<Vec<usize>> {
        let (d, f, v) = (c.d_model, c.ffn_dim, c.vocab_size);
        let (q, kv) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let present = match self {
            Role::Output => !c.tied_embeddings,
            Role::Bq | Role::Bk | Role::Bv => c.attn_qkv_bias,
            Role::QNorm | Role::KNorm => c.attn_qk_norm,
            Role::PostAttnNorm | Role::PostFfnNorm => c.post_norms,
            _ => true,
        };
        let shape = match self {
            Role::TokenEmbd | Role::Output => vec![v, d],
            Role::OutputNorm | Role::AttnNorm | Role::FfnNorm | Role::PostAttnNorm | Role::PostFfnNorm => vec![d],
            Role::Wq => vec![q, d],
            Role::Wk | Role::Wv => vec![kv, d],
            Role::Bq => vec![q],
            Role::Bk | Role::Bv => vec![kv],
            Role::QNorm | Role::KNorm => vec![c.head_dim],
            Role::Wo => vec![d, q],
            Role::Gate | Role::Up => vec![f, d],
            Role::Down => vec![d, f],
        };
        present.then_some(shape)
    }
}

/// A tensor an `.autark` file of some configuration holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    /// The layer, for per-layer tensors.
    pub layer: Option<usize>,
}

/// Every tensor an `.autark` file of configuration `c` holds, in file order: the quantizer
/// writes exactly these and the runtime loads exactly these.
pub fn expected_tensors(c: &ModelConfig) -> Vec<ExpectedTensor> {
    let one = |role: Role, layer: Option<usize>| {
        let shape = role.shape(c)?;
        let name = match layer {
            Some(l) => format!("blk.{l}.{}", role.suffix()),
            None => role.suffix().to_string(),
        };
        Some(ExpectedTensor { name, shape, role, layer })
    };
    let mut v: Vec<ExpectedTensor> = one(Role::TokenEmbd, None).into_iter().collect();
    for l in 0..c.n_layers {
        v.extend(Role::LAYER.iter().filter_map(|&r| one(r, Some(l))));
    }
    v.extend([Role::OutputNorm, Role::Output].iter().filter_map(|&r| one(r, None)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_one_row_and_round_trips_its_names() {
        let all = [
            Architecture::Llama,
            Architecture::Mistral,
            Architecture::Qwen2,
            Architecture::Qwen3,
            Architecture::Phi3,
            Architecture::Gemma3,
        ];
        assert_eq!(FAMILIES.len(), all.len());
        for a in all {
            assert_eq!(FAMILIES.iter().filter(|f| f.arch == a).count(), 1, "{a}");
            assert_eq!(Architecture::from_name(a.name()), Some(a));
            assert_eq!(Architecture::from_hf_class(a.family().hf_class), Some(a));
            assert!(Architecture::supported_names().contains(a.name()));
        }
        assert_eq!(Architecture::from_name("gpt2"), None);
    }

    #[test]
    fn layer_roles_are_indexed_in_file_order() {
        for (i, r) in Role::LAYER.iter().enumerate() {
            assert_eq!(r.layer_index(), Some(i), "{r:?}");
        }
        assert_eq!(Role::TokenEmbd.layer_index(), None);
        assert_eq!(Role::Output.layer_index(), None);
    }
}
