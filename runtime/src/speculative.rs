//! Speculative decoding's drafting side: who proposes the next tokens (n-grams of the context,
//! or a smaller draft model), how many (adaptively, from the measured acceptance and the
//! measured cost of a longer verification batch), and the statistics. Verification — sampling
//! each drafted position from the target's own logits — lives in `generate.rs`; it keeps the
//! output exactly what plain decoding gives (docs/RUNTIME.md, "Speculative decoding").

use std::time::Duration;

use crate::error::{Result, RuntimeError};
use crate::sampler::{Sampler, SamplerParams};
use crate::session::Session;

/// Where drafts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecMode {
    /// Plain decoding, one token per forward pass.
    Off,
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the context's
    /// last n tokens (n = 4 down to 1), in the prompt or the output so far.
    Lookup,
    /// A smaller model with the same vocabulary (`Session::set_draft`) generates the drafts.
    Draft,
}

impl SpecMode {
    pub const ALL: [SpecMode; 3] = [SpecMode::Off, SpecMode::Lookup, SpecMode::Draft];

    pub fn name(self) -> &'static str {
        match self {
            SpecMode::Off => "off",
            SpecMode::Lookup => "lookup",
            SpecMode::Draft => "draft",
        }
    }

    pub fn parse(name: &str) -> Option<SpecMode> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The stable code of the mode in C (`AUTARK_SPEC_*`).
    pub fn code(self) -> u32 {
        match self {
            SpecMode::Off => 0,
            SpecMode::Lookup => 1,
            SpecMode::Draft => 2,
        }
    }

    pub fn from_code(code: u32) -> Option<SpecMode> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }
}

/// Speculative decoding's settings (part of `GenerateParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeculativeParams {
    pub mode: SpecMode,
    /// Most tokens drafted per step; the drafters choose fewer (down to `draft_min`) when
    /// drafts are rejected often.
    pub draft_max: usize,
    /// Fewest tokens drafted per step whenever there is something to draft (a lookup match, a
    /// draft model), whatever the measured acceptance and cost say; 0 (the default) lets the
    /// drafters choose none. Still capped by the room left (context, token limit, batch size).
    pub draft_min: usize,
}

/// Most tokens `draft_max` may ask for.
pub const DRAFT_MAX_LIMIT: usize = 64;
// (Each verification batch is further capped by the session's batch size.)

impl SpeculativeParams {
    pub fn validate(&self) -> Result<()> {
        if self.mode != SpecMode::Off && !(1..=DRAFT_MAX_LIMIT).contains(&self.draft_max) {
            return Err(RuntimeError::InvalidArgument {
                name: "draft_max",
                what: format!("{} (must be in 1..={DRAFT_MAX_LIMIT})", self.draft_max),
            });
        }
        if self.mode != SpecMode::Off && self.draft_min > self.draft_max {
            return Err(RuntimeError::InvalidArgument {
                name: "draft_min",
                what: format!("{} (must be at most draft_max, {})", self.draft_min, self.draft_max),
            });
        }
        Ok(())
    }
}

/// Longest n-gram prompt lookup matches.
const NGRAM_MAX: usize = 4;
/// Acceptance each n-gram length (1, 2, 3, 4; the draft model at index 0) starts from: longer
/// matches are better evidence. Optimistic enough that drafting is tried.
const PRIOR: [f64; NGRAM_MAX] = [0.2, 0.4, 0.55, 0.7];
/// Weight of one observation in the acceptance averages.
const ALPHA: f64 = 0.1;
/// How fast an acceptance estimate that stopped drafting drifts back towards its `PRIOR`, per
/// step without drafts (so that drafting is tried again later).
const RECOVER: f64 = 0.005;
/// The cost of one more token in the verification batch, relative to a one-token step, until
/// it is measured.
const COST_PRIOR: f64 = 0.3;

/// The drafting state of one generation.
pub(crate) struct Drafter {
    mode: SpecMode,
    draft_max: usize,
    draft_min: usize,
    /// Acceptance rate of drafts after an n-gram match of length n + 1 (lookup), or of the
    /// draft model's drafts (n = 0): at index 2n after a step that rejected a draft, 2n + 1
    /// after one that accepted all (copying runs go on: the second rate is the higher).
    accept: [f64; 2 * NGRAM_MAX],
    /// Which estimate the pending drafts came from.
    source: usize,
    /// Whether the last step with drafts accepted them all; that step's drafts and accepted.
    run: bool,
    pending: usize,
    hits: usize,
    /// Seconds of a one-token target step (moving average; 0 until measured).
    t_one: f64,
    /// `t_one` as guessed from a verification batch, until a one-token step is measured.
    t_one_guess: f64,
    /// Extra seconds per extra token of a verification batch (moving average).
    t_extra: f64,
    /// Seconds of one draft-model step (moving average).
    t_draft: f64,
    /// The draft model's sampler settings (its own random stream, derived from the target's).
    sampler: SamplerParams,
    /// The draft model's distribution at each drafted position (with sampled drafts).
    pub dists: Vec<Vec<(u32, f32)>>,
    pub drafted: usize,
    pub accepted: usize,
}

