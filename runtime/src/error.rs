//! The runtime's one error type.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    // ---- the model file ---------------------------------------------------------------------
    #[error(transparent)]
    Format(#[from] autark_format::FormatError),
    #[error("architecture {0:?} is not supported by this runtime (llama, mistral, qwen2, qwen3, phi3, gemma3 are)")]
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
    // ---- resources ------------------------------------------------------------------------------
    #[error("the session needs {needed} bytes, over the memory budget of {budget} bytes")]
    MemoryBudget { needed: usize, budget: usize },
    #[error("thread pool: {0}")]
    ThreadPool(String),
    #[error(transparent)]
    Kernel(#[from] autark_kernels::KernelError),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
