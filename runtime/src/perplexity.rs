//! Perplexity and KL divergence, computed the way llama.cpp's `llama-perplexity` computes them so
//! that figures compare: the text is tokenized once (with BOS when the model adds one), cut into
//! windows of `n_ctx` tokens, each window is evaluated from an empty context with its first token
//! replaced by BOS (when the model uses one), and only the second half of each window is scored —
//! the logits at positions `n_ctx/2 ..= n_ctx-2` predicting the tokens after them — so that every
//! scored token sees at least half a window of context.

use autark_kernels::ops::argmax;

use crate::error::{Result, RuntimeError};
use crate::session::Session;
use crate::tokenizer::Tokenizer;

/// A text cut into evaluation windows.
pub struct Windows {
    tokens: Vec<u32>,
    n_ctx: usize,
    n_chunks: usize,
    bos: Option<u32>,
}

impl Windows {
    /// Tokenizes `text` and cuts it into `n_ctx`-token windows (at most `max_chunks` of them).
    pub fn new(tok: &Tokenizer, text: &str, n_ctx: usize, max_chunks: Option<usize>) -> Result<Windows> {
        if n_ctx < 4 {
            return Err(RuntimeError::InvalidArgument { name: "n_ctx", what: format!("{n_ctx} is below 4") });
        }
        let tokens = tok.encode(text, true)?;
        // BOS replaces each window's first token when the tokenizer adds one (as llama.cpp does).
        let bos = match (tok.bos_id(), tokens.first()) {
            (Some(b), Some(&t)) if t == b && tok.encode(text, false)?.len() < tokens.len() => Some(b),
            _ => None,
        };
        let available = tokens.len() / n_ctx;
        if available == 0 {
            return Err(RuntimeError::InvalidArgument {
                name: "text",
                what: format!("{} tokens, fewer than one window of {n_ctx}", tokens.len()),
            });
        }
        let n_chunks = max_chunks.map_or(available, |m| m.clamp(1, available));
        Ok(Windows { tokens, n_ctx, n_chunks, bos })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn n_chunks(&self) -> usize {
        self.n_chunks
    }

    /// Tokens of the whole text.
    pub fn n_text_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// First scored position of a window.
    pub fn first_scored(&self) -> usize {
        self.n_ctx / 2
    }

    /// Tokens scored per window.
    pub fn n_scored(&self) -> usize {
        self.n_ctx - 1 - self.first_scored()
    }

    /// Window `i` as it is evaluated (first token replaced by BOS where the model uses one).
    pub fn window(&self, i: usize) -> Vec<u32> {
        let mut w = self.tokens[i * self.n_ctx..(i + 1) * self.n_ctx].to_vec();
        if let Some(b) = self.bos {
            w[0] = b;
        }
        w
    }

    /// Evaluates window `i` from an empty context and calls `score(j, logprobs, target)` for each
    /// scored position `j` (0-based among the scored ones) with the natural-log probabilities of
    /// the next token and the id of the token that actually follows. `logits` is scratch of
    /// `n_ctx × vocab` values.
    pub fn evaluate(
        &self,
        session: &mut Session,
        i: usize,
        logits: &mut Vec<f32>,
        mut score: impl FnMut(usize, &[f32], u32) -> Result<()>,
    ) -> Result<()> {
        let vocab = session.model().config().vocab_size;
        let window = self.window(i);
        logits.resize(self.n_ctx * vocab, 0.0);
        session.reset();
        session.eval_all_logits(&window, logits)?;
        let mut logprobs = vec![0f32; vocab];
        for (j, pos) in (self.first_scored()..self.n_ctx - 1).enumerate() {
            log_softmax(&logits[pos * vocab..(pos + 1) * vocab], &mut logprobs);
            score(j, &logprobs, window[pos + 1])?;
        }
        Ok(())
    }
}

/// Natural-log softmax of one row of logits (accumulated in f64).
pub fn log_softmax(logits: &[f32], out: &mut [f32]) {
    let log_z = crate::sampler::log_normalizer(logits);
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (l as f64 - log_z) as f32;
    }
}

/// Running negative log-likelihood, with llama-perplexity's estimate of the standard error of
/// the perplexity (the standard error of the mean NLL, scaled by the perplexity).
#[derive(Default, Clone, Debug)]
pub struct NllStats {
    sum: f64,
    sum2: f64,
    count: usize,
}