impl Drafter {
    pub fn new(p: &SpeculativeParams, sampler: SamplerParams) -> Drafter {
        Drafter {
            mode: p.mode,
            draft_max: p.draft_max,
            draft_min: p.draft_min,
            accept: std::array::from_fn(|i| if p.mode == SpecMode::Draft { 0.6 } else { PRIOR[i / 2] }),
            source: 0,
            run: false,
            pending: 0,
            hits: 0,
            t_one: 0.0,
            t_one_guess: 0.0,
            t_extra: 0.0,
            t_draft: 0.0,
            sampler,
            dists: Vec::new(),
            drafted: 0,
            accepted: 0,
        }
    }

    pub fn active(&self) -> bool {
        self.mode != SpecMode::Off
    }

    /// Sampled drafts (a draft model at a temperature above 0) are verified by speculative
    /// sampling against their distributions; all other drafts are single tokens, which the
    /// target's own sampling accepts or replaces.
    pub fn sampled(&self) -> bool {
        self.mode == SpecMode::Draft && self.sampler.temperature > 0.0
    }

    /// Records a step's time: `n` tokens evaluated by the target in `t`.
    pub fn timed(&mut self, n: usize, t: Duration) {
        let t = t.as_secs_f64();
        if n == 1 {
            self.t_one = if self.t_one == 0.0 { t } else { self.t_one + ALPHA * (t - self.t_one) };
        } else if self.t_one > 0.0 {
            let extra = ((t - self.t_one) / (n - 1) as f64).max(0.0);
            self.t_extra = if self.t_extra == 0.0 { extra } else { self.t_extra + ALPHA * (extra - self.t_extra) };
        } else {
            // No one-token step yet: its time as the prior cost model would have it.
            self.t_one_guess = t / (1.0 + COST_PRIOR * (n - 1) as f64);
        }
    }

    /// The outcome of one verified draft (not counting those after the first rejection).
    pub fn verified(&mut self, accepted: bool) {
        let a = &mut self.accept[self.source];
        *a += ALPHA * (f64::from(u8::from(accepted)) - *a);
        self.accepted += usize::from(accepted);
        self.hits += usize::from(accepted);
    }

    /// How many drafts give the most tokens per unit of time: with drafts accepted at rate a
    /// (each given the ones before it), k drafts yield 1 + a + … + aᵏ tokens for 1 + c·k
    /// one-token steps of time, c being what one more drafted token costs (measured). Returns
    /// the k in 0..=`limit` (and `draft_max`) with the best ratio; 0 when no draft pays off.
    fn depth(&mut self, source: usize, extra: f64, limit: usize) -> usize {
        let source = 2 * source + usize::from(self.run);
        let a = self.accept[source].clamp(0.0, 1.0);
        // Relative to a one-token step (measured, or guessed from a batch); a draft model's own
        // step counts in full.
        let one = if self.t_one > 0.0 { self.t_one } else { self.t_one_guess };
        let cost = match (one > 0.0, self.t_extra > 0.0) {
            (true, true) => (self.t_extra + extra) / one,
            (true, false) => COST_PRIOR + extra / one,
            _ => COST_PRIOR,
        };
        let (mut best, mut best_k) = (1.0, 0);
        let (mut tokens, mut p) = (1.0, 1.0);
        for k in 1..=limit.min(self.draft_max) {
            p *= a;
            tokens += p;
            let ratio = tokens / (1.0 + cost * k as f64);
            if ratio > best {
                (best, best_k) = (ratio, k);
            }
        }
        if best_k == 0 {
            let prior = if self.mode == SpecMode::Draft { 0.6 } else { PRIOR[source / 2] };
            self.accept[source] += RECOVER * (prior - self.accept[source]);
        }
        self.source = source;
        best_k.max(self.draft_min.min(limit))
    }

