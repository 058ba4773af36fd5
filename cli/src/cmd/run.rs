//! `autark run`: one prompt, streamed; the sampling options `run` and `chat` share.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use autark_runtime::{ChatMessage, Options, Prompt, SamplerParams, Session, SessionParams, DEFAULTS};

use super::{load, Result};
use crate::SampleArgs;

impl SampleArgs {
    /// The runtime's options for up to `max_tokens` tokens, checked.
    pub fn options(&self, max_tokens: usize) -> Result<Options> {
        let o = Options {
            session: SessionParams { n_ctx: self.ctx, n_threads: self.threads, ..DEFAULTS.session },
            generate: autark_runtime::GenerateParams {
                max_tokens,
                sampler: SamplerParams {
                    temperature: self.temp,
                    top_k: self.top_k,
                    top_p: self.top_p,
                    min_p: self.min_p,
                    repeat_penalty: self.repeat_penalty,
                    seed: self.seed,
                    ..DEFAULTS.generate.sampler
                },
                stop: self.stop.clone(),
            },
        };
        o.validate()?;
        Ok(o)
    }
}

/// The conversation of `--chat`: an optional system message and the user's prompt.
pub fn chat_messages(system: Option<String>, user: &str) -> Vec<ChatMessage> {
    let system = system.map(|s| ChatMessage::new("system", &s));
    system.into_iter().chain([ChatMessage::new("user", user)]).collect()
}

pub fn run(path: &Path, prompt: &str, n: usize, chat: bool, system: Option<String>, s: &SampleArgs) -> Result<()> {
    let (model, _) = load(path)?;
    let messages = chat_messages(system, prompt);
    let tokens = model.prompt_tokens(if chat { Prompt::Chat(&messages) } else { Prompt::Text(prompt) })?;
    let o = s.options(n)?;
    let mut session = Session::new(Arc::clone(&model), o.session)?;
    let params = o.generate;
    let mut out = std::io::stdout().lock();
    let stats = session.generate(&tokens, &params, &mut |piece| {
        let _ = out.write_all(piece.as_bytes());
        out.flush().is_ok()
    })?;
    let _ = writeln!(out);
    eprintln!(
        "prompt: {} tokens, {:.1} t/s | generation: {} tokens, {:.1} t/s | stop: {:?} | threads {}",
        stats.prompt_evaluated,
        stats.prompt_tps(),
        stats.generated_tokens,
        stats.generation_tps(),
        stats.stop,
        session.n_threads()
    );
    Ok(())
}
