//! The forward pass, read top to bottom like llama2.c's `run.c`: embed → [RMSNorm → QKV → RoPE
//! → attention → O → RMSNorm → gated FFN] × L → norm → logits, for every family the runtime
//! runs (their differences are the optional tensors and configuration fields of
//! `autark_format::arch`). Every operation goes through a `Backend` (`cpu.rs`; CUDA next); this
//! file knows the model and nothing of where or how the numbers are computed.

use autark_format::{ModelConfig, Role, RopeScaling};

use crate::backend::{Backend, Buf, Seg};
use crate::error::Result;
use crate::imatrix::{ActivationStats, Site};
use crate::model::Model;

/// One batch of tokens: the rows of `segs` in order, each segment a sequence's tokens at its
/// positions (one segment for a session's own batch; several for `Session::eval_together`). With
/// `all`, `logits` receives every token's logits (`n × vocab`), otherwise each segment's last
/// token's (`segs.len() × vocab`).
pub(crate) fn forward<B: Backend>(
    m: &Model,
    b: &mut B,
    batch: &[u32],
    segs: &[Seg],
    mut stats: Option<&mut ActivationStats>,
    all: bool,
    logits: &mut [f32],
) -> Result<()> {
    use Buf::*;
    let c = m.config();
    let n = batch.len();
    debug_assert_eq!(segs.iter().map(|s| s.n).sum::<usize>(), n);
    let scale = c.attention_scale.unwrap_or(1.0 / (c.head_dim as f32).sqrt());
    // The calibration hook: statistics of a linear layer's input, when collecting them.
    let mut observe = |b: &mut B, l: usize, site: Site, buf: Buf, n: usize| {
        if let Some(s) = stats.as_deref_mut() {
            let x = b.read(buf, n);
            s.record(l, site, x, x.len() / n);
        }
    };

    // x = embed_tokens(tokens)   (× √d_model for Gemma)
    b.embed(m.token_embd, batch, c.embedding_scale)?;
    for (l, layer) in m.layers.iter().enumerate() {
        // Sliding-window layers see the last `sliding_window` positions (and may have their own
        // RoPE base); the others attend to everything.
        let sliding = c.is_sliding(l);
        let window = if sliding { c.sliding_window.unwrap_or(usize::MAX) } else { usize::MAX };

        // ---- attention block ----
        // xb = input_layernorm(x)
        b.rmsnorm(Xb, X, layer.at(Role::AttnNorm), 0, n);
        observe(b, l, Site::AttnIn, Xb, n);
        // q, k, v = q_proj(xb), k_proj(xb), v_proj(xb)   (+ biases: Qwen2)
        b.matmul(Xb, n, &[(layer.at(Role::Wq), Q), (layer.at(Role::Wk), K), (layer.at(Role::Wv), V)])?;
        for (role, buf) in [(Role::Bq, Q), (Role::Bk, K), (Role::Bv, V)] {
            if let Some(bias) = layer.get(role) {
                b.add_bias(buf, bias, n);
            }
        }
        // q, k = q_norm(q), k_norm(k) per head   (Qwen3, Gemma 3)
        for (role, buf) in [(Role::QNorm, Q), (Role::KNorm, K)] {
            if let Some(w) = layer.get(role) {
                b.head_norm(buf, w, n);
            }
        }
        // q, k = apply_rotary_pos_emb(q, k, cos, sin)
        b.rope(sliding, segs);
        // past_key_values.update(k, v); att_out = softmax(q·kᵀ · scale + causal mask) · v
        b.attention(l, segs, window, scale);
        observe(b, l, Site::AttnOut, AttOut, n);
        // x = x + post_attention_norm(o_proj(att_out))   (the norm: Gemma)
        b.matmul(AttOut, n, &[(layer.at(Role::Wo), Proj)])?;
        if let Some(w) = layer.get(Role::PostAttnNorm) {
            b.rmsnorm(Proj, Proj, w, 0, n);
        }
        b.add(X, Proj, n);

        // ---- feed-forward block ----
        // xb = post_attention_layernorm(x)
        b.rmsnorm(Xb, X, layer.at(Role::FfnNorm), 0, n);
        observe(b, l, Site::FfnIn, Xb, n);
        // x = x + post_feedforward_norm(down_proj(act(gate_proj(xb)) * up_proj(xb)))
        b.matmul(Xb, n, &[(layer.at(Role::Gate), Gate), (layer.at(Role::Up), Up)])?;
        b.glu(c.ffn_activation.unwrap_or_default(), n);
        observe(b, l, Site::FfnDown, Gate, n);
        b.matmul(Gate, n, &[(layer.at(Role::Down), Proj)])?;
        if let Some(w) = layer.get(Role::PostFfnNorm) {
            b.rmsnorm(Proj, Proj, w, 0, n);
        }
        b.add(X, Proj, n);
    }

    // logits = lm_head(norm(x)), for every token or for each sequence's last one
    let (first, rows) = match segs {
        _ if all => (0, n),
        [_] => (n - 1, 1),
        _ => {
            let last: Vec<usize> =
                segs.iter().scan(0, |end, s| Some(std::mem::replace(end, *end + s.n) + s.n - 1)).collect();
            b.select_rows(X, &last);
            (0, segs.len())
        }
    };
    b.rmsnorm(Xb, X, m.output_norm, first, rows);
    observe(b, usize::MAX, Site::Output, Xb, rows);
    b.output(m.output, Xb, rows, logits)
}

/// cos/sin of every position × frequency: θ_i = base^(−2i/head_dim), adjusted (when `scaled`)
/// by the model's RoPE scaling (linear: positions / factor; llama3: the piecewise rule of Llama 3.1's
/// `_compute_llama3_parameters`; or explicit per-frequency divisors).
pub(crate) fn rope_tables(c: &ModelConfig, theta: f32, scaled: bool, n_ctx: usize) -> (Vec<f32>, Vec<f32>) {
    let half = c.head_dim / 2;
    let mut inv_freq: Vec<f64> =
        (0..half).map(|i| (theta as f64).powf(-((2 * i) as f64) / c.head_dim as f64)).collect();
    match c.rope_scaling.as_ref().filter(|_| scaled) {
        Some(RopeScaling::Linear { factor }) => inv_freq.iter_mut().for_each(|f| *f /= *factor as f64),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context_length }) => {
            let (factor, lo, hi, old) =
                (*factor as f64, *low_freq_factor as f64, *high_freq_factor as f64, *original_context_length as f64);
            let low_wavelen = old / lo;
            let high_wavelen = old / hi;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - lo) / (hi - lo);
                    *f = (1.0 - smooth) * *f / factor + smooth * *f;
                }
            }
        }
        None => {}
    }
    if let Some(factors) = &c.rope_freq_factors {
        inv_freq.iter_mut().zip(factors).for_each(|(f, d)| *f /= *d as f64);
    }
    let mut cos = Vec::with_capacity(n_ctx * half);
    let mut sin = Vec::with_capacity(n_ctx * half);
    for p in 0..n_ctx {
        for f in &inv_freq {
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}
