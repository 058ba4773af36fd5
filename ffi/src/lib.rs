//! The C API (`include/autark.h`, generated from this file by cbindgen).
//!
//! Every export goes through `guard`, which catches panics (`AUTARK_ERR_PANIC`), records the
//! error message for `autark_last_error`, and maps errors to status codes in one place
//! (`FfiError::code`). Pointers are checked before use; out-parameters are cleared first.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use autark_runtime::{
    CacheType, ChatMessage, Constraint, Device, GenerateParams, Model, Options, Prompt, RuntimeError, Sampler,
    SamplerParams, Session, SessionParams, SpecMode, SpeculativeParams, ToolChoice, ToolSet, DEFAULTS,
};

/// Status of a call: `AUTARK_OK` (0) or a negative `AUTARK_ERR_*` code. Codes are never
/// reused; a removed code stays listed as a comment.
pub type autark_status = i32;

/// Success.
pub const AUTARK_OK: autark_status = 0;
/// An argument is out of range (e.g. a zero-length token list, a bad sampling parameter).
pub const AUTARK_ERR_INVALID_ARGUMENT: autark_status = -1;
/// A required pointer argument is NULL.
pub const AUTARK_ERR_NULL_POINTER: autark_status = -2;
/// A string argument is not valid UTF-8.
pub const AUTARK_ERR_INVALID_UTF8: autark_status = -3;
/// The file cannot be opened or read (missing, permissions).
pub const AUTARK_ERR_IO: autark_status = -4;
/// The file is not a valid .autark file (truncated, corrupted, wrong magic, bad tensors).
pub const AUTARK_ERR_CORRUPT_MODEL: autark_status = -5;
/// The file is valid but its architecture or format version is not supported.
pub const AUTARK_ERR_UNSUPPORTED_MODEL: autark_status = -6;
/// The tokens do not fit in the session's context.
pub const AUTARK_ERR_CONTEXT_OVERFLOW: autark_status = -7;
/// The output buffer is too small; the length needed was reported.
pub const AUTARK_ERR_BUFFER_TOO_SMALL: autark_status = -8;
/// A token id is outside the vocabulary.
pub const AUTARK_ERR_INVALID_TOKEN: autark_status = -9;
/// Tokenizer or chat-template failure (or the model has no chat template).
pub const AUTARK_ERR_TEXT: autark_status = -10;
/// The session has no logits yet (nothing was evaluated since creation or reset).
pub const AUTARK_ERR_NO_LOGITS: autark_status = -11;
/// The session would need more memory than its budget or the machine has.
pub const AUTARK_ERR_OUT_OF_MEMORY: autark_status = -12;
/// A resource of the machine failed (e.g. the session's threads could not start).
pub const AUTARK_ERR_INTERNAL: autark_status = -13;
/// A saved session state is damaged, truncated or not one.
pub const AUTARK_ERR_CORRUPT_STATE: autark_status = -14;
/// A saved session state belongs to another model.
pub const AUTARK_ERR_STATE_MODEL_MISMATCH: autark_status = -15;
/// An internal error (a bug): a panic was caught at the boundary.
/// A constraint (`autark_session_set_constraint`) uses a JSON Schema keyword that cannot be
/// enforced; the message names it.
pub const AUTARK_ERR_UNSUPPORTED_CONSTRAINT: autark_status = -16;
/// A constraint that cannot be compiled (syntax, unsatisfiable, over the limits).
pub const AUTARK_ERR_INVALID_CONSTRAINT: autark_status = -17;
/// A constrained generation stopped (max_tokens, full context, cancel) before its output was
/// complete: the text streamed does not match the constraint. The session stays usable.
pub const AUTARK_ERR_INCOMPLETE_OUTPUT: autark_status = -18;
/// `autark_model_verify_conformance`: this machine's kernels do not reproduce the file's
/// conformance record; the message names the first differing prompt and step.
pub const AUTARK_ERR_NOT_CONFORMANT: autark_status = -19;
/// `autark_model_verify_conformance`: the file holds no conformance record (written with
/// `--no-conformance`, by an older autark, or with another probe version).
pub const AUTARK_ERR_NO_CONFORMANCE_RECORD: autark_status = -20;
pub const AUTARK_ERR_PANIC: autark_status = -100;

/// Version of this C ABI; changes when a signature or struct layout changes (2: the KV cache
/// and context-shift fields of `autark_session_params`; 4: its `device`; 5: its `draft_min`;
/// 6: its `repeat_last_n`, `frequency_penalty` and `presence_penalty`).
pub const AUTARK_ABI_VERSION: u32 = 6;

/// Where a session's forward pass runs (`device` of `autark_session_params`): the CPU (default).
pub const AUTARK_DEVICE_CPU: i32 = 0;
/// The first NVIDIA GPU (a library built with the `cuda` feature; docs/CUDA.md). Without CUDA
/// support, a driver or a device, `autark_session_new` fails with AUTARK_ERR_INTERNAL and says why.
pub const AUTARK_DEVICE_CUDA: i32 = 1;

/// KV cache types (`cache_type_k`, `cache_type_v` of `autark_session_params`).
pub const AUTARK_CACHE_F32: i32 = 0;
/// IEEE half: 2 bytes a value.
pub const AUTARK_CACHE_F16: i32 = 1;
/// ggml's q8_0 blocks: 34 bytes per 32 values (head size a multiple of 32).
pub const AUTARK_CACHE_Q8_0: i32 = 2;

/// Speculative decoding (`speculative` of `autark_session_params`): off (default).
pub const AUTARK_SPEC_OFF: i32 = 0;
/// Drafts from n-grams of the prompt and the output so far (prompt lookup).
pub const AUTARK_SPEC_LOOKUP: i32 = 1;
/// Drafts from a smaller model with the same vocabulary (`autark_session_set_draft`).
pub const AUTARK_SPEC_DRAFT: i32 = 2;
/// Kinds of constraint (`autark_session_set_constraint`): none (unconstrained output).
pub const AUTARK_CONSTRAINT_NONE: i32 = 0;
/// A JSON Schema (its JSON text): the output is one JSON value valid under it.
pub const AUTARK_CONSTRAINT_JSON_SCHEMA: i32 = 1;
/// A regular expression (Rust `regex` syntax) the whole output matches.
pub const AUTARK_CONSTRAINT_REGEX: i32 = 2;
/// A grammar in llguidance's Lark syntax (docs/STRUCTURED.md).
pub const AUTARK_CONSTRAINT_GRAMMAR: i32 = 3;

