//! Block formats. Byte layouts follow GGUF's types of the same name (ggml `ggml-common.h`,
//! documented in the GGUF spec), so GGUF tensors of these types are copied byte for byte and
//! gguf-py / ggml serve as oracles.
//!
//! Every block is `#[repr(C)]`, holds its f16 scales as raw `u16` bits (so the struct has no
//! padding and an alignment of 2) and has its size asserted beside the definition.

use half::f16;

use crate::error::{KernelError, Result};

/// Values per block of the legacy types (`q4_0`, `q4_1`, `q8_0`) and of the activation blocks.
pub const QK: usize = 32;
/// Values per super-block of the K-quant types.
pub const QK_K: usize = 256;

/// Element types. The numeric codes are ggml's `ggml_type` values, so a GGUF type id and an
/// `.autark` dtype code mean the same thing. Everything else about a type is its row in `TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    BF16 = 30,
}

/// What the code knows about an element type, one row per `DType`.
pub struct TypeInfo {
    pub dtype: DType,
    pub name: &'static str,
    /// Values per block (1 for plain floats).
    pub block_len: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Types the runtime computes with directly and `.autark` files may hold (and the quantizer
    /// can produce). The others (bf16) are import-only: they are converted by the quantizer.
    pub native: bool,
}

const fn row<B>(dtype: DType, name: &'static str, block_len: usize, native: bool) -> TypeInfo {
    TypeInfo { dtype, name, block_len, block_bytes: std::mem::size_of::<B>(), native }
}

/// The type table: adding a block type is one row here (and its kernels).
pub const TYPES: [TypeInfo; 11] = [
    row::<f32>(DType::F32, "f32", 1, true),
    row::<u16>(DType::F16, "f16", 1, true),
    row::<BlockQ4_0>(DType::Q4_0, "q4_0", QK, true),
    row::<BlockQ4_1>(DType::Q4_1, "q4_1", QK, true),
    row::<BlockQ5_0>(DType::Q5_0, "q5_0", QK, true),
    row::<BlockQ5_1>(DType::Q5_1, "q5_1", QK, true),
    row::<BlockQ8_0>(DType::Q8_0, "q8_0", QK, true),
    row::<BlockQ4K>(DType::Q4K, "q4_k", QK_K, true),
    row::<BlockQ5K>(DType::Q5K, "q5_k", QK_K, true),
    row::<BlockQ6K>(DType::Q6K, "q6_k", QK_K, true),
    row::<u16>(DType::BF16, "bf16", 1, false),
];

/// `TYPES` row of each code (`u8::MAX`: no such type).
const INDEX: [u8; 31] = {
    let mut index = [u8::MAX; 31];
    let mut i = 0;
    while i < TYPES.len() {
        index[TYPES[i].dtype as usize] = i as u8;
        i += 1;
    }
    index
};

impl TryFrom<u32> for DType {
    type Error = KernelError;
    fn try_from(v: u32) -> Result<Self> {
        match INDEX.get(v as usize) {
            Some(&i) if i != u8::MAX => Ok(TYPES[i as usize].dtype),
            _ => Err(KernelError::UnknownDType(v)),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        DType::ALL.iter().copied().find(|d| d.name().eq_ignore_ascii_case(s)).ok_or(KernelError::UnknownDType(u32::MAX))
    }
}

impl DType {
    pub const ALL: [DType; TYPES.len()] = {
        let mut all = [DType::F32; TYPES.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = TYPES[i].dtype;
            i += 1;
        }
        all
    };

    /// The type's row in `TYPES`.
    pub const fn info(self) -> &'static TypeInfo {
        &TYPES[INDEX[self as usize] as usize]
    }

    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// Values per block (1 for plain floats).
    pub const fn block_len(self) -> usize {
        self.info().block_len
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        self.info().block_bytes
    }

    /// See `TypeInfo::native`.
    pub const fn is_native(self) -> bool {
        self.info().native
    }

    /// Types the quantizer can produce from float values (all native ones).
    pub const fn is_quantize_target(self) -> bool {
        self.is_native()
    }

