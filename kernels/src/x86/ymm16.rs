//! AVX2 kernels for 16-row interleaved matrices (`interleave`): a 256-bit register loaded
//! from half of a 64-byte piece holds 4 bytes of each of 8 rows, so every product below gives
//! 8 row sums for one token with 4 activation bytes broadcast from memory, no horizontal sums.
//!
//! `q4_0` / `q4_1`: nibbles (0..15) × activations with `vpmaddubsw`; the 8 pieces' i16 pair
//! sums are added in i16 (at most 8 · 2 · 15 · 128 = 30720, no overflow), widened once with
//! `vpmaddwd`, and `q4_0`'s −8·Σa offset is added as an integer. `q8_0`: |w| × (a with w's
//! sign) per piece (a pair is at most 2 · 128 · 127), widened per piece. Per (row, token) the
//! block sums are exact; the f32 step is one FMA per block, so results agree with the scalar
//! row dot within f32 rounding (tested).

use std::arch::x86_64::*;

use crate::blocks::{BlockQ8A, DType};
use crate::dispatch::Kernels;
use crate::interleave::{BlockQ4_0x16, BlockQ4_1x16, BlockQ8_0x16, GroupBlock};

pub fn plug(k: &mut Kernels) {
    k.gemm_q4_0x16 = gemm_q4_0x16;
    k.gemm_q4_1x16 = gemm_q4_1x16;
    k.gemm_q8_0x16 = gemm_q8_0x16;
}

/// Tokens per pass over a half group's blocks.
const TOKENS: usize = 4;

/// Group blocks between a decode step and the block it prefetches.
const PREFETCH: usize = 4;

/// The 8 pieces of rows `8h..8h + 8` of group block `blk`: nibbles (q4) or signed bytes (q8).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack8<B: GroupBlock>(blk: &B, h: usize) -> [__m256i; 8] {
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

/// Rows `8h0..8(h0 + H)` of a group (blocks `w[..nb]`) × T tokens into
/// `out[t * stride + 8(h − h0)..][..8]`. Prefill takes one half per pass (H = 1, T tokens);
/// decode both halves in one pass (H = 2, one token), which streams each block once.
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

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_x16<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
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

macro_rules! entries {
    ($($gemm:ident: $blk:ty),*) => {$(
        fn $gemm(w: &[$blk], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            assert!(nb > 0 && w.len() % nb == 0 && a.len() % nb == 0 && out.len() >= 16 * (w.len() / nb) * (a.len() / nb));
            // SAFETY: installed by `plug` only after AVX2, FMA and F16C were detected; lengths
            // are checked here, indexing inside is bounds-checked except the fixed-size block
            // reads noted above.
            unsafe { gemm_x16(w, a, nb, out) }
        }
    )*};
}

entries!(gemm_q4_0x16: BlockQ4_0x16, gemm_q4_1x16: BlockQ4_1x16, gemm_q8_0x16: BlockQ8_0x16);
