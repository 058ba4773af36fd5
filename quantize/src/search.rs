//! Scale search for 4- and 5-bit weight blocks (quantization time only; scalar), moved here
//! from the kernels: the runtime never runs it.
//!
//! Round-to-nearest (`scalar::quantize_row_q4_*`, bit-exact with ggml's reference quantizers)
//! takes the block's extreme value as the scale. Here each block instead tries a range of scales,
//! rounds the block with each, solves the weighted least-squares scale (and, for q4_1, minimum)
//! for those integers, and keeps the candidate with the smallest weighted squared error measured
//! with the scale (and minimum) as stored, rounded to f16. Round-to-nearest is one of the
//! candidates, so the result is never worse than it under the same weights.
//!
//! Weights per value: `importance[j] · sqrt(σ² + x_j²)`, σ² the mean square of the row (the
//! form llama.cpp uses with an importance matrix); `importance` is the mean squared activation
//! of column `j` collected on calibration text, or 1 without calibration.

use autark_kernels::blocks::{
    block_bytes, f16_to_f32, f32_to_f16, quantize_bytes, Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, DType, QK,
};
use autark_kernels::{kquants, q5, scalar, KernelError, Result};

/// Per-value weights of one row (see the module documentation).
pub fn row_weights(x: &[f32], importance: Option<&[f32]>, out: &mut Vec<f32>) {
    let sigma2 = x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32;
    out.clear();
    out.extend(x.iter().enumerate().map(|(j, v)| {
        let imp = importance.map_or(1.0, |i| i[j].max(0.0));
        imp * (sigma2 + v * v).sqrt()
    }));
}

/// q4_0 with scale search; `weights` has one value per element of `src`.
pub fn quantize_row_q4_0_search(src: &[f32], weights: &[f32], dst: &mut [BlockQ4_0]) {
    let mut rtn = [BlockQ4_0 { d: 0, qs: [0; QK / 2] }];
    for ((x, w), b) in src.chunks_exact(QK).zip(weights.chunks_exact(QK)).zip(dst.iter_mut()) {
        scalar::quantize_row_q4_0(x, &mut rtn);
        let mut best = rtn[0];
        let mut best_err = err_q4_0(x, w, &best);
        let max = scalar::max_by_magnitude(x);
        if max == 0.0 {
            *b = best;
            continue;
        }
        let mut l = [0i8; QK];
        for step in -12..=12 {
            let iscale = -(8.0 + 0.1 * step as f32) / max;
            let (mut sum_xl, mut sum_l2) = (0.0f64, 0.0f64);
            for j in 0..QK {
                let q = (iscale * x[j]).round().clamp(-8.0, 7.0);
                l[j] = q as i8;
                sum_xl += (w[j] * x[j] * q) as f64;
                sum_l2 += (w[j] * q * q) as f64;
            }
            if sum_l2 <= 0.0 {
                continue;
            }
            let d = f32_to_f16((sum_xl / sum_l2) as f32);
            let mut cand = BlockQ4_0 { d, qs: [0; QK / 2] };
            for j in 0..QK / 2 {
                cand.qs[j] = ((l[j] + 8) as u8) | (((l[j + QK / 2] + 8) as u8) << 4);
            }
            let e = err_q4_0(x, w, &cand);
            if e < best_err {
                best_err = e;
                best = cand;
            }
        }
        *b = best;
    }
}

fn err_q4_0(x: &[f32], w: &[f32], b: &BlockQ4_0) -> f64 {
    let mut y = [0f32; QK];
    scalar::dequantize_row_q4_0(std::slice::from_ref(b), &mut y);
    x.iter().zip(&y).zip(w).map(|((a, b), w)| (*w as f64) * ((a - b) as f64).powi(2)).sum()
}