    /// Bytes of a row of `n` values; an error when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Result<usize> {
        let bl = self.block_len();
        if !n.is_multiple_of(bl) {
            return Err(KernelError::NotBlockMultiple { op: "row_bytes", dtype: self, len: n, block_len: bl });
        }
        (n / bl).checked_mul(self.block_bytes()).ok_or(KernelError::LengthMismatch {
            op: "row_bytes",
            expected: usize::MAX,
            got: n,
        })
    }

    /// Bits per weight of the type (scales included).
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_len() as f64
    }
}

// ---- legacy blocks ---------------------------------------------------------------------------

/// `q8_0`: f16 scale `d`, 32 signed bytes; value = q·d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// `q4_0`: f16 scale `d`, 16 bytes of nibbles; byte j holds value j (low nibble) and value
/// j + 16 (high nibble); value = (q − 8)·d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: u16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// `q4_1`: f16 scale `d`, f16 minimum `m`, nibbles as in `q4_0`; value = q·d + m.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: u16,
    pub m: u16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

// ---- byte-coded blocks (scalar code in `q5`, `kquants`) --------------------------------------------
// Their kernels read them as bytes at the offsets of these fields; `qh` is a little-endian u32
// kept as bytes so that the blocks stay 2-aligned without padding.

/// `q5_0`: f16 `d`, the fifth bits `qh` (bit j for value j), nibbles as in `q4_0`;
/// value = (q − 16)·d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: u16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// `q5_1`: f16 `d`, f16 minimum `m`, `qh` and nibbles as in `q5_0`; value = q·d + m.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: u16,
    pub m: u16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// `q4_k`: f16 `d`, f16 `dmin`, 8 packed 6-bit (scale, min) pairs, 128 bytes of nibbles
/// (bytes 32g..32g + 32 hold sub-blocks 2g (low) and 2g + 1 (high)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// `q5_k`: as `q4_k` with the fifth bits `qh` (bit j of byte l: value l of sub-block j) before
/// the nibbles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// `q6_k`: low nibbles `ql`, 2-bit highs `qh`, 16 signed 8-bit sub-block scales, f16 `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Activation block: 32 signed bytes with an f32 scale and the integer sum of the bytes (the
/// sum serves the offset terms of `q4_0` and `q4_1`). Internal to the runtime, never stored in a
/// file, so it keeps f32 precision where ggml's `block_q8_1` rounds to f16.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct BlockQ8A {
    pub d: f32,
    pub sum: i32,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8A>() == 40);

/// The little-endian f16 at byte `i` of `b` (scales inside byte-coded blocks), as f32.
#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Σ q·a over a 32-value block of unsigned weight integers and 8-bit activations (exact).
#[inline]
pub(crate) fn idot_u(q: &[u8; QK], a: &[i8; QK]) -> i32 {
    q.iter().zip(a).map(|(&q, &a)| q as i32 * a as i32).sum()
}

#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

#[inline]
pub fn f32_to_f16(v: f32) -> u16 {
    f16::from_f32(v).to_bits()
}

#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Reinterprets raw bytes (e.g. a tensor inside the mapping) as blocks. Checks the length and
/// the alignment first.
pub fn cast_blocks<B: Block>(bytes: &[u8]) -> Result<&[B]> {
    // SAFETY: `B` is a `Block`, i.e. a `#[repr(C)]` struct of integers without padding.
    unsafe { cast_pod(bytes, "cast_blocks", B::DTYPE) }
}

/// `bytes` as a slice of `T` after checking length and alignment (errors name `op`, `dtype`).
///
/// # Safety
/// `T` must be `#[repr(C)]`, made of integers, without padding, so that every bit pattern is
/// a valid `T`.
pub(crate) unsafe fn cast_pod<'a, T>(bytes: &'a [u8], op: &'static str, dtype: DType) -> Result<&'a [T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(KernelError::ByteLength { op, dtype, got: bytes.len(), block_bytes: size });
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(KernelError::Misaligned { op, dtype, align: std::mem::align_of::<T>() });
    }
    // SAFETY: every bit pattern is a valid `T` (the caller's promise); the length is a whole
    // number of `T` and the pointer is aligned for `T` (both checked above); the lifetime is
    // tied to `bytes`.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Views blocks as their bytes (to write them to a file).
