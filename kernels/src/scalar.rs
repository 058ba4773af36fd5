//! The scalar reference of every operation. SIMD kernels are its twins and are tested against
//! it. Quantizers reproduce ggml's reference quantizers (`quantize_row_*_ref` in
//! `ggml-quants.c`, mirrored by gguf-py's `quants.py`) bit for bit: same f32 arithmetic, same
//! rounding (half away from zero for q8, truncation after +8.5 / +0.5 for q4).

pub use crate::contract::{block_term, fma, lane_dot, min_term, pair_wsum, sum_lanes, LANES};
use crate::interleave::{
    self, BlockQ4Kx16, BlockQ4_0x16, BlockQ4_1x16, BlockQ5Kx16, BlockQ5_0x16, BlockQ5_1x16, BlockQ6Kx16, BlockQ8_0x16,
    GroupBlock, GROUP,
};
pub use crate::types::max_by_magnitude;
use crate::types::BlockLayout;
use crate::types::{f16_to_f32, f32_to_f16, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, QK};

// ---- quantize / dequantize -------------------------------------------------------------------

pub fn quantize_row_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        for (q, v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

pub fn dequantize_row_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (o, q) in y.iter_mut().zip(b.qs) {
            *o = q as f32 * d;
        }
    }
}

pub fn quantize_row_q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        // The value of largest magnitude (the first one on ties) maps to -8.
        let max = max_by_magnitude(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        for j in 0..QK / 2 {
            let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let hi = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            b.qs[j] = lo | (hi << 4);
        }
    }
}

pub fn dequantize_row_q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for j in 0..QK / 2 {
            y[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn quantize_row_q4_1(src: &[f32], dst: &mut [BlockQ4_1]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let min = x.iter().fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        b.m = f32_to_f16(min);
        for j in 0..QK / 2 {
            let lo = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let hi = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            b.qs[j] = lo | (hi << 4);
        }
    }
}

pub fn dequantize_row_q4_1(src: &[BlockQ4_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        let m = f16_to_f32(b.m);
        for j in 0..QK / 2 {
            y[j] = (b.qs[j] & 0x0F) as f32 * d + m;
            y[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// Activations to 8-bit blocks: scale amax/127, round half away from zero, keep the sum.
pub fn quantize_act(src: &[f32], dst: &mut [BlockQ8A]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = d;
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.sum = sum;
    }
}

// ---- dot products: one weight row × one activation row -----------------------------------
// Per block an exact integer dot product, then one fused multiply-add per block part
// (`block_term`, `min_term`), in block order.

#[inline]
fn idot(w: &[i8; QK], a: &[i8; QK]) -> i32 {
    w.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum()
}

#[inline]
fn idot_nibbles(qs: &[u8; QK / 2], a: &[i8; QK]) -> i32 {
    let mut s = 0i32;
    for j in 0..QK / 2 {
        s += (qs[j] & 0x0F) as i32 * a[j] as i32 + (qs[j] >> 4) as i32 * a[j + QK / 2] as i32;
    }
    s
}

pub fn vec_dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        acc = block_term(idot(&bw.qs, &ba.qs), f16_to_f32(bw.d), ba, acc);
    }
    acc
}

pub fn vec_dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        acc = block_term(idot_nibbles(&bw.qs, &ba.qs) - 8 * ba.sum, f16_to_f32(bw.d), ba, acc);
    }
    acc
}

pub fn vec_dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A]) -> f32 {
    let mut acc = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        acc = block_term(idot_nibbles(&bw.qs, &ba.qs), f16_to_f32(bw.d), ba, acc);
        acc = min_term(f16_to_f32(bw.m), ba, acc);
    }
    acc
}

pub fn vec_dot_f16(w: &[u16], x: &[f32]) -> f32 {
    lane_dot(w.len().min(x.len()), |i| (f16_to_f32(w[i]), x[i]))
}

pub fn vec_dot_f32(w: &[f32], x: &[f32]) -> f32 {
    lane_dot(w.len().min(x.len()), |i| (w[i], x[i]))
}

/// `x ← e^x` (the scalar twin of the `exp_f32` slot).
pub use crate::exp::exp_slice as exp_f32;

// ---- tiles: a block of weight rows × a block of tokens ---------------------------------------