/// `autark_chat_tools_choice`: the reply must be one call (OpenAI's `tool_choice: "required"`).
pub const AUTARK_TOOL_CHOICE_REQUIRED: i32 = 0;
/// `autark_chat_tools_choice`: the reply is one call or text (`tool_choice: "auto"`).
pub const AUTARK_TOOL_CHOICE_AUTO: i32 = 1;

#[derive(Debug)]
enum FfiError {
    Incomplete(autark_runtime::StopReason),
    Null(&'static str),
    Utf8(&'static str),
    Invalid(String),
    BufferTooSmall { needed: usize },
    NoLogits,
    NotConformant(String),
    NoRecord(String),
    Runtime(RuntimeError),
}

impl From<RuntimeError> for FfiError {
    fn from(e: RuntimeError) -> Self {
        FfiError::Runtime(e)
    }
}

impl std::fmt::Display for FfiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FfiError::Null(what) => write!(f, "{what} is NULL"),
            FfiError::Utf8(what) => write!(f, "{what} is not valid UTF-8"),
            FfiError::Invalid(what) => write!(f, "invalid argument: {what}"),
            FfiError::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} needed"),
            FfiError::NoLogits => write!(f, "no logits: evaluate tokens first"),
            FfiError::NotConformant(d) => write!(f, "conformance: the kernels differ from the record at {d}"),
            FfiError::NoRecord(why) => write!(f, "{why}"),
            FfiError::Incomplete(stop) => {
                write!(
                    f,
                    "the output is incomplete: the generation stopped ({stop:?}) before it matched the constraint"
                )
            }
            FfiError::Runtime(e) => write!(f, "{e}"),
        }
    }
}

impl FfiError {
    /// The one mapping from errors to C status codes (runtime errors through
    /// `RuntimeError::kind`, which the bindings use too).
    fn code(&self) -> autark_status {
        use autark_runtime::ErrorKind as K;
        match self {
            FfiError::Null(_) => AUTARK_ERR_NULL_POINTER,
            FfiError::Utf8(_) => AUTARK_ERR_INVALID_UTF8,
            FfiError::Invalid(_) => AUTARK_ERR_INVALID_ARGUMENT,
            FfiError::BufferTooSmall { .. } => AUTARK_ERR_BUFFER_TOO_SMALL,
            FfiError::NoLogits => AUTARK_ERR_NO_LOGITS,
            FfiError::Incomplete(_) => AUTARK_ERR_INCOMPLETE_OUTPUT,
            FfiError::NotConformant(_) => AUTARK_ERR_NOT_CONFORMANT,
            FfiError::NoRecord(_) => AUTARK_ERR_NO_CONFORMANCE_RECORD,
            FfiError::Runtime(e) => match e.kind() {
                K::Io => AUTARK_ERR_IO,
                K::CorruptModel => AUTARK_ERR_CORRUPT_MODEL,
                K::UnsupportedModel => AUTARK_ERR_UNSUPPORTED_MODEL,
                K::ContextOverflow => AUTARK_ERR_CONTEXT_OVERFLOW,
                K::InvalidToken => AUTARK_ERR_INVALID_TOKEN,
                K::InvalidArgument => AUTARK_ERR_INVALID_ARGUMENT,
                K::Text | K::NoChatTemplate => AUTARK_ERR_TEXT,
                K::OutOfMemory => AUTARK_ERR_OUT_OF_MEMORY,
                K::Internal => AUTARK_ERR_INTERNAL,
                K::CorruptState => AUTARK_ERR_CORRUPT_STATE,
                K::StateModelMismatch => AUTARK_ERR_STATE_MODEL_MISMATCH,
                K::UnsupportedConstraint => AUTARK_ERR_UNSUPPORTED_CONSTRAINT,
                K::InvalidConstraint => AUTARK_ERR_INVALID_CONSTRAINT,
            },
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an export body: catches panics, records errors, returns the status.
fn guard(f: impl FnOnce() -> Result<(), FfiError>) -> autark_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            AUTARK_OK
        }
        Ok(Err(e)) => {
            set_error(&e.to_string());
            e.code()
        }
        Err(_) => {
            set_error("internal error: a panic was caught at the C boundary (please report this)");
            AUTARK_ERR_PANIC
        }
    }
}

/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
unsafe fn str_arg<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract (documented in the header).
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| FfiError::Utf8(what))
}

/// # Safety
/// `p` is NULL or points to a live `T` that is not mutated during `'a`.
unsafe fn ref_arg<'a, T>(p: *const T, what: &'static str) -> Result<&'a T, FfiError> {
    // SAFETY: per the caller's contract, a non-NULL `p` points to a live object.
    unsafe { p.as_ref() }.ok_or(FfiError::Null(what))
}

/// # Safety
/// `p` is NULL or points to a live `T` not accessed elsewhere during `'a`.
unsafe fn mut_arg<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T, FfiError> {
    // SAFETY: per the caller's contract, a non-NULL `p` points to a live, unaliased object.
    unsafe { p.as_mut() }.ok_or(FfiError::Null(what))
}

/// Writes `s` NUL-terminated into `buf` (`capacity` bytes) and its length into `len`.
///
/// # Safety
/// `buf` is NULL (only with `capacity == 0`) or valid for `capacity` bytes; `len` is valid.
unsafe fn write_string(s: &str, buf: *mut c_char, capacity: usize, len: *mut usize) -> Result<(), FfiError> {
    // SAFETY: `len` was checked non-NULL by the caller.
    unsafe { *len = s.len() };
    if s.len() + 1 > capacity {
        return Err(FfiError::BufferTooSmall { needed: s.len() });
    }
    if buf.is_null() {
        return Err(FfiError::Null("buf"));
    }
    // SAFETY: `buf` holds `capacity >= s.len() + 1` bytes; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    Ok(())
}

// ============================================================================================
// Library
// ============================================================================================

/// The ABI version (`AUTARK_ABI_VERSION` of the library actually loaded).
#[no_mangle]
pub extern "C" fn autark_abi_version() -> u32 {
    AUTARK_ABI_VERSION
}

