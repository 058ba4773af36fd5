//! Text generation on a session: prompt → tokens → sampled continuation, streamed as text
//! pieces, stopping at end-of-generation tokens, stop strings, the token limit, or when the
//! callback returns `false`.

use std::time::Instant;

use crate::constraint::Constraint;
use crate::error::{Result, RuntimeError};
use crate::sampler::{Sampler, SamplerParams};
use crate::session::{Session, Suspended};

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Generation stops before any of these strings would be emitted.
    pub stop: Vec<String>,
    /// When the context is full, shift it (`Session::shift_context`, keeping the first
    /// `n_keep` tokens) and go on, instead of stopping with `StopReason::ContextFull`.
    pub context_shift: bool,
    pub n_keep: usize,
    /// The output must match this (docs/STRUCTURED.md): a token mask before every draw, and
    /// the generation ends (`StopReason::Complete`) when nothing more may follow.
    pub constraint: Option<Constraint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfGeneration,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
    /// The constraint's output is complete and nothing may follow it.
    Complete,
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
    /// Tokens dropped by context shifts.
    pub shifted_tokens: usize,
    /// A constrained generation stopped (token limit, stop string, full context, cancel) before
    /// its output was complete: the text does not match the constraint.
    pub incomplete: bool,
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
    ///
    /// A generation that stops at `max_tokens` or is cancelled stays suspended in the session:
    /// `generate_continue` (also after `save` and `load`) goes on exactly as one longer
    /// generation would have. So the last, unfinished character of a suspended generation is not
    /// emitted until it continues.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        params.sampler.validate()?; // before the prompt is evaluated
        let guide = params.constraint.as_ref().map(|c| self.model().compile_constraint(c).map(Box::new)).transpose()?;
        let t0 = Instant::now();
        let cached_before =
            self.tokens().iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1));
        self.eval_continuing(prompt)?;
        let mut stats = self.run(Suspended { guide, ..Suspended::start(&params.sampler) }, params, on_piece)?;
        stats.prompt_tokens = prompt.len();
        stats.prompt_evaluated = prompt.len() - cached_before;
        stats.prompt_seconds = t0.elapsed().as_secs_f64() - stats.generation_seconds;
        Ok(stats)
    }

    /// Goes on generating from the current context: a suspended generation (see `generate`)
    /// continues with its random stream, unfinished text and stop-string state, bit for bit as
    /// if it had never stopped; otherwise a new one starts from the last token's logits.
    /// The sampling settings of `params` apply from here on; a suspended generation keeps its
    /// constraint.
    pub fn generate_continue(
        &mut self,
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        if self.tokens().is_empty() {
            return Err(RuntimeError::EmptyInput);
        }
        let state = match self.suspended.take() {
            Some(s) => s,
            None => {
                let guide = params.constraint.as_ref().map(|c| self.model().compile_constraint(c).map(Box::new));
                Suspended { guide: guide.transpose()?, ..Suspended::start(&params.sampler) }
            }
        };
        self.run(state, params, on_piece)
    }

    /// The sampling loop, from the logits of the last token in the context.
    fn run(
        &mut self,
        state: Suspended,
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let model = std::sync::Arc::clone(self.model());
        let tok = model.tokenizer();
        let mut sampler = Sampler::with_rng_state(params.sampler, model.config().vocab_size, state.rng)?;
        let t1 = Instant::now();
        let mut detok = state.detok;
        // Text held back while it may start a stop string; its first `emitted` bytes were
        // already emitted (by the generation this one continues).
        let mut emitted = state.held_emitted.min(state.held.len());
        let mut pending = state.held;
        let mut guide = state.guide;
        let (mut generated, mut shifted) = (0, 0);
        let stop = loop {
            if self.take_cancel() {
                break StopReason::Cancelled;
            }
            if generated >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            let logits = match guide.as_deref_mut() {
                Some(g) => g.mask(self.logits())?,
                None => self.logits(),
            };
            let next = sampler.sample(logits, self.tokens());
            if tok.is_end_of_generation(next) {
                break StopReason::EndOfGeneration;
            }
            if let Some(g) = guide.as_deref_mut() {
                g.accept(next)?;
            }
            generated += 1;
            pending.push_str(&detok.push(tok, next)?);
            if let Some(at) = params.stop.iter().filter_map(|s| pending.find(s.as_str())).min() {
                if at > emitted {
                    on_piece(&pending[emitted..at]);
                }
                pending.clear();
                emitted = 0;
                break StopReason::StopString;
            }
            let hold = params.stop.iter().map(|s| longest_suffix_prefix(&pending, s)).max().unwrap_or(0);
            let emit = pending.len() - hold;
            if emit > 0 {
                let cont = emit <= emitted || on_piece(&pending[emitted..emit]);
                pending.drain(..emit);
                emitted = emitted.saturating_sub(emit);
                if !cont {
                    break StopReason::Cancelled;
                }
            }
            if guide.as_ref().is_some_and(|g| g.is_finished()) {
                break StopReason::Complete;
            }
            if self.tokens().len() >= self.n_ctx() {
                if !params.context_shift {
                    break StopReason::ContextFull;
                }
                shifted += self.shift_context(params.n_keep)?;
            }
            crate::constraint::eval_ahead(self, &[next], guide.as_deref_mut())?;
        };
        // A stop string cuts the text inside what the constraint accepted, so it never completes it.
        let incomplete = match guide.as_deref_mut() {
            None => false,
            Some(_) if stop == StopReason::StopString => true,
            Some(g) => !g.is_complete(),
        };
        match stop {
            StopReason::MaxTokens | StopReason::Cancelled => {
                // Suspended: at the token limit, what may begin a stop string is emitted (and
                // kept, to be matched when the generation continues); an unfinished character
                // waits. A cancelled generation emits nothing more.
                if stop == StopReason::MaxTokens && pending.len() > emitted {
                    on_piece(&pending[emitted..]);
                    emitted = pending.len();
                }
                let rng = sampler.rng_state();
                self.suspended = Some(Suspended { rng, detok, held: pending, held_emitted: emitted, guide });
            }
            _ => {
                pending.push_str(&detok.flush(tok)?);
                if pending.len() > emitted {
                    on_piece(&pending[emitted..]);
                }
            }
        }
        Ok(GenerationStats {
            prompt_tokens: 0,
            prompt_evaluated: 0,
            generated_tokens: generated,
            prompt_seconds: 0.0,
            generation_seconds: t1.elapsed().as_secs_f64(),
            stop,
            shifted_tokens: shifted,
            incomplete,
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
