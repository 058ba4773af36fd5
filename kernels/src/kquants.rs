//! K-quant types (`q4_k`, `q5_k`, `q6_k`): GGUF super-blocks of 256 values — dequantization,
//! quantizers, and the scalar dot products with 8-bit activation blocks that the SIMD kernels
//! (`x86/`, `arm/`) are tested against. Layouts per ggml `ggml-common.h`:
//! - `q4_k` (144 B): f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of
//!   nibbles.
//! - `q5_k` (176 B): as `q4_k` plus 32 bytes of high bits before the nibbles.
//! - `q6_k` (210 B): 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 i8 scales, f16 d.
//!
//! Callers pass whole super-blocks (checked by `dequantize_bytes`), read as raw bytes at the
//! offsets of the fields of `BlockQ4K`, `BlockQ5K` and `BlockQ6K`.

use crate::types::{f16_at, f16_to_f32, f32_to_f16, idot_u, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8A, QK_K};
use std::mem::offset_of;

/// `q4_k` and `q5_k` share their header (`d`, `dmin`, `scales`), read through `BlockQ4K`.
const _: () = assert!(
    offset_of!(BlockQ4K, d) == offset_of!(BlockQ5K, d)
        && offset_of!(BlockQ4K, dmin) == offset_of!(BlockQ5K, dmin)
        && offset_of!(BlockQ4K, scales) == offset_of!(BlockQ5K, scales)
        && offset_of!(BlockQ4K, qs) == offset_of!(BlockQ5K, qh)
);
/// The packed scales and mins of a `q4_k`/`q5_k` super-block's bytes.
const SCALES: std::ops::Range<usize> = offset_of!(BlockQ4K, scales)..offset_of!(BlockQ4K, qs);
/// Where `q5_k`'s nibbles start (its fifth bits `qh` lie between `SCALES` and them).
const QS5: usize = offset_of!(BlockQ5K, qs);
/// The fields of `q6_k` (`ql` and `qh` each hold two 128-value halves).
const QL6: usize = offset_of!(BlockQ6K, ql);
const QH6: usize = offset_of!(BlockQ6K, qh);
const SC6: usize = offset_of!(BlockQ6K, scales);
const D6: usize = offset_of!(BlockQ6K, d);

/// The j-th 6-bit (scale, min) pair of the 12 packed bytes.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

pub fn dequantize_row_q4_k(src: &[u8], dst: &mut [f32]) {
    dequantize_row_k4(src, dst, false)
}

pub fn dequantize_row_q5_k(src: &[u8], dst: &mut [f32]) {
    dequantize_row_k4(src, dst, true)
}

/// `q4_k` (`five` false) and `q5_k`: value = d·sc_j·q − dmin·m_j in sub-block j.
fn dequantize_row_k4(src: &[u8], dst: &mut [f32], five: bool) {
    for (b, y) in src
        .chunks_exact(if five { size_of::<BlockQ5K>() } else { size_of::<BlockQ4K>() })
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let sm = scales_k4(b);
        let (qh, ql) = quants_k4(b, five);
        for (j, out) in y.chunks_exact_mut(32).enumerate() {
            for (o, q) in out.iter_mut().zip(sub_k(ql, qh, j)) {
                *o = sm[j].0 * q as f32 - sm[j].1;
            }
        }
    }
}

pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(size_of::<BlockQ6K>()).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, D6);
        for (i, out) in y.chunks_exact_mut(32).enumerate() {
            let (n, k) = (i / 4, i % 4);
            let q = sub_q6(&b[QL6 + 64 * n..][..64], &b[QH6 + 32 * n..][..32], k);
            for (l, (o, q)) in out.iter_mut().zip(q).enumerate() {
                *o = d * (b[SC6 + 8 * n + 2 * k + l / 16] as i8) as f32 * q as f32;
            }
        }
    }
}

// ---- quantizers: ggml's reference algorithms (`ggml-quants.c`), operation for operation ----
// With ggml's own weights they reproduce `quantize_row_q{4,5,6}_K_ref` bit for bit (tested
// against ggml compiled from llama-cpp-python's sources, `tests/python/test_ggml_quants.py`);
// with the importance weights of `search::row_weights` they are the default weighted recipe.