/// The library version, e.g. "0.1.0". Static storage; never free it.
#[no_mangle]
pub extern "C" fn autark_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the calling thread's last failed call ("" after a successful call). Owned by
/// the library; valid until this thread's next call into the library.
#[no_mangle]
pub extern "C" fn autark_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

// ============================================================================================
// Model
// ============================================================================================

/// A loaded model: the memory-mapped .autark file, validated. Immutable; safe to share between
/// threads and sessions. Free with `autark_model_free`.
pub struct autark_model {
    inner: Arc<Model>,
}

/// Options for `autark_model_load`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct autark_model_params {
    /// Check every tensor's SHA-256 at load (reads the whole file once). Default false.
    pub verify_checksums: bool,
}

/// Default model options.
#[no_mangle]
pub extern "C" fn autark_model_params_default() -> autark_model_params {
    autark_model_params { verify_checksums: false }
}

/// Loads a .autark file. `params` may be NULL (defaults). On success `*out` holds the model;
/// on failure it is NULL. Thread-safe.
///
/// # Safety
/// `path` is a NUL-terminated string; `params` is NULL or valid; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_model_load(
    path: *const c_char,
    params: *const autark_model_params,
    out: *mut *mut autark_model,
) -> autark_status {
    guard(|| {
        if out.is_null() {
            return Err(FfiError::Null("out"));
        }
        // SAFETY: `out` is non-NULL and valid for a write per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: contract of this function.
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: contract of this function.
        let params =
            if params.is_null() { autark_model_params_default() } else { *unsafe { ref_arg(params, "params") }? };
        let model = Model::load(Path::new(path))?;
        if params.verify_checksums {
            let bad = model.file().verify();
            if !bad.is_empty() {
                return Err(FfiError::Runtime(RuntimeError::BadTensor {
                    name: bad.join(", "),
                    what: "checksum mismatch".into(),
                }));
            }
        }
        let boxed = Box::new(autark_model { inner: Arc::new(model) });
        // SAFETY: `out` checked above.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Frees a model. NULL is ignored. Sessions created from it keep their own reference, so it may
/// be freed before them.
///
/// # Safety
/// `m` is NULL or a model from `autark_model_load` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn autark_model_free(m: *mut autark_model) {
    if !m.is_null() {
        // SAFETY: `m` came from `Box::into_raw` in `autark_model_load` and is freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(m) })));
    }
}

/// Vocabulary size of the model.
///
/// # Safety
/// `m` is a live model; `n_vocab` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_model_n_vocab(m: *const autark_model, n_vocab: *mut usize) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let n = unsafe { mut_arg(n_vocab, "n_vocab") }?;
        *n = 0;
        // SAFETY: contract of this function.
        *n = unsafe { ref_arg(m, "model") }?.inner.config().vocab_size;
        Ok(())
    })
}

/// Runs the model file's conformance probe (docs/NUMERICS.md) with this machine's kernels on
/// `n_threads` threads (0 = all cores) and compares every step's logits with the record bit for
/// bit: AUTARK_OK when identical, AUTARK_ERR_NOT_CONFORMANT (the message, `autark_last_error`,
/// names the first differing prompt and step) or AUTARK_ERR_NO_CONFORMANCE_RECORD. Takes about
/// a dozen forward passes. Thread-safe.
///
/// # Safety
/// `m` is a live model.
#[no_mangle]
pub unsafe extern "C" fn autark_model_verify_conformance(m: *const autark_model, n_threads: u32) -> autark_status {
    guard(|| {
        use autark_runtime::conformance::{verify, Verdict, VERSION};
        // SAFETY: contract of this function.
        let model = &unsafe { ref_arg(m, "model") }?.inner;
        match verify(model, n_threads as usize)? {
            Verdict::Identical { .. } => Ok(()),
            Verdict::Differs(d) => Err(FfiError::NotConformant(d.to_string())),
            Verdict::NoRecord => Err(FfiError::NoRecord("the model file holds no conformance record".into())),
            Verdict::OtherVersion(v) => Err(FfiError::NoRecord(format!(
                "the conformance record is of probe version {v}; this library runs version {VERSION}"
            ))),
        }
    })
}

/// Text → token ids. `add_special`: add the model's special tokens (BOS where it wants one).
/// `tokens` may be NULL when `capacity` is 0 (to ask for the count). When `capacity` is too
/// small: AUTARK_ERR_BUFFER_TOO_SMALL and `*n_tokens` = the count needed. Thread-safe.
///
/// # Safety
/// `m` is a live model; `text` NUL-terminated; `tokens` valid for `capacity` values;
/// `n_tokens` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_tokenize(
    m: *const autark_model,
    text: *const c_char,
    add_special: bool,
    tokens: *mut i32,
    capacity: usize,
    n_tokens: *mut usize,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let n = unsafe { mut_arg(n_tokens, "n_tokens") }?;
        *n = 0;
        // SAFETY: contract of this function.
        let model = &unsafe { ref_arg(m, "model") }?.inner;
        // SAFETY: contract of this function.
        let text = unsafe { str_arg(text, "text") }?;
        let ids = model.tokenizer().encode(text, add_special)?;
        *n = ids.len();
        if ids.len() > capacity {
            return Err(FfiError::BufferTooSmall { needed: ids.len() });
        }
        if tokens.is_null() && !ids.is_empty() {
            return Err(FfiError::Null("tokens"));
        }
        for (i, &id) in ids.iter().enumerate() {
            // SAFETY: i < ids.len() <= capacity, and `tokens` holds `capacity` values.
            unsafe { *tokens.add(i) = id as i32 };
        }
        Ok(())
    })
}

/// The text of one token (special tokens included), NUL-terminated in `buf`; `*len` = its length
/// without the NUL (also when the buffer is too small). Thread-safe.
///
/// # Safety
/// `m` is a live model; `buf` valid for `capacity` bytes; `len` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_token_to_piece(
    m: *const autark_model,
    token: i32,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let l = unsafe { mut_arg(len, "len") }?;
        *l = 0;
        // SAFETY: contract of this function.
        let model = &unsafe { ref_arg(m, "model") }?.inner;
        let vocab = model.config().vocab_size;
        if token < 0 || token as usize >= vocab {
            return Err(FfiError::Runtime(RuntimeError::InvalidToken { id: token as u32, vocab }));
        }
        let piece = model.tokenizer().decode(&[token as u32], false)?;
        // SAFETY: contract of this function.
        unsafe { write_string(&piece, buf, capacity, len) }
    })
}

