//! The 16-row interleaved layout (`.autark` tensor layout 1, docs/FORMAT.md "Layouts") of
//! `q4_0`, `q4_1`, `q5_0`, `q5_1` and `q8_0` matrices, written by the quantizer so that the
//! kernels find 16 rows side by side without repacking at load.
//!
//! Rows are taken in groups of 16. A group is stored as its column blocks in order; group block
//! `b` holds block `b` of each of the 16 rows: the 16 f16 `d` (row order), for `q4_1`/`q5_1`
//! the 16 f16 `m`, for `q5_0`/`q5_1` the fifth bits as 8 masks (below), then the quant bytes in
//! 4-byte pieces: piece `k` of row 0, of row 1, …, of row 15, then piece `k + 1`. A 512-bit
//! register loaded from piece `k` holds 4 bytes of each row in its 16 lanes, so one `vpdpbusd`
//! against 4 broadcast activation bytes gives 16 row sums; a 256-bit or 128-bit register holds
//! 8 or 4 of those rows.
//!
//! The fifth bits (`q5_*`): 8 little-endian 64-bit masks, two per nibble piece `k` (4 pieces of
//! 16 nibble bytes): mask `2k` holds the bits of the piece's low nibbles, mask `2k + 1` those
//! of its high nibbles; bit `4·lane + i` belongs to byte `i` of that lane's 4 bytes (values
//! `4k + i` and `16 + 4k + i` of the row's block). A mask is the byte mask of the register
//! loaded from the piece (AVX-512's `vpmovm2b`/masked add); its 32- and 16-bit quarters serve
//! 8 and 4 rows. Every bit of the row-major `qh` is kept, only moved: the tensor has the same
//! number of bytes as the row-major one.
//!
//! `q4_k` and `q5_k` (256-value super-blocks) follow the same scheme with two f16 fields (`d`,
//! `dmin`) and no masks: the rest of a row's super-block (12 bytes of packed scales, `q5_k`'s
//! 32 bytes of fifth bits, 128 bytes of nibbles) is cut into 4-byte pieces, so piece 0–2 hold
//! the 16 rows' scales (one 32-bit lane per row: the 6-bit scales and mins unpack with shifts
//! per lane), and each 64-byte piece of nibbles or fifth bits holds values `4k..4k + 4` of a
//! sub-block of every row.
//!
//! `q6_k` likewise: its f16 `d` (which ends the row-major super-block) comes first as 16 values,
//! then the 16 rows' scales by scale (16 bytes per scale), then `ql` and `qh` as 48 pieces
//! placed in the order the one-token kernels read them (`BlockQ6Kx16`): the runs as a pass over
//! two sub-block pairs meets them. In row order the decode jumped back and forth
//! inside each 3360-byte block and the hardware prefetchers lost the stream.

use crate::types::{
    blocks, BlockLayout, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, DType,
    KernelError, Result, QK, QK_K,
};
use std::mem::offset_of;

/// Rows per interleaved group.
pub const GROUP: usize = 16;

/// How a matrix's blocks are ordered in its tensor bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum TensorLayout {
    /// Row after row, each row its blocks in order (every dtype).
    #[default]
    RowMajor = 0,
    /// Groups of 16 rows, interleaved (this module); `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`,
    /// `q4_k`, `q5_k` and `q6_k` matrices whose row count is a multiple of 16.
    Rows16 = 1,
}

impl TryFrom<u32> for TensorLayout {
    type Error = KernelError;
    fn try_from(v: u32) -> Result<Self> {
        match v {
            0 => Ok(TensorLayout::RowMajor),
            1 => Ok(TensorLayout::Rows16),
            other => Err(KernelError::UnknownLayout(other)),
        }
    }
}

impl TensorLayout {
    pub fn name(self) -> &'static str {
        match self {
            TensorLayout::RowMajor => "rows",
            TensorLayout::Rows16 => "rows16",
        }
    }

    /// Whether a tensor of `dtype` and `shape` may be stored in this layout.
    pub fn check(self, dtype: DType, shape: &[usize]) -> Result<()> {
        if self == TensorLayout::RowMajor {
            return Ok(());
        }
        let ok = scheme(dtype).is_some() && shape.len() == 2 && shape[0].is_multiple_of(GROUP);
        if ok {
            Ok(())
        } else {
            Err(KernelError::BadLayout { layout: self.name(), dtype, shape: shape.to_vec() })
        }
    }
}