    /// Up to `limit` drafts to follow `context` (which ends with the token about to be
    /// evaluated), into `out`.
    pub fn propose(
        &mut self,
        context: &[u32],
        limit: usize,
        draft: Option<&mut Session>,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        out.clear();
        self.dists.clear();
        if self.pending > 0 {
            self.run = self.hits == self.pending;
        }
        (self.pending, self.hits) = (0, 0);
        if limit == 0 {
            return Ok(());
        }
        match self.mode {
            SpecMode::Off => {}
            SpecMode::Lookup => {
                if let Some((n, at)) = lookup(context) {
                    let follow = &context[at..];
                    let k = self.depth(n - 1, 0.0, limit.min(follow.len()));
                    out.extend_from_slice(&follow[..k]);
                }
            }
            SpecMode::Draft => {
                let Some(d) = draft else {
                    return Err(RuntimeError::InvalidArgument {
                        name: "speculative",
                        what: "draft mode needs a draft model (Session::set_draft)".into(),
                    });
                };
                let t_draft = self.t_draft;
                let k = self.depth(0, t_draft, limit);
                if k > 0 {
                    self.draft_tokens(d, context, k, out)?;
                }
            }
        }
        self.drafted += out.len();
        self.pending = out.len();
        Ok(())
    }

    /// The draft model's k tokens after `context`, greedy or sampled with the target's settings
    /// (and a random stream derived from the target's position, so that a generation repeats).
    fn draft_tokens(&mut self, d: &mut Session, context: &[u32], k: usize, out: &mut Vec<u32>) -> Result<()> {
        // The draft's step time: its catch-up with the context (one or two new tokens after a
        // verification; a long prefill when it starts, which is not a step) and its draft steps.
        let common = d.tokens().iter().zip(context).take_while(|(a, b)| a == b).count();
        let t0 = std::time::Instant::now();
        d.eval_continuing(context)?;
        let (mut busy, mut steps) = (0.0, 0);
        if context.len() - common.min(context.len() - 1) <= 2 {
            (busy, steps) = (t0.elapsed().as_secs_f64(), 1);
        }
        let seed = context.len() as u64 ^ self.sampler.seed.rotate_left(17) ^ 0xD1B5_4A32_D192_ED03;
        let mut s = Sampler::with_rng_state(self.sampler, d.model().config().vocab_size, seed)?;
        let vocab = d.model().tokenizer().vocab_size();
        for i in 0..k {
            let t = if self.sampled() {
                let mut q = Vec::new();
                let t = s.sample_with_distribution(d.logits(), d.tokens(), &mut q);
                self.dists.push(q);
                t
            } else {
                s.sample(d.logits(), d.tokens())
            };
            if t as usize >= vocab || d.model().tokenizer().is_end_of_generation(t) {
                self.dists.truncate(out.len());
                break;
            }
            out.push(t);
            if i + 1 == k || d.tokens().len() >= d.n_ctx() {
                break;
            }
            let t1 = std::time::Instant::now();
            d.eval(&[t])?;
            (busy, steps) = (busy + t1.elapsed().as_secs_f64(), steps + 1);
        }
        if steps > 0 {
            let per_step = busy / steps as f64;
            self.t_draft =
                if self.t_draft == 0.0 { per_step } else { self.t_draft + ALPHA * (per_step - self.t_draft) };
        }
        Ok(())
    }
}

impl Session {
    /// Sets (or with `None` removes) the draft model's session, which speculative decoding in
    /// `SpecMode::Draft` asks for tokens. Its model must have this model's tokenizer vocabulary
    /// (`RuntimeError::DraftMismatch` otherwise); its context is kept in step with this one.
    pub fn set_draft(&mut self, draft: Option<Session>) -> Result<()> {
        if let Some(d) = &draft {
            check_draft(self.model(), d.model())?;
            if d.n_ctx() < self.n_ctx() {
                return Err(RuntimeError::InvalidArgument {
                    name: "draft",
                    what: format!(
                        "the draft session holds {} tokens, fewer than this one's {}",
                        d.n_ctx(),
                        self.n_ctx()
                    ),
                });
            }
        }
        self.draft = draft.map(Box::new);
        Ok(())
    }

    /// `set_draft` with a new session on `model` sized like this one (context, threads, batch,
    /// cache types); `None` removes the draft.
    pub fn set_draft_model(&mut self, model: Option<std::sync::Arc<crate::Model>>) -> Result<()> {
        let Some(model) = model else { return self.set_draft(None) };
        let [cache_type_k, cache_type_v] = self.cache_types();
        let p = crate::session::SessionParams {
            n_ctx: self.n_ctx(),
            n_threads: self.n_threads(),
            n_batch: self.n_batch(),
            cache_type_k,
            cache_type_v,
            ..Default::default()
        };
        self.set_draft(Some(Session::new(model, p)?))
    }

    /// The draft model's session, if one is set.
    pub fn draft(&self) -> Option<&Session> {
        self.draft.as_deref()
    }
}