/// Renders a conversation with the model's chat template. `roles[i]` / `contents[i]` are the
/// i-th message ("system", "user", "assistant"); `add_assistant` appends the prompt for the
/// assistant's reply. Output as in `autark_token_to_piece`. Thread-safe.
///
/// # Safety
/// `m` is a live model; `roles` and `contents` hold `n_messages` NUL-terminated strings each;
/// `buf` valid for `capacity` bytes; `len` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_chat_apply_template(
    m: *const autark_model,
    roles: *const *const c_char,
    contents: *const *const c_char,
    n_messages: usize,
    add_assistant: bool,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let l = unsafe { mut_arg(len, "len") }?;
        *l = 0;
        // SAFETY: contract of this function.
        let model = &unsafe { ref_arg(m, "model") }?.inner;
        // SAFETY: contract of this function.
        let msgs = unsafe { messages_arg(roles, contents, n_messages) }?;
        let text = autark_runtime::chat::render(model.tokenizer(), &msgs, add_assistant)?;
        // SAFETY: contract of this function.
        unsafe { write_string(&text, buf, capacity, len) }
    })
}

/// The messages of `roles` / `contents`.
///
/// # Safety
/// `roles` and `contents` hold `n` NUL-terminated strings each (or are NULL with `n == 0`).
unsafe fn messages_arg(
    roles: *const *const c_char,
    contents: *const *const c_char,
    n: usize,
) -> Result<Vec<ChatMessage>, FfiError> {
    if n > 0 && (roles.is_null() || contents.is_null()) {
        return Err(FfiError::Null("roles or contents"));
    }
    let mut msgs = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: both arrays hold `n` pointers (contract), non-NULL checked above.
        let (r, c) = unsafe { (*roles.add(i), *contents.add(i)) };
        // SAFETY: each element is a NUL-terminated string (contract).
        let (r, c) = unsafe { (str_arg(r, "role")?, str_arg(c, "content")?) };
        msgs.push(ChatMessage::new(r, c));
    }
    Ok(msgs)
}

// ============================================================================================
// Session
// ============================================================================================

/// A context on a model: KV cache, scratch, sampler. Use from one thread at a time. Free with
/// `autark_session_free`.
pub struct autark_session {
    session: Session,
    sampler: Sampler,
    /// The generation settings of `autark_generate` (its `max_tokens` aside).
    generate: GenerateParams,
    has_logits: bool,
    /// Drafted and accepted tokens of the last generation.
    drafts: [usize; 2],
    /// The calls of the last `autark_chat_tools`, as JSON.
    tool_calls: String,
}

/// Options for `autark_session_new`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct autark_session_params {
    /// Context length in tokens; 0 = the model's training context, capped at 4096.
    pub n_ctx: u32,
    /// Worker threads; 0 = one per core.
    pub n_threads: u32,
    /// Tokens per batch when evaluating a prompt. Default 64.
    pub n_batch: u32,
    /// Seed of the sampler's random stream (same seed, same text).
    pub seed: u64,
    /// Sampling temperature; 0 = greedy. Default 0.8.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off. Default 40.
    pub top_k: i32,
    /// Nucleus sampling threshold in (0, 1]; 1 = off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens below min_p × the best probability; 0 = off. Default 0.05.
    pub min_p: f32,
    /// Repetition penalty on the last `repeat_last_n` tokens; 1 = off. Default 1.
    pub repeat_penalty: f32,
    /// Refuse the session (AUTARK_ERR_OUT_OF_MEMORY) if it needs more bytes than this; 0 = no
    /// budget (it is then refused only beyond the machine's available memory). See
    /// `autark_session_memory_bytes`.
    pub max_memory_bytes: u64,
    /// How the KV cache stores keys and values: `AUTARK_CACHE_F32` (default), `_F16` or `_Q8_0`.
    pub cache_type_k: i32,
    pub cache_type_v: i32,
    /// When the context is full during `autark_generate`, drop the oldest tokens after the
    /// first `n_keep` and go on, instead of stopping. Default false.
    pub context_shift: bool,
    pub n_keep: u32,
    /// Speculative decoding in `autark_generate`: `AUTARK_SPEC_OFF` (default), `_LOOKUP` or
    /// `_DRAFT`. The text is the same as without it (with `_DRAFT` and a temperature above 0:
    /// the same distribution).
    pub speculative: i32,
    /// Most tokens drafted per step (1–64). Default 16.
    pub draft_max: u32,
    /// `AUTARK_DEVICE_CPU` (default) or `AUTARK_DEVICE_CUDA`.
    pub device: i32,
    /// Fewest tokens drafted per step whenever there is something to draft, whatever the
    /// measured acceptance says (at most `draft_max`). Default 0: the drafter may draft none.
    pub draft_min: u32,
    /// Recent tokens the penalties look at. Default 64.
    pub repeat_last_n: u32,
    /// Subtracted from a recent token's logit once per occurrence; 0 = off (default).
    pub frequency_penalty: f32,
    /// Subtracted once from the logit of every recent token; 0 = off (default).
    pub presence_penalty: f32,
}

/// Default session options.
#[no_mangle]
pub extern "C" fn autark_session_params_default() -> autark_session_params {
    let (p, s) = (DEFAULTS.session, DEFAULTS.generate.sampler);
    autark_session_params {
        n_ctx: p.n_ctx as u32,
        n_threads: p.n_threads as u32,
        n_batch: p.n_batch as u32,
        seed: s.seed,
        temperature: s.temperature,
        top_k: s.top_k as i32,
        top_p: s.top_p,
        min_p: s.min_p,
        max_memory_bytes: p.max_memory_bytes as u64,
        repeat_penalty: s.repeat_penalty,
        cache_type_k: p.cache_type_k.code() as i32,
        cache_type_v: p.cache_type_v.code() as i32,
        context_shift: DEFAULTS.generate.context_shift,
        n_keep: DEFAULTS.generate.n_keep as u32,
        speculative: DEFAULTS.generate.speculative.mode.code() as i32,
        draft_max: DEFAULTS.generate.speculative.draft_max as u32,
        device: match p.device {
            Device::Cpu => AUTARK_DEVICE_CPU,
            Device::Cuda => AUTARK_DEVICE_CUDA,
        },
        draft_min: DEFAULTS.generate.speculative.draft_min as u32,
        repeat_last_n: s.repeat_last_n as u32,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
    }
}