/// How a row-major block of an interleavable type maps onto its group block.
#[derive(Clone, Copy)]
struct Scheme {
    /// f16 fields before the quants (`d`, `m`), each stored as 16 consecutive values.
    nf: usize,
    /// Whether the block has `q5`'s 32 fifth bits (`qh`, after the f16 fields).
    qh: bool,
    /// Whether the f16 fields end the row-major block (`q6_k`'s `d`) rather than start it; in
    /// the group block they come first either way.
    tail: bool,
}

/// Bytes of the fifth-bit masks in a `q5_*` group block.
const QH_BYTES: usize = 8 * 8;

/// The scheme of an interleavable type, `None` for the others.
const fn scheme(dtype: DType) -> Option<Scheme> {
    let (nf, qh) = match dtype {
        DType::Q4_0 => (offset_of!(BlockQ4_0, qs) / 2, false),
        DType::Q4_1 => (offset_of!(BlockQ4_1, qs) / 2, false),
        DType::Q8_0 => (offset_of!(BlockQ8_0, qs) / 2, false),
        DType::Q5_0 => (offset_of!(BlockQ5_0, qh) / 2, true),
        DType::Q5_1 => (offset_of!(BlockQ5_1, qh) / 2, true),
        DType::Q4K => (offset_of!(BlockQ4K, scales) / 2, false),
        DType::Q5K => (offset_of!(BlockQ5K, scales) / 2, false),
        DType::Q6K => return Some(Scheme { nf: 1, qh: false, tail: true }),
        _ => return None,
    };
    Some(Scheme { nf, qh, tail: false })
}

impl Scheme {
    /// Bytes of a row-major block before its quant bytes.
    fn head(self) -> usize {
        if self.tail {
            0
        } else {
            2 * self.nf + if self.qh { 4 } else { 0 }
        }
    }

    /// Where the f16 fields and the quant bytes lie in a row-major block of `len` bytes.
    fn split(self, len: usize) -> (usize, std::ops::Range<usize>) {
        if self.tail {
            (len - 2 * self.nf, 0..len - 2 * self.nf)
        } else {
            (0, self.head()..len)
        }
    }

    /// Where the quant pieces start in a group block.
    fn pieces(self) -> usize {
        2 * self.nf * GROUP + if self.qh { QH_BYTES } else { 0 }
    }

    /// Where quant byte `q` of row `lane`'s row-major block lies after the group block's f16
    /// fields and masks: in 4-byte pieces in order, but for `q6_k`'s read order and its scales
    /// (`BlockQ6Kx16`).
    #[inline]
    fn place(self, q: usize, lane: usize) -> usize {
        match (self.tail, q) {
            (true, Q6_SCALES..) => (q - Q6_SCALES) * GROUP + lane,
            (true, _) => q6_slot(q / 4) * 4 * GROUP + lane * 4 + q % 4,
            (false, _) => (q / 4) * 4 * GROUP + lane * 4 + q % 4,
        }
    }

    /// Row `lane`'s block `src` into its places in group block `blk`.
    fn scatter(self, lane: usize, src: &[u8], blk: &mut [u8]) {
        let (f, quants) = self.split(src.len());
        for i in 0..2 * self.nf {
            blk[(i / 2) * 2 * GROUP + lane * 2 + i % 2] = src[f + i];
        }
        if self.qh {
            let qh = u32::from_le_bytes(src[2 * self.nf..][..4].try_into().expect("4 bytes"));
            let masks = &mut blk[2 * self.nf * GROUP..][..QH_BYTES];
            for j in 0..32 {
                let (byte, bit) = qh_place(lane, j);
                masks[byte] |= (((qh >> j) & 1) as u8) << bit;
            }
        }
        let at = self.pieces();
        for (q, &byte) in src[quants].iter().enumerate() {
            blk[at + self.place(q, lane)] = byte;
        }
    }

