//! Recipes: which type each tensor gets.
//!
//! Defaults: 1-D tensors (norms, biases) stay f32; `token_embd.weight` and `output.weight` get
//! q8_0 when the linear type is a 4/8-bit type (they are the most sensitive and, for the
//! embedding, read one row per token); every other matrix gets the recipe's type.
//! `--tensor-type PATTERN=TYPE` overrides (glob with `*`, the last matching rule wins).
//! A matrix whose rows are not a whole number of blocks falls back to f16, and says so.

use std::collections::HashMap;
use std::sync::Arc;

use autark_kernels::DType;

use crate::error::{QuantizeError, Result};

/// How 4-bit block scales are chosen (q8_0 is always round-to-nearest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Search per block for the scale (and minimum) with the smallest weighted error
    /// (`crate::search`).
    #[default]
    Search,
    /// Round to nearest from the block's extreme value: ggml's reference quantizers, bit for bit.
    Rtn,
}

/// Named presets: a base type plus rules that give the most sensitive tensors more bits.
pub const PRESETS: &[(&str, DType)] =
    &[("q4_mixed", DType::Q4_0), ("q4_1_mixed", DType::Q4_1), ("q4_k_m", DType::Q4K), ("q5_k_m", DType::Q5K)];

/// The types a tensor can be written in ("q4_0, q4_1, …"), from the kernels' type table.
pub fn type_names() -> String {
    DType::ALL.iter().filter(|d| d.is_native()).map(|d| d.name()).collect::<Vec<_>>().join(", ")
}

/// Everything `--type` accepts: the types, the presets and `keep`.
pub fn recipe_names() -> String {
    let presets = PRESETS.iter().map(|(n, _)| *n);
    format!("{}, {}, keep", type_names(), presets.collect::<Vec<_>>().join(", "))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub default: DType,
    pub overrides: Vec<(String, DType)>,
    pub method: Method,
    /// Preset whose layer rules are added by `for_layers`.
    pub preset: Option<&'static str>,
    /// Mean squared input activation per column of each linear weight, by tensor name, from
    /// calibration (`autark_runtime::imatrix`); weights the scale search (`Method::Search`).
    pub importance: Option<Arc<HashMap<String, Vec<f32>>>>,
    /// What the importance was collected on, for the provenance (e.g. "calib.txt, 4096 tokens").
    pub calibration: Option<String>,
    /// `--type keep`: every tensor keeps its source type when the runtime computes with it (GGUF
    /// K-quants included, byte for byte); bf16 becomes f32. Overrides still apply.
    pub keep_source: bool,
    /// Write `q4_0`, `q4_1` and `q8_0` matrices whose row count is a multiple of 16 in the
    /// 16-row interleaved layout (docs/FORMAT.md "Layouts"), which the kernels read fastest;
    /// `false` keeps GGUF's row-major block order.
    pub interleave: bool,
    /// Run the conformance probe with the scalar kernels and store its record in the file
    /// (docs/NUMERICS.md, "Conformance record").
    pub conformance: bool,
    /// Threads that quantize a tensor's rows and run the conformance probe (0: every core).
    /// The file's bytes do not depend on it (it is not part of the recorded recipe).
    pub threads: usize,
}

impl Recipe {
    pub fn new(default: DType) -> Result<Recipe> {
        if !default.is_native() {
            return Err(QuantizeError::UnknownType { name: default.name().into(), expected: recipe_names() });
        }
        Ok(Recipe {
            default,
            overrides: Vec::new(),
            method: Method::default(),
            preset: None,
            importance: None,
            calibration: None,
            keep_source: false,
            interleave: true,
            conformance: true,
            threads: 0,
        })
    }