/// ggml's `nearest_int`: round half to even through the float mantissa (|v| ≤ 4194303).
#[inline]
fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0f32).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `make_qkx2_quants` (`use_mad` false): the (scale, −min) of one asymmetric sub-block
/// by a weighted least-squares fit over `nstep + 1` candidate grids; integers in `l`.
fn make_qkx2_quants(x: &[f32], w: &[f32], nmax: i32, l: &mut [u8], rmin: f32, nstep: i32) -> (f32, f32) {
    const RDELTA: f32 = 0.1;
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..x.len() {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let clamp = |v: i32| v.clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..x.len() {
        l[i] = clamp(nearest_int(iscale * (x[i] - min)));
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..x.len()];
    for is in 0..=nstep {
        iscale = (rmin + RDELTA * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            let li = clamp(nearest_int(iscale * (x[i] - min)));
            aux[i] = li;
            let lf = li as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..x.len() {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type` 1: symmetric integers −nmax..nmax−1 (stored + nmax
/// in `l`) under weights `qw`, or x² without them. Returns the scale.
fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [u8], qw: Option<&[f32]>) -> f32 {
    // ggml's scan: the first value of largest magnitude.
    let max = crate::types::max_by_magnitude(x);
    if max.abs() < 1e-15 {
        l.fill(0);
        return 0.0;
    }
    let weight = |i: usize| qw.map_or(x[i] * x[i], |q| q[i]);
    let q = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for (i, &v) in x.iter().enumerate() {
            let lf = q(iscale, v) as f32;
            let w = weight(i);
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        (sumlx, suml2)
    };
    let iscale = -(nmax as f32) / max;
    for (li, &v) in l.iter_mut().zip(x) {
        *li = (q(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (q(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `q4_k`: ggml's `quantize_row_q4_K_ref` when `weights` is `None`; with per-value `weights` the
/// same algorithm under those weights.
pub fn quantize_row_q4_k(src: &[f32], weights: Option<&[f32]>, dst: &mut [u8]) {
    quantize_row_k4(src, weights, dst, false)
}

/// `q5_k`: ggml's `quantize_row_q5_K_ref` when `weights` is `None` (as `q4_k` with 5-bit
/// integers, the fifth bits in `qh`).
pub fn quantize_row_q5_k(src: &[f32], weights: Option<&[f32]>, dst: &mut [u8]) {
    quantize_row_k4(src, weights, dst, true)
}

fn quantize_row_k4(src: &[f32], weights: Option<&[f32]>, dst: &mut [u8], five: bool) {
    let (bytes, nmax, rmin, nstep) =
        if five { (size_of::<BlockQ5K>(), 31, -0.5, 15) } else { (size_of::<BlockQ4K>(), 15, -1.0, 20) };
    for (s, (x, b)) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(bytes)).enumerate() {
        let mut l = [0u8; QK_K];
        let mut sub = [(0f32, 0f32); 8];
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for (j, sm) in sub.iter_mut().enumerate() {
            let xj = &x[32 * j..32 * j + 32];
            let mut own = [0f32; 32];
            let w = match weights {
                Some(w) => &w[s * QK_K + 32 * j..s * QK_K + 32 * j + 32],
                None => {
                    // ggml's weights: the sub-block's RMS plus each value's magnitude.
                    let mut sum_x2 = 0f32;
                    for &v in xj {
                        sum_x2 += v * v;
                    }
                    let av_x = (sum_x2 / 32.0).sqrt();
                    for (o, &v) in own.iter_mut().zip(xj) {
                        *o = av_x + v.abs();
                    }
                    &own[..]
                }
            };
            *sm = make_qkx2_quants(xj, w, nmax, &mut l[32 * j..32 * j + 32], rmin, nstep);
            if sm.0 > max_scale {
                max_scale = sm.0;
            }
            if sm.1 > max_min {
                max_min = sm.1;
            }
        }
        let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let scales = &mut b[SCALES];
        scales.fill(0);
        for (j, &(sc, m)) in sub.iter().enumerate() {
            // ggml stores nearest_int's int in a uint8_t, then caps it at 63.
            let ls = (nearest_int(inv_scale * sc) as u8).min(63);
            let lm = (nearest_int(inv_min * m) as u8).min(63);
            if j < 4 {
                scales[j] = ls;
                scales[j + 4] = lm;
            } else {
                scales[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
                scales[j - 4] |= (ls >> 4) << 6;
                scales[j] |= (lm >> 4) << 6;
            }
        }
        let d = f32_to_f16(max_scale / 63.0);
        let dmin = f32_to_f16(max_min / 63.0);
        b[offset_of!(BlockQ4K, d)..][..2].copy_from_slice(&d.to_le_bytes());
        b[offset_of!(BlockQ4K, dmin)..][..2].copy_from_slice(&dmin.to_le_bytes());
        let (d, dmin) = (f16_to_f32(d), f16_to_f32(dmin));
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &b[SCALES]);
            let dj = d * sc as f32;
            if dj == 0.0 {
                continue; // the sub-block keeps the integers of its search
            }
            let dm = dmin * m as f32;
            for ii in 0..32 {
                l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
            }
        }
        let (qh, qs) = b[SCALES.end..].split_at_mut(if five { QS5 - SCALES.end } else { 0 });
        qh.fill(0);
        for g in 0..4 {
            for i in 0..32 {
                let (l1, l2) = (l[64 * g + i], l[64 * g + 32 + i]);
                qs[32 * g + i] = (l1 & 0x0F) | ((l2 & 0x0F) << 4);
                if five {
                    qh[i] |= ((l1 >> 4) << (2 * g)) | ((l2 >> 4) << (2 * g + 1));
                }
            }
        }
    }
}

/// `q6_k`: ggml's `quantize_row_q6_K_ref` when `weights` is `None` (16-value sub-blocks, scales
/// re-quantized to signed 8 bits against the largest); with `weights`, the same under them.
pub fn quantize_row_q6_k(src: &[f32], weights: Option<&[f32]>, dst: &mut [u8]) {
    for (s, (x, b)) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(size_of::<BlockQ6K>())).enumerate() {
        let mut l = [0u8; QK_K];
        let mut sub = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for (ib, sc) in sub.iter_mut().enumerate() {
            let w = weights.map(|w| &w[s * QK_K + 16 * ib..s * QK_K + 16 * ib + 16]);
            *sc = make_qx_quants(&x[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..16 * ib + 16], w);
            if sc.abs() > max_abs_scale {
                max_abs_scale = sc.abs();
                max_scale = *sc;
            }
        }
        b.fill(0);
        if max_abs_scale < 1e-15 {
            continue;
        }
        let iscale = -128.0 / max_scale;
        let d = f32_to_f16(1.0 / iscale);
        b[D6..D6 + 2].copy_from_slice(&d.to_le_bytes());
        let d = f16_to_f32(d);
        for ib in 0..16 {
            b[SC6 + ib] = nearest_int(iscale * sub[ib]).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let dj = d * (b[SC6 + j] as i8) as f32;
            if dj == 0.0 {
                continue; // the sub-block keeps the integers of its search
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dj).clamp(-32, 31) + 32) as u8;
            }
        }
        for n in 0..2 {
            let (j, ql, qh) = (128 * n, QL6 + 64 * n, QH6 + 32 * n);
            for i in 0..32 {
                let (q1, q2, q3, q4) = (l[j + i], l[j + i + 32], l[j + i + 64], l[j + i + 96]);
                b[ql + i] = (q1 & 0x0F) | ((q3 & 0x0F) << 4);
                b[ql + i + 32] = (q2 & 0x0F) | ((q4 & 0x0F) << 4);
                b[qh + i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

// ---- dot products with 8-bit activation blocks (scalar twins) ----
// Each 32-value activation block meets one 32-value sub-block (q4_k, q5_k) or two 16-value
// sub-blocks (q6_k): an exact integer sum per sub-block, then the f32 expression the SIMD twins
// use, in block order. Unlike ggml's `Q8_K` (one scale per 256 activations), activations keep
// their per-32 scales.

/// The 8 (scale, −min) pairs of a `q4_k`/`q5_k` super-block as f32 multipliers.
#[inline]
pub(crate) fn scales_k4(b: &[u8]) -> [(f32, f32); 8] {
    let (d, dmin) = (f16_at(b, offset_of!(BlockQ4K, d)), f16_at(b, offset_of!(BlockQ4K, dmin)));
    std::array::from_fn(|j| {
        let (sc, m) = scale_min_k4(j, &b[SCALES]);
        (d * sc as f32, dmin * m as f32)
    })
}

/// The fifth bits (`q5_k`) and the nibbles of a `q4_k`/`q5_k` super-block.
#[inline]
fn quants_k4(b: &[u8], five: bool) -> (Option<&[u8]>, &[u8]) {
    if five {
        (Some(&b[SCALES.end..QS5]), &b[QS5..])
    } else {
        (None, &b[offset_of!(BlockQ4K, qs)..])
    }
}

/// Sub-block j's unsigned integers of a `q4_k` (no `qh`) or `q5_k` super-block.
#[inline]
fn sub_k(ql: &[u8], qh: Option<&[u8]>, j: usize) -> [u8; 32] {
    let q = &ql[32 * (j / 2)..32 * (j / 2) + 32];
    std::array::from_fn(|l| {
        let lo = if j.is_multiple_of(2) { q[l] & 0x0F } else { q[l] >> 4 };
        lo | qh.map_or(0, |h| ((h[l] >> j) & 1) << 4)
    })
}

fn vec_dot_k4(w: &[u8], a: &[BlockQ8A], bytes: usize, five: bool) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(bytes).zip(a.chunks_exact(8)) {
        let sm = scales_k4(b);
        let (qh, ql) = quants_k4(b, five);
        for (j, ba) in a.iter().enumerate() {
            // The contract: fma(s, d·sc·d_a, acc), then fma(−dmin·m, d_a·Σa, acc).
            acc = crate::contract::block_term(idot_u(&sub_k(ql, qh, j), &ba.qs), sm[j].0, ba, acc);
            acc = crate::contract::min_term(-sm[j].1, ba, acc);
        }
    }
    acc
}

/// `q4_k` row × activation blocks (`w`: `a.len() / 8` super-blocks of 144 bytes).
pub fn vec_dot_q4_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
    vec_dot_k4(w, a, size_of::<BlockQ4K>(), false)
}

/// `q5_k` row × activation blocks (`w`: `a.len() / 8` super-blocks of 176 bytes).
pub fn vec_dot_q5_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
    vec_dot_k4(w, a, size_of::<BlockQ5K>(), true)
}

/// Sub-block k (values 32k..32k + 32 of a 128-value half) of a `q6_k` half as signed integers.
#[inline]
fn sub_q6(ql: &[u8], qh: &[u8], k: usize) -> [i8; 32] {
    std::array::from_fn(|l| {
        let lo = (ql[l + 32 * (k & 1)] >> (4 * (k / 2))) & 0x0F;
        (lo | (((qh[l] >> (2 * k)) & 3) << 4)) as i8 - 32
    })
}

/// `q6_k` row × activation blocks (`w`: `a.len() / 8` super-blocks of 210 bytes).
pub fn vec_dot_q6_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(size_of::<BlockQ6K>()).zip(a.chunks_exact(8)) {
        let d = f16_at(b, D6);
        for (i, ba) in a.iter().enumerate() {
            let (n, k) = (i / 4, i % 4);
            let q = sub_q6(&b[QL6 + 64 * n..][..64], &b[QH6 + 32 * n..][..32], k);
            let s0: i32 = q[..16].iter().zip(&ba.qs[..16]).map(|(&q, &a)| q as i32 * a as i32).sum();
            let s1: i32 = q[16..].iter().zip(&ba.qs[16..]).map(|(&q, &a)| q as i32 * a as i32).sum();
            let (sc0, sc1) = (b[SC6 + 8 * n + 2 * k] as i8, b[SC6 + 1 + 8 * n + 2 * k] as i8);
            // The contract: the two halves' scales applied in integers (exact: |S| < 2^24), then
            // one fma(S, d·d_a, acc).
            acc = crate::contract::block_term(sc0 as i32 * s0 + sc1 as i32 * s1, d, ba, acc);
        }
    }
    acc
}
