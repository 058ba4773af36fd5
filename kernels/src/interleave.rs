//! The 16-row interleaved layout (`.autark` tensor layout 1, docs/FORMAT.md "Layouts") of
//! `q4_0`, `q4_1` and `q8_0` matrices, written by the quantizer so that the kernels find 16
//! rows side by side without repacking at load.
//!
//! Rows are taken in groups of 16. A group is stored as its column blocks in order; group block
//! `b` holds block `b` of each of the 16 rows: the 16 f16 `d` (row order), for `q4_1` the 16
//! f16 `m`, then the quant bytes in 4-byte pieces: piece `k` of row 0, of row 1, …, of row 15,
//! then piece `k + 1`. A 512-bit register loaded from piece `k` holds 4 bytes of each row in
//! its 16 lanes, so one `vpdpbusd` against 4 broadcast activation bytes gives 16 row sums; a
//! 256-bit or 128-bit register holds 8 or 4 of those rows. The tensor has the same number of
//! bytes as the row-major one.

use crate::types::{blocks, BlockLayout, BlockQ4_0, BlockQ4_1, BlockQ8_0, DType, KernelError, Result, QK};
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
    /// Groups of 16 rows, interleaved (this module); `q4_0`, `q4_1` and `q8_0` matrices whose
    /// row count is a multiple of 16.
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
        let ok = fields(dtype).is_some() && shape.len() == 2 && shape[0].is_multiple_of(GROUP);
        if ok {
            Ok(())
        } else {
            Err(KernelError::BadLayout { layout: self.name(), dtype, shape: shape.to_vec() })
        }
    }
}

/// The f16 fields (`d`, `m`: those before `qs`) of a block of the interleavable types.
const fn fields(dtype: DType) -> Option<usize> {
    match dtype {
        DType::Q4_0 => Some(offset_of!(BlockQ4_0, qs) / 2),
        DType::Q4_1 => Some(offset_of!(BlockQ4_1, qs) / 2),
        DType::Q8_0 => Some(offset_of!(BlockQ8_0, qs) / 2),
        _ => None,
    }
}

/// Byte offset, inside group block bytes, of row `lane`'s byte `i` of its row-major block.
#[inline]
fn lane_offset(nf: usize, lane: usize, i: usize) -> usize {
    if i < 2 * nf {
        (i / 2) * 2 * GROUP + lane * 2 + i % 2
    } else {
        let q = i - 2 * nf;
        2 * nf * GROUP + (q / 4) * 4 * GROUP + lane * 4 + q % 4
    }
}

/// Row-major `src` (`rows` × `cols` of `dtype`) into the 16-row layout in `dst`.
pub fn interleave(dtype: DType, rows: usize, cols: usize, src: &[u8], dst: &mut Vec<u8>) -> Result<()> {
    TensorLayout::Rows16.check(dtype, &[rows, cols])?;
    let nf = fields(dtype).expect("checked");
    let rb = dtype.row_bytes(cols)?;
    if src.len() != rows * rb {
        return Err(KernelError::LengthMismatch { op: "interleave", expected: rows * rb, got: src.len() });
    }
    let bs = dtype.block_bytes();
    dst.clear();
    dst.resize(src.len(), 0);
    let gb = bs * GROUP;
    for (g, out) in dst.chunks_exact_mut(rb * GROUP).enumerate() {
        for (b, blk) in out.chunks_exact_mut(gb).enumerate() {
            for lane in 0..GROUP {
                let row = &src[(g * GROUP + lane) * rb + b * bs..][..bs];
                for (i, &byte) in row.iter().enumerate() {
                    blk[lane_offset(nf, lane, i)] = byte;
                }
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
    let nf = fields(dtype).ok_or_else(|| KernelError::BadLayout {
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
    let lane = r % GROUP;
    for (i, o) in dst.iter_mut().enumerate() {
        *o = group[lane_offset(nf, lane, i)];
    }
    Ok(())
}

/// Bytes of the largest block an interleaved type has (`q8_0`).
pub const MAX_BLOCK_BYTES: usize = size_of::<BlockQ8_0>();

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
    /// Block `b` of 16 interleaved `q8_0` rows (quant bytes are the signed values' bits).
    BlockQ8_0x16(Q8_0, QK, 16 * 34) {
        d: [u16; GROUP],
        qs: [u8; GROUP * QK],
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
    /// Quant bytes, `4 · GROUP` per piece.
    fn qs(&self) -> &[u8];
}

macro_rules! impl_group_block {
    ($($blk:ident $(, m: $m:ident)?;)*) => {$(
        impl GroupBlock for $blk {
            fn d(&self) -> &[u16; GROUP] {
                &self.d
            }
            $(fn m(&self) -> Option<&[u16; GROUP]> {
                Some(&self.$m)
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
    BlockQ8_0x16;
}

/// A copy of interleaved tensor bytes as owned group blocks (any alignment of `bytes`).
pub fn to_blocks<B: GroupBlock>(bytes: &[u8]) -> Result<Vec<B>> {
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
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let (rows, cols) = (32, 96);
            let rb = dtype.row_bytes(cols).unwrap();
            let src: Vec<u8> = (0..rows * rb).map(|_| rng.next() as u8).collect();
            let mut dst = Vec::new();
            interleave(dtype, rows, cols, &src, &mut dst).unwrap();
            assert_eq!(dst.len(), src.len());
            let mut back = vec![0u8; rb];
            for r in 0..rows {
                row(dtype, cols, &dst, r, &mut back).unwrap();
                assert_eq!(back, src[r * rb..(r + 1) * rb], "{dtype} row {r}");
            }
            // Hand-checked positions: group 1, block 2, row 17 (lane 1).
            let nf = fields(dtype).unwrap();
            let bs = dtype.block_bytes();
            let blk = &dst[rb * GROUP + 2 * bs * GROUP..];
            let srow = &src[17 * rb + 2 * bs..];
            assert_eq!(blk[2..4], srow[0..2], "{dtype}: d of lane 1");
            let q0 = 2 * nf * GROUP;
            assert_eq!(blk[q0 + 4..q0 + 8], srow[2 * nf..2 * nf + 4], "{dtype}: piece 0 of lane 1");
            assert_eq!(blk[q0 + 64 + 4..q0 + 64 + 8], srow[2 * nf + 4..2 * nf + 8], "{dtype}: piece 1 of lane 1");
        }
    }

    #[test]
    fn bad_layout_requests_are_errors() {
        let mut v = Vec::new();
        assert!(matches!(interleave(DType::Q4_0, 8, 32, &[0; 8 * 18], &mut v), Err(KernelError::BadLayout { .. })));
        assert!(matches!(
            interleave(DType::Q4K, 16, 256, &[0; 16 * size_of::<crate::types::BlockQ4K>()], &mut v),
            Err(KernelError::BadLayout { .. })
        ));
        assert!(matches!(interleave(DType::Q4_0, 16, 32, &[0; 10], &mut v), Err(KernelError::LengthMismatch { .. })));
        assert!(TensorLayout::Rows16.check(DType::Q8_0, &[16, 32, 2]).is_err());
        assert!(TensorLayout::try_from(2).is_err());
        let mut row_buf = [0u8; 18];
        assert!(row(DType::Q4_0, 32, &[0; 16 * 18], 16, &mut row_buf).is_err());
    }
}