impl NllStats {
    pub fn push(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn mean_nll(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    pub fn ppl(&self) -> f64 {
        self.mean_nll().exp()
    }

    pub fn ppl_stderr(&self) -> f64 {
        if self.count < 2 {
            return f64::NAN;
        }
        let n = self.count as f64;
        let var = self.sum2 / n - self.mean_nll().powi(2);
        if var <= 0.0 {
            return 0.0;
        }
        (var / (n - 1.0)).sqrt() * self.ppl()
    }
}

/// KL divergence of a model's next-token distributions from a reference model's, per token.
#[derive(Default, Clone, Debug)]
pub struct KlStats {
    kld: Vec<f64>,
    top1_same: usize,
}

impl KlStats {
    /// Adds one token: `base` and `new` are natural-log probabilities over the same vocabulary.
    pub fn push(&mut self, base: &[f32], new: &[f32]) {
        self.kld.push(kl_divergence(base, new));
        self.top1_same += usize::from(argmax(base) == argmax(new));
    }

    pub fn count(&self) -> usize {
        self.kld.len()
    }

    pub fn mean(&self) -> f64 {
        self.kld.iter().sum::<f64>() / self.kld.len().max(1) as f64
    }

    /// Standard error of the mean.
    pub fn stderr(&self) -> f64 {
        let n = self.kld.len() as f64;
        if n < 2.0 {
            return f64::NAN;
        }
        let m = self.mean();
        (self.kld.iter().map(|k| (k - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
    }

    /// The `q`-quantile (0..=1) by the nearest-rank method.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.kld.is_empty() {
            return f64::NAN;
        }
        let mut v = self.kld.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    /// Fraction of tokens whose most likely next token is the same under both models.
    pub fn top1_agreement(&self) -> f64 {
        self.top1_same as f64 / self.kld.len().max(1) as f64
    }
}

/// KL(base ‖ new) = Σ p_base (log p_base − log p_new), in nats, from log-probabilities.
pub fn kl_divergence(base: &[f32], new: &[f32]) -> f64 {
    base.iter()
        .zip(new)
        .map(|(&b, &n)| {
            let p = (b as f64).exp();
            if p == 0.0 {
                0.0
            } else {
                p * (b as f64 - n as f64)
            }
        })
        .sum::<f64>()
        .max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises() {
        let logits = [1.0f32, 2.0, 3.0, -50.0, 1000.0];
        let mut out = [0f32; 5];
        log_softmax(&logits, &mut out);
        let total: f64 = out.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((out[4]).abs() < 1e-6 && out[0] < -990.0);
    }

    #[test]
    fn nll_stats_match_the_closed_form() {
        let mut s = NllStats::default();
        let v = [1.0, 2.0, 3.0, 4.0];
        v.iter().for_each(|&x| s.push(x));
        assert!((s.ppl() - 2.5f64.exp()).abs() < 1e-12);
        // sample sd of 1..4 is sqrt(5/3); stderr of the mean = sd / sqrt(4)
        let want = (5.0f64 / 3.0).sqrt() / 2.0 * 2.5f64.exp();
        assert!((s.ppl_stderr() - want).abs() < 1e-9, "{} vs {want}", s.ppl_stderr());
    }

    #[test]
    fn kl_of_identical_distributions_is_zero_and_positive_otherwise() {
        let mut a = [0f32; 3];
        let mut b = [0f32; 3];
        log_softmax(&[0.1, 0.5, 2.0], &mut a);
        log_softmax(&[0.3, 0.1, 1.0], &mut b);
        assert!(kl_divergence(&a, &a).abs() < 1e-9);
        let p: Vec<f64> = a.iter().map(|&x| (x as f64).exp()).collect();
        let q: Vec<f64> = b.iter().map(|&x| (x as f64).exp()).collect();
        let want: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        assert!((kl_divergence(&a, &b) - want).abs() < 1e-6);
        let mut k = KlStats::default();
        k.push(&a, &a);
        k.push(&a, &b);
        assert_eq!(k.top1_agreement(), 1.0);
        assert!((k.quantile(0.99) - want).abs() < 1e-6);
        assert!((k.quantile(0.5)).abs() < 1e-9);
    }
}
