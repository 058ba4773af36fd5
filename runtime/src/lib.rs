//! autark-runtime: runs `.autark` models on the CPU. `Model` maps a file (shared, immutable);
//! `Session` holds a context (KV cache, scratch) and evaluates tokens; `Sampler`,
//! `Tokenizer`/`Detokenizer` and `chat` turn logits into text.
#![forbid(unsafe_code)]

pub mod bench;
pub mod calibrate;
pub mod chat;
pub mod error;
pub mod forward;
pub mod generate;
pub mod imatrix;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod tokenizer;

pub use autark_format::FormatError;
pub use chat::ChatMessage;
pub use error::{Result, RuntimeError};
pub use forward::{CancelHandle, Session, SessionParams};
pub use generate::{GenerateParams, GenerationStats, StopReason};
pub use model::Model;
pub use sampler::{Sampler, SamplerParams};
pub use tokenizer::{Detokenizer, Tokenizer};
