//! autark-kernels: block formats (`blocks`), the scalar reference of every operation
//! (`scalar`) and the numerical contract it follows (`contract`), SIMD twins per ISA (`x86/`,
//! `arm/`), run-time dispatch (`dispatch`) and the matrix
//! products and element-wise operations the runtime composes (`ops`).

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_endian = "big")]
compile_error!("autark's block formats are little-endian; big-endian targets are not supported");

#[macro_use]
mod twins;
#[cfg(target_arch = "aarch64")]
pub mod arm;
pub mod blocks;
pub mod contract;
pub mod dispatch;
pub mod exp;
pub mod interleave;
pub mod kquants;
pub mod ops;
pub mod pool;
pub mod q5;
pub mod scalar;
mod table;
pub mod types;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use blocks::Block;
pub use dispatch::{kernels, Isa, Kernels};
pub use interleave::TensorLayout;
pub use types::{BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, KernelError, Result, QK, QK_K};

#[doc(hidden)]
pub mod rng;
#[cfg(test)]
mod tests;
