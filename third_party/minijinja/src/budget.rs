//! autark patch: a per-thread memory budget for one rendering.
//!
//! Upstream minijinja bounds the number of instructions a template may run (fuel) but not the size
//! of the values it builds: `{% set ns.s = ns.s ~ ns.s %}` in a 40-step loop asks for a terabyte
//! in about 300 instructions and the process aborts on allocation failure. With a budget set
//! ([`set_memory_budget`]) every string the engine builds — concatenations, filter and function
//! results, displayed values, captured and final output — is charged against it; once it is spent,
//! further writes are skipped and the running template fails with `ErrorKind::InvalidOperation`
//! ("template exceeded its memory budget"). Without a budget (the default) nothing changes.
//!
//! Charges count bytes produced, not bytes alive, so a template that rebuilds a long string many
//! times spends its budget faster than its peak memory grows; callers size the budget generously
//! relative to their inputs. The largest single allocation a template can force is bounded by the
//! budget (checked before building) or, for case conversions, a small multiple of it.

use std::cell::Cell;

use crate::error::{Error, ErrorKind};
use crate::value::{Value, ValueKind};

/// The most items a lazily repeated or concatenated sequence may claim while a budget is set.
pub(crate) const MAX_LAZY_SEQ_LEN: usize = 1 << 20;

/// The largest width, precision or index a format string may use while a budget is set.
pub(crate) const MAX_FORMAT_NUMBER: usize = 1 << 16;

thread_local! {
    static REMAINING: Cell<Option<usize>> = const { Cell::new(None) };
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// Sets (or with `None` removes) the memory budget of renderings on this thread and clears the
/// exceeded flag. Returns the previous budget.
pub fn set_memory_budget(bytes: Option<usize>) -> Option<usize> {
    EXCEEDED.with(|e| e.set(false));
    REMAINING.with(|r| r.replace(bytes))
}

/// True when a rendering on this thread ran over its budget since it was set (a template whose
/// last instruction overran ends without the VM noticing; callers check this after rendering).
pub fn memory_budget_exceeded() -> bool {
    EXCEEDED.with(Cell::get)
}

/// True while a budget is set on this thread.
pub(crate) fn active() -> bool {
    REMAINING.with(|r| r.get().is_some())
}

/// Charges `bytes`; returns false (and marks the budget exceeded) when they do not fit.
pub(crate) fn admit(bytes: usize) -> bool {
    REMAINING.with(|r| match r.get() {
        None => true,
        Some(left) if bytes <= left && !EXCEEDED.with(Cell::get) => {
            r.set(Some(left - bytes));
            true
        }
        Some(_) => {
            EXCEEDED.with(|e| e.set(true));
            false
        }
    })
}

/// True when `bytes` more would fit, without charging them.
pub(crate) fn fits(bytes: usize) -> bool {
    REMAINING.with(|r| r.get().is_none_or(|left| bytes <= left))
}

fn exceeded_error() -> Error {
    Error::new(ErrorKind::InvalidOperation, "template exceeded its memory budget")
}

/// Fails once a write has been refused since the budget was set.
pub(crate) fn check() -> Result<(), Error> {
    if EXCEEDED.with(Cell::get) {
        Err(exceeded_error())
    } else {
        Ok(())
    }
}

/// Fails unless `bytes` more fit; used before building a value whose size is known in advance.
pub(crate) fn require(bytes: Option<usize>) -> Result<(), Error> {
    match bytes {
        Some(n) if fits(n) => Ok(()),
        _ if !active() => Ok(()),
        _ => {
            EXCEEDED.with(|e| e.set(true));
            Err(exceeded_error())
        }
    }
}

/// Charges a freshly built value: its bytes if a string, a word per item if a sized sequence or map.
pub(crate) fn charge_value(value: &Value) -> Result<(), Error> {
    if !active() {
        return Ok(());
    }
    let bytes = match value.kind() {
        ValueKind::String | ValueKind::Bytes => value.as_bytes().map_or(0, <[u8]>::len),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            value.len().unwrap_or(0).saturating_mul(std::mem::size_of::<Value>())
        }
        _ => 0,
    };
    if admit(bytes) {
        check()
    } else {
        Err(exceeded_error())
    }
}

/// Fails when a lazy sequence would claim more than [`MAX_LAZY_SEQ_LEN`] items under a budget.
pub(crate) fn check_lazy_len(len: Option<usize>) -> Result<(), Error> {
    if active() && len.is_none_or(|n| n > MAX_LAZY_SEQ_LEN) {
        return Err(Error::new(ErrorKind::InvalidOperation, "sequence is too long"));
    }
    Ok(())
}