    /// A type name (`q4_0`, `f16`, …), a preset name (`q4_mixed`, `q4_1_mixed`) or `keep`.
    pub fn named(name: &str) -> Result<Recipe> {
        if name == "keep" {
            let mut r = Recipe::new(DType::F32)?;
            r.keep_source = true;
            return Ok(r);
        }
        if let Some(&(preset, base)) = PRESETS.iter().find(|(n, _)| *n == name) {
            let mut r = Recipe::new(base)?;
            r.preset = Some(preset);
            return Ok(r);
        }
        let dtype: DType =
            name.parse().map_err(|_| QuantizeError::UnknownType { name: name.into(), expected: recipe_names() })?;
        Recipe::new(dtype)
    }

    /// The recipe for a model of `n_layers` layers (`tied`: the embedding is the output head): a
    /// preset's rules come first, so that `--tensor-type` overrides still win.
    /// - `q4_mixed`, `q4_1_mixed` keep at q8_0 the attention value projections of every layer and
    ///   the FFN down projections of the first and last eighth of the layers (at least one each) —
    ///   the tensors whose quantization error costs most — on top of the embedding and output head
    ///   (already q8_0).
    /// - `q4_k_m` and `q5_k_m` follow llama.cpp's `Q4_K_M` and `Q5_K_M`: q4_k (q5_k), with q6_k
    ///   for the output head (the embedding when tied) and for the attention values and FFN down
    ///   projections of the layers `use_more_bits` picks (the first and last eighth and every
    ///   third between). A matrix whose width is not a multiple of 256 falls back as llama.cpp's
    ///   does: q4_k → q5_0, q5_k → q5_1, q6_k → q8_0 (`type_for`). (`--type q6_k` is llama.cpp's
    ///   `Q6_K`: q6_k everywhere.)
    pub fn for_model(&self, n_layers: usize, tied: bool) -> Recipe {
        let mut r = self.clone();
        if matches!(self.preset, Some("q4_k_m" | "q5_k_m")) {
            let head = if tied { "token_embd.weight" } else { "output.weight" };
            let mut rules = vec![(head.to_string(), DType::Q6K)];
            for l in (0..n_layers).filter(|&l| use_more_bits(l, n_layers)) {
                rules.push((format!("blk.{l}.attn_v.weight"), DType::Q6K));
                rules.push((format!("blk.{l}.ffn_down.weight"), DType::Q6K));
            }
            rules.extend(r.overrides);
            r.overrides = rules;
        } else if self.preset.is_some() {
            let edge = n_layers.div_ceil(8).max(1);
            let mut rules = vec![("blk.*.attn_v.weight".to_string(), DType::Q8_0)];
            for l in (0..edge).chain(n_layers.saturating_sub(edge)..n_layers) {
                rules.push((format!("blk.{l}.ffn_down.weight"), DType::Q8_0));
            }
            rules.dedup();
            rules.extend(r.overrides);
            r.overrides = rules;
        }
        r
    }

    /// Adds a `PATTERN=TYPE` rule.
    pub fn add_override(&mut self, rule: &str) -> Result<()> {
        let (pat, ty) = rule
            .split_once('=')
            .ok_or_else(|| QuantizeError::BadOverride { rule: rule.into(), types: type_names() })?;
        let dtype: DType =
            ty.trim().parse().map_err(|_| QuantizeError::BadOverride { rule: rule.into(), types: type_names() })?;
        if !dtype.is_native() || pat.trim().is_empty() {
            return Err(QuantizeError::BadOverride { rule: rule.into(), types: type_names() });
        }
        self.overrides.push((pat.trim().to_string(), dtype));
        Ok(())
    }

