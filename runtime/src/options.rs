//! The settings every front end exposes — `autark run`'s flags, C's `autark_session_params`, the
//! bindings' `SessionOptions` — with their defaults and their checks, once. Front ends rename
//! fields; they never restate a default.

use crate::error::{Result, RuntimeError};
use crate::generate::GenerateParams;
use crate::sampler::SamplerParams;
use crate::session::SessionParams;

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Context length in tokens; 0 = the model's training context, capped at 4096.
    pub n_ctx: usize,
    /// Worker threads; 0 = one per core.
    pub n_threads: usize,
    /// Tokens per forward batch while evaluating a prompt.
    pub n_batch: usize,
    /// Refuse a session that needs more bytes than this; 0 = only the machine's limit.
    pub max_memory_bytes: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Nucleus threshold in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Drop tokens below min_p × the best probability; 0 = off.
    pub min_p: f32,
    /// Penalty on recently generated tokens; 1 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the sampler's random stream (same seed, same text).
    pub seed: u64,
    /// Tokens to generate.
    pub max_tokens: usize,
    /// Generation stops before any of these strings would be emitted.
    pub stop: Vec<String>,
}

/// The defaults of every front end.
pub const DEFAULTS: Options = Options {
    n_ctx: 0,
    n_threads: 0,
    n_batch: 64,
    max_memory_bytes: 0,
    temperature: 0.8,
    top_k: 40,
    top_p: 0.95,
    min_p: 0.05,
    repeat_penalty: 1.0,
    repeat_last_n: 64,
    seed: 0,
    max_tokens: 128,
    stop: Vec::new(),
};

/// Most worker threads a session accepts.
pub const MAX_THREADS: usize = 1024;

impl Default for Options {
    fn default() -> Self {
        DEFAULTS
    }
}

impl Options {
    /// Checks every value that does not depend on the model (the context length is checked
    /// against the model by `Session::new`).
    pub fn validate(&self) -> Result<()> {
        if self.n_threads > MAX_THREADS {
            let what = format!("{} (at most {MAX_THREADS})", self.n_threads);
            return Err(RuntimeError::InvalidArgument { name: "n_threads", what });
        }
        self.sampler().validate()
    }

    pub fn session(&self) -> SessionParams {
        SessionParams {
            n_ctx: self.n_ctx,
            n_threads: self.n_threads,
            n_batch: self.n_batch,
            max_memory_bytes: self.max_memory_bytes,
        }
    }

    pub fn sampler(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        }
    }

    pub fn generate(&self) -> GenerateParams {
        GenerateParams { max_tokens: self.max_tokens, sampler: self.sampler(), stop: self.stop.clone() }
    }
}
