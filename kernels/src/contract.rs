//! The numerical contract (docs/NUMERICS.md): the float expressions and their order that every
//! ISA's kernels compute, so that every ISA gives the same bits. The scalar kernels call these
//! directly; the SIMD kernels compute the same operations lane by lane and are tested bit for
//! bit against the scalar ones (`twins`).

use crate::types::BlockQ8A;

/// Lanes of the contract's float reductions: value `i` of a row belongs to lane `i mod 16`.
pub const LANES: usize = 16;

/// `a·b + c` rounded once: the contract's fused multiply-add (`fmadd`/`vfmadd`/`fmla`).
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// One quantized block's value part folded into a dot product's accumulator: the exact
/// integer sum `s` (weights × 8-bit activations), scaled by the weight scale times the
/// activation scale, `fma(s, d_w·d_a, acc)`.
#[inline(always)]
pub fn block_term(s: i32, dw: f32, ba: &BlockQ8A, acc: f32) -> f32 {
    fma(s as f32, dw * ba.d, acc)
}

/// A block's min part (`q4_1`, `q5_1`: the minimum; `q4_k`, `q5_k`: `−dmin·m_j`):
/// `fma(m, d_a·Σa, acc)`, after the value part.
#[inline(always)]
pub fn min_term(m: f32, ba: &BlockQ8A, acc: f32) -> f32 {
    fma(m, ba.d * ba.sum as f32, acc)
}

/// The sum of the 16 lanes by halving: `v[i] += v[i + w]` for w = 8, 4, 2, 1 (each step's
/// additions independent), `v[0]` at the end. `hsum` of a 512-bit register, of two 256-bit
/// ones (lanes 0–7, 8–15) or of four 128-bit ones gives exactly this.
pub fn sum_lanes(a: &[f32; LANES]) -> f32 {
    let mut v = *a;
    for w in [8, 4, 2, 1] {
        for i in 0..w {
            v[i] += v[i + w];
        }
    }
    v[0]
}

/// `Σ_i x_i·y_i` over `n` pairs `xy(i)`: lane `i mod 16` accumulates `fma(x_i, y_i, lane)` in
/// order of `i`, then `sum_lanes`.
#[inline]
pub fn lane_dot(n: usize, xy: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut acc = [0f32; LANES];
    for i in 0..n {
        let (x, y) = xy(i);
        acc[i % LANES] = fma(x, y, acc[i % LANES]);
    }
    sum_lanes(&acc)
}

/// `out[i] += Σ_j w_j·v_j(i)`: two accumulators per output, even keys (starting from `out[i]`)
/// and odd keys (starting from 0), each `fma(w_j, v_j(i), ·)` in order of `j`, added at the
/// end (`even + odd`). `v(j, i)` is value `i` of key row `j`.
#[inline]
pub fn pair_wsum(out: &mut [f32], w: &[f32], v: impl Fn(usize, usize) -> f32) {
    for (i, o) in out.iter_mut().enumerate() {
        let (mut even, mut odd) = (*o, 0f32);
        for (j, &wj) in w.iter().enumerate() {
            if j % 2 == 0 {
                even = fma(wj, v(j, i), even);
            } else {
                odd = fma(wj, v(j, i), odd);
            }
        }
        *o = even + odd;
    }
}