    /// Row `lane`'s row-major block from group block `blk` into `dst`.
    fn gather(self, lane: usize, blk: &[u8], dst: &mut [u8]) {
        let (f, quants) = self.split(dst.len());
        for i in 0..2 * self.nf {
            dst[f + i] = blk[(i / 2) * 2 * GROUP + lane * 2 + i % 2];
        }
        if self.qh {
            let masks = &blk[2 * self.nf * GROUP..][..QH_BYTES];
            let mut qh = 0u32;
            for j in 0..32 {
                let (byte, bit) = qh_place(lane, j);
                qh |= (((masks[byte] >> bit) & 1) as u32) << j;
            }
            dst[2 * self.nf..][..4].copy_from_slice(&qh.to_le_bytes());
        }
        let at = self.pieces();
        for (q, o) in dst[quants].iter_mut().enumerate() {
            *o = blk[at + self.place(q, lane)];
        }
    }
}

/// Where fifth bit `j` (value `j` of the block) of row `lane` lies in the masks: (byte, bit).
#[inline]
fn qh_place(lane: usize, j: usize) -> (usize, usize) {
    // Value j < 16 is the low nibble of quant byte j, value j ≥ 16 the high nibble of j − 16.
    let (byte, high) = (j % 16, j / 16);
    let (k, i) = (byte / 4, byte % 4);
    let pos = 4 * lane + i;
    (8 * (2 * k + high) + pos / 8, pos % 8)
}

/// Checks a whole-matrix reorder (`op`) of `src` and sizes `dst` to it: the scheme, the row
/// bytes and the block bytes.
fn reorder(
    op: &'static str,
    dtype: DType,
    rows: usize,
    cols: usize,
    src: &[u8],
    dst: &mut Vec<u8>,
) -> Result<(Scheme, usize, usize)> {
    TensorLayout::Rows16.check(dtype, &[rows, cols])?;
    let sc = scheme(dtype).expect("checked");
    let rb = dtype.row_bytes(cols)?;
    if src.len() != rows * rb {
        return Err(KernelError::LengthMismatch { op, expected: rows * rb, got: src.len() });
    }
    dst.clear();
    dst.resize(src.len(), 0);
    Ok((sc, rb, dtype.block_bytes()))
}

/// Row-major `src` (`rows` × `cols` of `dtype`) into the 16-row layout in `dst`.
pub fn interleave(dtype: DType, rows: usize, cols: usize, src: &[u8], dst: &mut Vec<u8>) -> Result<()> {
    let (sc, rb, bs) = reorder("interleave", dtype, rows, cols, src, dst)?;
    for (g, out) in dst.chunks_exact_mut(rb * GROUP).enumerate() {
        for (b, blk) in out.chunks_exact_mut(bs * GROUP).enumerate() {
            for lane in 0..GROUP {
                sc.scatter(lane, &src[(g * GROUP + lane) * rb + b * bs..][..bs], blk);
            }
        }
    }
    Ok(())
}

/// The 16-row layout `src` (`rows` × `cols` of `dtype`) back into row-major bytes in `dst`:
/// for a reader without a kernel of this layout (the CUDA backend's q5 and K-quant GEMVs).
pub fn deinterleave(dtype: DType, rows: usize, cols: usize, src: &[u8], dst: &mut Vec<u8>) -> Result<()> {
    let (sc, rb, bs) = reorder("deinterleave", dtype, rows, cols, src, dst)?;
    for (g, group) in src.chunks_exact(rb * GROUP).enumerate() {
        for (b, blk) in group.chunks_exact(bs * GROUP).enumerate() {
            for lane in 0..GROUP {
                sc.gather(lane, blk, &mut dst[(g * GROUP + lane) * rb + b * bs..][..bs]);
            }
        }
    }
    Ok(())
}

/// Row `r`'s row-major bytes from a whole interleaved matrix `data` (`cols` wide) into `dst`.
pub fn row(dtype: DType, cols: usize, data: &[u8], r: usize, dst: &mut [u8]) -> Result<()> {
    let rb = dtype.row_bytes(cols)?;
    if dst.len() != rb {
        return Err(KernelError::LengthMismatch { op: "interleave::row", expected: rb, got: dst.len() });
    }
    for (b, out) in dst.chunks_exact_mut(dtype.block_bytes()).enumerate() {
        block(dtype, cols, data, r, b, out)?;
    }
    Ok(())
}

