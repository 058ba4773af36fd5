//! The 5-bit legacy types, as GGUF's `Q5_0` and `Q5_1` (32 values per block; value j has a
//! nibble — in the low half of byte j for j < 16, in the high half of byte j − 16 otherwise —
//! and a fifth bit, bit j of the little-endian u32 `qh`; q_j = nibble | bit << 4 in 0..31):
//! - `q5_0` (22 bytes): f16 `d`, `qh`, 16 bytes of nibbles; value = (q − 16)·d.
//! - `q5_1` (24 bytes): f16 `d`, f16 `m`, `qh`, 16 bytes of nibbles; value = q·d + m.
//!
//! Scalar kernels on raw bytes: dequantize, ggml's reference quantizers (bit for bit), the
//! weighted scale searches, and the dot products with 8-bit activation blocks (the scalar
//! twins of the SIMD kernels). llama.cpp's `Q4_K_M` stores matrices whose width is not a
//! multiple of 256 as `Q5_0`; `Q5_K_M`'s fallback is `Q5_1`.

use crate::blocks::{f16_at, f16_to_f32, f32_to_f16, idot_u, BlockQ5_0, BlockQ5_1, BlockQ8A, QK};

/// Bytes of a `q5_0` block.
pub const BYTES: usize = size_of::<BlockQ5_0>();
/// Bytes of a `q5_1` block.
pub const BYTES_1: usize = size_of::<BlockQ5_1>();

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

fn qh_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
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
pub(crate) fn unpack(b: &[u8]) -> (f32, [i32; QK]) {
    let q = unsigned(&b[6..22], qh_at(b, 2));
    (f16_at(b, 0), q.map(|q| q as i32 - 16))
}

fn pack(d: u16, q: &[i32; QK], out: &mut [u8]) {
    out[0..2].copy_from_slice(&d.to_le_bytes());
    let qh = pack_unsigned(&q.map(|q| (q + 16) as u8), &mut out[6..22]);
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, q) = unpack(b);
        y.iter_mut().zip(q).for_each(|(y, q)| *y = q as f32 * d);
    }
}

/// ggml's `quantize_row_q5_0_ref`: the value of largest magnitude maps to −16.
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BYTES)) {
        let max = crate::scalar::max_by_magnitude(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0i32; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * id + 16.5) as i32).min(31) - 16;
        }
        pack(f32_to_f16(d), &q, b);
    }
}

fn err(x: &[f32], w: &[f32], b: &[u8]) -> f64 {
    let (d, q) = unpack(b);
    x.iter().zip(q).zip(w).map(|((x, q), w)| *w as f64 * ((x - q as f32 * d) as f64).powi(2)).sum()
}

/// Weighted scale search (as `search::quantize_row_q4_0_search`, with 5 bits): round-to-nearest
/// is a candidate, so no block gets worse under the weights.
pub fn quantize_row_search(src: &[f32], weights: &[f32], dst: &mut [u8]) {
    let mut cand = [0u8; BYTES];
    for ((x, w), b) in src.chunks_exact(QK).zip(weights.chunks_exact(QK)).zip(dst.chunks_exact_mut(BYTES)) {
        quantize_row(x, b);
        let mut best = err(x, w, b);
        let max = crate::scalar::max_by_magnitude(x);
        if max == 0.0 {
            continue;
        }
        for step in -12..=12 {
            let iscale = -(16.0 + 0.1 * step as f32) / max;
            let mut q = [0i32; QK];
            let (mut sxl, mut sl2) = (0f64, 0f64);
            for j in 0..QK {
                q[j] = ((iscale * x[j]).round() as i32).clamp(-16, 15);
                sxl += (w[j] * x[j]) as f64 * q[j] as f64;
                sl2 += w[j] as f64 * (q[j] * q[j]) as f64;
            }
            if sl2 <= 0.0 {
                continue;
            }
            pack(f32_to_f16((sxl / sl2) as f32), &q, &mut cand);
            let e = err(x, w, &cand);
            if e < best {
                best = e;
                b.copy_from_slice(&cand);
            }
        }
    }
}

// ---- q5_1 ----

fn pack_1(d: u16, m: u16, q: &[u8; QK], out: &mut [u8]) {
    out[0..2].copy_from_slice(&d.to_le_bytes());
    out[2..4].copy_from_slice(&m.to_le_bytes());
    let qh = pack_unsigned(q, &mut out[8..24]);
    out[4..8].copy_from_slice(&qh.to_le_bytes());
}

pub fn dequantize_row_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BYTES_1).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let q = unsigned(&b[8..24], qh_at(b, 4));
        y.iter_mut().zip(q).for_each(|(y, q)| *y = q as f32 * d + m);
    }
}

/// ggml's `quantize_row_q5_1_ref`: the block's range in 31 steps from its minimum.
pub fn quantize_row_1(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BYTES_1)) {
        let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // ggml converts to uint8_t and keeps the low five bits.
        let q: [u8; QK] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as u8) & 0x1F);
        pack_1(f32_to_f16(d), f32_to_f16(min), &q, b);
    }
}

fn err_1(x: &[f32], w: &[f32], b: &[u8]) -> f64 {
    let mut y = [0f32; QK];
    dequantize_row_1(b, &mut y);
    x.iter().zip(y).zip(w).map(|((x, y), w)| *w as f64 * ((x - y) as f64).powi(2)).sum()
}

