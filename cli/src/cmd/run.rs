//! `autark run`: one prompt, streamed; the sampling options `run` and `chat` share.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use autark_runtime::{
    ChatMessage, Constraint, GenerateParams, GenerationStats, Model, Options, Prompt, SamplerParams, Session,
    SessionParams, SpecMode, SpeculativeParams, ToolSet, DEFAULTS,
};

use super::{load, load_for_chat, read_text, CliError, Result};
use crate::{ConstraintArgs, SampleArgs, SpecArgs};

impl SampleArgs {
    /// The tools of `--tools` with `--tool-choice`, in `model`'s format.
    pub fn tools(&self, model: &Model) -> Result<Option<ToolSet>> {
        Ok(self.constraint.tools(model)?.map(|set| ToolSet { choice: self.tool_choice, ..set }))
    }
}

impl ConstraintArgs {
    /// The tools of `--tools`, in `model`'s format.
    pub fn tools(&self, model: &Model) -> Result<Option<ToolSet>> {
        match &self.tools {
            Some(f) => Ok(Some(ToolSet::new(model, &read_text(f)?)?)),
            None => Ok(None),
        }
    }

    /// The constraint the flags name (its file read), if any.
    pub fn constraint(&self) -> Result<Option<Constraint>> {
        Ok(if let Some(f) = &self.json_schema {
            Some(Constraint::JsonSchema(read_text(f)?))
        } else if let Some(rx) = &self.regex {
            Some(Constraint::Regex(rx.clone()))
        } else if let Some(f) = &self.grammar {
            Some(Constraint::Grammar(read_text(f)?))
        } else {
            None
        })
    }
}

