//! The kernels' one error type.

use crate::DType;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    // ---- lengths and shapes -------------------------------------------------
    #[error("{op}: length {len} is not a multiple of the block length {block_len} of {dtype}")]
    NotBlockMultiple { op: &'static str, dtype: DType, len: usize, block_len: usize },
    #[error("{op}: expected {expected} elements, got {got}")]
    LengthMismatch { op: &'static str, expected: usize, got: usize },
    #[error("{op}: byte length {got} does not hold a whole number of {dtype} blocks ({block_bytes} bytes each)")]
    ByteLength { op: &'static str, dtype: DType, got: usize, block_bytes: usize },
    #[error("{op}: buffer is not aligned to {align} bytes for {dtype}")]
    Misaligned { op: &'static str, dtype: DType, align: usize },
    // ---- types ----------------------------------------------------------------
    #[error("unknown dtype code {0}")]
    UnknownDType(u32),
    #[error("{op} is not supported for {dtype}")]
    Unsupported { op: &'static str, dtype: DType },
    #[error("unknown tensor layout code {0}")]
    UnknownLayout(u32),
    #[error("layout {layout} does not hold {dtype} tensors of shape {shape:?} (q4_0, q4_1 or q8_0 matrices with a multiple of 16 rows)")]
    BadLayout { layout: &'static str, dtype: DType, shape: Vec<usize> },
    #[error("unknown ISA {0:?} in AUTARK_ISA (expected scalar, avx2, avx512 or neon)")]
    UnknownIsa(String),
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