/// Weighted scale-and-minimum search (as `search::quantize_row_q4_1_search`, with 5 bits):
/// round-to-nearest is a candidate, so no block gets worse under the weights.
pub fn quantize_row_search_1(src: &[f32], weights: &[f32], dst: &mut [u8]) {
    let mut cand = [0u8; BYTES_1];
    for ((x, w), b) in src.chunks_exact(QK).zip(weights.chunks_exact(QK)).zip(dst.chunks_exact_mut(BYTES_1)) {
        quantize_row_1(x, b);
        let mut best = err_1(x, w, b);
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max <= min {
            continue;
        }
        for step in 0..=36 {
            let iscale = (31.0 - 0.9 + 0.05 * step as f32) / (max - min);
            let l: [u8; QK] = std::array::from_fn(|j| (iscale * (x[j] - min)).round().clamp(0.0, 31.0) as u8);
            let Some((scale, offset)) = crate::search::affine_fit(x, w, &l) else {
                continue;
            };
            let (d, m) = (f32_to_f16(scale), f32_to_f16(offset));
            if !f16_to_f32(d).is_finite() || !f16_to_f32(m).is_finite() {
                continue;
            }
            pack_1(d, m, &l, &mut cand);
            let e = err_1(x, w, &cand);
            if e < best {
                best = e;
                b.copy_from_slice(&cand);
            }
        }
    }
}

// ---- dot products with 8-bit activation blocks (scalar twins) ----
// Per block an exact integer sum of unsigned q × a, then the f32 expression the SIMD twins
// use, in block order.

/// `q5_0` row × activation blocks (`w`: `a.len()` blocks of 22 bytes).
pub fn vec_dot_q5_0(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (b, ba) in w.chunks_exact(BYTES).zip(a) {
        let q = unsigned(&b[6..22], qh_at(b, 2));
        acc += f16_at(b, 0) * ba.d * (idot_u(&q, &ba.qs) - 16 * ba.sum) as f32;
    }
    acc
}

/// `q5_1` row × activation blocks (`w`: `a.len()` blocks of 24 bytes).
pub fn vec_dot_q5_1(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (b, ba) in w.chunks_exact(BYTES_1).zip(a) {
        let q = unsigned(&b[8..24], qh_at(b, 4));
        acc += f16_at(b, 0) * ba.d * idot_u(&q, &ba.qs) as f32 + f16_at(b, 2) * ba.d * ba.sum as f32;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    type Quant = fn(&[f32], &mut [u8]);
    type Search = fn(&[f32], &[f32], &mut [u8]);
    type Deq = fn(&[u8], &mut [f32]);
    type Err = fn(&[f32], &[f32], &[u8]) -> f64;

    /// Random rows with outliers (`offset` shifts them off zero); weights favour large values.
    fn data(seed: u64, offset: f32, every: usize) -> (Vec<f32>, Vec<f32>) {
        let mut seed = seed;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - offset
        };
        let x: Vec<f32> = (0..QK * 7).map(|i| rnd() * if i % every == 0 { 4.0 } else { 1.0 }).collect();
        let w = x.iter().map(|v| v * v + 0.01).collect();
        (x, w)
    }

    /// Round-to-nearest stays within `bound(block, value)` of every value, and the search lowers
    /// the weighted error by at least 3 % (never raising it).
    fn check(bytes: usize, (quant, search, deq, err): (Quant, Search, Deq, Err), seed: u64, offset: f32, every: usize) {
        let (x, w) = data(seed, offset, every);
        let n = x.len();
        let mut rtn = vec![0u8; n / QK * bytes];
        let mut srch = rtn.clone();
        quant(&x, &mut rtn);
        search(&x, &w, &mut srch);
        let mut y = vec![0f32; n];
        deq(&rtn, &mut y);
        for (xb, yb) in x.chunks(QK).zip(y.chunks(QK)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let range = xb.iter().fold(f32::MIN, |m, &v| m.max(v)) - xb.iter().fold(f32::MAX, |m, &v| m.min(v));
            // q5_0: half of 2·amax / 32 steps (the extreme value sits on the grid); q5_1: half a
            // step of the range's 31, plus the f16 rounding of d and m.
            let bound = |a: f32| {
                if bytes == BYTES {
                    amax / 16.0 + 1e-6
                } else {
                    range / 62.0 * 1.01 + 2e-3 * a.abs().max(1.0)
                }
            };
            assert!(xb.iter().zip(yb).all(|(a, b)| (a - b).abs() <= bound(*a)));
        }
        let (er, es): (f64, f64) = x
            .chunks(QK)
            .zip(w.chunks(QK))
            .zip(rtn.chunks(bytes).zip(srch.chunks(bytes)))
            .map(|((x, w), (r, s))| (err(x, w, r), err(x, w, s)))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert!(es <= er && es < 0.97 * er, "search {es} vs rtn {er}");
    }

    #[test]
    fn round_trip_and_search() {
        check(BYTES, (quantize_row, quantize_row_search, dequantize_row, err), 5, 0.5, 29);
        check(BYTES_1, (quantize_row_1, quantize_row_search_1, dequantize_row_1, err_1), 9, 0.3, 31);
    }
}