/// Weighted least squares of `x ≈ scale·l + offset` over one block: `(scale, offset)`, or `None`
/// when the integers do not determine both (all equal).
fn affine_fit(x: &[f32], w: &[f32], l: &[u8]) -> Option<(f32, f32)> {
    let (mut sw, mut sx, mut sl, mut sl2, mut sxl) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for ((&x, &w), &l) in x.iter().zip(w).zip(l) {
        let (x, w, l) = (x as f64, w as f64, l as f64);
        sw += w;
        sx += w * x;
        sl += w * l;
        sl2 += w * l * l;
        sxl += w * x * l;
    }
    let det = sw * sl2 - sl * sl;
    (det > 0.0).then(|| (((sw * sxl - sx * sl) / det) as f32, ((sl2 * sx - sl * sxl) / det) as f32))
}

/// q4_1 with scale-and-minimum search; `weights` has one value per element of `src`.
pub fn quantize_row_q4_1_search(src: &[f32], weights: &[f32], dst: &mut [BlockQ4_1]) {
    let mut rtn = [BlockQ4_1 { d: 0, m: 0, qs: [0; QK / 2] }];
    for ((x, w), b) in src.chunks_exact(QK).zip(weights.chunks_exact(QK)).zip(dst.iter_mut()) {
        scalar::quantize_row_q4_1(x, &mut rtn);
        let mut best = rtn[0];
        let mut best_err = err_q4_1(x, w, &best);
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max <= min {
            *b = best;
            continue;
        }
        let mut l = [0u8; QK];
        for step in 0..=36 {
            let iscale = (15.0 - 0.9 + 0.05 * step as f32) / (max - min);
            for j in 0..QK {
                l[j] = (iscale * (x[j] - min)).round().clamp(0.0, 15.0) as u8;
            }
            let Some((scale, offset)) = affine_fit(x, w, &l) else {
                continue;
            };
            let mut cand = BlockQ4_1 { d: f32_to_f16(scale), m: f32_to_f16(offset), qs: [0; QK / 2] };
            if !f16_to_f32(cand.d).is_finite() || !f16_to_f32(cand.m).is_finite() {
                continue;
            }
            for j in 0..QK / 2 {
                cand.qs[j] = l[j] | (l[j + QK / 2] << 4);
            }
            let e = err_q4_1(x, w, &cand);
            if e < best_err {
                best_err = e;
                best = cand;
            }
        }
        *b = best;
    }
}

fn err_q4_1(x: &[f32], w: &[f32], b: &BlockQ4_1) -> f64 {
    let mut y = [0f32; QK];
    scalar::dequantize_row_q4_1(std::slice::from_ref(b), &mut y);
    x.iter().zip(&y).zip(w).map(|((a, b), w)| (*w as f64) * ((a - b) as f64).powi(2)).sum()
}

// ---- q5_0 / q5_1 ----

fn err_q5_0(x: &[f32], w: &[f32], b: &[u8]) -> f64 {
    let (d, q) = q5::unpack(b);
    x.iter().zip(q).zip(w).map(|((x, q), w)| *w as f64 * ((x - q as f32 * d) as f64).powi(2)).sum()
}

/// Weighted scale search (as `quantize_row_q4_0_search`, with 5 bits): round-to-nearest
/// is a candidate, so no block gets worse under the weights.
pub fn quantize_row_q5_0_search(src: &[f32], weights: &[f32], dst: &mut [u8]) {
    let mut cand = [0u8; size_of::<BlockQ5_0>()];
    for ((x, w), b) in
        src.chunks_exact(QK).zip(weights.chunks_exact(QK)).zip(dst.chunks_exact_mut(size_of::<BlockQ5_0>()))
    {
        q5::quantize_row(x, b);
        let mut best = err_q5_0(x, w, b);
        let max = scalar::max_by_magnitude(x);
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
            q5::pack(f32_to_f16((sxl / sl2) as f32), &q, &mut cand);
            let e = err_q5_0(x, w, &cand);
            if e < best {
                best = e;
                b.copy_from_slice(&cand);
            }
        }
    }
}

