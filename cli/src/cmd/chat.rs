//! `autark chat`: an interactive conversation with history.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use autark_runtime::{ChatMessage, Prompt, Session};

use super::{io, load, Result};
use crate::SampleArgs;

pub fn chat(path: &Path, system: Option<String>, n: usize, s: &SampleArgs) -> Result<()> {
    let (model, _) = load(path)?;
    let o = s.options(n)?;
    let mut session = Session::new(Arc::clone(&model), o.session)?;
    let params = o.generate;
    let mut history: Vec<ChatMessage> = system.iter().map(|s| ChatMessage::new("system", s)).collect();
    let base = history.len();
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
        let tokens = model.prompt_tokens(Prompt::Chat(&history))?;
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let r = session.generate(&tokens, &params, &mut |piece| {
            reply.push_str(piece);
            let _ = out.write_all(piece.as_bytes());
            out.flush().is_ok()
        });
        let _ = writeln!(out);
        match r {
            Ok(stats) => {
                eprintln!(
                    "[prompt: {} of {} tokens evaluated, {:.1} t/s | generation: {} tokens, {:.1} t/s]",
                    stats.prompt_evaluated,
                    stats.prompt_tokens,
                    stats.prompt_tps(),
                    stats.generated_tokens,
                    stats.generation_tps()
                );
                history.push(ChatMessage::new("assistant", reply.trim()));
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
