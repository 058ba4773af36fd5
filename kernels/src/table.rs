//! The dispatch table (`Kernels`) and its scalar filling. `x86` and `arm` fill it; `dispatch` chooses and holds the process-wide one.

use crate::interleave::{
    BlockQ4Kx16, BlockQ4_0x16, BlockQ4_1x16, BlockQ5Kx16, BlockQ5_0x16, BlockQ5_1x16, BlockQ6Kx16, BlockQ8_0x16,
};
use crate::scalar;
pub use crate::types::Isa;
use crate::types::{BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0};

/// An ISA module's `plug`: upgrades the table's slots with that ISA's kernels.
pub type PlugFn = fn(&mut Kernels);

/// A weight-rows × tokens tile of a quantized matrix product.
pub type GemmFn<B> = fn(&[B], &[BlockQ8A], usize, &mut [f32]);

/// One row of a byte-coded type (raw bytes: `q5_0`, `q5_1`, `q4_k`, `q5_k`, `q6_k`) × tokens:
/// `out[t] = row · a[t·nb..(t + 1)·nb]` for `t < out.len()` (`nb` activation blocks per token).
/// The row must hold exactly `nb` blocks' worth of values and `a` at least `out.len()` tokens:
/// SIMD slots assert it. A token's result never depends on how many tokens share the call.
pub type ByteDotsFn = fn(&[u8], &[BlockQ8A], usize, &mut [f32]);

/// Rows of a byte-coded type × one token (decode): `w` holds `out.len()` rows of exactly `nb`
/// activation blocks' worth each, `out[r] = row r · a[..nb]`. A row's result is its
/// `ByteDotsFn` result, bit for bit, whatever rows share the call.
pub type ByteRowsFn = fn(&[u8], &[BlockQ8A], usize, &mut [f32]);

/// The dispatch table. Slots take whole blocks of matching lengths: callers check lengths
/// once (see `Block::vec_dot`, `gemm`), never per call in a hot loop.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// The best ISA any slot uses.
    pub isa: Isa,
    pub quantize_act: fn(&[f32], &mut [BlockQ8A]),
    pub vec_dot_q4_0: fn(&[BlockQ4_0], &[BlockQ8A]) -> f32,
    pub vec_dot_q4_1: fn(&[BlockQ4_1], &[BlockQ8A]) -> f32,
    pub vec_dot_q8_0: fn(&[BlockQ8_0], &[BlockQ8A]) -> f32,
    pub vec_dot_f16: fn(&[u16], &[f32]) -> f32,
    /// Tiles (`scalar::gemm_tile`): `(w rows, tokens, blocks per row, out[t][r])`.
    pub gemm_q4_0: GemmFn<BlockQ4_0>,
    pub gemm_q4_1: GemmFn<BlockQ4_1>,
    pub gemm_q8_0: GemmFn<BlockQ8_0>,
    /// 16-row interleaved matrices (`interleave`): `(w groups, tokens, blocks per row,
    /// out[t][r])` with 16 rows per group; one call serves decode (1 token) and prefill.
    pub gemm_q4_0x16: GemmFn<BlockQ4_0x16>,
    pub gemm_q4_1x16: GemmFn<BlockQ4_1x16>,
    pub gemm_q8_0x16: GemmFn<BlockQ8_0x16>,
    pub gemm_q5_0x16: GemmFn<BlockQ5_0x16>,
    pub gemm_q5_1x16: GemmFn<BlockQ5_1x16>,
    /// Interleaved `q4_k` / `q5_k` / `q6_k` (`nb` still counts 32-value activation blocks per
    /// row; a group block covers 8 of them).
    pub gemm_q4_kx16: GemmFn<BlockQ4Kx16>,
    pub gemm_q5_kx16: GemmFn<BlockQ5Kx16>,
    pub gemm_q6_kx16: GemmFn<BlockQ6Kx16>,
    pub vec_dot_f32: fn(&[f32], &[f32]) -> f32,
    /// Attention scores `(q, keys, stride, out)`: `out[j] = q · keys[j·stride..][..q.len()]`.
    pub dots_f32: fn(&[f32], &[f32], usize, &mut [f32]),
    /// Attention output `(out, weights, values, stride)`: `out += Σ_j w[j] · values[j·stride..]`.
    pub wsum_f32: fn(&mut [f32], &[f32], &[f32], usize),
    /// `dots_f32` over keys stored as IEEE half bits (`stride` in values).
    pub dots_f16: fn(&[f32], &[u16], usize, &mut [f32]),
    /// `wsum_f32` over values stored as IEEE half bits (`stride` in values).
    pub wsum_f16: fn(&mut [f32], &[f32], &[u16], usize),
    /// `dots_f32` over q8_0 keys, `q` kept in f32: `q.len() = 32·nb`, key row j is the blocks
    /// `k[j·stride..j·stride + nb]` (`stride` in blocks), `out[j] = Σ_b d_jb · (q_b · qs_jb)`.
    pub dots_q8_0: fn(&[f32], &[BlockQ8_0], usize, &mut [f32]),
    /// `wsum_f32` over q8_0 values: `out[32b + i] += w[j] · d_jb · qs_jb[i]` (`stride` in blocks).
    pub wsum_q8_0: fn(&mut [f32], &[f32], &[BlockQ8_0], usize),
    /// f32 → IEEE half bits, rounded to nearest even; every ISA gives `types::f32_to_f16`'s bits.
    pub store_f16: fn(&[f32], &mut [u16]),
    /// `x ← e^x` (`exp`: softmax, SiLU); every ISA gives the scalar twin's bits.
    pub exp_f32: fn(&mut [f32]),
    pub dots_q5_0: ByteDotsFn,
    pub dots_q5_1: ByteDotsFn,
    pub dots_q4_k: ByteDotsFn,
    pub dots_q5_k: ByteDotsFn,
    pub dots_q6_k: ByteDotsFn,
    pub rows_q5_0: ByteRowsFn,
    pub rows_q5_1: ByteRowsFn,
    pub rows_q4_k: ByteRowsFn,
    pub rows_q5_k: ByteRowsFn,
    pub rows_q6_k: ByteRowsFn,
}