/// The bytes of block `b` of row `r` (one row-major block) from a whole interleaved matrix
/// `data` (`cols` wide) into `dst`: what a single-row reader (the embedding lookup) needs,
/// without a row-sized buffer.
pub fn block(dtype: DType, cols: usize, data: &[u8], r: usize, b: usize, dst: &mut [u8]) -> Result<()> {
    let sc = scheme(dtype).ok_or_else(|| KernelError::BadLayout {
        layout: TensorLayout::Rows16.name(),
        dtype,
        shape: vec![r, cols],
    })?;
    let (rb, bs) = (dtype.row_bytes(cols)?, dtype.block_bytes());
    let at = (r / GROUP) * rb * GROUP + b * bs * GROUP;
    let group = data.get(at..at + bs * GROUP).filter(|_| b * bs < rb);
    let (Some(group), true) = (group, dst.len() == bs) else {
        return Err(KernelError::LengthMismatch { op: "interleave::block", expected: bs, got: dst.len() });
    };
    sc.gather(r % GROUP, group, dst);
    Ok(())
}

/// Row `lane`'s row-major block from one group block `blk` into `dst` (`dst` one block long).
pub fn lane_block<B: BlockLayout>(blk: &B, lane: usize, dst: &mut [u8]) {
    let sc = scheme(B::DTYPE).expect("an interleaved block type");
    sc.gather(lane, crate::types::block_bytes(blk), dst);
}

/// Bytes of the largest block an interleaved type has (`q6_k`'s 210; a test checks every
/// interleaved type against it).
pub const MAX_BLOCK_BYTES: usize = size_of::<BlockQ6K>();

blocks! {
    /// Block `b` of 16 interleaved `q4_0` rows.
    BlockQ4_0x16(Q4_0, QK, 16 * 18) {
        d: [u16; GROUP],
        qs: [u8; GROUP * QK / 2],
    }
    /// Block `b` of 16 interleaved `q4_1` rows.
    BlockQ4_1x16(Q4_1, QK, 16 * 20) {
        d: [u16; GROUP],
        m: [u16; GROUP],
        qs: [u8; GROUP * QK / 2],
    }
    /// Block `b` of 16 interleaved `q5_0` rows.
    BlockQ5_0x16(Q5_0, QK, 16 * 22) {
        d: [u16; GROUP],
        qh: [u8; QH_BYTES],
        qs: [u8; GROUP * QK / 2],
    }
    /// Block `b` of 16 interleaved `q5_1` rows.
    BlockQ5_1x16(Q5_1, QK, 16 * 24) {
        d: [u16; GROUP],
        m: [u16; GROUP],
        qh: [u8; QH_BYTES],
        qs: [u8; GROUP * QK / 2],
    }
    /// Block `b` of 16 interleaved `q8_0` rows (quant bytes are the signed values' bits).
    BlockQ8_0x16(Q8_0, QK, 16 * 34) {
        d: [u16; GROUP],
        qs: [u8; GROUP * QK],
    }
    /// Super-block `b` of 16 interleaved `q4_k` rows: pieces 0–2 the packed scales, 3–34 the
    /// nibbles.
    BlockQ4Kx16(Q4K, QK_K, 16 * 144) {
        d: [u16; GROUP],
        dmin: [u16; GROUP],
        scales: [u8; K_SCALES],
        qs: [u8; GROUP * QK_K / 2],
    }
    /// Super-block `b` of 16 interleaved `q5_k` rows: pieces 0–2 the packed scales, 3–10 the
    /// fifth bits, 11–42 the nibbles.
    BlockQ5Kx16(Q5K, QK_K, 16 * 176) {
        d: [u16; GROUP],
        dmin: [u16; GROUP],
        scales: [u8; K_SCALES],
        qh: [u8; GROUP * QK_K / 8],
        qs: [u8; GROUP * QK_K / 2],
    }
}

