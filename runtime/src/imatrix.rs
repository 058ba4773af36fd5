//! Activation statistics for importance-weighted quantization: the mean square of every input
//! column of every linear layer, collected while a session evaluates calibration text
//! (`Session::collect_activation_stats`). A weight column that meets large activations matters
//! more to the layer's output; the quantizer weights its error accordingly (llama.cpp calls the
//! same statistics an importance matrix).

use std::collections::HashMap;

use autark_format::Role;

/// Where a linear layer reads its input in the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Site {
    /// The attention norm's output: read by attn_q, attn_k, attn_v.
    AttnIn,
    /// The attention heads' output: read by attn_output.
    AttnOut,
    /// The FFN norm's output: read by ffn_gate, ffn_up.
    FfnIn,
    /// silu(gate) · up: read by ffn_down.
    FfnDown,
    /// The final norm's output: read by the output head.
    Output,
}

impl Site {
    /// The weights that read this input.
    fn roles(self) -> &'static [Role] {
        match self {
            Site::AttnIn => &[Role::Wq, Role::Wk, Role::Wv],
            Site::AttnOut => &[Role::Wo],
            Site::FfnIn => &[Role::Gate, Role::Up],
            Site::FfnDown => &[Role::Down],
            Site::Output => &[Role::Output],
        }
    }
}

#[derive(Default, Debug)]
struct Accumulator {
    sum_sq: Vec<f64>,
    rows: u64,
}

/// Per-column sums of squared activations, by layer and site.
#[derive(Default, Debug)]
pub struct ActivationStats {
    acc: HashMap<(usize, Site), Accumulator>,
    tokens: u64,
}

impl ActivationStats {
    /// Adds `x` (rows of `cols` values) seen at `site` of `layer` (`usize::MAX` for the head).
    pub(crate) fn record(&mut self, layer: usize, site: Site, x: &[f32], cols: usize) {
        let a = self.acc.entry((layer, site)).or_default();
        if a.sum_sq.len() != cols {
            a.sum_sq = vec![0.0; cols];
            a.rows = 0;
        }
        for row in x.chunks_exact(cols) {
            a.sum_sq.iter_mut().zip(row).for_each(|(s, &v)| *s += (v as f64) * (v as f64));
            a.rows += 1;
        }
        if site == Site::AttnIn && layer == 0 {
            self.tokens += (x.len() / cols) as u64;
        }
    }

    /// Tokens seen.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Mean squared activation of each input column, keyed by weight tensor name
    /// (`blk.N.attn_q.weight`, …, `output.weight`).
    pub fn importance(&self) -> HashMap<String, Vec<f32>> {
        let mut out = HashMap::new();
        for (&(layer, site), a) in &self.acc {
            if a.rows == 0 {
                continue;
            }
            let mean: Vec<f32> = a.sum_sq.iter().map(|s| (s / a.rows as f64) as f32).collect();
            for r in site.roles() {
                let name =
                    if site == Site::Output { r.suffix().to_string() } else { format!("blk.{layer}.{}", r.suffix()) };
                out.insert(name, mean.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_is_the_mean_square_per_column() {
        let mut s = ActivationStats::default();
        s.record(0, Site::AttnIn, &[1.0, 2.0, 3.0, 4.0], 2);
        s.record(0, Site::AttnIn, &[-1.0, 0.0], 2);
        s.record(usize::MAX, Site::Output, &[2.0, 2.0], 2);
        let imp = s.importance();
        assert_eq!(s.tokens(), 3);
        assert_eq!(imp["blk.0.attn_q.weight"], vec![(1.0 + 9.0 + 1.0) / 3.0, (4.0 + 16.0) / 3.0]);
        assert_eq!(imp["blk.0.attn_v.weight"], imp["blk.0.attn_k.weight"]);
        assert_eq!(imp["output.weight"], vec![4.0, 4.0]);
        assert!(!imp.contains_key("blk.0.ffn_down.weight"));
    }
}
