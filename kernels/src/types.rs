//! The bottom of the crate: element types (`DType` and its `TYPES` table), the block structs,
//! the error type and the numeric helpers every other module reads. Imports nothing from the
//! crate, so every module may import it.
//!
//! Block byte layouts follow GGUF's types of the same name (ggml `ggml-common.h`, documented in
//! the GGUF spec), so GGUF tensors of these types are copied byte for byte and gguf-py / ggml
//! serve as oracles. Every block is `#[repr(C)]`, holds its f16 scales as raw `u16` bits (so the
//! struct has no padding and an alignment of 2) and has its size asserted beside the definition.

use half::f16;

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

/// The row of a block type, from its `BlockLayout`.
const fn row<B: BlockLayout>(name: &'static str) -> TypeInfo {
    TypeInfo { dtype: B::DTYPE, name, block_len: B::BLOCK_LEN, block_bytes: size_of::<B>(), native: true }
}

/// The row of a plain float type (values of `bytes` bytes).
const fn float(dtype: DType, name: &'static str, bytes: usize, native: bool) -> TypeInfo {
    TypeInfo { dtype, name, block_len: 1, block_bytes: bytes, native }
}

/// The type table: adding a block type is one row here (and its kernels).
pub const TYPES: [TypeInfo; 11] = [
    float(DType::F32, "f32", 4, true),
    float(DType::F16, "f16", 2, true),
    row::<BlockQ4_0>("q4_0"),
    row::<BlockQ4_1>("q4_1"),
    row::<BlockQ5_0>("q5_0"),
    row::<BlockQ5_1>("q5_1"),
    row::<BlockQ8_0>("q8_0"),
    row::<BlockQ4K>("q4_k"),
    row::<BlockQ5K>("q5_k"),
    row::<BlockQ6K>("q6_k"),
    float(DType::BF16, "bf16", 2, false),
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
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or(KernelError::UnknownTypeName(s.to_string()))
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

/// Defines block structs, each the one description of its type: `#[repr(C)]` with f16 scales
/// as raw `u16` bits (no padding, alignment 2), its size asserted, and its `BlockLayout`
/// (element type, values per block).
macro_rules! blocks {
    ($($(#[$attr:meta])* $name:ident($dtype:ident, $len:expr, $size:expr) { $($field:ident: $ty:ty,)* })*) => {$(
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(C)]
        pub struct $name {
            $(pub $field: $ty,)*
        }
        const _: () = assert!(size_of::<$name>() == $size);
        impl BlockLayout for $name {
            const DTYPE: DType = DType::$dtype;
            const BLOCK_LEN: usize = $len;
        }
    )*};
}
pub(crate) use blocks;

// The legacy blocks (`Block` in `blocks`), then the byte-coded ones: their kernels (`q5`,
// `kquants`, the SIMD bodies) read raw bytes at `offset_of!` of these fields; `qh` is a
// little-endian u32 kept as bytes so that the blocks stay 2-aligned without padding.
blocks! {
    /// `q8_0`: f16 scale `d`, 32 signed bytes; value = q·d.
    #[derive(Default)]
    BlockQ8_0(Q8_0, QK, 34) {
        d: u16,
        qs: [i8; QK],
    }
    /// `q4_0`: f16 scale `d`, 16 bytes of nibbles; byte j holds value j (low nibble) and value
    /// j + 16 (high nibble); value = (q − 8)·d.
    #[derive(Default)]
    BlockQ4_0(Q4_0, QK, 18) {
        d: u16,
        qs: [u8; QK / 2],
    }
    /// `q4_1`: f16 scale `d`, f16 minimum `m`, nibbles as in `q4_0`; value = q·d + m.
    #[derive(Default)]
    BlockQ4_1(Q4_1, QK, 20) {
        d: u16,
        m: u16,
        qs: [u8; QK / 2],
    }
    /// `q5_0`: f16 `d`, the fifth bits `qh` (bit j for value j), nibbles as in `q4_0`;
    /// value = (q − 16)·d.
    #[derive(Default)]
    BlockQ5_0(Q5_0, QK, 22) {
        d: u16,
        qh: [u8; 4],
        qs: [u8; QK / 2],
    }
    /// `q5_1`: f16 `d`, f16 minimum `m`, `qh` and nibbles as in `q5_0`; value = q·d + m.
    #[derive(Default)]
    BlockQ5_1(Q5_1, QK, 24) {
        d: u16,
        m: u16,
        qh: [u8; 4],
        qs: [u8; QK / 2],
    }
    /// `q4_k`: f16 `d`, f16 `dmin`, 8 packed 6-bit (scale, min) pairs, 128 bytes of nibbles
    /// (bytes 32g..32g + 32 hold sub-blocks 2g (low) and 2g + 1 (high)).
    BlockQ4K(Q4K, QK_K, 144) {
        d: u16,
        dmin: u16,
        scales: [u8; 12],
        qs: [u8; QK_K / 2],
    }
    /// `q5_k`: as `q4_k` with the fifth bits `qh` (bit j of byte l: value l of sub-block j)
    /// before the nibbles.
    BlockQ5K(Q5K, QK_K, 176) {
        d: u16,
        dmin: u16,
        scales: [u8; 12],
        qh: [u8; QK_K / 8],
        qs: [u8; QK_K / 2],
    }
    /// `q6_k`: low nibbles `ql`, 2-bit highs `qh`, 16 signed 8-bit sub-block scales, f16 `d`.
    BlockQ6K(Q6K, QK_K, 210) {
        ql: [u8; QK_K / 2],
        qh: [u8; QK_K / 4],
        scales: [i8; QK_K / 16],
        d: u16,
    }
}

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

/// The value of largest magnitude, with its sign (the first one on ties): the reference
/// quantizers map it to the most negative integer.
pub fn max_by_magnitude(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

/// What describes a stored block type: its element type, its values per block, and the
/// `#[repr(C)]` struct that implements this, whose size is the block's size and whose fields
/// (read by name, or by `offset_of!` where kernels read raw bytes) are its layout. Implemented
/// only by structs of integers without padding (every bit pattern valid), which `cast_blocks`
/// relies on: the structs of `blocks!`, here and in `interleave`.
pub trait BlockLayout: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    /// Values per block (per row, for an interleaved group).
    const BLOCK_LEN: usize;
}

/// Reinterprets raw bytes (e.g. a tensor inside the mapping) as blocks. Checks the length and
/// the alignment first (errors name `op`).
pub(crate) fn cast_blocks<'a, B: BlockLayout>(bytes: &'a [u8], op: &'static str) -> Result<&'a [B]> {
    let (size, align, dtype) = (size_of::<B>(), align_of::<B>(), B::DTYPE);
    if !bytes.len().is_multiple_of(size) {
        return Err(KernelError::ByteLength { op, dtype, got: bytes.len(), block_bytes: size });
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(align) {
        return Err(KernelError::Misaligned { op, dtype, align });
    }
    // SAFETY: every bit pattern is a valid `B` (the `BlockLayout` contract); the length is a
    // whole number of `B` and the pointer is aligned for `B` (both checked above); the
    // lifetime is tied to `bytes`.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// The bytes of one block.
pub(crate) fn block_bytes<B: BlockLayout>(b: &B) -> &[u8] {
    // SAFETY: a `BlockLayout` is a `#[repr(C)]` struct of integers without padding, so all
    // `size_of::<B>()` bytes behind the reference are initialized; the lifetime is `b`'s.
    unsafe { std::slice::from_raw_parts((b as *const B).cast::<u8>(), size_of::<B>()) }
}

/// The whole blocks in `bytes` (any alignment), read one by one.
pub(crate) fn blocks_of<B: BlockLayout>(bytes: &[u8]) -> impl Iterator<Item = B> + '_ {
    // SAFETY: each chunk holds `size_of::<B>()` bytes, read without alignment; every bit
    // pattern is a valid `B` (the `BlockLayout` contract).
    bytes.chunks_exact(size_of::<B>()).map(|c| unsafe { c.as_ptr().cast::<B>().read_unaligned() })
}

/// Writes `b` into the first `size_of::<B>()` bytes of `out` (any alignment).
pub(crate) fn write_block<B: BlockLayout>(out: &mut [u8], b: B) {
    assert!(out.len() >= size_of::<B>(), "write_block: short buffer");
    // SAFETY: `out` holds the bytes written (asserted); the write needs no alignment.
    unsafe { out.as_mut_ptr().cast::<B>().write_unaligned(b) }
}

/// The operations of a legacy block type (`q4_0`, `q4_1`, `q8_0`) over its typed blocks.
/// Implemented in `blocks`.
pub trait Block: BlockLayout + Default {
    /// The activation block type the dot product takes.
    type Activation: Copy;
    fn quantize_row(src: &[f32], dst: &mut [Self]) -> Result<()>;
    fn dequantize_row(src: &[Self], dst: &mut [f32]) -> Result<()>;
    /// Dot product through the dispatched (fastest available) kernel.
    fn vec_dot(w: &[Self], a: &[Self::Activation]) -> Result<f32>;
    /// Dot product through the scalar reference.
    fn vec_dot_scalar(w: &[Self], a: &[Self::Activation]) -> Result<f32>;
    /// The fields the SIMD kernels read: the raw f16 bits of the scale `d` and of the minimum
    /// `m` (0 for types without one), and the address of the quant bytes.
    fn d(&self) -> u16;
    fn m(&self) -> u16 {
        0
    }
    fn qs(&self) -> *const u8;
}

/// The instruction sets the dispatch table (`table::Kernels`) can be filled for, in the order
/// `AUTARK_ISA` falls back along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
    /// NEON with the dot-product extension (`sdot`).
    NeonDot,
}

impl Isa {
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon, Isa::NeonDot];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dotprod",
        }
    }

    /// The ISA of `name` (any case; `dotprod` for `neon-dotprod`).
    pub fn parse(name: &str) -> Result<Isa> {
        let name = name.trim().to_ascii_lowercase();
        let known = if name == "dotprod" { "neon-dotprod" } else { &name };
        Isa::ALL.into_iter().find(|i| i.name() == known).ok_or(KernelError::UnknownIsa(name))
    }
}

// ---- errors ------------------------------------------------------------------------------------

/// The kernels' one error type.
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
    #[error("unknown type {:?} (expected one of {})", .0, DType::ALL.map(DType::name).join(", "))]
    UnknownTypeName(String),
    #[error("{op} is not supported for {dtype}")]
    Unsupported { op: &'static str, dtype: DType },
    #[error("gemm: {dtype} weights need the activations' f32 copy, which they were set without")]
    NoFloatActivations { dtype: DType },
    #[error("unknown tensor layout code {0}")]
    UnknownLayout(u32),
    #[error("layout {layout} does not hold {dtype} tensors of shape {shape:?} (q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k or q6_k matrices with a multiple of 16 rows)")]
    BadLayout { layout: &'static str, dtype: DType, shape: Vec<usize> },
    #[error("unknown ISA {:?} in AUTARK_ISA (expected one of {})", .0, Isa::ALL.map(Isa::name).join(", "))]
    UnknownIsa(String),
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;