impl Kernels {
    /// The scalar reference for every slot.
    pub fn scalar() -> Kernels {
        Kernels {
            isa: Isa::Scalar,
            quantize_act: scalar::quantize_act,
            vec_dot_q4_0: scalar::vec_dot_q4_0,
            vec_dot_q4_1: scalar::vec_dot_q4_1,
            vec_dot_q8_0: scalar::vec_dot_q8_0,
            vec_dot_f16: scalar::vec_dot_f16,
            gemm_q4_0: scalar::gemm_q4_0,
            gemm_q4_1: scalar::gemm_q4_1,
            gemm_q8_0: scalar::gemm_q8_0,
            gemm_q4_0x16: scalar::gemm_q4_0x16,
            gemm_q4_1x16: scalar::gemm_q4_1x16,
            gemm_q8_0x16: scalar::gemm_q8_0x16,
            gemm_q5_0x16: scalar::gemm_q5_0x16,
            gemm_q5_1x16: scalar::gemm_q5_1x16,
            gemm_q4_kx16: scalar::gemm_q4_kx16,
            gemm_q5_kx16: scalar::gemm_q5_kx16,
            gemm_q6_kx16: scalar::gemm_q6_kx16,
            vec_dot_f32: scalar::vec_dot_f32,
            exp_f32: scalar::exp_f32,
            dots_f32: scalar::dots_f32,
            wsum_f32: scalar::wsum_f32,
            dots_f16: scalar::dots_f16,
            wsum_f16: scalar::wsum_f16,
            dots_q8_0: scalar::dots_q8_0,
            wsum_q8_0: scalar::wsum_q8_0,
            store_f16: scalar::store_f16,
            dots_q5_0: scalar::dots_q5_0,
            dots_q5_1: scalar::dots_q5_1,
            dots_q4_k: scalar::dots_q4_k,
            dots_q5_k: scalar::dots_q5_k,
            dots_q6_k: scalar::dots_q6_k,
            rows_q5_0: scalar::rows_q5_0,
            rows_q5_1: scalar::rows_q5_1,
            rows_q4_k: scalar::rows_q4_k,
            rows_q5_k: scalar::rows_q5_k,
            rows_q6_k: scalar::rows_q6_k,
        }
    }
}