/// Super-block `b` of 16 interleaved `q6_k` rows: the 16 `d` first, then the 16 rows' signed
/// 8-bit scales by scale (`scales[16j + r]` is row `r`'s scale `j`, so one sign-extending load
/// gives a half sub-block's scale in every row's lane), then the quants as 4-byte pieces in the
/// order the one-token kernels read them (so that the hardware prefetchers follow one forward
/// stream): six runs of 8 pieces, `ql` 0–7, `qh` 0–7, `ql` 8–15, `ql` 16–23, `qh` 8–15, `ql`
/// 24–31 (`ql(r)`, `qh(n)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ6Kx16 {
    pub d: [u16; GROUP],
    pub scales: [u8; GROUP * QK_K / 16],
    runs: [[u8; Q6_RUN]; 6],
}
/// Bytes of one run of 8 pieces of a `q6_k` group block.
const Q6_RUN: usize = 8 * 4 * GROUP;
/// Where each run of 8 source pieces (`ql` 0–31 as runs 0–3, `qh` 32–47 as runs 4–5) lies
/// among a group block's runs.
const Q6_RUNS: [usize; 6] = [0, 2, 3, 5, 1, 4];

impl BlockQ6Kx16 {
    /// `ql` pieces `8r..8r + 8` (the low nibbles and high nibbles of sub-blocks `2r`, `2r+1`…
    /// as the row-major `ql`'s bytes `32r..32r + 32`).
    #[inline(always)]
    pub fn ql(&self, r: usize) -> &[u8; Q6_RUN] {
        &self.runs[Q6_RUNS[r]]
    }
    /// `qh` pieces `8n..8n + 8` (the row-major `qh`'s bytes `32n..32n + 32`).
    #[inline(always)]
    pub fn qh(&self, n: usize) -> &[u8; Q6_RUN] {
        &self.runs[Q6_RUNS[4 + n]]
    }
    /// Scale `j` (of 16-value half `j`) of the 16 rows, row order.
    #[inline(always)]
    pub fn scale(&self, j: usize) -> &[u8; GROUP] {
        self.scales[GROUP * j..][..GROUP].try_into().expect("16 bytes")
    }
}

/// Where a row-major `q6_k` block's scales start (after `ql` and `qh`).
const Q6_SCALES: usize = QK_K / 2 + QK_K / 4;

/// The piece slot (after the f16 `d`; slots 0–3 hold the scales) of quant piece `p` of a
/// row-major `q6_k` block (`ql` 0–31, `qh` 32–47).
const fn q6_slot(p: usize) -> usize {
    4 + 8 * Q6_RUNS[p / 8] + p % 8
}

const _: () = assert!(size_of::<BlockQ6Kx16>() == GROUP * size_of::<BlockQ6K>());
impl BlockLayout for BlockQ6Kx16 {
    const DTYPE: DType = DType::Q6K;
    const BLOCK_LEN: usize = QK_K;
}

/// Bytes of a K group block's packed scales: 3 pieces of 16 rows × 4 bytes.
pub const K_SCALES: usize = 3 * 4 * GROUP;

/// The fields of an interleaved `q4_k` / `q5_k` group block that the kernels read. Piece `k`
/// of `qs` (64 bytes) holds bytes `4k..4k + 4` of the 16 rows' 128 nibble bytes: sub-block `j`
/// is nibble `j mod 2` of pieces `8·(j div 2) .. 8·(j div 2) + 8`, piece `8·(j div 2) + k`
/// meeting activation bytes `4k..4k + 4`; `q5_k`'s piece `k` of `qh` holds the fifth bits of
/// the same values, bit `j` of each byte for sub-block `j`.
pub trait KGroupBlock: BlockLayout {
    fn d(&self) -> &[u16; GROUP];
    fn dmin(&self) -> &[u16; GROUP];
    /// The 16 rows' 12 packed scale bytes, as 3 pieces (row `r`'s bytes `4p..4p + 4` at
    /// `64p + 4r`).
    fn scales(&self) -> &[u8; K_SCALES];
    /// `q5_k`'s fifth bits (8 pieces), else `None`.
    fn qh(&self) -> Option<&[u8; GROUP * QK_K / 8]> {
        None
    }
    fn qs(&self) -> &[u8; GROUP * QK_K / 2];
}

impl KGroupBlock for BlockQ4Kx16 {
    fn d(&self) -> &[u16; GROUP] {
        &self.d
    }
    fn dmin(&self) -> &[u16; GROUP] {
        &self.dmin
    }
    fn scales(&self) -> &[u8; K_SCALES] {
        &self.scales
    }
    fn qs(&self) -> &[u8; GROUP * QK_K / 2] {
        &self.qs
    }
}

