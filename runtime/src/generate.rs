//! Text generation on a session: prompt → tokens → sampled continuation, streamed as text
//! pieces, stopping at end-of-generation tokens, stop strings, the token limit, or when the
//! callback returns `false`.

use std::time::{Duration, Instant};

use crate::constraint::{Constraint, Guide};
use crate::error::{Result, RuntimeError};
use crate::sampler::{Sampler, SamplerParams};
use crate::session::{Session, Suspended};
use crate::speculative::{Drafter, SpecMode, SpeculativeParams};

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
    /// Speculative decoding: drafts verified in one forward batch (the output stays exactly
    /// what plain decoding gives).
    pub speculative: SpeculativeParams,
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
    /// Speculative decoding: tokens drafted, and how many of them the target accepted.
    pub drafted_tokens: usize,
    pub accepted_drafts: usize,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_evaluated as f64 / self.prompt_seconds.max(1e-9)
    }
    pub fn generation_tps(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_seconds.max(1e-9)
    }
    /// Accepted drafts per drafted token (0 without drafts).
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted_drafts as f64 / self.drafted_tokens.max(1) as f64
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
        // Settings are checked before the prompt is evaluated.
        params.sampler.validate()?;
        params.speculative.validate()?;
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

    /// The sampling loop, from the logits of the last token in the context (the draft
    /// session, if any, is taken out of `self` meanwhile).
    fn run(
        &mut self,
        state: Suspended,
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let mut draft = self.draft.take();
        let r = self.run_with(state, params, on_piece, draft.as_deref_mut());
        self.draft = draft;
        // Greedy steps on a GPU left the last logits on the device (`eval_argmax`).
        let synced = self.sync_logits();
        let stats = r?;
        synced.map(|()| stats)
    }

    /// With speculative decoding, the cache may hold drafted tokens after the `verified` ones:
    /// each is sampled again from the target's logits at its position (the rows of the
    /// verification batch) and kept while it matches; the first token that differs replaces
    /// the rest. The target's sampler sees the same logits, history and random stream as in
    /// plain decoding, so the output is the same token for token; sampled drafts of a draft
    /// model are verified by speculative sampling instead, which keeps the distribution.
    fn run_with(
        &mut self,
        state: Suspended,
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
        mut draft: Option<&mut Session>,
    ) -> Result<GenerationStats> {
        let model = std::sync::Arc::clone(self.model());
        let tok = model.tokenizer();
        let vocab = model.config().vocab_size;
        let mut sampler = Sampler::with_rng_state(params.sampler, vocab, state.rng)?;
        params.speculative.validate()?;
        if params.speculative.mode == SpecMode::Draft && draft.is_none() {
            return Err(RuntimeError::InvalidArgument {
                name: "speculative",
                what: "draft mode needs a draft model (Session::set_draft)".into(),
            });
        }
        let mut spec = Drafter::new(&params.speculative, params.sampler);
        // Drafts in the cache after the verified tokens, of which `taken` were accepted; `rows`
        // holds the logits of the last verification batch, and `row` which of them belong to
        // the last verified token (`None`: `self.logits()`).
        let (mut drafts, mut taken, mut rows, mut row) = (Vec::new(), 0, Vec::new(), None);
        let mut verified = self.tokens().len();
        let mut context = Vec::new();
        let t1 = Instant::now();
        let mut detok = state.detok;
        // Text held back while it may start a stop string; its first `emitted` bytes were
        // already emitted (by the generation this one continues).
        let mut emitted = state.held_emitted.min(state.held.len());
        let mut pending = state.held;
        let mut guide = state.guide;
        let (mut generated, mut shifted) = (0, 0);
        // Plain greedy decoding on a GPU: each step's argmax runs on the device after the pass
        // and only the token comes back (`Session::eval_argmax`), picked as `sampler` would.
        let device_argmax = self.on_gpu() && params.sampler.is_greedy() && guide.is_none() && !spec.active();
        let mut ahead: Option<u32> = None;
        let stop = loop {
            if self.take_cancel() {
                break StopReason::Cancelled;
            }
            if generated >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            let next = if let Some(t) = ahead.take() {
                t
            } else {
                let logits = match row {
                    Some(i) => &rows[i * vocab..(i + 1) * vocab],
                    None => self.logits(),
                };
                let logits = match guide.as_deref_mut() {
                    Some(g) => g.mask(logits)?,
                    None => logits,
                };
                let history = &self.tokens()[..verified];
                match drafts.get(taken) {
                    Some(&d) if spec.sampled() => sampler.sample_speculative(logits, history, d, &spec.dists[taken]).0,
                    _ => sampler.sample(logits, history),
                }
            };
            if let Some(&d) = drafts.get(taken) {
                spec.verified(next == d);
            }
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
            if drafts.get(taken) == Some(&next) {
                // An accepted draft: already in the cache, its logits in the next row.
                taken += 1;
                verified += 1;
                row = Some(taken);
                continue;
            }
            if self.tokens().len() > verified {
                self.truncate(verified); // the rejected drafts
            }
            drafts.clear();
            taken = 0;
            if self.tokens().len() >= self.n_ctx() {
                if !params.context_shift {
                    break StopReason::ContextFull;
                }
                shifted += self.shift_context(params.n_keep)?;
                verified = self.tokens().len();
            }
            // No drafts under a constraint: its mask follows one token at a time.
            if spec.active() && guide.is_none() {
                // Drafts must fit the context, be undoable (sliding-window rings), fit one
                // batch (every batch computes exactly what single steps compute: the numerical
                // contract, docs/NUMERICS.md), and not run past the token limit.
                let limit = (self.n_ctx() - verified - 1)
                    .min(self.backend().kv().max_rewind())
                    .min(self.n_batch() - 1)
                    .min(params.max_tokens - generated);
                context.clear();
                context.extend_from_slice(self.tokens());
                context.push(next);
                spec.propose(&context, limit, draft.as_deref_mut(), &mut drafts)?;
            }
            let t = Instant::now();
            if drafts.is_empty() {
                if device_argmax {
                    ahead = Some(self.eval_argmax(&[next])?);
                } else {
                    eval_ahead(self, &[next], &mut guide)?;
                }
                row = None;
            } else {
                context.truncate(verified + 1);
                context.extend_from_slice(&drafts);
                rows.resize(context[verified..].len() * vocab, 0.0);
                self.eval_all_logits(&context[verified..], &mut rows)?;
                row = Some(0);
            }
            spec.timed(1 + drafts.len(), t.elapsed());
            verified += 1;
        };
        if self.tokens().len() > verified {
            // Drafts that were never verified: out of the cache, and the logits are the last
            // verified token's again.
            self.truncate(verified);
            if let Some(i) = row {
                self.set_logits(&rows[i * vocab..(i + 1) * vocab]);
            }
        }
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
            drafted_tokens: spec.drafted,
            accepted_drafts: spec.accepted,
            incomplete,
        })
    }
}