pub fn block_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: `Block` types are `#[repr(C)]` with no padding bytes, so every byte is
    // initialised; u8 has alignment 1 and the length covers exactly the blocks.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

/// A stored block format. Implemented only by `#[repr(C)]` structs of integers with no padding
/// (every bit pattern valid), which `cast_blocks` relies on.
pub trait Block: Copy + Default + Send + Sync + 'static {
    const DTYPE: DType;
    /// Values per block.
    const BLOCK_LEN: usize;
    /// The activation block type the dot product takes.
    type Activation: Copy;
    fn quantize_row(src: &[f32], dst: &mut [Self]) -> Result<()>;
    fn dequantize_row(src: &[Self], dst: &mut [f32]) -> Result<()>;
    /// Dot product through the dispatched (fastest available) kernel.
    fn vec_dot(w: &[Self], a: &[Self::Activation]) -> Result<f32>;
    /// Dot product through the scalar reference.
    fn vec_dot_scalar(w: &[Self], a: &[Self::Activation]) -> Result<f32>;
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
    ($ty:ty, $dtype:expr, $quant:ident, $dequant:ident, $dot:ident, $slot:ident) => {
        impl Block for $ty {
            const DTYPE: DType = $dtype;
            const BLOCK_LEN: usize = QK;
            type Activation = BlockQ8A;
            fn quantize_row(src: &[f32], dst: &mut [Self]) -> Result<()> {
                check_blocks("quantize_row", $dtype, src.len(), dst.len())?;
                crate::scalar::$quant(src, dst);
                Ok(())
            }
            fn dequantize_row(src: &[Self], dst: &mut [f32]) -> Result<()> {
                check_blocks("dequantize_row", $dtype, dst.len(), src.len())?;
                crate::scalar::$dequant(src, dst);
                Ok(())
            }
            fn vec_dot(w: &[Self], a: &[BlockQ8A]) -> Result<f32> {
                check_blocks("vec_dot", $dtype, a.len() * QK, w.len())?;
                Ok((crate::dispatch::kernels().$slot)(w, a))
            }
            fn vec_dot_scalar(w: &[Self], a: &[BlockQ8A]) -> Result<f32> {
                check_blocks("vec_dot", $dtype, a.len() * QK, w.len())?;
                Ok(crate::scalar::$dot(w, a))
            }
        }
    };
}

impl_block!(BlockQ8_0, DType::Q8_0, quantize_row_q8_0, dequantize_row_q8_0, vec_dot_q8_0, vec_dot_q8_0);
impl_block!(BlockQ4_0, DType::Q4_0, quantize_row_q4_0, dequantize_row_q4_0, vec_dot_q4_0, vec_dot_q4_0);
impl_block!(BlockQ4_1, DType::Q4_1, quantize_row_q4_1, dequantize_row_q4_1, vec_dot_q4_1, vec_dot_q4_1);

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
            for (bytes, out) in src.chunks_exact(std::mem::size_of::<B>()).zip(dst.chunks_exact_mut(B::BLOCK_LEN)) {
                let mut b = [B::default()];
                block_bytes_mut(&mut b).copy_from_slice(bytes);
                f(&b, out);
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

fn block_bytes_mut<B: Block>(blocks: &mut [B]) -> &mut [u8] {
    // SAFETY: as in `block_bytes`; additionally every bit pattern is a valid `B`, so writing
    // arbitrary bytes through the returned slice keeps the blocks valid.
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
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
        DType::Q5_0 => {
            dst.resize(n, 0);
            crate::q5::quantize_row(src, dst);
        }
        DType::Q5_1 => {
            dst.resize(n, 0);
            crate::q5::quantize_row_1(src, dst);
        }
        // ggml's reference K-quant quantizers (they search too, with their own weights).
        DType::Q4K => {
            dst.resize(n, 0);
            crate::kquants::quantize_row_q4_k(src, None, dst);
        }
        DType::Q5K => {
            dst.resize(n, 0);
            crate::kquants::quantize_row_q5_k(src, None, dst);
        }
        DType::Q6K => {
            dst.resize(n, 0);
            crate::kquants::quantize_row_q6_k(src, None, dst);
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