fn cache_type(code: i32, name: &'static str) -> Result<CacheType, FfiError> {
    u32::try_from(code)
        .ok()
        .and_then(CacheType::from_code)
        .ok_or_else(|| FfiError::Invalid(format!("{name} {code} (AUTARK_CACHE_F32, _F16 or _Q8_0)")))
}

/// The runtime's options from C's (fields C does not expose keep their defaults).
fn options(p: &autark_session_params) -> Result<Options, FfiError> {
    let top_k = usize::try_from(p.top_k).map_err(|_| FfiError::Invalid(format!("top_k {}", p.top_k)))?;
    let mut o = DEFAULTS;
    o.session = SessionParams {
        n_ctx: p.n_ctx as usize,
        n_threads: p.n_threads as usize,
        n_batch: p.n_batch as usize,
        max_memory_bytes: usize::try_from(p.max_memory_bytes).unwrap_or(usize::MAX),
        cache_type_k: cache_type(p.cache_type_k, "cache_type_k")?,
        cache_type_v: cache_type(p.cache_type_v, "cache_type_v")?,
        device: match p.device {
            AUTARK_DEVICE_CPU => Device::Cpu,
            AUTARK_DEVICE_CUDA => Device::Cuda,
            d => return Err(FfiError::Invalid(format!("device {d} (AUTARK_DEVICE_CPU or _CUDA)"))),
        },
    };
    o.generate.context_shift = p.context_shift;
    o.generate.n_keep = p.n_keep as usize;
    o.generate.speculative = SpeculativeParams {
        mode: u32::try_from(p.speculative).ok().and_then(SpecMode::from_code).ok_or_else(|| {
            FfiError::Invalid(format!("speculative {} (AUTARK_SPEC_OFF, _LOOKUP or _DRAFT)", p.speculative))
        })?,
        draft_max: p.draft_max as usize,
        draft_min: p.draft_min as usize,
    };
    o.generate.sampler = SamplerParams {
        temperature: p.temperature,
        top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n as usize,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        seed: p.seed,
    };
    o.validate()?;
    Ok(o)
}

/// Creates a session on a model (allocates its KV cache and scratch once). `params` may be NULL.
/// The session holds its own reference to the model.
///
/// # Safety
/// `m` is a live model; `params` NULL or valid; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_new(
    m: *const autark_model,
    params: *const autark_session_params,
    out: *mut *mut autark_session,
) -> autark_status {
    // SAFETY: contract of this function.
    unsafe { session_into(m, params, out, |model, p| Ok(Session::new(model, p)?)) }
}

/// The body of `autark_session_new` and `autark_session_load`: clears `*out`, reads the model
/// and the params (NULL: the defaults), makes the session with `make` and stores it in `*out`.
///
/// # Safety
/// `m` is a live model; `params` NULL or valid; `out` NULL or valid for a write.
unsafe fn session_into(
    m: *const autark_model,
    params: *const autark_session_params,
    out: *mut *mut autark_session,
    make: impl FnOnce(Arc<Model>, SessionParams) -> Result<Session, FfiError>,
) -> autark_status {
    guard(|| {
        if out.is_null() {
            return Err(FfiError::Null("out"));
        }
        // SAFETY: `out` is non-NULL and valid for a write per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: contract of this function.
        let model = &unsafe { ref_arg(m, "model") }?.inner;
        // SAFETY: contract of this function.
        let p = if params.is_null() { autark_session_params_default() } else { *unsafe { ref_arg(params, "params") }? };
        let o = options(&p)?;
        let session = make(Arc::clone(model), o.session)?;
        let sampler = Sampler::new(o.generate.sampler, session.model().config().vocab_size)?;
        let has_logits = !session.tokens().is_empty();
        let boxed = Box::new(autark_session {
            session,
            sampler,
            generate: o.generate,
            has_logits,
            drafts: [0; 2],
            tool_calls: String::new(),
        });
        // SAFETY: `out` checked above.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Saves the session's state (tokens, KV cache in its types, a suspended generation) to `path`,
/// atomically (a temporary file renamed into place): see docs/FORMAT.md, "Session state".
///
/// # Safety
/// `s` is a live session used by no other thread; `path` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn autark_session_save(s: *const autark_session, path: *const c_char) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { ref_arg(s, "session") }?;
        // SAFETY: contract of this function.
        let path = unsafe { str_arg(path, "path") }?;
        s.session.save(Path::new(path))?;
        Ok(())
    })
}

/// Creates a session from a state `autark_session_save` wrote, on the same model
/// (AUTARK_ERR_STATE_MODEL_MISMATCH for another model's, AUTARK_ERR_CORRUPT_STATE for a damaged
/// file). The state's context size, batch size and cache types replace those of `params` (which
/// may be NULL); its threads, memory budget and sampling settings apply.
/// `autark_generate_continue` then goes on exactly where a saved generation stopped.
///
/// # Safety
/// `m` is a live model; `path` NUL-terminated; `params` NULL or valid; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_load(
    m: *const autark_model,
    path: *const c_char,
    params: *const autark_session_params,
    out: *mut *mut autark_session,
) -> autark_status {
    // SAFETY: contract of this function.
    unsafe {
        session_into(m, params, out, |model, p| {
            let path = str_arg(path, "path")?;
            Ok(Session::load(model, Path::new(path), p)?)
        })
    }
}

/// Frees a session. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a session from `autark_session_new` not yet freed, not in use on another
/// thread.
#[no_mangle]
pub unsafe extern "C" fn autark_session_free(s: *mut autark_session) {
    if !s.is_null() {
        // SAFETY: `s` came from `Box::into_raw` in `autark_session_new` and is freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(s) })));
    }
}

/// Forgets the context (tokens evaluated so far) and restarts the sampler's random stream.
///
/// # Safety
/// `s` is a live session used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn autark_session_reset(s: *mut autark_session) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        s.session.reset();
        s.sampler = Sampler::new(s.generate.sampler, s.session.model().config().vocab_size)?;
        s.has_logits = false;
        Ok(())
    })
}