impl SampleArgs {
    /// The runtime's options for up to `max_tokens` tokens, checked.
    pub fn options(&self, max_tokens: usize) -> Result<Options> {
        let o = Options {
            session: SessionParams {
                n_ctx: self.ctx,
                n_threads: self.threads,
                cache_type_k: self.cache.k,
                cache_type_v: self.cache.v,
                device: self.cache.device.runtime(),
                ..DEFAULTS.session
            },
            generate: autark_runtime::GenerateParams {
                max_tokens,
                sampler: SamplerParams {
                    temperature: self.temp,
                    top_k: self.top_k,
                    top_p: self.top_p,
                    min_p: self.min_p,
                    repeat_penalty: self.repeat_penalty,
                    repeat_last_n: self.repeat_last_n,
                    frequency_penalty: self.frequency_penalty,
                    presence_penalty: self.presence_penalty,
                    seed: self.seed,
                },
                stop: self.stop.clone(),
                context_shift: self.context_shift,
                n_keep: self.keep,
                speculative: self.spec.params(),
                constraint: self.constraint.constraint()?,
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

/// What `autark run` starts from.
pub struct Start<'a> {
    pub prompt: Option<&'a str>,
    pub chat: bool,
    pub system: Option<String>,
    /// A chat template file replacing the model's (with `chat`).
    pub template: Option<&'a Path>,
    /// A saved state: the generation continues from it (after `prompt`, if any, is appended).
    pub load: Option<&'a Path>,
}

pub fn run(path: &Path, start: Start<'_>, n: usize, save: Option<&Path>, s: &SampleArgs) -> Result<()> {
    let model = if start.chat { load_for_chat(path, start.template)? } else { load(path)?.0 };
    let o = s.options(n)?;
    let mut params = o.generate;
    let tools = s.tools(&model)?;
    if let Some(t) = &tools {
        if !start.chat || start.load.is_some() {
            return Err(CliError::Usage(
                "--tools needs --chat (the tools are declared through the chat template)".into(),
            ));
        }
        params.constraint = Some(t.constraint());
    }
    let mut reply = String::new();
    let mut out = std::io::stdout().lock();
    let quiet = tools.is_some();
    let mut print = |piece: &str| {
        reply.push_str(piece);
        if quiet {
            return true;
        }
        let _ = out.write_all(piece.as_bytes());
        out.flush().is_ok()
    };
    let (session, stats) = match (start.load, start.prompt) {
        (Some(state), prompt) => {
            let mut session = Session::load(Arc::clone(&model), state, o.session)?;
            s.spec.attach(&mut session, o.session)?;
            let stats = match prompt {
                // Appended as plain text, without special tokens (the context has its BOS).
                Some(text) => {
                    let mut tokens = session.tokens().to_vec();
                    tokens.extend(model.tokenizer().encode(text, false)?);
                    session.generate(&tokens, &params, &mut print)?
                }
                None => session.generate_continue(&params, &mut print)?,
            };
            (session, stats)
        }
        (None, prompt) => {
            let prompt = prompt.unwrap_or_default();
            let messages = chat_messages(start.system, prompt);
            let tokens = match &tools {
                Some(t) => model.tool_prompt_tokens(&messages, t)?,
                None => model.prompt_tokens(if start.chat { Prompt::Chat(&messages) } else { Prompt::Text(prompt) })?,
            };
            let mut session = Session::new(Arc::clone(&model), o.session)?;
            s.spec.attach(&mut session, o.session)?;
            let stats = session.generate(&tokens, &params, &mut print)?;
            (session, stats)
        }
    };
    if let (Some(t), false) = (&tools, stats.incomplete) {
        let _ = match t.parse_reply(&reply)? {
            Some(calls) => write!(out, "{}", autark_runtime::tools::calls_json(&calls)),
            None => write!(out, "{reply}"), // a text reply (--tool-choice auto)
        };
    }
    let _ = writeln!(out);
    if let Some(save) = save {
        session.save(save)?;
    }
    eprintln!(
        "prompt: {} tokens, {:.1} t/s | generation: {} tokens, {:.1} t/s | stop: {:?} | threads {}{}{}{}",
        stats.prompt_evaluated,
        stats.prompt_tps(),
        stats.generated_tokens,
        stats.generation_tps(),
        stats.stop,
        session.n_threads(),
        if stats.shifted_tokens > 0 {
            format!(" | context shifted by {} tokens", stats.shifted_tokens)
        } else {
            String::new()
        },
        draft_line(&params, &stats),
        tools.as_ref().map(|t| format!(" | tool-call format: {}", t.format.name())).unwrap_or_default()
    );
    if stats.incomplete {
        return Err(CliError::Incomplete { stop: format!("{:?}", stats.stop) });
    }
    Ok(())
}

/// " | drafts: 96 of 120 accepted (80.0%)" when decoding speculatively.
pub fn draft_line(params: &GenerateParams, stats: &GenerationStats) -> String {
    if params.speculative.mode == SpecMode::Off {
        return String::new();
    }
    format!(
        " | {} drafts: {} of {} accepted ({:.1}%)",
        params.speculative.mode.name(),
        stats.accepted_drafts,
        stats.drafted_tokens,
        100.0 * stats.acceptance_rate()
    )
}

impl SpecArgs {
    /// The mode: as given, or draft when a draft model is given.
    pub fn params(&self) -> SpeculativeParams {
        let mode = self.speculative.unwrap_or(if self.draft.is_some() { SpecMode::Draft } else { SpecMode::Off });
        SpeculativeParams { mode, draft_max: self.draft_max, draft_min: self.draft_min }
    }

    /// Gives `session` its draft model's session (same settings), when drafting from one.
    pub fn attach(&self, session: &mut Session, params: SessionParams) -> Result<()> {
        match (self.params().mode, &self.draft) {
            (SpecMode::Draft, Some(path)) => {
                let draft = Session::new(load(path)?.0, params)?;
                Ok(session.set_draft(Some(draft))?)
            }
            (SpecMode::Draft, None) => Err(CliError::Usage("--speculative draft needs --draft MODEL".into())),
            (_, Some(_)) => Err(CliError::Usage("--draft is for --speculative draft".into())),
            _ => Ok(()),
        }
    }
}