/// `out[t * rows + r] = vec_dot(w row r, a token t)` for `rows = w.len() / nb` weight rows and
/// `a.len() / nb` tokens. SIMD twins reuse each loaded weight block across tokens and must give
/// exactly what their own `vec_dot` gives for every (r, t).
pub fn gemm_tile<B>(dot: fn(&[B], &[BlockQ8A]) -> f32, w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    let rows = w.len() / nb;
    for (t, at) in a.chunks_exact(nb).enumerate() {
        for (r, wr) in w.chunks_exact(nb).enumerate() {
            out[t * rows + r] = dot(wr, at);
        }
    }
}

pub fn gemm_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_tile(vec_dot_q4_0, w, a, nb, out)
}

pub fn gemm_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_tile(vec_dot_q4_1, w, a, nb, out)
}

pub fn gemm_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_tile(vec_dot_q8_0, w, a, nb, out)
}

// ---- byte-coded types: one row × tokens ---------------------------------------------------------

/// `out[t] = dot(w, a[t·nb..(t + 1)·nb])`: the `ByteDotsFn` contract over a one-token dot.
pub fn byte_dots(dot: fn(&[u8], &[BlockQ8A]) -> f32, w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    for (o, at) in out.iter_mut().zip(a.chunks_exact(nb)) {
        *o = dot(w, at);
    }
}

/// `out[r] = dot(row r of w, a[..nb])`: the `ByteRowsFn` contract over a one-token dot (rows
/// of `w.len() / out.len()` bytes).
pub fn byte_rows(dot: fn(&[u8], &[BlockQ8A]) -> f32, w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let rb = w.len() / out.len();
    assert!(rb * out.len() == w.len() && a.len() >= nb, "byte-coded rows and activations differ");
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(&w[r * rb..(r + 1) * rb], &a[..nb]);
    }
}

/// `ByteDotsFn` kernels `name` and `ByteRowsFn` kernels `rows` from one-token row dots `dot`.
macro_rules! row_dots {
    ($($name:ident, $rows:ident => $dot:path),*) => {$(
        pub fn $name(w: &[u8], a: &[crate::types::BlockQ8A], nb: usize, out: &mut [f32]) {
            crate::scalar::byte_dots($dot, w, a, nb, out)
        }
        pub fn $rows(w: &[u8], a: &[crate::types::BlockQ8A], nb: usize, out: &mut [f32]) {
            crate::scalar::byte_rows($dot, w, a, nb, out)
        }
    )*};
}
#[allow(unused_imports)] // used by NEON
pub(crate) use row_dots;

row_dots!(
    dots_q5_0, rows_q5_0 => crate::q5::vec_dot_q5_0,
    dots_q5_1, rows_q5_1 => crate::q5::vec_dot_q5_1,
    dots_q4_k, rows_q4_k => crate::kquants::vec_dot_q4_k,
    dots_q5_k, rows_q5_k => crate::kquants::vec_dot_q5_k,
    dots_q6_k, rows_q6_k => crate::kquants::vec_dot_q6_k
);

// ---- 16-row interleaved matrices (`interleave`) ------------------------------------------------

/// `out[t * rows + r]` for the `rows = 16 · w.len() / nb` rows of interleaved `w` and the
/// `a.len() / nb` tokens: per (row, token) the same integer sums and the same f32 expression,
/// in the same block order, as the row-major `vec_dot_*`, so it gives their bits exactly.
pub fn gemm_x16<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    let rows = GROUP * (w.len() / nb);
    let nibbles = B::DTYPE != crate::DType::Q8_0;
    for (t, at) in a.chunks_exact(nb).enumerate() {
        for (g, wg) in w.chunks_exact(nb).enumerate() {
            let mut acc = [0f32; GROUP];
            for (bw, ba) in wg.iter().zip(at) {
                let qs = bw.qs();
                for (lane, acc) in acc.iter_mut().enumerate() {
                    let mut s = 0i32;
                    for (k, piece) in qs.chunks_exact(4 * GROUP).enumerate() {
                        for (i, &q) in piece[4 * lane..4 * lane + 4].iter().enumerate() {
                            if nibbles {
                                // The fifth bits (q5) of this lane's byte i of the piece.
                                let fifth = |high| {
                                    bw.qh().map_or(0, |qh| {
                                        ((interleave::qh_mask(qh, k, high) >> (4 * lane + i)) & 1) as i32
                                    })
                                };
                                s += ((q & 0x0F) as i32 | fifth(false) << 4) * ba.qs[4 * k + i] as i32
                                    + ((q >> 4) as i32 | fifth(true) << 4) * ba.qs[QK / 2 + 4 * k + i] as i32;
                            } else {
                                s += q as i8 as i32 * ba.qs[4 * k + i] as i32;
                            }
                        }
                    }
                    // Nibbles are unsigned (their offset × Σa corrects the sum); q8_0's bytes signed.
                    let off = if nibbles { B::OFFSET } else { 0 };
                    let d = f16_to_f32(bw.d()[lane]);
                    *acc = match bw.m() {
                        Some(m) => min_term(f16_to_f32(m[lane]), ba, block_term(s, d, ba, *acc)),
                        None => block_term(s + off * ba.sum, d, ba, *acc),
                    };
                }
            }
            out[t * rows + g * GROUP..][..GROUP].copy_from_slice(&acc);
        }
    }
}

