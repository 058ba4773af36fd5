//! Recipes: which type each tensor gets.
//!
//! Defaults: 1-D tensors (norms, biases) stay f32; `token_embd.weight` and `output.weight` get
//! q8_0 when the linear type is a 4/8-bit type (they are the most sensitive and, for the
//! embedding, read one row per token); every other matrix gets the recipe's type.
//! `--tensor-type PATTERN=TYPE` overrides (glob with `*`, the last matching rule wins).
//! A matrix whose rows are not a whole number of blocks falls back to f16, and says so.

use autark_kernels::DType;

use crate::error::{QuantizeError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub default: DType,
    pub overrides: Vec<(String, DType)>,
}

impl Recipe {
    pub fn new(default: DType) -> Result<Recipe> {
        if !default.is_native() {
            return Err(QuantizeError::BadOverride(format!("--type {default}")));
        }
        Ok(Recipe { default, overrides: Vec::new() })
    }

    /// Adds a `PATTERN=TYPE` rule.
    pub fn add_override(&mut self, rule: &str) -> Result<()> {
        let (pat, ty) = rule.split_once('=').ok_or_else(|| QuantizeError::BadOverride(rule.into()))?;
        let dtype: DType = ty.trim().parse().map_err(|_| QuantizeError::BadOverride(rule.into()))?;
        if !dtype.is_native() || pat.trim().is_empty() {
            return Err(QuantizeError::BadOverride(rule.into()));
        }
        self.overrides.push((pat.trim().to_string(), dtype));
        Ok(())
    }

    /// The type for a tensor, and a note when a fallback was taken.
    pub fn type_for(&self, name: &str, shape: &[usize], _source: DType) -> (DType, Option<String>) {
        if shape.len() < 2 {
            return (DType::F32, None);
        }
        let mut t = match name {
            "token_embd.weight" | "output.weight" if matches!(self.default, DType::Q4_0 | DType::Q4_1) => DType::Q8_0,
            _ => self.default,
        };
        for (pat, d) in &self.overrides {
            if glob(pat, name) {
                t = *d;
            }
        }
        let cols = shape[shape.len() - 1];
        if !cols.is_multiple_of(t.block_len()) {
            let note =
                format!("{name}: {cols} columns are not a multiple of {}; stored as f16 instead of {t}", t.block_len());
            return (DType::F16, Some(note));
        }
        (t, None)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "default": self.default.name(),
            "overrides": self.overrides.iter().map(|(p, d)| format!("{p}={d}")).collect::<Vec<_>>(),
            "norms": "f32",
        })
    }
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
        assert!(r.add_override("x=q4_k").is_err());
        assert_eq!(Recipe::new(DType::F16).unwrap().type_for("token_embd.weight", &[8, 64], DType::F32).0, DType::F16);
    }
}
