//! The `Block` impls of the legacy block structs of `types` (re-exported here, with
//! `BlockLayout`), and conversions of raw bytes of any type: `cast_blocks`, `dequantize_bytes`,
//! `quantize_bytes`.

pub use crate::types::{
    bf16_to_f32, f16_to_f32, f32_to_f16, Block, BlockLayout, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8A, BlockQ8_0, DType, TypeInfo, QK, QK_K, TYPES,
};
use crate::types::{KernelError, Result};

/// Reinterprets raw bytes (e.g. a tensor inside the mapping) as blocks. Checks the length and
/// the alignment first.
pub fn cast_blocks<B: BlockLayout>(bytes: &[u8]) -> Result<&[B]> {
    crate::types::cast_blocks(bytes, "cast_blocks")
}

/// Views blocks as their bytes (to write them to a file).
pub fn block_bytes<B: BlockLayout>(blocks: &[B]) -> &[u8] {
    // SAFETY: `BlockLayout` types are `#[repr(C)]` with no padding bytes, so every byte is
    // initialised; u8 has alignment 1 and the length covers exactly the blocks.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

pub(crate) fn check_blocks(op: &'static str, dtype: DType, n_values: usize, n_blocks: usize) -> Result<()> {
    let bl = dtype.block_len();
    if !n_values.is_multiple_of(bl) {
        return Err(KernelError::NotBlockMultiple { op, dtype, len: n_values, block_len: bl });
    }
    if n_values / bl != n_blocks {
        return Err(KernelError::LengthMismatch { op, expected: n_blocks * bl, got: n_values });
    }
    Ok(())
}

macro_rules! impl_block {
    ($ty:ty, $quant:ident, $dequant:ident, $dot:ident $(, { $($m:tt)* })?) => {
        impl Block for $ty {
            type Activation = BlockQ8A;
            fn quantize_row(src: &[f32], dst: &mut [Self]) -> Result<()> {
                check_blocks("quantize_row", Self::DTYPE, src.len(), dst.len())?;
                crate::scalar::$quant(src, dst);
                Ok(())
            }
            fn dequantize_row(src: &[Self], dst: &mut [f32]) -> Result<()> {
                check_blocks("dequantize_row", Self::DTYPE, dst.len(), src.len())?;
                crate::scalar::$dequant(src, dst);
                Ok(())
            }
            fn vec_dot(w: &[Self], a: &[BlockQ8A]) -> Result<f32> {
                check_blocks("vec_dot", Self::DTYPE, a.len() * QK, w.len())?;
                Ok((crate::dispatch::kernels().$dot)(w, a))
            }
            fn vec_dot_scalar(w: &[Self], a: &[BlockQ8A]) -> Result<f32> {
                check_blocks("vec_dot", Self::DTYPE, a.len() * QK, w.len())?;
                Ok(crate::scalar::$dot(w, a))
            }
            #[inline(always)]
            fn d(&self) -> u16 {
                self.d
            }
            #[inline(always)]
            fn qs(&self) -> *const u8 {
                self.qs.as_ptr().cast()
            }
            $($($m)*)?
        }
    };
}

impl_block!(BlockQ8_0, quantize_row_q8_0, dequantize_row_q8_0, vec_dot_q8_0);
impl_block!(BlockQ4_0, quantize_row_q4_0, dequantize_row_q4_0, vec_dot_q4_0);
impl_block!(BlockQ4_1, quantize_row_q4_1, dequantize_row_q4_1, vec_dot_q4_1, {
    #[inline(always)]
    fn m(&self) -> u16 {
        self.m
    }
});

/// Quantizes activations into `BlockQ8A` blocks (dispatched).
pub fn quantize_act(src: &[f32], dst: &mut [BlockQ8A]) -> Result<()> {
    check_blocks("quantize_act", DType::Q8_0, src.len(), dst.len())?;
    (crate::dispatch::kernels().quantize_act)(src, dst);
    Ok(())
}

/// Dequantizes a row of any type (native or import-only) from its raw bytes into f32.
pub fn dequantize_bytes(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let expected = dtype.row_bytes(dst.len())?;
    if src.len() != expected {
        return Err(KernelError::LengthMismatch { op: "dequantize_bytes", expected, got: src.len() });
    }
    match dtype {
        DType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        DType::BF16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        DType::Q8_0 => with_blocks::<BlockQ8_0>(src, dst, crate::scalar::dequantize_row_q8_0)?,
        DType::Q4_0 => with_blocks::<BlockQ4_0>(src, dst, crate::scalar::dequantize_row_q4_0)?,
        DType::Q4_1 => with_blocks::<BlockQ4_1>(src, dst, crate::scalar::dequantize_row_q4_1)?,
        DType::Q5_0 => crate::q5::dequantize_row(src, dst),
        DType::Q5_1 => crate::q5::dequantize_row_1(src, dst),
        DType::Q4K => crate::kquants::dequantize_row_q4_k(src, dst),
        DType::Q5K => crate::kquants::dequantize_row_q5_k(src, dst),
        DType::Q6K => crate::kquants::dequantize_row_q6_k(src, dst),
    }
    Ok(())
}

/// Runs `f` on the blocks of `src` (bytes of any alignment) and the matching values of `dst`:
/// in place when aligned, else one block at a time through a copy on the stack — never an
/// allocation (the embedding lookup of every decoded token comes here).
fn with_blocks<B: Block>(src: &[u8], dst: &mut [f32], f: fn(&[B], &mut [f32])) -> Result<()> {
    match cast_blocks::<B>(src) {
        Ok(b) => f(b, dst),
        Err(KernelError::Misaligned { .. }) => {
            for (b, out) in crate::types::blocks_of::<B>(src).zip(dst.chunks_exact_mut(B::BLOCK_LEN)) {
                f(&[b], out);
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Quantizes a row of f32 into the bytes of a native type.
pub fn quantize_bytes(dtype: DType, src: &[f32], dst: &mut Vec<u8>) -> Result<()> {
    dst.clear();
    let n = dtype.row_bytes(src.len())?;
    match dtype {
        DType::F32 => src.iter().for_each(|v| dst.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => src.iter().for_each(|v| dst.extend_from_slice(&f32_to_f16(*v).to_le_bytes())),
        DType::Q8_0 => quantize_into::<BlockQ8_0>(src, dst)?,
        DType::Q4_0 => quantize_into::<BlockQ4_0>(src, dst)?,
        DType::Q4_1 => quantize_into::<BlockQ4_1>(src, dst)?,
        // ggml's reference quantizers (the K-quant ones search too, with their own weights).
        DType::Q5_0 | DType::Q5_1 | DType::Q4K | DType::Q5K | DType::Q6K => {
            let quantize: fn(&[f32], &mut [u8]) = match dtype {
                DType::Q5_0 => crate::q5::quantize_row,
                DType::Q5_1 => crate::q5::quantize_row_1,
                DType::Q4K => |x, b| crate::kquants::quantize_row_q4_k(x, None, b),
                DType::Q5K => |x, b| crate::kquants::quantize_row_q5_k(x, None, b),
                _ => |x, b| crate::kquants::quantize_row_q6_k(x, None, b),
            };
            dst.resize(n, 0);
            quantize(src, dst);
        }
        other => return Err(KernelError::Unsupported { op: "quantize", dtype: other }),
    }
    debug_assert_eq!(dst.len(), n);
    Ok(())
}

fn quantize_into<B: Block>(src: &[f32], dst: &mut Vec<u8>) -> Result<()> {
    let mut blocks = vec![B::default(); src.len() / B::BLOCK_LEN];
    B::quantize_row(src, &mut blocks)?;
    dst.extend_from_slice(block_bytes(&blocks));
    Ok(())
}
