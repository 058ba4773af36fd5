//! K-quant types (`q4_k`, `q5_k`, `q6_k`): GGUF super-blocks of 256 values, dequantized for
//! re-quantization and dotted directly with 8-bit activation blocks (scalar kernels: `.autark`
//! files may keep GGUF K-quant tensors byte for byte). Layouts per ggml `ggml-common.h`:
//! - `q4_k` (144 B): f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of
//!   nibbles.
//! - `q5_k` (176 B): as `q4_k` plus 32 bytes of high bits before the nibbles.
//! - `q6_k` (210 B): 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 i8 scales, f16 d.
//!
//! Callers pass whole super-blocks (checked by `dequantize_bytes`).

use crate::blocks::{f16_to_f32, BlockQ8A, QK, QK_K};

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// The j-th 6-bit (scale, min) pair of the 12 packed bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

pub fn dequantize_row_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let qs = &b[16..144];
        for (g, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * g, scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_row_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let qh = &b[16..48];
        let ql = &b[48..176];
        for (g, (q, out)) in ql.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * g, scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                out[l] = d1 * ((q[l] & 0x0F) + h1) as f32 - m1;
                out[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(QK_K)) {
        let ql_all = &b[0..128];
        let qh_all = &b[128..192];
        let sc_all = &b[192..208];
        let d = f16_at(b, 208);
        for n in 0..2 {
            let ql = &ql_all[64 * n..];
            let qh = &qh_all[32 * n..];
            let sc = &sc_all[8 * n..];
            let out = &mut y[128 * n..128 * (n + 1)];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

/// Σ q_i·a_i over 32 values of unsigned weight integers against one activation block.
fn dot32(q: impl Iterator<Item = i32>, a: &BlockQ8A) -> i32 {
    q.zip(a.qs.iter()).map(|(q, &x)| q * x as i32).sum()
}

/// One row of `q4_k` super-blocks · 8-bit activations (8 activation blocks per super-block):
/// Σ_j d_a,j · (d·sc_j · Σ q·a − dmin·m_j · Σ a) over the 32-value sub-blocks j.
pub fn vec_dot_q4_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut sum = 0f32;
    for (b, acts) in w.chunks_exact(144).zip(a.chunks_exact(QK_K / QK)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        for (g, q) in b[16..144].chunks_exact(32).enumerate() {
            for (half, a) in acts[2 * g..2 * g + 2].iter().enumerate() {
                let (sc, m) = scale_min_k4(2 * g + half, scales);
                let dot = dot32(q.iter().map(|&v| (if half == 0 { v & 0x0F } else { v >> 4 }) as i32), a);
                sum += a.d * (d * sc as f32 * dot as f32 - dmin * m as f32 * a.sum as f32);
            }
        }
    }
    sum
}

/// `q5_k` super-blocks · 8-bit activations (as `vec_dot_q4_k`, with a fifth bit per value).
pub fn vec_dot_q5_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut sum = 0f32;
    for (b, acts) in w.chunks_exact(176).zip(a.chunks_exact(QK_K / QK)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let qh = &b[16..48];
        for (g, q) in b[48..176].chunks_exact(32).enumerate() {
            for (half, a) in acts[2 * g..2 * g + 2].iter().enumerate() {
                let (sc, m) = scale_min_k4(2 * g + half, scales);
                let bit = 1u8 << (2 * g + half);
                let vals = q.iter().zip(qh).map(|(&v, &h)| {
                    let lo = if half == 0 { v & 0x0F } else { v >> 4 };
                    (lo + if h & bit != 0 { 16 } else { 0 }) as i32
                });
                let dot = dot32(vals, a);
                sum += a.d * (d * sc as f32 * dot as f32 - dmin * m as f32 * a.sum as f32);
            }
        }
    }
    sum
}

/// `q6_k` super-blocks · 8-bit activations: 16-value sub-blocks with signed 8-bit scales, two
/// per activation block.
pub fn vec_dot_q6_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut sum = 0f32;
    for (b, acts) in w.chunks_exact(210).zip(a.chunks_exact(QK_K / QK)) {
        let d = f16_at(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            for k in 0..4 {
                // Values 32k..32k+31 of this half: low nibble of ql[l + 32·(k & 1)], shifted by
                // 4 for k ≥ 2, and two high bits of qh[l] at 2k.
                let a = &acts[4 * n + k];
                let mut part = [0i32; 2];
                for l in 0..32 {
                    let lo = ql[l + 32 * (k & 1)] >> (4 * (k / 2));
                    let q = ((lo & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4)) as i32 - 32;
                    part[l / 16] += q * a.qs[l] as i32;
                }
                let s = (sc[2 * k] as i8) as f32 * part[0] as f32 + (sc[2 * k + 1] as i8) as f32 * part[1] as f32;
                sum += a.d * d * s;
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{f32_to_f16, quantize_act};

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Random super-blocks with sane f16 scales (the integer fields take any value).
    fn random_blocks(bytes: usize, n: usize, f16_at: &[usize], seed: &mut u64) -> Vec<u8> {
        let mut v: Vec<u8> = (0..bytes * n).map(|_| lcg(seed) as u8).collect();
        for b in v.chunks_exact_mut(bytes) {
            for &o in f16_at {
                let x = (lcg(seed) % 1000) as f32 / 1000.0 * 0.01 + 0.001;
                b[o..o + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
            }
        }
        v
    }

    /// Each K-quant dot against its scalar twin: dequantize the weights, dequantize the
    /// activation blocks, multiply in f64.
    #[test]
    fn k_quant_dots_match_dequantized_products() {
        type Dot = fn(&[u8], &[BlockQ8A]) -> f32;
        type Deq = fn(&[u8], &mut [f32]);
        let cases: [(&str, usize, &[usize], Dot, Deq); 3] = [
            ("q4_k", 144, &[0, 2], vec_dot_q4_k, dequantize_row_q4_k),
            ("q5_k", 176, &[0, 2], vec_dot_q5_k, dequantize_row_q5_k),
            ("q6_k", 210, &[208], vec_dot_q6_k, dequantize_row_q6_k),
        ];
        let mut seed = 11u64;
        for (name, bytes, f16s, dot, deq) in cases {
            for n in [1usize, 2, 3, 5] {
                let w = random_blocks(bytes, n, f16s, &mut seed);
                let x: Vec<f32> = (0..n * QK_K).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
                let mut a = vec![BlockQ8A::default(); n * QK_K / QK];
                quantize_act(&x, &mut a).unwrap();
                let mut wf = vec![0f32; n * QK_K];
                deq(&w, &mut wf);
                let want: f64 = wf
                    .iter()
                    .enumerate()
                    .map(|(i, &wv)| {
                        let b = &a[i / QK];
                        wv as f64 * b.qs[i % QK] as f64 * b.d as f64
                    })
                    .sum();
                let got = dot(&w, &a) as f64;
                let scale: f64 = wf.iter().map(|v| v.abs() as f64).sum::<f64>() * 1.0;
                assert!((got - want).abs() <= 1e-5 * scale.max(1.0), "{name} × {n}: {got} vs {want}");
            }
        }
    }
}