fn err_q5_1(x: &[f32], w: &[f32], b: &[u8]) -> f64 {
    let mut y = [0f32; QK];
    q5::dequantize_row_1(b, &mut y);
    x.iter().zip(y).zip(w).map(|((x, y), w)| *w as f64 * ((x - y) as f64).powi(2)).sum()
}

/// Weighted scale-and-minimum search (as `quantize_row_q4_1_search`, with 5 bits):
/// round-to-nearest is a candidate, so no block gets worse under the weights.
pub fn quantize_row_q5_1_search(src: &[f32], weights: &[f32], dst: &mut [u8]) {
    let mut cand = [0u8; size_of::<BlockQ5_1>()];
    for ((x, w), b) in
        src.chunks_exact(QK).zip(weights.chunks_exact(QK)).zip(dst.chunks_exact_mut(size_of::<BlockQ5_1>()))
    {
        q5::quantize_row_1(x, b);
        let mut best = err_q5_1(x, w, b);
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max <= min {
            continue;
        }
        for step in 0..=36 {
            let iscale = (31.0 - 0.9 + 0.05 * step as f32) / (max - min);
            let l: [u8; QK] = std::array::from_fn(|j| (iscale * (x[j] - min)).round().clamp(0.0, 31.0) as u8);
            let Some((scale, offset)) = affine_fit(x, w, &l) else {
                continue;
            };
            let (d, m) = (f32_to_f16(scale), f32_to_f16(offset));
            if !f16_to_f32(d).is_finite() || !f16_to_f32(m).is_finite() {
                continue;
            }
            q5::pack_1(d, m, &l, &mut cand);
            let e = err_q5_1(x, w, &cand);
            if e < best {
                best = e;
                b.copy_from_slice(&cand);
            }
        }
    }
}

/// As `quantize_bytes`, choosing 4-bit block scales by weighted search (this module) with
/// per-value `weights`; other types are quantized as `quantize_bytes` does.
pub fn quantize_bytes_weighted(dtype: DType, src: &[f32], weights: &[f32], dst: &mut Vec<u8>) -> Result<()> {
    if weights.len() != src.len() {
        return Err(KernelError::LengthMismatch { op: "quantize weights", expected: src.len(), got: weights.len() });
    }
    match dtype {
        DType::Q4_0 => search_into::<BlockQ4_0>(src, weights, dst, quantize_row_q4_0_search),
        DType::Q4_1 => search_into::<BlockQ4_1>(src, weights, dst, quantize_row_q4_1_search),
        DType::Q5_0 | DType::Q5_1 | DType::Q4K | DType::Q5K | DType::Q6K => {
            let n = dtype.row_bytes(src.len())?;
            dst.clear();
            dst.resize(n, 0);
            match dtype {
                DType::Q5_0 => quantize_row_q5_0_search(src, weights, dst),
                DType::Q5_1 => quantize_row_q5_1_search(src, weights, dst),
                DType::Q4K => kquants::quantize_row_q4_k(src, Some(weights), dst),
                DType::Q5K => kquants::quantize_row_q5_k(src, Some(weights), dst),
                _ => kquants::quantize_row_q6_k(src, Some(weights), dst),
            }
            Ok(())
        }
        _ => quantize_bytes(dtype, src, dst),
    }
}

