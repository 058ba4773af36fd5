//! `q5_0` (GGUF `Q5_0`, 22 bytes per 32 values: f16 `d`, 32 fifth bits `qh` as a little-endian
//! u32, 16 bytes of nibbles; value j = (q_j − 16)·d with q_j = nibble | bit j of qh << 4, nibble j
//! in the low half of byte j for j < 16, in the high half of byte j − 16 otherwise). Scalar
//! kernels on raw bytes: dequantize, ggml's reference quantizer (bit for bit) and the weighted
//! scale search; products go through `kquants::DecodedRow`. llama.cpp's `Q4_K_M` stores
//! matrices whose width is not a multiple of 256 as `Q5_0`.

use crate::blocks::{f16_to_f32, f32_to_f16, QK};

pub const BYTES: usize = 22;

/// The scale and the 32 signed integers of one block.
pub(crate) fn unpack(b: &[u8]) -> (f32, [i32; QK]) {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let mut q = [0i32; QK];
    for j in 0..QK / 2 {
        q[j] = ((b[6 + j] & 0x0F) as i32 | ((((qh >> j) & 1) as i32) << 4)) - 16;
        q[j + 16] = ((b[6 + j] >> 4) as i32 | ((((qh >> (j + 16)) & 1) as i32) << 4)) - 16;
    }
    (d, q)
}

fn pack(d: u16, q: &[i32; QK], out: &mut [u8]) {
    out[0..2].copy_from_slice(&d.to_le_bytes());
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = ((q[j] + 16) as u32, (q[j + 16] + 16) as u32);
        out[6 + j] = ((a & 0x0F) | ((b & 0x0F) << 4)) as u8;
        qh |= ((a >> 4) & 1) << j;
        qh |= ((b >> 4) & 1) << (j + 16);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_search() {
        let mut seed = 5u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let n = QK * 7;
        let x: Vec<f32> = (0..n).map(|i| rnd() * if i % 29 == 0 { 4.0 } else { 1.0 }).collect();
        let w: Vec<f32> = x.iter().map(|v| v * v + 0.01).collect();
        let mut rtn = vec![0u8; n / QK * BYTES];
        let mut srch = rtn.clone();
        quantize_row(&x, &mut rtn);
        quantize_row_search(&x, &w, &mut srch);
        let mut y = vec![0f32; n];
        dequantize_row(&rtn, &mut y);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= amax / 16.0 + 1e-6));
        let (er, es): (f64, f64) = x
            .chunks(QK)
            .zip(w.chunks(QK))
            .zip(rtn.chunks(BYTES).zip(srch.chunks(BYTES)))
            .map(|((x, w), (r, s))| (err(x, w, r), err(x, w, s)))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert!(es <= er && es < 0.97 * er, "search {es} vs rtn {er}");
    }
}