/// `session.eval(tokens)`, computing `guide`'s next mask meanwhile on the session's mask thread
/// when the session leaves a core free (on a fully used machine the two would only take turns).
/// The mask and the logits are the same either way. Returns the time of the forward pass alone
/// (`autark bench` reports the time of a step outside it).
pub(crate) fn eval_ahead(session: &mut Session, tokens: &[u32], guide: &mut Option<Box<Guide>>) -> Result<Duration> {
    let timed = |session: &mut Session| {
        let t0 = Instant::now();
        session.eval(tokens).map(|()| t0.elapsed())
    };
    let Some(mut g) = guide.take() else { return timed(session) };
    let worker = if session.n_threads() < autark_kernels::pool::cores() {
        session.mask_thread.take().or_else(crate::constraint::MaskThread::start)
    } else {
        None
    };
    let Some(worker) = worker else {
        let r = timed(session);
        g.prepare();
        *guide = Some(g);
        return r;
    };
    if let Err(back) = worker.send(g) {
        // The thread is gone: compute in line from now on (the next step starts another).
        let r = timed(session);
        let mut g = back;
        g.prepare();
        *guide = Some(g);
        return r;
    }
    let r = timed(session);
    *guide = Some(worker.receive()?);
    session.mask_thread = Some(worker);
    r
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on a char
/// boundary): text that must wait, because it may begin a stop string (also the server's rule).
pub fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
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