/// Number of tokens in the session's context.
///
/// # Safety
/// `s` is a live session; `n` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_n_tokens(s: *const autark_session, n: *mut usize) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let n = unsafe { mut_arg(n, "n") }?;
        *n = 0;
        // SAFETY: contract of this function.
        *n = unsafe { ref_arg(s, "session") }?.session.tokens().len();
        Ok(())
    })
}

/// Appends `n` tokens to the context and evaluates them; afterwards the logits are the last
/// token's. A context overflow (AUTARK_ERR_CONTEXT_OVERFLOW) leaves the context unchanged.
///
/// # Safety
/// `s` is a live session used by no other thread; `tokens` holds `n` values.
#[no_mangle]
pub unsafe extern "C" fn autark_session_eval(s: *mut autark_session, tokens: *const i32, n: usize) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        if tokens.is_null() {
            return Err(FfiError::Null("tokens"));
        }
        if n == 0 {
            return Err(FfiError::Runtime(RuntimeError::EmptyInput));
        }
        // SAFETY: `tokens` is non-NULL and holds `n` values (contract).
        let t = unsafe { std::slice::from_raw_parts(tokens, n) };
        let vocab = s.session.model().config().vocab_size;
        let ids: Vec<u32> = t
            .iter()
            .map(|&x| {
                if x < 0 {
                    Err(FfiError::Runtime(RuntimeError::InvalidToken { id: x as u32, vocab }))
                } else {
                    Ok(x as u32)
                }
            })
            .collect::<Result<_, _>>()?;
        s.session.eval(&ids)?;
        s.has_logits = true;
        Ok(())
    })
}

/// The logits of the last evaluated token: `*logits` points to `*n_vocab` floats owned by the
/// session, valid until its next eval, generate, reset or free.
///
/// # Safety
/// `s` is a live session; `logits` and `n_vocab` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn autark_session_logits(
    s: *const autark_session,
    logits: *mut *const f32,
    n_vocab: *mut usize,
) -> autark_status {
    guard(|| {
        if logits.is_null() {
            return Err(FfiError::Null("logits"));
        }
        // SAFETY: non-NULL, valid for a write (contract).
        unsafe { *logits = std::ptr::null() };
        // SAFETY: contract of this function.
        let n = unsafe { mut_arg(n_vocab, "n_vocab") }?;
        *n = 0;
        // SAFETY: contract of this function.
        let s = unsafe { ref_arg(s, "session") }?;
        if !s.has_logits {
            return Err(FfiError::NoLogits);
        }
        let l = s.session.logits();
        // SAFETY: checked non-NULL above.
        unsafe { *logits = l.as_ptr() };
        *n = l.len();
        Ok(())
    })
}

/// Samples the next token from the current logits with the session's sampler (the token is not
/// evaluated: pass it to `autark_session_eval` to continue).
///
/// # Safety
/// `s` is a live session used by no other thread; `token` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_sample(s: *mut autark_session, token: *mut i32) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let t = unsafe { mut_arg(token, "token") }?;
        *t = -1;
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        if !s.has_logits {
            return Err(FfiError::NoLogits);
        }
        *t = s.sampler.sample(s.session.logits(), s.session.tokens()) as i32;
        Ok(())
    })
}

/// Bytes the session allocated (KV cache, scratch): what `max_memory_bytes` is compared with.
///
/// # Safety
/// `s` is a live session; `bytes` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_memory_bytes(s: *const autark_session, bytes: *mut u64) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let b = unsafe { mut_arg(bytes, "bytes") }?;
        *b = 0;
        // SAFETY: contract of this function.
        *b = unsafe { ref_arg(s, "session") }?.session.memory_bytes() as u64;
        Ok(())
    })
}

/// Stops a session's generation from another thread. Obtained with
/// `autark_session_cancel_token`; thread-safe; free with `autark_cancel_token_free` (it may
/// outlive its session, after which cancelling does nothing).
pub struct autark_cancel_token {
    handle: autark_runtime::CancelHandle,
}

/// A cancel token for the session: `autark_cancel(token)` from any thread makes the session's
/// running (or next) `autark_generate` return AUTARK_OK after the current token.
///
/// # Safety
/// `s` is a live session; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_cancel_token(
    s: *const autark_session,
    out: *mut *mut autark_cancel_token,
) -> autark_status {
    guard(|| {
        if out.is_null() {
            return Err(FfiError::Null("out"));
        }
        // SAFETY: `out` is non-NULL and valid for a write per the contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: contract of this function.
        let s = unsafe { ref_arg(s, "session") }?;
        let boxed = Box::new(autark_cancel_token { handle: s.session.cancel_handle() });
        // SAFETY: `out` checked above.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Requests cancellation (see `autark_session_cancel_token`). Thread-safe.
///
/// # Safety
/// `t` is a live token.
#[no_mangle]
pub unsafe extern "C" fn autark_cancel(t: *const autark_cancel_token) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        unsafe { ref_arg(t, "token") }?.handle.cancel();
        Ok(())
    })
}

/// Frees a cancel token. NULL is ignored.
///
/// # Safety
/// `t` is NULL or a token from `autark_session_cancel_token` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn autark_cancel_token_free(t: *mut autark_cancel_token) {
    if !t.is_null() {
        // SAFETY: `t` came from `Box::into_raw` in `autark_session_cancel_token`, freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(t) })));
    }
}

/// Receives generated text: `piece` is NUL-terminated UTF-8 of `len` bytes, valid only during
/// the call. Return false to stop generation.
pub type autark_piece_callback =
    Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// Generates up to `max_tokens` tokens after `prompt`. The session's context becomes the
/// prompt's tokens (BOS added where the model wants it), re-using any common prefix already
/// evaluated (pass the whole conversation each turn: only new tokens are evaluated). Text goes
/// to `cb` as it becomes complete UTF-8; `cb` may be NULL. Stops at an end-of-generation token,
/// `max_tokens`, a full context, or when `cb` returns false (all AUTARK_OK). The sampler
/// restarts from the session's seed on every call. With a constraint
/// (`autark_session_set_constraint`), it also stops when the output is complete, and returns
/// AUTARK_ERR_INCOMPLETE_OUTPUT when it stopped before.
///
/// # Safety
/// `s` is a live session used by no other thread; `prompt` NUL-terminated; `cb`, if not NULL,
/// is callable with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn autark_generate(
    s: *mut autark_session,
    prompt: *const c_char,
    max_tokens: u32,
    cb: autark_piece_callback,
    user_data: *mut c_void,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        // SAFETY: contract of this function.
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        let model = Arc::clone(s.session.model());
        let tokens = model.prompt_tokens(Prompt::Text(prompt))?;
        // SAFETY: contract of this function.
        unsafe { run_generation(s, Some(&tokens), max_tokens, cb, user_data) }
    })
}

