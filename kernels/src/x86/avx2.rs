//! AVX2 + FMA + F16C kernels (the `avx2` table; the `avx512` table starts from it). Signed
//! 8-bit products go through `vpmaddubsw` + `vpmaddwd` (`dot_u8i8`); the bodies shared with
//! AVX-512 come from `common.rs`.
//!
//! 16-row interleaved matrices (`interleave`): a 256-bit register loaded from half of a 64-byte
//! piece holds 4 bytes of each of 8 rows, so every product below gives 8 row sums for one token
//! with 4 activation bytes broadcast from memory, no horizontal sums. `q4_0` / `q4_1`: nibbles
//! (0..15) × activations with `vpmaddubsw`; the 8 pieces' i16 pair sums are added in i16 (at
//! most 8 · 2 · 15 · 128 = 30720, no overflow), widened once with `vpmaddwd`, and `q4_0`'s
//! −8·Σa offset is added as an integer. `q8_0`: |w| × (a with w's sign) per piece (a pair is at
//! most 2 · 128 · 127), widened per piece. Per (row, token) the block sums are exact; the f32
//! step is one FMA per block, so results agree with the scalar row dot within f32 rounding.
//!
//! `exp_f32` runs the scalar twin's operations lane by lane (bit for bit); attention's
//! `dots_f32` keeps 4 keys' products in 4 registers and reduces them together, `wsum_f32` keeps
//! up to 64 outputs in registers across all keys (sums in another order than the scalar twins,
//! within f32 rounding).

use std::arch::x86_64::*;

use crate::exp::{exp, LN2_HI, LN2_LO, LOG2E, MAX_X, MIN_X, P};
use crate::interleave::GroupBlock;
use crate::types::{BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, QK};

plug!(crate::table::Isa::Avx2, available: crate::x86::has, [
    quantize_act, vec_dot_q4_0, vec_dot_q4_1, vec_dot_q8_0, vec_dot_f16, vec_dot_f32,
    gemm_q4_0, gemm_q4_1, gemm_q8_0, gemm_q4_0x16, gemm_q4_1x16, gemm_q8_0x16,
    dots_q5_0, dots_q5_1, dots_q4_k, dots_q5_k, dots_q6_k, exp_f32, dots_f32, wsum_f32,
]);

/// Σ u·s over groups of 4 (unsigned × signed bytes) → 8 × i32, via `vpmaddubsw` (pairs to
/// saturating i16; no saturation here: |u| ≤ 128 and |s| ≤ 127 give at most 2·128·127)
/// and `vpmaddwd`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

kernel_bodies!("avx2,fma,f16c", rows: 2, tokens: 4, byte_tokens: 8);

// ---- 16-row interleaved matrices ----------------------------------------------------------------

/// Tokens per pass over a half group's blocks.
const TOKENS: usize = 4;

/// Group blocks between a decode step and the block it prefetches.
const PREFETCH: usize = 4;

/// The 8 pieces of rows `8h..8h + 8` of group block `blk`: nibbles (q4) or signed bytes (q8).
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack8<B: GroupBlock>(blk: &B, h: usize) -> [__m256i; 8] {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let q = blk.qs().as_ptr().add(32 * h);
        let mut x = [_mm256_setzero_si256(); 8];
        if B::DTYPE == DType::Q8_0 {
            for (i, x) in x.iter_mut().enumerate() {
                // SAFETY (caller): a q8_0 group block holds 8 pieces of 64 bytes; h < 2.
                *x = _mm256_loadu_si256(q.add(64 * i) as *const __m256i);
            }
        } else {
            let m = _mm256_set1_epi8(0x0F);
            for j in 0..4 {
                // SAFETY (caller): a q4 group block holds 4 pieces of 64 bytes; h < 2.
                let v = _mm256_loadu_si256(q.add(64 * j) as *const __m256i);
                x[j] = _mm256_and_si256(v, m);
                x[4 + j] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m);
            }
        }
        x
    }
}