/// The longest n (up to `NGRAM_MAX`) for which the last n tokens of `context` occurred before,
/// and where the tokens after their latest earlier occurrence start: (n, index).
fn lookup(context: &[u32]) -> Option<(usize, usize)> {
    let len = context.len();
    (1..=NGRAM_MAX.min(len.saturating_sub(1))).rev().find_map(|n| {
        let tail = &context[len - n..];
        // Latest start j < len − n whose n tokens equal the tail and which has a follower.
        (0..len - n).rev().find(|&j| context[j..j + n] == *tail).map(|j| (n, j + n))
    })
}

/// Checks that a draft model can propose tokens for `target`: the same tokenizer vocabulary
/// (every token's text and id), the same beginning- and end-of-sequence tokens.
fn check_draft(target: &crate::Model, draft: &crate::Model) -> Result<()> {
    let (t, d) = (target.tokenizer(), draft.tokenizer());
    let mismatch = |what: String| Err(RuntimeError::DraftMismatch(what));
    if t.vocab_size() != d.vocab_size() {
        return mismatch(format!(
            "the target's tokenizer has {} tokens, the draft's {}",
            t.vocab_size(),
            d.vocab_size()
        ));
    }
    if let Some(id) = (0..t.vocab_size() as u32).find(|&i| t.id_to_token(i) != d.id_to_token(i)) {
        return mismatch(format!(
            "token {id} is {:?} in the target, {:?} in the draft",
            t.id_to_token(id).unwrap_or_default(),
            d.id_to_token(id).unwrap_or_default()
        ));
    }
    if t.bos_id() != d.bos_id()
        || (0..t.vocab_size() as u32).any(|i| t.is_end_of_generation(i) != d.is_end_of_generation(i))
    {
        return mismatch("the special tokens (BOS, end of generation) differ".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefers_the_longest_latest_match() {
        // ... 1 2 3 [9] ... 2 3 [7] ... 1 2 3 → the 3-gram "1 2 3" matched at its first place.
        let c = [1, 2, 3, 9, 5, 2, 3, 7, 6, 1, 2, 3];
        assert_eq!(lookup(&c), Some((3, 3)));
        // Only a 1-gram: the latest earlier "3".
        let c = [3, 8, 4, 3, 6, 5, 3];
        assert_eq!(lookup(&c), Some((1, 4)));
        assert_eq!(lookup(&[1, 2, 3]), None);
        assert_eq!(lookup(&[]), None);
        assert_eq!(lookup(&[4]), None);
    }

    #[test]
    fn depth_backs_off_when_drafts_fail_and_grows_when_they_hold() {
        let p = SpeculativeParams { mode: SpecMode::Lookup, draft_max: 16, draft_min: 0 };
        let mut d = Drafter::new(&p, SamplerParams::default());
        d.timed(1, Duration::from_millis(10));
        d.timed(5, Duration::from_millis(22)); // 3 ms per extra token: cost 0.3
        for _ in 0..60 {
            d.source = 4; // 3-grams, after a rejection
            d.verified(true);
        }
        assert!(d.depth(2, 0.0, 16) >= 8, "{}", d.accept[4]);
        for _ in 0..60 {
            d.source = 4;
            d.verified(false);
        }
        assert_eq!(d.depth(2, 0.0, 16), 0);
        // Without drafts the estimate drifts back up, so drafting is tried again.
        let mut k = 0;
        for _ in 0..500 {
            k = d.depth(2, 0.0, 16);
            if k > 0 {
                break;
            }
        }
        assert!(k > 0);
    }

    #[test]
    fn draft_min_holds_whatever_the_measurements_say() {
        let p = SpeculativeParams { mode: SpecMode::Lookup, draft_max: 16, draft_min: 6 };
        let mut d = Drafter::new(&p, SamplerParams::default());
        d.timed(1, Duration::from_millis(10));
        d.timed(5, Duration::from_millis(90)); // 20 ms per extra token: no draft pays off
        for _ in 0..60 {
            d.source = 4;
            d.verified(false);
        }
        assert_eq!(d.depth(2, 0.0, 16), 6);
        // The room left still caps it.
        assert_eq!(d.depth(2, 0.0, 4), 4);
        // Without the floor, the same measurements draft nothing.
        d.draft_min = 0;
        assert_eq!(d.depth(2, 0.0, 16), 0);
    }

    #[test]
    fn modes_round_trip() {
        for m in SpecMode::ALL {
            assert_eq!(SpecMode::parse(m.name()), Some(m));
            assert_eq!(SpecMode::from_code(m.code()), Some(m));
        }
        let p = |mode, draft_max, draft_min| SpeculativeParams { mode, draft_max, draft_min };
        assert!(p(SpecMode::Lookup, 0, 0).validate().is_err());
        assert!(p(SpecMode::Off, 0, 0).validate().is_ok());
        assert!(p(SpecMode::Lookup, 8, 8).validate().is_ok());
        assert!(p(SpecMode::Draft, 8, 9).validate().is_err());
    }
}