/// Generates up to `max_tokens` more tokens from the current context: a generation that stopped
/// at its `max_tokens` or was cancelled — also one saved and loaded again — continues exactly
/// as if it had never stopped (same tokens, same text); otherwise a new one starts from the last
/// token's logits. AUTARK_ERR_INVALID_ARGUMENT on an empty context.
///
/// # Safety
/// As `autark_generate`.
#[no_mangle]
pub unsafe extern "C" fn autark_generate_continue(
    s: *mut autark_session,
    max_tokens: u32,
    cb: autark_piece_callback,
    user_data: *mut c_void,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        // SAFETY: contract of this function.
        unsafe { run_generation(s, None, max_tokens, cb, user_data) }
    })
}

/// `autark_generate` (`tokens`) or `autark_generate_continue` (`None`).
///
/// # Safety
/// `cb`, if not NULL, is callable with `user_data`.
unsafe fn run_generation(
    s: &mut autark_session,
    tokens: Option<&[u32]>,
    max_tokens: u32,
    cb: autark_piece_callback,
    user_data: *mut c_void,
) -> Result<(), FfiError> {
    let params = GenerateParams { max_tokens: max_tokens as usize, ..s.generate.clone() };
    // SAFETY: contract of this function.
    unsafe { run_with(s, tokens, &params, cb, user_data) }
}

/// `run_generation` with its own settings.
///
/// # Safety
/// `cb`, if not NULL, is callable with `user_data`.
unsafe fn run_with(
    s: &mut autark_session,
    tokens: Option<&[u32]>,
    params: &GenerateParams,
    cb: autark_piece_callback,
    user_data: *mut c_void,
) -> Result<(), FfiError> {
    let mut buf = Vec::new();
    let mut sink = |piece: &str| {
        let Some(f) = cb else { return true };
        buf.clear();
        buf.extend_from_slice(piece.as_bytes());
        buf.push(0);
        // SAFETY: `f` is a valid callback per the contract; `buf` is NUL-terminated and
        // outlives the call.
        unsafe { f(buf.as_ptr().cast(), piece.len(), user_data) }
    };
    let r = match tokens {
        Some(t) => s.session.generate(t, params, &mut sink),
        None => s.session.generate_continue(params, &mut sink),
    };
    s.has_logits = !s.session.tokens().is_empty();
    let stats = r?;
    s.drafts = [stats.drafted_tokens, stats.accepted_drafts];
    if stats.incomplete {
        return Err(FfiError::Incomplete(stats.stop));
    }
    Ok(())
}

/// Gives the session a draft model for `AUTARK_SPEC_DRAFT`: a second session on `draft` (same
/// context size, threads, batch and cache types) that proposes tokens. `draft` must have the
/// same tokenizer vocabulary (AUTARK_ERR_INVALID_ARGUMENT naming the first difference
/// otherwise); NULL removes the draft model. The session holds its own reference to `draft`.
///
/// # Safety
/// `s` is a live session used by no other thread; `draft` NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn autark_session_set_draft(s: *mut autark_session, draft: *const autark_model) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        // SAFETY: contract of this function (NULL checked first).
        let model = if draft.is_null() { None } else { Some(Arc::clone(&unsafe { ref_arg(draft, "draft") }?.inner)) };
        s.session.set_draft_model(model)?;
        Ok(())
    })
}

/// The tokens drafted, and how many of them were accepted, by the last `autark_generate` or
/// `autark_generate_continue` (0 and 0 without speculative decoding).
///
/// # Safety
/// `s` is a live session; `drafted` and `accepted` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_draft_stats(
    s: *const autark_session,
    drafted: *mut u64,
    accepted: *mut u64,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { ref_arg(s, "session") }?;
        if drafted.is_null() || accepted.is_null() {
            return Err(FfiError::Null(if drafted.is_null() { "drafted" } else { "accepted" }));
        }
        // SAFETY: contract of this function (one write at a time, should both point to one
        // place).
        unsafe { *mut_arg(drafted, "drafted")? = s.drafts[0] as u64 };
        // SAFETY: as above.
        unsafe { *mut_arg(accepted, "accepted")? = s.drafts[1] as u64 };
        Ok(())
    })
}

// ============================================================================================
// Structured output (docs/STRUCTURED.md)
// ============================================================================================

/// Constrains the output of the session's following `autark_generate` /
/// `autark_generate_continue` calls: `kind` is `AUTARK_CONSTRAINT_JSON_SCHEMA`, `_REGEX` or
/// `_GRAMMAR` with its NUL-terminated UTF-8 `text` (copied), or `AUTARK_CONSTRAINT_NONE`
/// (`text` ignored, may be NULL) to remove it. The constraint is compiled here, so a bad one
/// fails now: AUTARK_ERR_UNSUPPORTED_CONSTRAINT (the message names the schema keyword) or
/// AUTARK_ERR_INVALID_CONSTRAINT; the session's constraint is then unchanged. A constrained
/// generation ends when its output is complete; one that stops before (max_tokens, a full
/// context, a stop from the callback) returns AUTARK_ERR_INCOMPLETE_OUTPUT.
///
/// # Safety
/// `s` is a live session used by no other thread; `text` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn autark_session_set_constraint(
    s: *mut autark_session,
    kind: i32,
    text: *const c_char,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        let c = if kind == AUTARK_CONSTRAINT_NONE {
            None
        } else {
            // SAFETY: contract of this function.
            let text = unsafe { str_arg(text, "text") }?.to_string();
            Some(match kind {
                AUTARK_CONSTRAINT_JSON_SCHEMA => Constraint::JsonSchema(text),
                AUTARK_CONSTRAINT_REGEX => Constraint::Regex(text),
                AUTARK_CONSTRAINT_GRAMMAR => Constraint::Grammar(text),
                k => return Err(FfiError::Invalid(format!("constraint kind {k}"))),
            })
        };
        if let Some(c) = &c {
            s.session.model().compile_constraint(c)?;
        }
        s.generate.constraint = c;
        Ok(())
    })
}