/// Rows `8h0..8(h0 + H)` of a group (blocks `w[..nb]`) × T tokens into
/// `out[t * stride + 8(h − h0)..][..8]`. Prefill takes one half per pass (H = 1, T tokens);
/// decode both halves in one pass (H = 2, one token), which streams each block once.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn half_x<B: GroupBlock, const H: usize, const T: usize>(
    w: &[B],
    h0: usize,
    a: &[BlockQ8A],
    nb: usize,
    out: &mut [f32],
    stride: usize,
) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; H];
        for (b, blk) in w[..nb].iter().enumerate() {
            if H == 2 {
                // Decode streams the matrix once: fetch the block PREFETCH blocks ahead (past the
                // group's end the addresses may lie outside the slice; prefetches never fault).
                let ahead = (blk as *const B as *const i8).wrapping_add(PREFETCH * std::mem::size_of::<B>());
                for line in (0..std::mem::size_of::<B>()).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
                }
            }
            for (hh, acc) in acc.iter_mut().enumerate() {
                let h = h0 + hh;
                let x = unpack8(blk, h);
                let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d()[8 * h..].as_ptr() as *const __m128i));
                let m = blk.m().map(|m| _mm256_cvtph_ps(_mm_loadu_si128(m[8 * h..].as_ptr() as *const __m128i)));
                for t in 0..T {
                    let ab = &a[t * nb + b];
                    let q = ab.qs.as_ptr() as *const i32;
                    // SAFETY (all reads of q below): k < 8 and an activation block holds 32 bytes.
                    let i = if B::DTYPE == DType::Q8_0 {
                        let mut i = _mm256_setzero_si256();
                        for (k, x) in x.iter().enumerate() {
                            let y = _mm256_set1_epi32(q.add(k).read_unaligned());
                            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(*x), _mm256_sign_epi8(y, *x));
                            i = _mm256_add_epi32(i, _mm256_madd_epi16(p, ones));
                        }
                        i
                    } else {
                        let mut s = _mm256_setzero_si256();
                        for (k, x) in x.iter().enumerate() {
                            let y = _mm256_set1_epi32(q.add(k).read_unaligned());
                            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(*x, y));
                        }
                        let i = _mm256_madd_epi16(s, ones);
                        if B::DTYPE == DType::Q4_0 {
                            _mm256_add_epi32(i, _mm256_set1_epi32(-8 * ab.sum))
                        } else {
                            i
                        }
                    };
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(d, _mm256_set1_ps(ab.d)), acc[t]);
                    if let Some(m) = m {
                        acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(ab.d * ab.sum as f32), acc[t]);
                    }
                }
            }
        }
        for (hh, acc) in acc.iter().enumerate() {
            for (t, v) in acc.iter().enumerate() {
                _mm256_storeu_ps(out[t * stride + 8 * hh..][..8].as_mut_ptr(), *v);
            }
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_x16<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let groups = w.len() / nb;
        let toks = a.len() / nb;
        let rows = 16 * groups;
        for g in 0..groups {
            let wg = &w[g * nb..(g + 1) * nb];
            let mut t = 0;
            while t + TOKENS <= toks {
                for h in 0..2 {
                    half_x::<B, 1, TOKENS>(wg, h, &a[t * nb..], nb, &mut out[t * rows + 16 * g + 8 * h..], rows);
                }
                t += TOKENS;
            }
            while t < toks {
                half_x::<B, 2, 1>(wg, 0, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
                t += 1;
            }
        }
    }
}

x16_entries!(gemm_x16);

// ---- e^x -----------------------------------------------------------------------------------------

