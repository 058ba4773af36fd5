//! `autark chat`: an interactive conversation with history.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use autark_runtime::{ChatMessage, Prompt, Session};

use super::{io, load_for_chat, CliError, Result};
use crate::SampleArgs;

pub fn chat(
    path: &Path,
    system: Option<String>,
    n: usize,
    template: Option<&Path>,
    keep: Option<&Path>,
    s: &SampleArgs,
) -> Result<()> {
    let model = load_for_chat(path, template)?;
    let o = s.options(n)?;
    let mut params = o.generate;
    // With --tools, every reply is one call of a declared tool, printed parsed (or, with
    // --tool-choice auto, text).
    let tools = s.tools(&model)?;
    if let Some(t) = &tools {
        params.constraint = Some(t.constraint());
    }
    // A saved conversation: the session's state, with the messages as its application data.
    let (mut session, mut history) = match keep.filter(|f| f.exists()) {
        Some(f) => {
            let (mut session, app) = Session::load_with_app_data(Arc::clone(&model), f, o.session)?;
            s.spec.attach(&mut session, o.session)?;
            let history: Vec<ChatMessage> = serde_json::from_str(&app)
                .map_err(|e| CliError::Usage(format!("{}: not a chat session ({e})", f.display())))?;
            eprintln!("resumed {} messages ({} tokens) from {}", history.len(), session.tokens().len(), f.display());
            (session, history)
        }
        None => {
            let history = system.iter().map(|s| ChatMessage::new("system", s)).collect();
            let mut session = Session::new(Arc::clone(&model), o.session)?;
            s.spec.attach(&mut session, o.session)?;
            (session, history)
        }
    };
    let base = history.iter().take_while(|m| m.role == "system").count();
    eprintln!(
        "autark chat: {} ({} layers). /reset clears the history, /exit or Ctrl-D quits.",
        path.display(),
        model.config().n_layers
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line.map_err(io(Path::new("<stdin>")))?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.truncate(base);
                session.reset();
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", &line));
        let tokens_of = |history: &[ChatMessage]| match &tools {
            Some(t) => model.tool_prompt_tokens(history, t),
            None => model.prompt_tokens(Prompt::Chat(history)),
        };
        let mut tokens = tokens_of(&history)?;
        // With --context-shift, the oldest turns make room for the new one (and for a reply of
        // at least a quarter of the context).
        while params.context_shift && tokens.len() + session.n_ctx() / 4 > session.n_ctx() && history.len() > base + 1 {
            history.remove(base);
            tokens = tokens_of(&history)?;
        }
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let r = session.generate(&tokens, &params, &mut |piece| {
            reply.push_str(piece);
            if tools.is_some() {
                return true;
            }
            let _ = out.write_all(piece.as_bytes());
            out.flush().is_ok()
        });
        if let (Some(t), Ok(stats)) = (&tools, &r) {
            if !stats.incomplete {
                let _ = match t.parse_reply(&reply)? {
                    Some(calls) => write!(out, "{}", autark_runtime::tools::calls_json(&calls)),
                    None => write!(out, "{reply}"),
                };
            }
        }
        let _ = writeln!(out);
        match r {
            Ok(stats) => {
                eprintln!(
                    "[prompt: {} of {} tokens evaluated, {:.1} t/s | generation: {} tokens, {:.1} t/s{}{}]",
                    stats.prompt_evaluated,
                    stats.prompt_tokens,
                    stats.prompt_tps(),
                    stats.generated_tokens,
                    stats.generation_tps(),
                    super::run::draft_line(&params, &stats),
                    if stats.incomplete {
                        " | INCOMPLETE: stopped before the constrained output was complete"
                    } else {
                        ""
                    }
                );
                history.push(ChatMessage::new("assistant", reply.trim()));
                if let Some(f) = keep {
                    let app = serde_json::to_string(&history).map_err(|e| CliError::Usage(e.to_string()))?;
                    session.save_with_app_data(f, &app)?;
                }
            }
            Err(autark_runtime::RuntimeError::ContextOverflow { needed, n_ctx }) => {
                eprintln!("context full ({needed} > {n_ctx} tokens): history cleared");
                history.truncate(base);
                session.reset();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