/// The assistant's tool call in reply to a conversation (messages as in
/// `autark_chat_apply_template`): `tools_json` is a JSON array of OpenAI-style function
/// definitions, declared through the model's chat template; the reply (at most `max_tokens`
/// tokens, streamed to `cb`, which may be NULL) is constrained to one call of one of them with
/// arguments valid under its parameter schema. `autark_session_tool_calls` then gives the call.
/// Errors: AUTARK_ERR_UNSUPPORTED_CONSTRAINT / _INVALID_CONSTRAINT for bad definitions,
/// AUTARK_ERR_INCOMPLETE_OUTPUT when the reply stopped before the call was complete. The
/// session's own constraint does not apply. (`autark_chat_tools_choice` with
/// AUTARK_TOOL_CHOICE_REQUIRED.)
///
/// # Safety
/// `s` is a live session used by no other thread; `roles` and `contents` hold `n_messages`
/// NUL-terminated strings each; `tools_json` NUL-terminated; `cb`, if not NULL, is callable
/// with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn autark_chat_tools(
    s: *mut autark_session,
    roles: *const *const c_char,
    contents: *const *const c_char,
    n_messages: usize,
    tools_json: *const c_char,
    max_tokens: u32,
    cb: autark_piece_callback,
    user_data: *mut c_void,
) -> autark_status {
    // SAFETY: the same contract.
    unsafe {
        autark_chat_tools_choice(
            s,
            roles,
            contents,
            n_messages,
            tools_json,
            AUTARK_TOOL_CHOICE_REQUIRED,
            max_tokens,
            cb,
            user_data,
        )
    }
}

/// As `autark_chat_tools`, with `tool_choice`: AUTARK_TOOL_CHOICE_REQUIRED (the reply is one
/// call) or AUTARK_TOOL_CHOICE_AUTO (one call, or a text reply instead: then
/// `autark_session_tool_calls` gives `[]` and the text is what went to `cb`; a reply that begins
/// like a call is held to being a valid one). Another value: AUTARK_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// As `autark_chat_tools`.
#[no_mangle]
pub unsafe extern "C" fn autark_chat_tools_choice(
    s: *mut autark_session,
    roles: *const *const c_char,
    contents: *const *const c_char,
    n_messages: usize,
    tools_json: *const c_char,
    tool_choice: i32,
    max_tokens: u32,
    cb: autark_piece_callback,
    user_data: *mut c_void,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let s = unsafe { mut_arg(s, "session") }?;
        s.tool_calls.clear();
        // SAFETY: contract of this function.
        let msgs = unsafe { messages_arg(roles, contents, n_messages) }?;
        // SAFETY: contract of this function.
        let tools = unsafe { str_arg(tools_json, "tools_json") }?;
        let model = Arc::clone(s.session.model());
        let choice = match tool_choice {
            AUTARK_TOOL_CHOICE_REQUIRED => ToolChoice::Required,
            AUTARK_TOOL_CHOICE_AUTO => ToolChoice::Auto,
            other => return Err(RuntimeError::InvalidArgument { name: "tool_choice", what: format!("{other}") }.into()),
        };
        let set = ToolSet { choice, ..ToolSet::new(&model, tools)? };
        let tokens = model.tool_prompt_tokens(&msgs, &set)?;
        let params = GenerateParams {
            max_tokens: max_tokens as usize,
            constraint: Some(set.constraint()),
            ..s.generate.clone()
        };
        let mut text = String::new();
        let mut collect = |piece: *const c_char, len: usize| {
            // SAFETY: `piece` holds `len` bytes of UTF-8 during this call (`run_with`).
            let bytes = unsafe { std::slice::from_raw_parts(piece.cast::<u8>(), len) };
            text.push_str(std::str::from_utf8(bytes).unwrap_or(""));
        };
        let mut both = (&mut collect as &mut dyn FnMut(*const c_char, usize), cb, user_data);
        // SAFETY: `tee` is called with `both`, which outlives the generation.
        unsafe { run_with(s, Some(&tokens), &params, Some(tee), (&mut both as *mut Tee).cast()) }?;
        s.tool_calls = autark_runtime::tools::calls_json(&set.parse_reply(&text)?.unwrap_or_default());
        Ok(())
    })
}

/// A collector of the generated text and the caller's callback.
type Tee<'a> = (&'a mut dyn FnMut(*const c_char, usize), autark_piece_callback, *mut c_void);

/// Hands each piece to the collector and to the caller's callback, if any.
///
/// # Safety
/// `user_data` is a live `Tee`; `piece` holds `len` bytes plus a NUL.
unsafe extern "C" fn tee(piece: *const c_char, len: usize, user_data: *mut c_void) -> bool {
    // SAFETY: `user_data` is the `Tee` `autark_chat_tools` passed, alive during the generation.
    let t = unsafe { &mut *user_data.cast::<Tee>() };
    (t.0)(piece, len);
    match t.1 {
        // SAFETY: the caller's callback and user data, per `autark_chat_tools`'s contract.
        Some(f) => unsafe { f(piece, len, t.2) },
        None => true,
    }
}

/// The tool calls of the last `autark_chat_tools` on this session, as NUL-terminated JSON
/// `[{"name": "...", "arguments": {...}}]` ("" if it failed or none ran). Output as in
/// `autark_token_to_piece` (AUTARK_ERR_BUFFER_TOO_SMALL with the length needed; capacity 0 to
/// ask).
///
/// # Safety
/// `s` is a live session; `buf` valid for `capacity` bytes; `len` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn autark_session_tool_calls(
    s: *const autark_session,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> autark_status {
    guard(|| {
        // SAFETY: contract of this function.
        let l = unsafe { mut_arg(len, "len") }?;
        *l = 0;
        // SAFETY: contract of this function.
        let s = unsafe { ref_arg(s, "session") }?;
        // SAFETY: contract of this function.
        unsafe { write_string(&s.tool_calls, buf, capacity, len) }
    })
}

#[cfg(test)]
mod tests;