impl KGroupBlock for BlockQ5Kx16 {
    fn d(&self) -> &[u16; GROUP] {
        &self.d
    }
    fn dmin(&self) -> &[u16; GROUP] {
        &self.dmin
    }
    fn scales(&self) -> &[u8; K_SCALES] {
        &self.scales
    }
    fn qh(&self) -> Option<&[u8; GROUP * QK_K / 8]> {
        Some(&self.qh)
    }
    fn qs(&self) -> &[u8; GROUP * QK_K / 2] {
        &self.qs
    }
}

/// The fields of an interleaved group block that the kernels read.
pub trait GroupBlock: BlockLayout {
    /// The 16 rows' `d`.
    fn d(&self) -> &[u16; GROUP];
    /// The 16 rows' `m` (`q4_1`), else `None`.
    fn m(&self) -> Option<&[u16; GROUP]> {
        None
    }
    /// The fifth-bit masks (`q5_0`, `q5_1`), else `None`.
    fn qh(&self) -> Option<&[u8; QH_BYTES]> {
        None
    }
    /// Quant bytes, `4 · GROUP` per piece.
    fn qs(&self) -> &[u8];
    /// The unsigned integers' offset: `q4_0` −8, `q5_0` −16, `q8_0` (its bytes + 128) −128.
    const OFFSET: i32 = match Self::DTYPE {
        DType::Q4_0 => -8,
        DType::Q5_0 => -16,
        DType::Q8_0 => -128,
        _ => 0,
    };
}

/// The fifth-bit mask of nibble piece `k` (`high`: of its high nibbles) for all 16 lanes.
#[inline]
pub fn qh_mask(qh: &[u8; QH_BYTES], k: usize, high: bool) -> u64 {
    u64::from_le_bytes(qh[8 * (2 * k + high as usize)..][..8].try_into().expect("8 bytes"))
}

macro_rules! impl_group_block {
    ($($blk:ident $(, m: $m:ident)? $(, qh: $qh:ident)?;)*) => {$(
        impl GroupBlock for $blk {
            fn d(&self) -> &[u16; GROUP] {
                &self.d
            }
            $(fn m(&self) -> Option<&[u16; GROUP]> {
                Some(&self.$m)
            })?
            $(fn qh(&self) -> Option<&[u8; QH_BYTES]> {
                Some(&self.$qh)
            })?
            fn qs(&self) -> &[u8] {
                &self.qs
            }
        }
    )*};
}

impl_group_block! {
    BlockQ4_0x16;
    BlockQ4_1x16, m: m;
    BlockQ5_0x16, qh: qh;
    BlockQ5_1x16, m: m, qh: qh;
    BlockQ8_0x16;
}