    /// The type for a tensor, and a note when a fallback was taken.
    pub fn type_for(&self, name: &str, shape: &[usize], source: DType) -> (DType, Option<String>) {
        if shape.len() < 2 {
            return (DType::F32, None);
        }
        let mut t = match name {
            _ if self.keep_source => {
                if source.is_native() {
                    source
                } else {
                    DType::F32
                }
            }
            "token_embd.weight" | "output.weight"
                if matches!(self.default, DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1) =>
            {
                DType::Q8_0
            }
            _ => self.default,
        };
        for (pat, d) in &self.overrides {
            if glob(pat, name) {
                t = *d;
            }
        }
        let cols = shape[shape.len() - 1];
        if !cols.is_multiple_of(t.block_len()) {
            // llama.cpp's fallbacks for K-quants; anything else becomes f16.
            let fallback = match t {
                DType::Q4K if cols.is_multiple_of(DType::Q5_0.block_len()) => DType::Q5_0,
                DType::Q5K if cols.is_multiple_of(DType::Q5_1.block_len()) => DType::Q5_1,
                DType::Q6K if cols.is_multiple_of(DType::Q8_0.block_len()) => DType::Q8_0,
                _ => DType::F16,
            };
            let note = format!(
                "{name}: {cols} columns are not a multiple of {}; stored as {fallback} instead of {t}",
                t.block_len()
            );
            return (fallback, Some(note));
        }
        (t, None)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "preset": if self.keep_source { Some("keep") } else { self.preset },
            "method": match self.method { Method::Search => "search", Method::Rtn => "rtn" },
            "calibration": self.calibration,
            "default": self.default.name(),
            "overrides": self.overrides.iter().map(|(p, d)| format!("{p}={d}")).collect::<Vec<_>>(),
            "norms": "f32",
            "layout": if self.interleave { "rows16" } else { "rows" },
        })
    }
}

