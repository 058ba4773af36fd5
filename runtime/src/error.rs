//! The runtime's one error type.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    // ---- the model file ---------------------------------------------------------------------
    #[error(transparent)]
    Format(#[from] autark_format::FormatError),
    #[error("architecture {0:?} is not supported by this runtime ({names} are)", names = autark_format::Architecture::supported_names())]
    UnsupportedArchitecture(String),
    #[error("model is missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name}: {what}")]
    BadTensor { name: String, what: String },
    // ---- inputs -------------------------------------------------------------------------------
    #[error("context overflow: {needed} tokens needed, the session holds {n_ctx}")]
    ContextOverflow { needed: usize, n_ctx: usize },
    #[error("token id {id} is outside the vocabulary ({vocab})")]
    InvalidToken { id: u32, vocab: usize },
    #[error("invalid argument {name}: {what}")]
    InvalidArgument { name: &'static str, what: String },
    #[error("nothing to evaluate: the token list is empty")]
    EmptyInput,
    // ---- text -------------------------------------------------------------------------------
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("the model has no chat template")]
    NoChatTemplate,
    // ---- constraints (structured output) ---------------------------------------------------
    #[error("the schema keyword {keyword:?} cannot be enforced (at {path}; docs/STRUCTURED.md lists the supported keywords)")]
    UnsupportedKeyword { keyword: String, path: String },
    #[error("{kind} constraint: {what}")]
    InvalidConstraint { kind: &'static str, what: String },
    // ---- saved session states ----------------------------------------------------------------
    #[error("session state: {0}")]
    CorruptState(String),
    #[error("the session state belongs to another model (state for {state}, this model is {model})")]
    StateModelMismatch { state: String, model: String },
    // ---- speculative decoding ------------------------------------------------------------------
    #[error("the draft model does not fit the target: {0}")]
    DraftMismatch(String),
    // ---- resources ------------------------------------------------------------------------------
    #[error("the session needs {needed} bytes, over the memory budget of {budget} bytes")]
    MemoryBudget { needed: usize, budget: usize },
    #[error("thread pool: {0}")]
    ThreadPool(String),
    #[error("cannot map {bytes} bytes for the KV cache: {source}")]
    CacheMemory { bytes: usize, source: std::io::Error },
    #[error(transparent)]
    Kernel(#[from] autark_kernels::KernelError),
    /// The GPU backend: no driver or device, a kernel that failed, an unsupported tensor type.
    #[error("CUDA: {0}")]
    Device(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What kind of failure an error is: the one classification that C status codes, binding
/// exceptions and the CLI's exit messages all derive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file cannot be opened or read.
    Io,
    /// Not a valid `.autark` model (truncated, corrupted, bad tensors).
    CorruptModel,
    /// A valid file this runtime cannot run (architecture, format version).
    UnsupportedModel,
    /// The tokens do not fit in the session's context.
    ContextOverflow,
    /// A token id outside the vocabulary.
    InvalidToken,
    /// An option or argument out of range, or nothing to evaluate.
    InvalidArgument,
    /// Tokenizer or chat-template failure.
    Text,
    /// Chat on a model without a chat template.
    NoChatTemplate,
    /// The session would need more memory than allowed or available.
    OutOfMemory,
    /// A resource of the machine failed (threads could not start).
    Internal,
    /// A saved session state that is damaged, truncated or not one.
    CorruptState,
    /// A saved session state of another model.
    StateModelMismatch,
    /// A constraint (JSON Schema) uses a keyword that cannot be enforced.
    UnsupportedConstraint,
    /// A constraint that cannot be compiled: bad syntax, unsatisfiable, over the limits.
    InvalidConstraint,
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        use autark_format::FormatError as F;
        match self {
            RuntimeError::Format(F::Io { .. }) => ErrorKind::Io,
            RuntimeError::Format(F::UnsupportedVersion { .. }) | RuntimeError::UnsupportedArchitecture(_) => {
                ErrorKind::UnsupportedModel
            }
            RuntimeError::Format(_) | RuntimeError::MissingTensor(_) | RuntimeError::BadTensor { .. } => {
                ErrorKind::CorruptModel
            }
            RuntimeError::Kernel(_) => ErrorKind::CorruptModel,
            RuntimeError::ContextOverflow { .. } => ErrorKind::ContextOverflow,
            RuntimeError::InvalidToken { .. } => ErrorKind::InvalidToken,
            RuntimeError::InvalidArgument { .. } | RuntimeError::EmptyInput | RuntimeError::DraftMismatch(_) => {
                ErrorKind::InvalidArgument
            }
            RuntimeError::Tokenizer(_) | RuntimeError::Template(_) => ErrorKind::Text,
            RuntimeError::NoChatTemplate => ErrorKind::NoChatTemplate,
            RuntimeError::MemoryBudget { .. } | RuntimeError::CacheMemory { .. } => ErrorKind::OutOfMemory,
            RuntimeError::ThreadPool(_) | RuntimeError::Device(_) => ErrorKind::Internal,
            RuntimeError::CorruptState(_) => ErrorKind::CorruptState,
            RuntimeError::StateModelMismatch { .. } => ErrorKind::StateModelMismatch,
            RuntimeError::UnsupportedKeyword { .. } => ErrorKind::UnsupportedConstraint,
            RuntimeError::InvalidConstraint { .. } => ErrorKind::InvalidConstraint,
        }
    }
}