/// A copy of interleaved tensor bytes as owned group blocks (any alignment of `bytes`).
pub fn to_blocks<B: BlockLayout>(bytes: &[u8]) -> Result<Vec<B>> {
    let (dtype, size) = (B::DTYPE, size_of::<B>());
    if !bytes.len().is_multiple_of(size) {
        return Err(KernelError::ByteLength {
            op: "interleave::to_blocks",
            dtype,
            got: bytes.len(),
            block_bytes: size,
        });
    }
    Ok(crate::types::blocks_of(bytes).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn interleave_round_trip_and_piece_order() {
        let mut rng = Rng::new(7);
        for dtype in
            [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4K, DType::Q5K, DType::Q6K]
        {
            let (rows, cols) = (32, 3 * dtype.block_len());
            let rb = dtype.row_bytes(cols).unwrap();
            assert!(dtype.block_bytes() <= MAX_BLOCK_BYTES, "{dtype}: MAX_BLOCK_BYTES");
            let src: Vec<u8> = (0..rows * rb).map(|_| rng.next() as u8).collect();
            let mut dst = Vec::new();
            interleave(dtype, rows, cols, &src, &mut dst).unwrap();
            assert_eq!(dst.len(), src.len());
            let mut whole = Vec::new();
            deinterleave(dtype, rows, cols, &dst, &mut whole).unwrap();
            assert_eq!(whole, src, "{dtype}: deinterleave");
            let mut back = vec![0u8; rb];
            for r in 0..rows {
                row(dtype, cols, &dst, r, &mut back).unwrap();
                assert_eq!(back, src[r * rb..(r + 1) * rb], "{dtype} row {r}");
            }
            // Hand-checked positions: group 1, block 2, row 17 (lane 1).
            let sc = scheme(dtype).unwrap();
            let bs = dtype.block_bytes();
            let blk = &dst[rb * GROUP + 2 * bs * GROUP..];
            let srow = &src[17 * rb + 2 * bs..];
            let f = sc.split(bs).0; // q6_k's d ends its row block
            assert_eq!(blk[2..4], srow[f..f + 2], "{dtype}: d of lane 1");
            // Row 17's block 2 from its group block alone (`lane_block`).
            let mut one = vec![0u8; dtype.block_bytes()];
            let at = rb * GROUP + 2 * dtype.block_bytes() * GROUP;
            let gb = &dst[at..at + dtype.block_bytes() * GROUP];
            match dtype {
                DType::Q4K => lane_block(&to_blocks::<BlockQ4Kx16>(gb).unwrap()[0], 1, &mut one),
                DType::Q5K => lane_block(&to_blocks::<BlockQ5Kx16>(gb).unwrap()[0], 1, &mut one),
                DType::Q5_1 => lane_block(&to_blocks::<BlockQ5_1x16>(gb).unwrap()[0], 1, &mut one),
                DType::Q6K => lane_block(&to_blocks::<BlockQ6Kx16>(gb).unwrap()[0], 1, &mut one),
                _ => one.copy_from_slice(&srow[..dtype.block_bytes()]),
            }
            assert_eq!(one, srow[..dtype.block_bytes()], "{dtype}: lane_block");
            let (q0, h) = (sc.pieces(), sc.head());
            // (piece slot, byte of the row-major block it starts at): in order, but for q6_k's
            // read order (after its scales: ql 0–31, qh 0–31, ql 32–95, qh 32–63, ql 96–127).
            let places: &[(usize, usize)] = if dtype == DType::Q6K {
                // Scales by scale: row 17's (lane 1's) scale j at byte 16j + 1 of the scales.
                for j in 0..16 {
                    assert_eq!(blk[q0 + 16 * j + 1], srow[192 + j], "{dtype}: scale {j} of lane 1");
                }
                &[(4, 0), (11, 28), (12, 128), (20, 32), (28, 64), (36, 160), (44, 96), (51, 124)]
            } else {
                &[(0, h), (1, h + 4)]
            };
            for &(slot, byte) in places {
                let at = q0 + 64 * slot + 4; // lane 1's 4 bytes of the piece
                assert_eq!(blk[at..at + 4], srow[byte..byte + 4], "{dtype}: piece slot {slot} of lane 1");
            }
            if sc.qh {
                // Value 5 (low nibble of byte 5: piece 1, byte 1) and value 20 (high nibble of
                // byte 4: piece 1, byte 0) of lane 1: masks 2 and 3, bits 4·1 + 1 and 4·1 + 0.
                let qh = u32::from_le_bytes(srow[2 * sc.nf..][..4].try_into().unwrap());
                let m = &blk[2 * sc.nf * GROUP..];
                let mask = |n: usize| u64::from_le_bytes(m[8 * n..][..8].try_into().unwrap());
                assert_eq!((mask(2) >> 5) & 1, ((qh >> 5) & 1) as u64, "{dtype}: fifth bit of value 5");
                assert_eq!((mask(3) >> 4) & 1, ((qh >> 20) & 1) as u64, "{dtype}: fifth bit of value 20");
            }
        }
    }

    #[test]
    fn bad_layout_requests_are_errors() {
        let mut v = Vec::new();
        assert!(matches!(interleave(DType::Q4_0, 8, 32, &[0; 8 * 18], &mut v), Err(KernelError::BadLayout { .. })));
        assert!(matches!(interleave(DType::F16, 16, 256, &[0; 16 * 512], &mut v), Err(KernelError::BadLayout { .. })));
        assert!(matches!(interleave(DType::Q4_0, 16, 32, &[0; 10], &mut v), Err(KernelError::LengthMismatch { .. })));
        assert!(TensorLayout::Rows16.check(DType::Q8_0, &[16, 32, 2]).is_err());
        assert!(TensorLayout::try_from(2).is_err());
        let mut row_buf = [0u8; 18];
        assert!(row(DType::Q4_0, 32, &[0; 16 * 18], 16, &mut row_buf).is_err());
    }
}
