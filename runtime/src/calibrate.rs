//! Calibration for importance-weighted quantization: runs a model over a text and returns the
//! activation statistics (`imatrix`) that `autark_quantize::Recipe::importance` takes. It lives
//! in the runtime because it runs the model; the quantizer does not depend on the runtime.

use std::collections::HashMap;
use std::sync::Arc;

use crate::perplexity::Windows;
use crate::{Model, Result, Session, SessionParams};

/// Window length of calibration runs (or the model's training context, if shorter).
pub const CALIBRATION_CTX: usize = 512;

/// Evaluates `model` over up to `max_tokens` tokens of `text` (whole windows of
/// `CALIBRATION_CTX`, at least one) and returns the mean squared activation of every linear
/// layer's input columns, by weight name, and the number of tokens seen. `progress(done, of)`
/// is called after each window.
pub fn calibrate(
    model: &Arc<Model>,
    text: &str,
    max_tokens: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(HashMap<String, Vec<f32>>, u64)> {
    let n_ctx = CALIBRATION_CTX.min(model.config().context_length);
    let chunks = (max_tokens / n_ctx).max(1);
    let windows = Windows::new(model.tokenizer(), text, n_ctx, Some(chunks))?;
    let params = SessionParams { n_ctx, n_batch: n_ctx, ..Default::default() };
    let mut session = Session::new(Arc::clone(model), params)?;
    session.collect_activation_stats(true);
    let mut logits = vec![0f32; n_ctx * model.config().vocab_size];
    for i in 0..windows.n_chunks() {
        session.reset();
        session.eval_all_logits(&windows.window(i), &mut logits)?;
        progress(i + 1, windows.n_chunks());
    }
    let stats = session.activation_stats().expect("collecting");
    Ok((stats.importance(), stats.tokens()))
}
