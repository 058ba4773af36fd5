//! Text generation on a session: prompt → tokens → sampled continuation, streamed as text
//! pieces, stopping at end-of-generation tokens, stop strings, the token limit, or when the
//! callback returns `false`.

use std::time::Instant;

use crate::error::Result;
use crate::sampler::{Sampler, SamplerParams};
use crate::session::Session;
use crate::tokenizer::Detokenizer;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Generation stops before any of these strings would be emitted.
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfGeneration,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Tokens evaluated for the prompt (fewer than `prompt_tokens` when a cached prefix was
    /// re-used).
    pub prompt_evaluated: usize,
    pub generated_tokens: usize,
    pub prompt_seconds: f64,
    pub generation_seconds: f64,
    pub stop: StopReason,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_evaluated as f64 / self.prompt_seconds.max(1e-9)
    }
    pub fn generation_tps(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_seconds.max(1e-9)
    }
}

impl Session {
    /// Makes the context equal to `prompt` (re-using a cached common prefix), then samples up
    /// to `params.max_tokens` tokens. `on_piece` receives text as it becomes complete; returning
    /// `false` cancels.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let model = std::sync::Arc::clone(self.model());
        let tok = model.tokenizer();
        let mut sampler = Sampler::new(params.sampler, model.config().vocab_size)?;
        let t0 = Instant::now();
        let cached_before =
            self.tokens().iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1));
        self.eval_continuing(prompt)?;
        let prompt_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut detok = Detokenizer::new();
        let mut pending = String::new(); // text held back while it may start a stop string
        let mut generated = 0;
        let stop = loop {
            if self.take_cancel() {
                break StopReason::Cancelled;
            }
            if generated >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            let next = sampler.sample(self.logits(), self.tokens());
            if tok.is_end_of_generation(next) {
                break StopReason::EndOfGeneration;
            }
            generated += 1;
            pending.push_str(&detok.push(tok, next)?);
            if let Some(at) = params.stop.iter().filter_map(|s| pending.find(s.as_str())).min() {
                pending.truncate(at);
                if !pending.is_empty() {
                    on_piece(&pending);
                }
                pending.clear();
                break StopReason::StopString;
            }
            let hold = params.stop.iter().map(|s| longest_suffix_prefix(&pending, s)).max().unwrap_or(0);
            let emit = pending.len() - hold;
            if emit > 0 {
                let cont = on_piece(&pending[..emit]);
                pending.drain(..emit);
                if !cont {
                    break StopReason::Cancelled;
                }
            }
            if self.tokens().len() >= self.n_ctx() {
                break StopReason::ContextFull;
            }
            self.eval(&[next])?;
        };
        if stop != StopReason::StopString && stop != StopReason::Cancelled {
            pending.push_str(&detok.flush(tok)?);
            if !pending.is_empty() {
                on_piece(&pending);
            }
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            prompt_evaluated: prompt.len() - cached_before,
            generated_tokens: generated,
            prompt_seconds,
            generation_seconds: t1.elapsed().as_secs_f64(),
            stop,
        })
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on a char
/// boundary).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn suffix_prefix() {
        assert_eq!(super::longest_suffix_prefix("hello wor", "world"), 3);
        assert_eq!(super::longest_suffix_prefix("hello", "xyz"), 0);
        assert_eq!(super::longest_suffix_prefix("é", "éa"), 2);
    }
}
