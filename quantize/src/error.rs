//! The quantizer's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    // ---- files ----------------------------------------------------------------------------
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a GGUF file or a Hugging Face model folder (config.json + *.safetensors)")]
    UnknownInput { path: PathBuf },
    #[error("refusing to write {out}: it is one of the input files")]
    OutputIsInput { out: PathBuf },
    // ---- GGUF -------------------------------------------------------------------------------
    #[error("GGUF: bad magic {0:#010x}")]
    GgufMagic(u32),
    #[error("GGUF: version {0} is not supported (2 and 3 are)")]
    GgufVersion(u32),
    #[error("GGUF: file truncated while reading {what} at byte {offset}")]
    GgufTruncated { what: &'static str, offset: u64 },
    #[error("GGUF: {what} = {value} exceeds what the file can hold ({limit})")]
    GgufLimit { what: &'static str, value: u64, limit: u64 },
    #[error("GGUF: unknown metadata value type {0}")]
    GgufValueType(u32),
    #[error("GGUF: {0}")]
    GgufInvalid(String),
    // ---- safetensors / HF -----------------------------------------------------------------
    #[error("{path}: safetensors: {what}")]
    Safetensors { path: PathBuf, what: String },
    #[error("{path}: {what}")]
    HfConfig { path: PathBuf, what: String },
    #[error("unknown architecture {got:?}; supported: {supported}")]
    UnknownArchitecture { got: String, supported: String },
    #[error("missing {key} in the model configuration")]
    MissingKey { key: String },
    // ---- tensors ----------------------------------------------------------------------------
    #[error("tensor {name}: unsupported source type {what}")]
    UnsupportedType { name: String, what: String },
    #[error("tensor {name}: shape {got:?}, expected {expected:?}")]
    Shape { name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name}: {what}")]
    Tensor { name: String, what: String },
    // ---- tokenizer ----------------------------------------------------------------------------
    #[error("tokenizer: GGUF {key} {what}")]
    TokenizerKey { key: &'static str, what: String },
    #[error("tokenizer: GGUF tokenizer model {model:?} is not supported (llama and gpt2 are)")]
    TokenizerModel { model: String },
    #[error("tokenizer: pre-tokenizer {name:?} (tokenizer.ggml.pre) {why}; not supported")]
    PreTokenizer { name: String, why: &'static str },
    #[error("tokenizer: {path}: {what}")]
    TokenizerFile { path: PathBuf, what: String },
    /// The tokenizer or chat template the file would carry does not load or does not work: the
    /// quantizer writes nothing rather than a file that cannot run.
    #[error("refusing to write a model that cannot run: {source}")]
    UnusableTokenizer { source: autark_runtime::RuntimeError },
    #[error("the conformance probe could not run the written model: {source}")]
    Conformance { source: autark_runtime::RuntimeError },
    // ---- recipe -------------------------------------------------------------------------------
    #[error("bad --tensor-type {rule:?} (expected PATTERN=TYPE with TYPE one of {types})")]
    BadOverride { rule: String, types: String },
    #[error("unknown --type {name:?} (expected one of {expected})")]
    UnknownType { name: String, expected: String },
    // ---- lower layers -------------------------------------------------------------------------
    #[error(transparent)]
    Format(#[from] autark_format::FormatError),
    #[error(transparent)]
    Kernel(#[from] autark_kernels::KernelError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = QuantizeError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io { path: path.to_path_buf(), source }
}