fn search_into<B: Block>(
    src: &[f32],
    weights: &[f32],
    dst: &mut Vec<u8>,
    search: fn(&[f32], &[f32], &mut [B]),
) -> Result<()> {
    B::DTYPE.row_bytes(src.len())?;
    let mut blocks = vec![B::default(); src.len() / B::BLOCK_LEN];
    search(src, weights, &mut blocks);
    dst.clear();
    dst.extend_from_slice(block_bytes(&blocks));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// Weighted error of whole rows, RTN against search, on random rows shaped like weights
    /// (mostly small values, a few outliers) with random importances.
    #[test]
    fn search_is_never_worse_than_round_to_nearest_and_better_on_average() {
        let mut seed = 7u64;
        let n = QK * 64;
        let (mut total_rtn0, mut total_s0, mut total_rtn1, mut total_s1) = (0f64, 0f64, 0f64, 0f64);
        let mut w = Vec::new();
        for row in 0..20 {
            let x: Vec<f32> = (0..n).map(|i| lcg(&mut seed) * if i % 37 == 0 { 3.0 } else { 1.0 }).collect();
            let imp: Vec<f32> = (0..n).map(|_| (lcg(&mut seed) + 0.5) * 4.0).collect();
            row_weights(&x, (row % 2 == 0).then_some(&imp[..]), &mut w);

            let mut a = vec![BlockQ4_0 { d: 0, qs: [0; QK / 2] }; n / QK];
            let mut s = a.clone();
            scalar::quantize_row_q4_0(&x, &mut a);
            quantize_row_q4_0_search(&x, &w, &mut s);
            for ((xb, wb), (ab, sb)) in x.chunks(QK).zip(w.chunks(QK)).zip(a.iter().zip(&s)) {
                let (ea, es) = (err_q4_0(xb, wb, ab), err_q4_0(xb, wb, sb));
                assert!(es <= ea, "q4_0 block worse than RTN: {es} > {ea}");
                total_rtn0 += ea;
                total_s0 += es;
            }

            let mut a = vec![BlockQ4_1 { d: 0, m: 0, qs: [0; QK / 2] }; n / QK];
            let mut s = a.clone();
            scalar::quantize_row_q4_1(&x, &mut a);
            quantize_row_q4_1_search(&x, &w, &mut s);
            for ((xb, wb), (ab, sb)) in x.chunks(QK).zip(w.chunks(QK)).zip(a.iter().zip(&s)) {
                let (ea, es) = (err_q4_1(xb, wb, ab), err_q4_1(xb, wb, sb));
                assert!(es <= ea, "q4_1 block worse than RTN: {es} > {ea}");
                total_rtn1 += ea;
                total_s1 += es;
            }
        }
        // Measured: 0.873 (q4_0) and 0.812 (q4_1) of the round-to-nearest error.
        assert!(total_s0 < 0.92 * total_rtn0, "q4_0: search {total_s0} vs RTN {total_rtn0}");
        assert!(total_s1 < 0.90 * total_rtn1, "q4_1: search {total_s1} vs RTN {total_rtn1}");
    }

    #[test]
    fn zero_and_constant_blocks_are_exact() {
        let x = [0f32; QK];
        let w = [1f32; QK];
        let mut b = [BlockQ4_0 { d: 0, qs: [0; QK / 2] }];
        quantize_row_q4_0_search(&x, &w, &mut b);
        assert_eq!(err_q4_0(&x, &w, &b[0]), 0.0);
        let x = [0.25f32; QK];
        let mut b = [BlockQ4_1 { d: 0, m: 0, qs: [0; QK / 2] }];
        quantize_row_q4_1_search(&x, &w, &mut b);
        assert_eq!(err_q4_1(&x, &w, &b[0]), 0.0);
    }
}

#[cfg(test)]
mod q5_tests {
    use super::*;
    use autark_kernels::q5::{dequantize_row, dequantize_row_1, quantize_row, quantize_row_1};
    const BYTES: usize = size_of::<BlockQ5_0>();
    const BYTES_1: usize = size_of::<BlockQ5_1>();

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
        check(BYTES, (quantize_row, quantize_row_q5_0_search, dequantize_row, err_q5_0), 5, 0.5, 29);
        check(BYTES_1, (quantize_row_1, quantize_row_q5_1_search, dequantize_row_1, err_q5_1), 9, 0.3, 31);
    }
}
