//! Commands for tests and debugging: `tokenize`, `logits`, `dump`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use autark_format::{AutarkFile, FormatError};
use autark_kernels::ops::WeightView;
use autark_runtime::{Prompt, Session, SessionParams};

use super::run::chat_messages;
use super::{load, say, write_f32, CliError, Result};
use crate::LogitsArgs;

pub fn tokenize(path: &Path, prompt: &str, chat: bool, no_special: bool) -> Result<()> {
    let (model, _) = load(path)?;
    let ids = match (chat, no_special) {
        (true, _) => model.prompt_tokens(Prompt::Chat(&chat_messages(None, prompt)))?,
        (false, false) => model.prompt_tokens(Prompt::Text(prompt))?,
        (false, true) => model.tokenizer().encode(prompt, false)?,
    };
    say!("{}", serde_json::to_string(&ids).unwrap_or_default());
    Ok(())
}

pub fn logits(
    LogitsArgs { model: path, tokens, prompt, output, threads, batch: n_batch, cache }: LogitsArgs,
) -> Result<()> {
    let (model, _) = load(&path)?;
    let ids: Vec<u32> = match (tokens, prompt) {
        (Some(t), _) => t
            .split(',')
            .map(|x| x.trim().parse::<u32>().map_err(|_| CliError::Usage(format!("bad token id {x:?}"))))
            .collect::<Result<_>>()?,
        (None, Some(p)) => model.prompt_tokens(Prompt::Text(&p))?,
        (None, None) => return Err(CliError::Usage("give --tokens or --prompt".into())),
    };
    let n_ctx = ids.len().max(1);
    let mut session = Session::new(
        Arc::clone(&model),
        SessionParams {
            n_ctx,
            n_threads: threads,
            n_batch,
            cache_type_k: cache.k,
            cache_type_v: cache.v,
            device: cache.device.runtime(),
            ..Default::default()
        },
    )?;
    let mut out = vec![0f32; ids.len() * model.config().vocab_size];
    session.eval_all_logits(&ids, &mut out)?;
    write_f32(&output, &out)
}

pub fn dump(path: &Path, name: &str, output: &Path) -> Result<()> {
    let f = AutarkFile::open(path)?;
    let t = f.tensor(name).ok_or_else(|| CliError::Usage(format!("no tensor {name:?}")))?;
    let cols = *t.shape.last().unwrap_or(&1);
    let rows = t.n_elements() / cols.max(1);
    let w = WeightView::with_layout(t.dtype, t.layout, rows, cols, f.data(t)).map_err(FormatError::from)?;
    let mut vals = vec![0f32; t.n_elements()];
    for (r, dst) in vals.chunks_exact_mut(cols).enumerate() {
        w.row_f32(r, dst).map_err(FormatError::from)?;
    }
    write_f32(output, &vals)
}
