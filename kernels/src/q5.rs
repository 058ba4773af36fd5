//! The 5-bit legacy types, as GGUF's `Q5_0` and `Q5_1` (32 values per block; value j has a
//! nibble — in the low half of byte j for j < 16, in the high half of byte j − 16 otherwise —
//! and a fifth bit, bit j of the little-endian u32 `qh`; q_j = nibble | bit << 4 in 0..31):
//! - `q5_0` (22 bytes): f16 `d`, `qh`, 16 bytes of nibbles; value = (q − 16)·d.
//! - `q5_1` (24 bytes): f16 `d`, f16 `m`, `qh`, 16 bytes of nibbles; value = q·d + m.
//!
//! Scalar kernels on raw bytes: dequantize, ggml's reference quantizers (bit for bit) and the
//! dot products with 8-bit activation blocks (the scalar
//! twins of the SIMD kernels). llama.cpp's `Q4_K_M` stores matrices whose width is not a
//! multiple of 256 as `Q5_0`; `Q5_K_M`'s fallback is `Q5_1`.
//!
//! The kernels take raw bytes (any alignment) and read and write them as `BlockQ5_0` and
//! `BlockQ5_1`.

use crate::types::{blocks_of, f16_to_f32, f32_to_f16, idot_u, write_block, BlockQ5_0, BlockQ5_1, BlockQ8A, QK};

/// The 32 unsigned 5-bit integers of a block from its nibbles and high bits.
#[inline]
pub(crate) fn unsigned(qs: &[u8], qh: u32) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        q[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

/// Nibbles and high bits of 32 unsigned 5-bit integers, into `qs` (16 bytes) and the returned `qh`.
fn pack_unsigned(q: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (q[j] as u32, q[j + 16] as u32);
        qs[j] = ((a & 0x0F) | ((b & 0x0F) << 4)) as u8;
        qh |= ((a >> 4) & 1) << j;
        qh |= ((b >> 4) & 1) << (j + 16);
    }
    qh
}

/// The scale and the 32 signed integers of one `q5_0` block.
pub fn unpack(b: &[u8]) -> (f32, [i32; QK]) {
    let b: BlockQ5_0 = blocks_of(b).next().expect("a whole q5_0 block");
    (f16_to_f32(b.d), unsigned(&b.qs, u32::from_le_bytes(b.qh)).map(|q| q as i32 - 16))
}

pub fn pack(d: u16, q: &[i32; QK], out: &mut [u8]) {
    let mut b = BlockQ5_0 { d, ..Default::default() };
    b.qh = pack_unsigned(&q.map(|q| (q + 16) as u8), &mut b.qs).to_le_bytes();
    write_block(out, b);
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(size_of::<BlockQ5_0>()).zip(dst.chunks_exact_mut(QK)) {
        let (d, q) = unpack(b);
        y.iter_mut().zip(q).for_each(|(y, q)| *y = q as f32 * d);
    }
}

/// ggml's `quantize_row_q5_0_ref`: the value of largest magnitude maps to −16.
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(size_of::<BlockQ5_0>())) {
        let max = crate::types::max_by_magnitude(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0i32; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * id + 16.5) as i32).min(31) - 16;
        }
        pack(f32_to_f16(d), &q, b);
    }
}

// ---- q5_1 ----

pub fn pack_1(d: u16, m: u16, q: &[u8; QK], out: &mut [u8]) {
    let mut b = BlockQ5_1 { d, m, ..Default::default() };
    b.qh = pack_unsigned(q, &mut b.qs).to_le_bytes();
    write_block(out, b);
}

pub fn dequantize_row_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks_of::<BlockQ5_1>(src).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        let q = unsigned(&b.qs, u32::from_le_bytes(b.qh));
        y.iter_mut().zip(q).for_each(|(y, q)| *y = q as f32 * d + m);
    }
}

/// ggml's `quantize_row_q5_1_ref`: the block's range in 31 steps from its minimum.
pub fn quantize_row_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(size_of::<BlockQ5_1>())) {
        let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // ggml converts to uint8_t and keeps the low five bits.
        let q: [u8; QK] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as u8) & 0x1F);
        pack_1(f32_to_f16(d), f32_to_f16(min), &q, b);
    }
}

// ---- dot products with 8-bit activation blocks (scalar twins) ----
// Per block an exact integer sum of unsigned q × a, then the numerical contract's fused
// multiply-adds (`contract::block_term`, `min_term`), in block order.

/// `q5_0` row × activation blocks (`w`: `a.len()` blocks of 22 bytes).
pub fn vec_dot_q5_0(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (b, ba) in blocks_of::<BlockQ5_0>(w).zip(a) {
        let q = unsigned(&b.qs, u32::from_le_bytes(b.qh));
        acc = crate::contract::block_term(idot_u(&q, &ba.qs) - 16 * ba.sum, f16_to_f32(b.d), ba, acc);
    }
    acc
}

/// `q5_1` row × activation blocks (`w`: `a.len()` blocks of 24 bytes).
pub fn vec_dot_q5_1(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (b, ba) in blocks_of::<BlockQ5_1>(w).zip(a) {
        let q = unsigned(&b.qs, u32::from_le_bytes(b.qh));
        acc = crate::contract::block_term(idot_u(&q, &ba.qs), f16_to_f32(b.d), ba, acc);
        acc = crate::contract::min_term(f16_to_f32(b.m), ba, acc);
    }
    acc
}
