//! `autark run`: one prompt, streamed; the sampling options `run` and `chat` share.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use autark_runtime::{ChatMessage, GenerateParams, Model, SamplerParams, Session, SessionParams};

use super::{load, Result};
use crate::SampleArgs;

impl SampleArgs {
    pub fn sampler(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        }
    }
    pub fn session(&self) -> SessionParams {
        SessionParams { n_ctx: self.ctx, n_threads: self.threads, ..Default::default() }
    }
}

pub fn render_user(model: &Model, system: Option<String>, user: &str) -> Result<String> {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(ChatMessage::new("system", &s));
    }
    msgs.push(ChatMessage::new("user", user));
    Ok(autark_runtime::chat::render(model.tokenizer(), &msgs, true)?)
}

pub fn run(path: &Path, prompt: &str, n: usize, chat: bool, system: Option<String>, s: &SampleArgs) -> Result<()> {
    let (model, _) = load(path)?;
    let (text, add_special) =
        if chat { (render_user(&model, system, prompt)?, false) } else { (prompt.to_string(), true) };
    let tokens = model.tokenizer().encode(&text, add_special)?;
    let mut session = Session::new(Arc::clone(&model), s.session())?;
    let params = GenerateParams { max_tokens: n, sampler: s.sampler(), stop: s.stop.clone() };
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