/// llama.cpp's choice of layers that get more bits in its `_M` recipes.
fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    let edge = n_layers / 8;
    layer < edge || layer >= 7 * n_layers / 8 || (layer - edge) % 3 == 2
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pat: &str, s: &str) -> bool {
    let p = pat.as_bytes();
    let s = s.as_bytes();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("blk.*.ffn_down.weight", "blk.12.ffn_down.weight"));
        assert!(glob("*", "x"));
        assert!(!glob("blk.*.ffn_down.weight", "blk.1.ffn_up.weight"));
        assert!(glob("output.weight", "output.weight"));
        assert!(!glob("output", "output.weight"));
    }

    #[test]
    fn defaults_and_overrides() {
        let mut r = Recipe::new(DType::Q4_0).unwrap();
        assert_eq!(r.type_for("blk.0.attn_norm.weight", &[64], DType::F32).0, DType::F32);
        assert_eq!(r.type_for("token_embd.weight", &[8, 64], DType::F32).0, DType::Q8_0);
        assert_eq!(r.type_for("blk.0.attn_q.weight", &[64, 64], DType::F32).0, DType::Q4_0);
        r.add_override("blk.*.attn_q.weight=q8_0").unwrap();
        assert_eq!(r.type_for("blk.0.attn_q.weight", &[64, 64], DType::F32).0, DType::Q8_0);
        let (t, note) = r.type_for("blk.0.attn_k.weight", &[64, 48], DType::F32);
        assert_eq!(t, DType::F16);
        assert!(note.is_some());
        assert!(r.add_override("nonsense").is_err());
        assert!(r.add_override("x=bf16").is_err());
        assert_eq!(Recipe::new(DType::F16).unwrap().type_for("token_embd.weight", &[8, 64], DType::F32).0, DType::F16);
    }

    #[test]
    fn mixed_presets_keep_sensitive_tensors_at_q8_0() {
        let mut r = Recipe::named("q4_mixed").unwrap();
        r.add_override("blk.0.ffn_down.weight=q4_1").unwrap();
        let r = r.for_model(30, false);
        let t = |name: &str| r.type_for(name, &[64, 64], DType::F32).0;
        assert_eq!(t("blk.17.attn_v.weight"), DType::Q8_0);
        assert_eq!(t("blk.17.attn_q.weight"), DType::Q4_0);
        // edges: ceil(30 / 8) = 4 layers at each end
        for l in [1, 3, 26, 29] {
            assert_eq!(t(&format!("blk.{l}.ffn_down.weight")), DType::Q8_0, "layer {l}");
        }
        for l in [4, 15, 25] {
            assert_eq!(t(&format!("blk.{l}.ffn_down.weight")), DType::Q4_0, "layer {l}");
        }
        // a user override still wins over the preset
        assert_eq!(t("blk.0.ffn_down.weight"), DType::Q4_1);
        assert_eq!(t("output.weight"), DType::Q8_0);
        let one = Recipe::named("q4_1_mixed").unwrap().for_model(1, false);
        assert_eq!(one.type_for("blk.0.ffn_down.weight", &[64, 64], DType::F32).0, DType::Q8_0);
        assert_eq!(one.type_for("blk.0.ffn_up.weight", &[64, 64], DType::F32).0, DType::Q4_1);
        assert_eq!(one.to_json()["preset"], "q4_1_mixed");
        let unknown = Recipe::named("q3_mixed").unwrap_err().to_string();
        assert!(
            unknown.contains("\"q3_mixed\"") && unknown.contains("q6_k") && unknown.contains("q5_k_m"),
            "{unknown}"
        );
        assert!(unknown.contains("keep"), "{unknown}");
        // a plain type has no layer rules
        assert_eq!(Recipe::named("q4_0").unwrap().for_model(30, false).overrides, vec![]);
    }

    #[test]
    fn q4_k_m_follows_llama_cpp() {
        let r = Recipe::named("q4_k_m").unwrap().for_model(30, true);
        let t = |name: &str, cols: usize| r.type_for(name, &[64, cols], DType::F32);
        // use_more_bits(30): layers 0-2, 26-29 and every third from 3 (5, 8, 11, ...)
        for l in [0, 2, 5, 8, 26, 29] {
            assert_eq!(t(&format!("blk.{l}.ffn_down.weight"), 1536).0, DType::Q6K, "layer {l}");
        }
        for l in [3, 4, 6, 25] {
            assert_eq!(t(&format!("blk.{l}.ffn_down.weight"), 1536).0, DType::Q4K, "layer {l}");
        }
        // tied: the output head
        assert_eq!(t("token_embd.weight", 512).0, DType::Q6K);
        // widths that are not a multiple of 256 fall back as llama.cpp's do, and say so
        let (d, note) = t("blk.4.attn_q.weight", 576);
        assert_eq!(d, DType::Q5_0);
        assert!(note.unwrap().contains("q5_0 instead of q4_k"));
        assert_eq!(t("blk.0.attn_v.weight", 576).0, DType::Q8_0);
        assert_eq!(t("blk.1.attn_v.weight", 48).0, DType::F16);
        let untied = Recipe::named("q4_k_m").unwrap().for_model(30, false);
        assert_eq!(untied.type_for("output.weight", &[64, 512], DType::F32).0, DType::Q6K);
        assert_eq!(untied.type_for("token_embd.weight", &[64, 512], DType::F32).0, DType::Q4K);
    }

    #[test]
    fn q5_k_m_and_q6_k_follow_llama_cpp() {
        let r = Recipe::named("q5_k_m").unwrap().for_model(30, true);
        let t = |name: &str, cols: usize| r.type_for(name, &[64, cols], DType::F32);
        assert_eq!(t("blk.5.ffn_down.weight", 1536).0, DType::Q6K);
        assert_eq!(t("blk.4.ffn_down.weight", 1536).0, DType::Q5K);
        assert_eq!(t("blk.29.attn_v.weight", 512).0, DType::Q6K);
        assert_eq!(t("blk.4.attn_v.weight", 512).0, DType::Q5K);
        assert_eq!(t("token_embd.weight", 512).0, DType::Q6K);
        let (d, note) = t("blk.4.attn_q.weight", 576);
        assert_eq!(d, DType::Q5_1);
        assert!(note.unwrap().contains("q5_1 instead of q5_k"));
        let q6 = Recipe::named("q6_k").unwrap().for_model(30, true);
        assert_eq!(q6.type_for("blk.4.ffn_down.weight", &[64, 1536], DType::F32).0, DType::Q6K);
        assert_eq!(q6.type_for("token_embd.weight", &[64, 576], DType::F32).0, DType::Q8_0);
    }
}