fn exp_f32(x: &mut [f32]) {
    // SAFETY: installed only after AVX2 and FMA were detected; every access is within `x`
    // (whole chunks of 8, the tail in scalar code).
    unsafe { exp8(x) }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma")]
unsafe fn exp8(x: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            let v = _mm256_loadu_ps(c.as_ptr());
            let xc = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(MIN_X)), _mm256_set1_ps(MAX_X));
            let n = _mm256_floor_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5)));
            let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), xc);
            let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
            let z = _mm256_mul_ps(r, r);
            let mut p = _mm256_set1_ps(P[0]);
            for c in &P[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
            }
            let y = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0));
            let ni = _mm256_cvttps_epi32(n);
            let h = _mm256_srai_epi32::<1>(ni);
            let bias = _mm256_set1_epi32(127);
            let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias)));
            let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(h, bias)));
            let mut res = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
            res = _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_set1_ps(MIN_X)));
            res = _mm256_blendv_ps(
                res,
                _mm256_set1_ps(f32::INFINITY),
                _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_set1_ps(MAX_X)),
            );
            res = _mm256_blendv_ps(res, v, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            _mm256_storeu_ps(c.as_mut_ptr(), res);
        }
        chunks.into_remainder().iter_mut().for_each(|v| *v = exp(*v));
    }
}

// ---- attention over the cache --------------------------------------------------------------------

fn dots_f32(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
    crate::scalar::check_strided(q.len(), k.len(), stride, out.len());
    // SAFETY: installed only after AVX2 and FMA were detected; `check_strided` asserted that
    // row j < out.len() of `k` (j·stride .. j·stride + q.len()) lies inside `k`.
    unsafe { dots_impl(q, k, stride, out) }
}

fn wsum_f32(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
    crate::scalar::check_strided(out.len(), v.len(), stride, w.len());
    // SAFETY: as above, with the rows of `v` for j < w.len().
    unsafe { wsum_impl(out, w, v, stride) }
}

/// # Safety
/// The CPU has the enabled target features; the pointers cover every value it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_dot(q: &[f32], r: *const f32) -> __m256 {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= q.len() {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(r.add(i)), acc);
            i += 8;
        }
        acc
    }
}

/// Σ over the tail of a row that is not a multiple of 8.
///
/// # Safety
/// The pointers cover every value it reads or writes (the caller checks the lengths).
#[inline]
unsafe fn row_tail(q: &[f32], r: *const f32) -> f32 {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut s = 0.0;
        for (i, x) in q.iter().enumerate().skip(q.len() / 8 * 8) {
            s += x * *r.add(i);
        }
        s
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_impl(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let n = out.len();
        let base = k.as_ptr();
        let mut j = 0;
        while j + 4 <= n {
            let r: [*const f32; 4] = std::array::from_fn(|u| base.add((j + u) * stride));
            let a: [__m256; 4] = std::array::from_fn(|u| row_dot(q, r[u]));
            let t = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            let s = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
            let mut v = [0f32; 4];
            _mm_storeu_ps(v.as_mut_ptr(), s);
            for u in 0..4 {
                out[j + u] = v[u] + row_tail(q, r[u]);
            }
            j += 4;
        }
        while j < n {
            let r = base.add(j * stride);
            let a = row_dot(q, r);
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            out[j] = _mm_cvtss_f32(s) + row_tail(q, r);
            j += 1;
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma")]
unsafe fn wsum_impl(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let d = out.len();
        let base = v.as_ptr();
        let mut i = 0;
        // 64 outputs (8 registers) at a time over every key, then 8, then scalar.
        while i + 64 <= d {
            let o = out.as_mut_ptr().add(i);
            let mut acc: [__m256; 8] = std::array::from_fn(|u| _mm256_loadu_ps(o.add(8 * u)));
            for (j, &wj) in w.iter().enumerate() {
                let r = base.add(j * stride + i);
                let b = _mm256_set1_ps(wj);
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(b, _mm256_loadu_ps(r.add(8 * u)), *a);
                }
            }
            for (u, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(8 * u), *a);
            }
            i += 64;
        }
        while i + 8 <= d {
            let o = out.as_mut_ptr().add(i);
            let mut acc = _mm256_loadu_ps(o);
            for (j, &wj) in w.iter().enumerate() {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(wj), _mm256_loadu_ps(base.add(j * stride + i)), acc);
            }
            _mm256_storeu_ps(o, acc);
            i += 8;
        }
        for (i, o) in out.iter_mut().enumerate().skip(i) {
            for (j, &wj) in w.iter().enumerate() {
                *o += wj * *base.add(j * stride + i);
            }
        }
    }
}
