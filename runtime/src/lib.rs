//! autark-runtime: runs `.autark` models on the CPU. `Model` maps a file (shared, immutable);
//! `Session` holds a context (KV cache, scratch) and evaluates tokens; `Sampler`,
//! `Tokenizer`/`Detokenizer` and `chat` turn logits into text.
#![forbid(unsafe_code)]

pub(crate) mod backend;
pub mod bench;
pub mod calibrate;
pub mod chat;
pub mod conformance;
pub mod constraint;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod error;
pub mod forward;
pub mod generate;
pub mod imatrix;
mod kv;
pub mod model;
pub mod options;
pub mod perplexity;
pub mod probe;
pub mod sampler;
pub mod session;
pub mod speculative;
mod state;
pub mod tokenizer;
pub mod tools;

pub use autark_format::{Architecture, FormatError};
pub use chat::ChatMessage;
pub use constraint::{Constraint, Guide};
pub use error::{ErrorKind, Result, RuntimeError};
pub use generate::{GenerateParams, GenerationStats, StopReason};
pub use kv::CacheType;
pub use model::{Model, Prompt};
pub use options::{Options, DEFAULTS};
pub use sampler::{token_logprobs, Sampler, SamplerParams};
pub use session::{CancelHandle, Device, Session, SessionParams};
pub use speculative::{SpecMode, SpeculativeParams};
pub use tokenizer::{Detokenizer, Tokenizer};
pub use tools::{ToolCall, ToolChoice, ToolFormat, ToolSet};
