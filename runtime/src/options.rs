//! The settings every front end exposes — `autark run`'s flags, C's `autark_session_params`, the
//! bindings' `SessionOptions` — with their defaults and their checks, once. Front ends rename
//! fields; they never restate a default.

use crate::error::Result;
use crate::generate::GenerateParams;
use crate::kv::CacheType;
use crate::sampler::SamplerParams;
use crate::session::SessionParams;
use crate::speculative::{SpecMode, SpeculativeParams};

/// A session's settings and a generation's.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub session: SessionParams,
    pub generate: GenerateParams,
}

/// The defaults of every front end.
pub const DEFAULTS: Options = Options {
    session: SessionParams {
        n_ctx: 0,
        n_threads: 0,
        n_batch: 64,
        max_memory_bytes: 0,
        cache_type_k: CacheType::F32,
        cache_type_v: CacheType::F32,
        device: crate::session::Device::Cpu,
    },
    generate: GenerateParams {
        max_tokens: 128,
        sampler: SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
        },
        stop: Vec::new(),
        context_shift: false,
        n_keep: 0,
        constraint: None,
        speculative: SpeculativeParams { mode: SpecMode::Off, draft_max: 16, draft_min: 0 },
    },
};

// The parts' defaults are the parts of `DEFAULTS` (here, so that the parts need not know this
// module).
impl Default for Options {
    fn default() -> Self {
        DEFAULTS
    }
}

impl Default for SessionParams {
    fn default() -> Self {
        DEFAULTS.session
    }
}

impl Default for GenerateParams {
    fn default() -> Self {
        DEFAULTS.generate
    }
}

impl Default for SamplerParams {
    fn default() -> Self {
        DEFAULTS.generate.sampler
    }
}

impl Options {
    /// Checks the sampling settings, so that a front end refuses them before it allocates a
    /// session (`Session::new` checks the session's settings against the model).
    pub fn validate(&self) -> Result<()> {
        self.generate.sampler.validate()?;
        self.generate.speculative.validate()
    }
}
