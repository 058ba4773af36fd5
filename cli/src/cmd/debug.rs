//! Commands for tests and debugging: `tokenize`, `logits`, `dump`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use autark_format::AutarkFile;
use autark_runtime::{Session, SessionParams};

use super::run::render_user;
use super::{load, say, write_f32, CliError, Result};

pub fn tokenize(path: &Path, prompt: &str, chat: bool, no_special: bool) -> Result<()> {
    let (model, _) = load(path)?;
    let ids = if chat {
        let text = render_user(&model, None, prompt)?;
        model.tokenizer().encode(&text, false)?
    } else {
        model.tokenizer().encode(prompt, !no_special)?
    };
    say!("{}", serde_json::to_string(&ids).unwrap_or_default());
    Ok(())
}

pub fn logits(
    path: &Path,
    tokens: Option<String>,
    prompt: Option<String>,
    output: &Path,
    threads: usize,
    n_batch: usize,
) -> Result<()> {
    let (model, _) = load(path)?;
    let ids: Vec<u32> = match (tokens, prompt) {
        (Some(t), _) => t
            .split(',')
            .map(|x| x.trim().parse::<u32>().map_err(|_| CliError::Usage(format!("bad token id {x:?}"))))
            .collect::<Result<_>>()?,
        (None, Some(p)) => model.tokenizer().encode(&p, true)?,
        (None, None) => return Err(CliError::Usage("give --tokens or --prompt".into())),
    };
    let n_ctx = ids.len().max(1);
    let mut session =
        Session::new(Arc::clone(&model), SessionParams { n_ctx, n_threads: threads, n_batch, ..Default::default() })?;
    let mut out = vec![0f32; ids.len() * model.config().vocab_size];
    session.eval_all_logits(&ids, &mut out)?;
    write_f32(output, &out)
}

pub fn dump(path: &Path, name: &str, output: &Path) -> Result<()> {
    let f = AutarkFile::open(path)?;
    let t = f.tensor(name).ok_or_else(|| CliError::Usage(format!("no tensor {name:?}")))?;
    let cols = *t.shape.last().unwrap_or(&1);
    let mut vals = vec![0f32; t.n_elements()];
    let rb = t.dtype.row_bytes(cols).map_err(autark_format::FormatError::from)?;
    let data = f.data(t);
    let mut row = vec![0u8; rb];
    for (r, dst) in vals.chunks_exact_mut(cols).enumerate() {
        let bytes = match t.layout {
            autark_kernels::TensorLayout::RowMajor => &data[r * rb..(r + 1) * rb],
            autark_kernels::TensorLayout::Rows16 => {
                autark_kernels::interleave::row(t.dtype, cols, data, r, &mut row)
                    .map_err(autark_format::FormatError::from)?;
                &row
            }
        };
        autark_kernels::blocks::dequantize_bytes(t.dtype, bytes, dst).map_err(autark_format::FormatError::from)?;
    }
    write_f32(output, &vals)
}