pub fn gemm_q4_0x16(w: &[BlockQ4_0x16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_x16(w, a, nb, out)
}

pub fn gemm_q4_1x16(w: &[BlockQ4_1x16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_x16(w, a, nb, out)
}

pub fn gemm_q8_0x16(w: &[BlockQ8_0x16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_x16(w, a, nb, out)
}

pub fn gemm_q5_0x16(w: &[BlockQ5_0x16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_x16(w, a, nb, out)
}

pub fn gemm_q5_1x16(w: &[BlockQ5_1x16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_x16(w, a, nb, out)
}

/// Interleaved K-quant rows through a row-major kernel: each row of each group is
/// gathered (`interleave::lane_block`) and multiplied by `dots` (a `ByteDotsFn` of the same
/// type) for all tokens, so the results are that kernel's bits: the scalar slots, with the
/// scalar dots (the SIMD ISAs have rows-in-lanes K kernels).
pub fn gemm_by_rows<B: BlockLayout>(
    w: &[B],
    a: &[BlockQ8A],
    nb: usize,
    out: &mut [f32],
    dots: fn(&[u8], &[BlockQ8A], usize, &mut [f32]),
) {
    let nw = nb / (B::BLOCK_LEN / QK);
    let (groups, toks) = (w.len() / nw, a.len() / nb);
    let rows = GROUP * groups;
    let bs = B::DTYPE.block_bytes();
    let mut row = vec![0u8; nw * bs];
    let mut res = vec![0f32; toks];
    for (g, wg) in w.chunks_exact(nw).enumerate() {
        for lane in 0..GROUP {
            for (blk, dst) in wg.iter().zip(row.chunks_exact_mut(bs)) {
                interleave::lane_block(blk, lane, dst);
            }
            dots(&row, a, nb, &mut res);
            for (t, &v) in res.iter().enumerate() {
                out[t * rows + g * GROUP + lane] = v;
            }
        }
    }
}

pub fn gemm_q4_kx16(w: &[BlockQ4Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_by_rows(w, a, nb, out, dots_q4_k)
}

pub fn gemm_q5_kx16(w: &[BlockQ5Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_by_rows(w, a, nb, out, dots_q5_k)
}

pub fn gemm_q6_kx16(w: &[BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    gemm_by_rows(w, a, nb, out, dots_q6_k)
}

// ---- attention over the cache: rows of `len` values, `stride` apart -------------------------------

/// Asserts that rows `0..n` of `len` values, `stride` apart, lie inside `total` values.
pub fn check_strided(len: usize, total: usize, stride: usize, n: usize) {
    assert!(stride >= len, "stride {stride} shorter than a row of {len}");
    assert!(n == 0 || (n - 1) * stride + len <= total, "{n} rows of {len} (stride {stride}) exceed {total} values");
}

/// Asserts the lengths of a `gemm_*x16` call: whole rows of `nb` activation blocks (`per`
/// activation blocks per group block: 1, or 8 for the K super-blocks), room for every result.
pub fn check_x16(w: usize, per: usize, a: usize, nb: usize, out: usize) {
    let ok = nb > 0 && nb.is_multiple_of(per) && (w * per).is_multiple_of(nb) && a.is_multiple_of(nb);
    assert!(ok && out >= 16 * (w * per / nb) * (a / nb), "x16 lengths");
}

/// `out[j] = q · k[j·stride..j·stride + q.len()]` (attention scores, `lane_dot`).
pub fn dots_f32(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
    check_strided(q.len(), k.len(), stride, out.len());
    for (j, o) in out.iter_mut().enumerate() {
        *o = vec_dot_f32(q, &k[j * stride..j * stride + q.len()]);
    }
}

/// `out += Σ_j w[j] · v[j·stride..j·stride + out.len()]` (attention's weighted sum of values,
/// `pair_wsum`).
pub fn wsum_f32(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
    check_strided(out.len(), v.len(), stride, w.len());
    pair_wsum(out, w, |j, i| v[j * stride + i]);
}

/// Asserts that `len` values are whole q8_0 blocks and returns their count.
pub fn q8_0_blocks(len: usize) -> usize {
    assert!(len.is_multiple_of(QK), "a q8_0 cache row of {len} values is not whole blocks of {QK}");
    len / QK
}

/// `out[j] = q · f16 row j` (keys stored as IEEE half bits, rows `stride` values apart;
/// `lane_dot`).
pub fn dots_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    check_strided(q.len(), k.len(), stride, out.len());
    for (j, o) in out.iter_mut().enumerate() {
        *o = vec_dot_f16(&k[j * stride..j * stride + q.len()], q);
    }
}

/// `out += Σ_j w[j] · f16 row j` (values stored as IEEE half bits, rows `stride` values apart;
/// `pair_wsum`).
pub fn wsum_f16(out: &mut [f32], w: &[f32], v: &[u16], stride: usize) {
    check_strided(out.len(), v.len(), stride, w.len());
    pair_wsum(out, w, |j, i| f16_to_f32(v[j * stride + i]));
}

/// `out[j] = Σ_b d_jb · Σ_i q[32b + i] · qs_jb[i]` over the `nb = q.len() / 32` blocks of key
/// row j, `k[j·stride..j·stride + nb]` (`stride` in blocks). `q` stays f32. The contract: lane
/// `l < 16` of block b takes `t = fma(q[32b+16+l], qs[16+l], q[32b+l]·qs[l])`, then
/// `lane = fma(t, d_jb, lane)`, block after block; then `sum_lanes`.
pub fn dots_q8_0(q: &[f32], k: &[BlockQ8_0], stride: usize, out: &mut [f32]) {
    let nb = q8_0_blocks(q.len());
    check_strided(nb, k.len(), stride, out.len());
    for (j, o) in out.iter_mut().enumerate() {
        let row = &k[j * stride..j * stride + nb];
        let mut acc = [0f32; LANES];
        for (b, q) in row.iter().zip(q.chunks_exact(QK)) {
            let d = f16_to_f32(b.d);
            for (l, a) in acc.iter_mut().enumerate() {
                let t = fma(q[16 + l], b.qs[16 + l] as f32, q[l] * b.qs[l] as f32);
                *a = fma(t, d, *a);
            }
        }
        *o = sum_lanes(&acc);
    }
}

/// `out[32b + i] += w[j] · d_jb · qs_jb[i]` over the value rows `v[j·stride..j·stride + nb]`
/// (`nb = out.len() / 32`, `stride` in blocks): `pair_wsum` of the terms `fma(w_j·d_jb, qs, ·)`.
pub fn wsum_q8_0(out: &mut [f32], w: &[f32], v: &[BlockQ8_0], stride: usize) {
    let nb = q8_0_blocks(out.len());
    check_strided(nb, v.len(), stride, w.len());
    for (b, o) in out.chunks_exact_mut(QK).enumerate() {
        for (i, o) in o.iter_mut().enumerate() {
            let (mut even, mut odd) = (*o, 0f32);
            for (j, &wj) in w.iter().enumerate() {
                let blk = &v[j * stride + b];
                let t = fma(wj * f16_to_f32(blk.d), blk.qs[i] as f32, if j % 2 == 0 { even } else { odd });
                if j % 2 == 0 {
                    even = t;
                } else {
                    odd = t;
                }
            }
            *o = even + odd;
        }
    }
}

/// `dst[i] = f16 bits of src[i]`, rounded to nearest even (`types::f32_to_f16`).
pub fn store_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "store_f16: {} values into {} halves", src.len(), dst.len());
    dst.iter_mut().zip(src).for_each(|(h, &v)| *h = f32_to_f16(v));
}

/// The wrapping sum of `x` read as little-endian u64 (a trailing partial word is ignored; the
/// bandwidth probe's reference).
pub fn sum_u64(x: &[u8]) -> u64 {
    x.chunks_exact(8).fold(0u64, |a, c| a.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes"))))
}
