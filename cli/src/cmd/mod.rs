//! The subcommands, one module each (`debug` holds tokenize, logits and dump), and what they
//! share: the error type, `say!`, loading a model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use autark_runtime::Model;

pub mod bench;
pub mod chat;
pub mod debug;
pub mod device;
pub mod inspect;
pub mod perplexity;
pub mod quantize;
pub mod run;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Quantize(#[from] autark_quantize::QuantizeError),
    #[error(transparent)]
    Runtime(#[from] autark_runtime::RuntimeError),
    #[error(transparent)]
    Format(#[from] autark_format::FormatError),
    #[error(transparent)]
    Server(#[from] autark_server::ServerError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
    /// `--device` names a device this build or machine cannot run on.
    #[error("{0}")]
    Device(String),
    #[error("the output is incomplete: the generation stopped ({stop}) before it matched the constraint")]
    Incomplete { stop: String },
    #[error("{0} corrupted tensor(s)")]
    Corrupted(usize),
    #[error("conformance: this machine's kernels differ from the file's record at {0}")]
    NotConformant(String),
    #[error("{}: the model has no chat template; give one with --chat-template FILE (a Jinja template, such as the chat_template of the model's tokenizer_config.json)", model.display())]
    NoChatTemplate { model: PathBuf },
}

pub type Result<T> = std::result::Result<T, CliError>;

/// `println!` that ignores a closed stdout (e.g. `autark inspect … | head`) instead of
/// panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io { path: path.to_path_buf(), source }
}

pub fn write_f32(path: &Path, vals: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(io(path))
}

pub fn load(path: &Path) -> Result<(Arc<Model>, f64)> {
    let t0 = Instant::now();
    let m = Model::load(path)?;
    Ok((Arc::new(m), t0.elapsed().as_secs_f64()))
}

/// A model for chat: its own chat template, or the one in `template`; a model with neither is
/// refused before anything else happens.
pub fn load_for_chat(path: &Path, template: Option<&Path>) -> Result<Arc<Model>> {
    let mut m = Model::load(path)?;
    if let Some(t) = template {
        let text = read_text(t)?;
        m.set_chat_template(&text).map_err(|e| CliError::Usage(format!("--chat-template {}: {e}", t.display())))?;
    }
    if m.tokenizer().chat_template().is_none() {
        return Err(CliError::NoChatTemplate { model: path.to_path_buf() });
    }
    Ok(Arc::new(m))
}

/// A UTF-8 text file.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    String::from_utf8(bytes).map_err(|e| CliError::Usage(format!("{}: not UTF-8: {e}", path.display())))
}
