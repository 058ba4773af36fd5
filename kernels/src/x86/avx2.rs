//! AVX2 + FMA + F16C kernels (the `avx2` table; the `avx512` table starts from it). Signed
//! 8-bit products go through `vpmaddubsw` + `vpmaddwd` (`dot_u8i8`); the bodies shared with
//! AVX-512 come from `common.rs`.
//!
//! 16-row interleaved matrices (`interleave`): a 256-bit register loaded from half of a 64-byte
//! piece holds 4 bytes of each of 8 rows, so every product below gives 8 row sums for one token
//! with 4 activation bytes broadcast from memory, no horizontal sums. `q4_0` / `q4_1`: nibbles
//! (0..15) × activations with `vpmaddubsw`; the 8 pieces' i16 pair sums are added in i16 (at
//! most 8 · 2 · 15 · 128 = 30720, no overflow; q5's 0..31 in two halves of 4), widened with
//! `vpmaddwd`, and `q4_0`'s −8·Σa offset is added as an integer. `q8_0`: |w| × (a with w's sign) per piece (a pair is at
//! most 2 · 128 · 127), widened per piece. Per (row, token) the block sums are exact; the f32
//! step is the contract's FMA per block part (`scalar::block_term`, `min_term`), so results are
//! the scalar twin's bits. One-token decode does both halves of a group in one pass and
//! broadcasts each activation word once for both (the K-quants too: `kdecode_x16`, `q6decode_x16`).
//! A group's first pass of several tokens prefetches blocks ahead (`x86::prefetch_block`), as do
//! the K-quant and q6_k passes (`prefetch_next`); the group decode leaves its in-order stream to
//! the hardware prefetchers.
//!
//! `exp_f32` runs the scalar twin's operations lane by lane (bit for bit). Attention follows the
//! numerical contract (docs/NUMERICS.md) bit for bit: scores keep the contract's 16 lanes of a
//! row in two registers (4 keys per pass, reduced together), weighted sums keep up to 32
//! outputs in two accumulator sets (even and odd keys) across all keys.

use std::arch::x86_64::*;

use crate::exp::{exp, LN2_HI, LN2_LO, LOG2E, MAX_X, MIN_X, P};
use crate::interleave::{BlockQ6Kx16, GroupBlock, KGroupBlock};
use crate::types::{BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, QK};

plug!(crate::table::Isa::Avx2, available: crate::x86::has, [
    quantize_act, vec_dot_q4_0, vec_dot_q4_1, vec_dot_q8_0, vec_dot_f16, vec_dot_f32,
    gemm_q4_0, gemm_q4_1, gemm_q8_0, gemm_q4_0x16, gemm_q4_1x16, gemm_q8_0x16, gemm_q5_0x16, gemm_q5_1x16,
    gemm_q4_kx16, gemm_q5_kx16, gemm_q6_kx16,
    dots_q5_0, dots_q5_1, dots_q4_k, dots_q5_k, dots_q6_k, exp_f32, dots_f32, wsum_f32,
    rows_q5_0, rows_q5_1, rows_q4_k, rows_q5_k, rows_q6_k,
    dots_f16, wsum_f16, dots_q8_0, wsum_q8_0, store_f16,
]);

/// Σ u·s over groups of 4 (unsigned × signed bytes) → 8 × i32, via `vpmaddubsw` (pairs to
/// saturating i16; no saturation here: |u| ≤ 128 and |s| ≤ 127 give at most 2·128·127)
/// and `vpmaddwd`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// The 32 fifth bits of `qh` (bit j for value j) as bytes: 0x10 where set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn high_bits_32(qh: u32) -> __m256i {
    let v = _mm256_set1_epi32(qh as i32);
    // Byte j takes byte j / 8 of qh (each 128-bit lane holds all four) …
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bytes = _mm256_shuffle_epi8(v, spread);
    // … and keeps bit j % 8.
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

kernel_bodies!("avx2,fma,f16c", rows: 2, tokens: 4, byte_tokens: 8);

// ---- 16-row interleaved matrices ----------------------------------------------------------------

/// Tokens per pass over a half group's blocks; the rest in one pass of `TOKENS / 2`, then one by
/// one. 8 accumulators and 8 weight pieces take all 16 registers, so some live on the stack: a
/// load and a store per block and token, cheaper than unpacking a q5 block's fifth bits (a byte
/// spread per piece) once per 4 tokens.
const TOKENS: usize = 8;

/// The 8 pieces of rows `8h..8h + 8` of group block `blk`: nibbles (q4), nibbles with their
/// fifth bits (q5: 0..31) or signed bytes (q8).
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
                // SAFETY (caller): a q4/q5 group block holds 4 pieces of 64 bytes; h < 2.
                let v = _mm256_loadu_si256(q.add(64 * j) as *const __m256i);
                x[j] = _mm256_and_si256(v, m);
                x[4 + j] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m);
                if let Some(qh) = blk.qh() {
                    // This half's 32 bits of the piece's masks: byte i of row r is bit 4r + i.
                    let bits = |high| (crate::interleave::qh_mask(qh, j, high) >> (32 * h)) as u32;
                    x[j] = _mm256_or_si256(x[j], high_bits_32(bits(false)));
                    x[4 + j] = _mm256_or_si256(x[4 + j], high_bits_32(bits(true)));
                }
            }
        }
        x
    }
}

/// Rows `8h0..8(h0 + H)` of a group (blocks `w[..nb]`) × T tokens into
/// `out[t * stride + 8(h − h0)..][..8]`. Prefill takes one half per pass (H = 1, T tokens);
/// decode both halves in one pass (H = 2, one token), which streams each block once. With
/// `fetch` (the first half of a group's first pass of several tokens, which reads its blocks
/// first; the others find them in L1) it prefetches blocks ahead. Decode streams the blocks in
/// memory order without it: on AMD Zen 4 its L1 prefetch four blocks ahead cost 11–14 % of
/// one-thread decode (q4_0 / q4_1 on Llama-3.2-1B shapes and SmolLM2 `Q4_0`) and gained nothing
/// on two threads or for q8_0 (BENCHMARKS.md); the AVX-512 decode has none either.
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
    fetch: bool,
) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; H];
        for (b, blk) in w[..nb].iter().enumerate() {
            if fetch {
                crate::x86::prefetch_block(blk);
            }
            if B::DTYPE == DType::Q8_0 && H == 2 && T == 1 {
                // q8_0 decode: each activation word broadcast once for both halves.
                let ab = &a[b];
                let q = ab.qs.as_ptr() as *const i32;
                let w8 = blk.qs().as_ptr();
                let mut i = [_mm256_setzero_si256(); 2];
                for k in 0..8 {
                    // SAFETY: k < 8 and an activation block holds 32 bytes; a q8_0 group block
                    // holds 8 pieces of 64 bytes.
                    let y = _mm256_set1_epi32(q.add(k).read_unaligned());
                    for (hh, i) in i.iter_mut().enumerate() {
                        let x = _mm256_loadu_si256(w8.add(64 * k + 32 * hh) as *const __m256i);
                        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(y, x));
                        *i = _mm256_add_epi32(*i, _mm256_madd_epi16(p, ones));
                    }
                }
                for (hh, acc) in acc.iter_mut().enumerate() {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d()[8 * hh..].as_ptr() as *const __m128i));
                    acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i[hh]), _mm256_mul_ps(d, _mm256_set1_ps(ab.d)), acc[0]);
                }
                continue;
            }
            if H == 2 && T == 1 {
                // q4 / q5 decode: the activation words of nibble pieces j and j + 4 (one load
                // of weight bytes) broadcast once for both halves; each half's low- and
                // high-nibble pair sums add in i16 (4 pieces: at most 4 · 2 · 31 · 128).
                let ab = &a[b];
                let q = ab.qs.as_ptr() as *const i32;
                let w4 = blk.qs().as_ptr();
                let m = _mm256_set1_epi8(0x0F);
                let mut s = [[_mm256_setzero_si256(); 2]; 2];
                for j in 0..4 {
                    // SAFETY: j + 4 < 8 and an activation block holds 32 bytes; a q4/q5 group
                    // block holds 4 pieces of 64 bytes.
                    let (yl, yh) = (
                        _mm256_set1_epi32(q.add(j).read_unaligned()),
                        _mm256_set1_epi32(q.add(j + 4).read_unaligned()),
                    );
                    for (hh, s) in s.iter_mut().enumerate() {
                        let v = _mm256_loadu_si256(w4.add(64 * j + 32 * hh) as *const __m256i);
                        let (mut lo, mut hi) = (_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16::<4>(v), m));
                        if let Some(qh) = blk.qh() {
                            let bits = |high| (crate::interleave::qh_mask(qh, j, high) >> (32 * hh)) as u32;
                            lo = _mm256_or_si256(lo, high_bits_32(bits(false)));
                            hi = _mm256_or_si256(hi, high_bits_32(bits(true)));
                        }
                        s[0] = _mm256_add_epi16(s[0], _mm256_maddubs_epi16(lo, yl));
                        s[1] = _mm256_add_epi16(s[1], _mm256_maddubs_epi16(hi, yh));
                    }
                }
                for (hh, (acc, s)) in acc.iter_mut().zip(&s).enumerate() {
                    let i = _mm256_add_epi32(_mm256_madd_epi16(s[0], ones), _mm256_madd_epi16(s[1], ones));
                    let i = _mm256_add_epi32(i, _mm256_set1_epi32(B::OFFSET * ab.sum));
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d()[8 * hh..].as_ptr() as *const __m128i));
                    acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(d, _mm256_set1_ps(ab.d)), acc[0]);
                    if let Some(m) = blk.m() {
                        let m = _mm256_cvtph_ps(_mm_loadu_si128(m[8 * hh..].as_ptr() as *const __m128i));
                        acc[0] = _mm256_fmadd_ps(m, _mm256_set1_ps(ab.d * ab.sum as f32), acc[0]);
                    }
                }
                continue;
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
                        // i16 sums of all 8 pieces for nibbles (at most 8 · 2 · 15 · 128 =
                        // 30720), of 4 for q5 (4 · 2 · 31 · 128 = 31744), then widened.
                        let n = if blk.qh().is_some() { 4 } else { 8 };
                        let mut i = _mm256_setzero_si256();
                        for (kn, x) in x.chunks_exact(n).enumerate() {
                            let mut s = _mm256_setzero_si256();
                            for (k, x) in x.iter().enumerate() {
                                let y = _mm256_set1_epi32(q.add(n * kn + k).read_unaligned());
                                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(*x, y));
                            }
                            i = _mm256_add_epi32(i, _mm256_madd_epi16(s, ones));
                        }
                        _mm256_add_epi32(i, _mm256_set1_epi32(B::OFFSET * ab.sum))
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
                    let out = &mut out[t * rows + 16 * g + 8 * h..];
                    half_x::<B, 1, TOKENS>(wg, h, &a[t * nb..], nb, out, rows, t == 0 && h == 0);
                }
                t += TOKENS;
            }
            if t + TOKENS / 2 <= toks {
                for h in 0..2 {
                    half_x::<B, 1, { TOKENS / 2 }>(
                        wg,
                        h,
                        &a[t * nb..],
                        nb,
                        &mut out[t * rows + 16 * g + 8 * h..],
                        rows,
                        t == 0 && h == 0,
                    );
                }
                t += TOKENS / 2;
            }
            while t < toks {
                half_x::<B, 2, 1>(wg, 0, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows, false);
                t += 1;
            }
        }
    }
}

// ---- interleaved q4_k / q5_k: 8 rows per register, one 32-value sub-block at a time -------------

/// Every half group (8 rows) of 16-row K super-blocks (`nb / 8` per group) × every token:
/// `$pass::<…, T>(group's blocks, half, tokens from t, nb, out from (t, row 16g + 8h), stride)`
/// in passes of `TOKENS`, then `TOKENS / 2`, the rest one by one.
/// With `decode: $dec`, the tokens left after those passes go one by one through
/// `$dec(group's blocks, tokens from t, nb, out from (t, row 16g))`, both halves at once.
macro_rules! halves_x16 {
    (@decodes) => { false };
    (@decodes $dec:expr) => { true };
    ($pass:ident $(<$($g:ty),*>)?, $w:expr, $a:expr, $nb:expr, $out:expr $(, decode: $dec:expr)?) => {{
        let (w, a, nb, out) = ($w, $a, $nb, $out);
        let nw = nb / 8;
        let (toks, groups) = (a.len() / nb, w.len() / nw);
        let rows = 16 * groups;
        // Tokens covered by the passes of TOKENS and TOKENS / 2.
        let passes = toks / TOKENS * TOKENS + (toks % TOKENS) / (TOKENS / 2) * (TOKENS / 2);
        for g in 0..groups {
            let wg = &w[g * nw..(g + 1) * nw];
            for h in 0..2 {
                let o = 16 * g + 8 * h;
                let mut t = 0;
                while t + TOKENS <= toks {
                    $pass::<$($($g,)*)? TOKENS>(wg, h, &a[t * nb..], nb, &mut out[t * rows + o..], rows);
                    t += TOKENS;
                }
                if t + TOKENS / 2 <= toks {
                    $pass::<$($($g,)*)? { TOKENS / 2 }>(wg, h, &a[t * nb..], nb, &mut out[t * rows + o..], rows);
                    t += TOKENS / 2;
                }
                debug_assert_eq!(t, passes);
                while !halves_x16!(@decodes $($dec)?) && t < toks {
                    $pass::<$($($g,)*)? 1>(wg, h, &a[t * nb..], nb, &mut out[t * rows + o..], rows);
                    t += 1;
                }
            }
            $(for t in passes..toks {
                $dec(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..]);
            })?
        }
    }};
}

/// Sub-block `j`'s (scale, min) of 8 rows from their scale pieces `s` (`scale_min_k4` per lane).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale_min_x8(s: &[__m256i; 3], j: usize) -> (__m256i, __m256i) {
    let sr = |v: __m256i, n: usize| _mm256_srlv_epi32(v, _mm256_set1_epi32(n as i32));
    let mask = |v: __m256i, m: i32| _mm256_and_si256(v, _mm256_set1_epi32(m));
    if j < 4 {
        (mask(sr(s[0], 8 * j), 63), mask(sr(s[1], 8 * j), 63))
    } else {
        let j = j - 4;
        let top = |v: __m256i| _mm256_slli_epi32::<4>(mask(sr(v, 8 * j + 6), 3));
        (
            _mm256_or_si256(mask(sr(s[2], 8 * j), 15), top(s[0])),
            _mm256_or_si256(mask(sr(s[2], 8 * j + 4), 15), top(s[1])),
        )
    }
}

/// Rows `8h..8h + 8` of a group (blocks `w[..nb / 8]`) × T tokens into `out[t * stride..][..8]`:
/// per sub-block 8 nibble pieces (q5_k: + 16 where bit `j` of the fifth-bit piece is set,
/// moved to bit 4 by one shift), `vpmaddubsw` pair sums added in i16 over 4 pieces (at most
/// 4 · 2 · 31 · 128 = 31744), widened per 4 pieces; then the contract's two FMAs.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn khalf_x<B: KGroupBlock, const T: usize>(
    w: &[B],
    h: usize,
    a: &[BlockQ8A],
    nb: usize,
    out: &mut [f32],
    stride: usize,
) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (ones, sign) = (_mm256_set1_epi16(1), _mm256_set1_epi32(i32::MIN));
        let (low, five) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        let mut acc = [_mm256_setzero_ps(); T];
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d()[8 * h..].as_ptr() as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(blk.dmin()[8 * h..].as_ptr() as *const __m128i));
            let sp = blk.scales().as_ptr().add(32 * h);
            // SAFETY (caller): the scales hold 3 pieces of 64 bytes; h < 2.
            let s = [0, 1, 2].map(|p| _mm256_loadu_si256(sp.add(64 * p) as *const __m256i));
            for j in 0..8 {
                if h == 0 {
                    // The first half reads the block first: an eighth of it four blocks ahead
                    // into L2 per sub-block (as the AVX-512 K kernels).
                    crate::x86::prefetch_next(blk, j, 8, crate::x86::PREFETCH_AHEAD);
                }
                let (sc, m) = scale_min_x8(&s, j);
                let dsc = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
                let ndm = _mm256_castsi256_ps(_mm256_xor_si256(
                    _mm256_castps_si256(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m))),
                    sign,
                ));
                let q = blk.qs().as_ptr().add(64 * 8 * (j / 2) + 32 * h);
                let mut x = [_mm256_setzero_si256(); 8];
                for (k, x) in x.iter_mut().enumerate() {
                    // SAFETY (caller): qs holds 32 pieces of 64 bytes; 8·(j/2) + k < 32, h < 2.
                    let v = _mm256_loadu_si256(q.add(64 * k) as *const __m256i);
                    *x = if j % 2 == 0 {
                        _mm256_and_si256(v, low)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<4>(v), low)
                    };
                    if let Some(qh) = blk.qh() {
                        // SAFETY (caller): qh holds 8 pieces of 64 bytes; h < 2.
                        let hb = _mm256_loadu_si256(qh.as_ptr().add(64 * k + 32 * h) as *const __m256i);
                        // Bit j of each byte to bit 4 (a 16-bit shift never brings another
                        // byte's bit to bit 4 of a byte).
                        let moved = if j <= 4 {
                            _mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - j as i32))
                        } else {
                            _mm256_srl_epi16(hb, _mm_cvtsi32_si128(j as i32 - 4))
                        };
                        *x = _mm256_or_si256(*x, _mm256_and_si256(moved, five));
                    }
                }
                for t in 0..T {
                    let ab = &a[t * nb + 8 * b + j];
                    let qa = ab.qs.as_ptr() as *const i32;
                    let mut i = _mm256_setzero_si256();
                    for (k4, x) in x.chunks_exact(4).enumerate() {
                        let mut p = _mm256_setzero_si256();
                        for (k, x) in x.iter().enumerate() {
                            // SAFETY: 4·k4 + k < 8 and an activation block holds 32 bytes.
                            let y = _mm256_set1_epi32(qa.add(4 * k4 + k).read_unaligned());
                            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(*x, y));
                        }
                        i = _mm256_add_epi32(i, _mm256_madd_epi16(p, ones));
                    }
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dsc, _mm256_set1_ps(ab.d)), acc[t]);
                    acc[t] = _mm256_fmadd_ps(ndm, _mm256_set1_ps(ab.d * ab.sum as f32), acc[t]);
                }
            }
        }
        for (t, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(out[t * stride..][..8].as_mut_ptr(), *v);
        }
    }
}

/// One token × the 16 rows of a group (blocks `w[..nb / 8]`) into `out[..16]`, both halves in
/// one pass over each block (decode streams the matrix once): sub-blocks in pairs (2m, 2m + 1),
/// which share their bytes (low and high nibbles), so each piece is loaded once for both
/// nibbles and both halves and each activation word broadcast once for both halves; i16 pair
/// sums over 8 pieces for q4_k (at most 8 · 2 · 15 · 128 = 30720), 4 for q5_k (31744). Per row
/// the sub-blocks' two FMAs run in the scalar twin's order, so its bits.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kdecode_x16<B: KGroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (ones, sign) = (_mm256_set1_epi16(1), _mm256_set1_epi32(i32::MIN));
        let (low, five) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        let n = if blk_has_qh::<B>() { 4 } else { 8 };
        let mut acc = [_mm256_setzero_ps(); 2];
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            let qs = blk.qs().as_ptr();
            for m in 0..4 {
                // A quarter of the block PREFETCH_AHEAD blocks on, into L2 (BENCHMARKS.md, issue 23).
                crate::x86::prefetch_next(blk, m, 4, crate::x86::PREFETCH_AHEAD);
                let ab = [&a[8 * b + 2 * m], &a[8 * b + 2 * m + 1]];
                let qa = ab.map(|ab| ab.qs.as_ptr() as *const i32);
                // [half][sub-block 2m + s]: i32 sums, and the i16 pair sums since the last widening.
                let mut isum = [[_mm256_setzero_si256(); 2]; 2];
                let mut p = [[_mm256_setzero_si256(); 2]; 2];
                for k in 0..8 {
                    // SAFETY: k < 8 and an activation block holds 32 bytes.
                    let y = qa.map(|q| _mm256_set1_epi32(q.add(k).read_unaligned()));
                    for (hh, p) in p.iter_mut().enumerate() {
                        // SAFETY (caller): qs holds 32 pieces of 64 bytes; 8m + k < 32.
                        let v = _mm256_loadu_si256(qs.add(64 * (8 * m + k) + 32 * hh) as *const __m256i);
                        let mut x = [_mm256_and_si256(v, low), _mm256_and_si256(_mm256_srli_epi16::<4>(v), low)];
                        if let Some(qh) = blk.qh() {
                            // SAFETY (caller): qh holds 8 pieces of 64 bytes.
                            let hb = _mm256_loadu_si256(qh.as_ptr().add(64 * k + 32 * hh) as *const __m256i);
                            for (s, x) in x.iter_mut().enumerate() {
                                // Bit 2m + s of each byte to bit 4 (as in `khalf_x`).
                                let j = (2 * m + s) as i32;
                                let moved = if j <= 4 {
                                    _mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - j))
                                } else {
                                    _mm256_srl_epi16(hb, _mm_cvtsi32_si128(j - 4))
                                };
                                *x = _mm256_or_si256(*x, _mm256_and_si256(moved, five));
                            }
                        }
                        for ((p, x), y) in p.iter_mut().zip(x).zip(y) {
                            *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(x, y));
                        }
                    }
                    if (k + 1) % n == 0 {
                        for (isum, p) in isum.iter_mut().zip(p.iter_mut()) {
                            for (i, p) in isum.iter_mut().zip(p.iter_mut()) {
                                *i = _mm256_add_epi32(*i, _mm256_madd_epi16(*p, ones));
                                *p = _mm256_setzero_si256();
                            }
                        }
                    }
                }
                for (hh, (acc, isum)) in acc.iter_mut().zip(&isum).enumerate() {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d()[8 * hh..].as_ptr() as *const __m128i));
                    let dmin = _mm256_cvtph_ps(_mm_loadu_si128(blk.dmin()[8 * hh..].as_ptr() as *const __m128i));
                    let sp = blk.scales().as_ptr().add(32 * hh);
                    // SAFETY (caller): the scales hold 3 pieces of 64 bytes.
                    let sv = [0, 1, 2].map(|p| _mm256_loadu_si256(sp.add(64 * p) as *const __m256i));
                    for (s, (ab, isum)) in ab.iter().zip(isum).enumerate() {
                        let (sc, mn) = scale_min_x8(&sv, 2 * m + s);
                        let dsc = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
                        let ndm = _mm256_castsi256_ps(_mm256_xor_si256(
                            _mm256_castps_si256(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(mn))),
                            sign,
                        ));
                        *acc =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(*isum), _mm256_mul_ps(dsc, _mm256_set1_ps(ab.d)), *acc);
                        *acc = _mm256_fmadd_ps(ndm, _mm256_set1_ps(ab.d * ab.sum as f32), *acc);
                    }
                }
            }
        }
        for (hh, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(out[8 * hh..][..8].as_mut_ptr(), *v);
        }
    }
}

/// Whether `B` carries fifth bits (q5_k), known at compile time from its type.
const fn blk_has_qh<B: KGroupBlock>() -> bool {
    matches!(B::DTYPE, DType::Q5K)
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_kx16<B: KGroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        // `kdecode_x16` under this function's contract: `a` and `out` start at the token and group.
        halves_x16!(khalf_x<B>, w, a, nb, out, decode: kdecode_x16::<B>);
    }
}

// ---- interleaved q6_k: 8 rows per register -------------------------------------------------------

/// Scales `j` and `j + dj` of rows `8h..8h + 8` side by side in each row's 32-bit lane as
/// sign-extended 16-bit values (`dj = 0`: scale `j` twice), the `vpmaddwd` weights of a lane's
/// two 16-bit sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6_scale_pair(blk: &BlockQ6Kx16, j: usize, dj: usize, h: usize) -> __m256i {
    // SAFETY: `scale(j)` and `scale(j + dj)` are 16 bytes and h < 2, so the 8 bytes at 8h lie
    // inside them.
    let at = |j: usize| unsafe { _mm_loadl_epi64(blk.scale(j).as_ptr().add(8 * h) as *const __m128i) };
    _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(at(j), at(j + dj)))
}

/// Rows `8h..8h + 8` of a group (blocks `w[..nb / 8]`) × T tokens into `out[t * stride..][..8]`:
/// the 6-bit values (0..63) from 8 `ql` and 8 `qh` pieces per activation block; `vpmaddubsw`
/// pair sums added in i16 over 2 pieces (at most 2 · 2 · 63 · 128 = 32256), each 16-value
/// half widened by `vpmaddwd` with its scale as the weight; the −32 offset as −32 × (the half
/// scales · the halves' activation sums), one more `vpmaddwd` (all exact), then one FMA (the
/// scalar twin's expression).
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q6half_x<const T: usize>(
    w: &[BlockQ6Kx16],
    h: usize,
    a: &[BlockQ8A],
    nb: usize,
    out: &mut [f32],
    stride: usize,
) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (low, high) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        let mut acc = [_mm256_setzero_ps(); T];
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d[8 * h..].as_ptr() as *const __m128i));
            // SAFETY (all loads below): the runs hold 8 pieces of 64 bytes, a scale 16 bytes;
            // the piece indices stay inside them; h < 2.
            for i in 0..8 {
                if h == 0 {
                    crate::x86::prefetch_next(blk, i, 8, crate::x86::PREFETCH_AHEAD);
                }
                let (n, k) = (i / 4, i % 4);
                // Each half's scale in both 16-bit halves of its row's lane (the `vpmaddwd`
                // weights of that half's pair sums), and the two side by side for the offset term.
                let (s0, s1) = (q6_scale_pair(blk, 2 * i, 0, h), q6_scale_pair(blk, 2 * i + 1, 0, h));
                let s01 = q6_scale_pair(blk, 2 * i, 1, h);
                let ql = blk.ql(2 * n + (k & 1)).as_ptr().add(32 * h);
                let qh = blk.qh(n).as_ptr().add(32 * h);
                let mut x = [_mm256_setzero_si256(); 8];
                for (kk, x) in x.iter_mut().enumerate() {
                    let v = _mm256_loadu_si256(ql.add(64 * kk) as *const __m256i);
                    let lo =
                        if k < 2 { _mm256_and_si256(v, low) } else { _mm256_and_si256(_mm256_srli_epi16::<4>(v), low) };
                    let hb = _mm256_loadu_si256(qh.add(64 * kk) as *const __m256i);
                    let moved = if 2 * k <= 4 {
                        _mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - 2 * k as i32))
                    } else {
                        _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * k as i32 - 4))
                    };
                    *x = _mm256_or_si256(lo, _mm256_and_si256(moved, high));
                }
                for t in 0..T {
                    let ab = &a[t * nb + 8 * b + i];
                    let qa = ab.qs.as_ptr() as *const i32;
                    let mut sum = _mm256_setzero_si256();
                    for (hh, sc) in [s0, s1].into_iter().enumerate() {
                        for p in 0..2 {
                            let kk = 4 * hh + 2 * p;
                            // SAFETY: kk + 1 < 8 and an activation block holds 32 bytes.
                            let y0 = _mm256_set1_epi32(qa.add(kk).read_unaligned());
                            let y1 = _mm256_set1_epi32(qa.add(kk + 1).read_unaligned());
                            let pair =
                                _mm256_add_epi16(_mm256_maddubs_epi16(x[kk], y0), _mm256_maddubs_epi16(x[kk + 1], y1));
                            // sc · (pair sums): at most 128 · 2 · 32256 per lane.
                            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pair, sc));
                        }
                    }
                    // − 32 · (sc0 · a0 + sc1 · a1), a0 and a1 the halves' activation sums.
                    let a0 = crate::x86::sum16(&ab.qs);
                    let a01 = _mm256_set1_epi32((a0 & 0xFFFF) | ((ab.sum - a0) << 16));
                    let sum = _mm256_sub_epi32(sum, _mm256_slli_epi32::<5>(_mm256_madd_epi16(s01, a01)));
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(ab.d)), acc[t]);
                }
            }
        }
        for (t, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(out[t * stride..][..8].as_mut_ptr(), *v);
        }
    }
}

/// One token × the 16 rows of a q6_k group (blocks `w[..nb / 8]`) into `out[..16]`, both halves
/// in one pass over each block (decode streams the matrix once). Sub-blocks 4n + k and
/// 4n + k + 2 are the low and high nibbles of the same `ql` pieces, and all four k of an n take
/// their top bits from the same `qh` pieces: per n, two passes (k = 0 and 2, then 1 and 3) load
/// each piece once for two sub-blocks and both halves and broadcast each activation word once
/// for both halves; the four sub-blocks' exact sums then meet the FMAs in the scalar twin's order
/// (`q6half_x`'s arithmetic, so its bits).
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q6decode_x16(w: &[BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (low, high) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        let mut acc = [_mm256_setzero_ps(); 2];
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            for n in 0..2 {
                let ab: [&BlockQ8A; 4] = std::array::from_fn(|k| &a[8 * b + 4 * n + k]);
                // Sub-block k's half scales j = 2(4n + k) + half of rows 8hh.., as `vpmaddwd`
                // weights (each scale in both 16-bit halves of its row's lane, for the half's
                // pair sums; or the two half scales side by side, for the offset term), built
                // where they are used (two instructions from the scale bytes; as in `q6half_x`),
                // each twice per block: built once per half of a pass into an array instead, the
                // decode ran at half the speed (`gemv_q6_kx16/avx2` 20.2–20.6 → 10.9–11.2 GiB/s).
                let sc = |hh: usize, k: usize, half: usize| q6_scale_pair(blk, 2 * (4 * n + k) + half, 0, hh);
                let s01 = |hh: usize, k: usize| q6_scale_pair(blk, 2 * (4 * n + k), 1, hh);
                let mut sum = [[_mm256_setzero_si256(); 4]; 2];
                for kp in 0..2 {
                    // A quarter of the block PREFETCH_AHEAD blocks on, into L2.
                    crate::x86::prefetch_next(blk, 2 * n + kp, 4, crate::x86::PREFETCH_AHEAD);
                    let ks = [kp, kp + 2];
                    let qa = ks.map(|k| ab[k].qs.as_ptr() as *const i32);
                    let ql = blk.ql(2 * n + kp).as_ptr();
                    let qh = blk.qh(n).as_ptr();
                    for kk in (0..8).step_by(2) {
                        // SAFETY: kk + 1 < 8 and an activation block holds 32 bytes.
                        let y = qa.map(|q| {
                            [
                                _mm256_set1_epi32(q.add(kk).read_unaligned()),
                                _mm256_set1_epi32(q.add(kk + 1).read_unaligned()),
                            ]
                        });
                        for (hh, sum) in sum.iter_mut().enumerate() {
                            // Pieces kk and kk + 1 of both sub-blocks: [piece][sub-block].
                            let mut x = [[_mm256_setzero_si256(); 2]; 2];
                            for (e, x) in x.iter_mut().enumerate() {
                                // SAFETY (caller): ql holds 32 pieces and qh 16 of 64 bytes; the
                                // piece indices stay inside them.
                                let v = _mm256_loadu_si256(ql.add(64 * (kk + e) + 32 * hh) as *const __m256i);
                                let hb = _mm256_loadu_si256(qh.add(64 * (kk + e) + 32 * hh) as *const __m256i);
                                let top = |k: usize| {
                                    let moved = if 2 * k <= 4 {
                                        _mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - 2 * k as i32))
                                    } else {
                                        _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * k as i32 - 4))
                                    };
                                    _mm256_and_si256(moved, high)
                                };
                                *x = [
                                    _mm256_or_si256(_mm256_and_si256(v, low), top(kp)),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(v), low), top(kp + 2)),
                                ];
                            }
                            for (s, (k, y)) in ks.into_iter().zip(&y).enumerate() {
                                let pair = _mm256_add_epi16(
                                    _mm256_maddubs_epi16(x[0][s], y[0]),
                                    _mm256_maddubs_epi16(x[1][s], y[1]),
                                );
                                // sc · (pair sums): at most 128 · 2 · 32256 per lane.
                                sum[k] = _mm256_add_epi32(sum[k], _mm256_madd_epi16(pair, sc(hh, k, kk / 4)));
                            }
                        }
                    }
                }
                for (hh, (acc, sum)) in acc.iter_mut().zip(&sum).enumerate() {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(blk.d[8 * hh..].as_ptr() as *const __m128i));
                    for (k, (sum, ab)) in sum.iter().zip(&ab).enumerate() {
                        // − 32 · (sc0 · a0 + sc1 · a1), a0 and a1 the halves' activation sums.
                        let a0 = crate::x86::sum16(&ab.qs);
                        let a01 = _mm256_set1_epi32((a0 & 0xFFFF) | ((ab.sum - a0) << 16));
                        let sum = _mm256_sub_epi32(*sum, _mm256_slli_epi32::<5>(_mm256_madd_epi16(s01(hh, k), a01)));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(ab.d)), *acc);
                    }
                }
            }
        }
        for (hh, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(out[8 * hh..][..8].as_mut_ptr(), *v);
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_q6x16(w: &[BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        // `q6decode_x16` under this function's contract: `a` and `out` start at the token and group.
        halves_x16!(q6half_x, w, a, nb, out, decode: q6decode_x16);
    }
}

x16_entries!(gemm_x16);
x16_entries!(k: gemm_kx16);
x16_entries!(@ gemm_q6x16, gemm_q6_kx16: BlockQ6Kx16);

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
    // SAFETY: installed only after AVX2, FMA and F16C were detected; `check_strided` asserted
    // that row j < out.len() of `k` (j·stride .. j·stride + q.len()) lies inside `k`.
    unsafe { dots_impl(q, k, stride, out) }
}

fn wsum_f32(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
    crate::scalar::check_strided(out.len(), v.len(), stride, w.len());
    // SAFETY: as above, with the rows of `v` for j < w.len().
    unsafe { wsum_impl(out, w, v, stride) }
}

fn dots_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    crate::scalar::check_strided(q.len(), k.len(), stride, out.len());
    // SAFETY: as in `dots_f32`.
    unsafe { dots_impl(q, k, stride, out) }
}

fn wsum_f16(out: &mut [f32], w: &[f32], v: &[u16], stride: usize) {
    crate::scalar::check_strided(out.len(), v.len(), stride, w.len());
    // SAFETY: as in `wsum_f32`.
    unsafe { wsum_impl(out, w, v, stride) }
}

fn dots_q8_0(q: &[f32], k: &[BlockQ8_0], stride: usize, out: &mut [f32]) {
    let nb = crate::scalar::q8_0_blocks(q.len());
    crate::scalar::check_strided(nb, k.len(), stride, out.len());
    // SAFETY: installed only after AVX2, FMA and F16C were detected; `q` is `nb` whole blocks
    // and `check_strided` asserted that blocks j·stride .. j·stride + nb lie inside `k` for
    // every j < out.len().
    unsafe { dots_q8_0_impl(q, k, stride, out) }
}

fn wsum_q8_0(out: &mut [f32], w: &[f32], v: &[BlockQ8_0], stride: usize) {
    let nb = crate::scalar::q8_0_blocks(out.len());
    crate::scalar::check_strided(nb, v.len(), stride, w.len());
    // SAFETY: as in `dots_q8_0`, with `out` and the rows of `v` for j < w.len().
    unsafe { wsum_q8_0_impl(out, w, v, stride) }
}

fn store_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "store_f16: {} values into {} halves", src.len(), dst.len());
    // SAFETY: installed only after AVX2, FMA and F16C were detected; the lengths are equal.
    unsafe { store_f16_impl(src, dst) }
}

/// An element of a cache row: f32, or f16 as raw bits (widened by F16C).
trait CacheValue: Copy {
    /// The 8 values at `p` as f32.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `p .. p + 8` is readable.
    unsafe fn load8(p: *const Self) -> __m256;

    /// The value at `p` as f32.
    ///
    /// # Safety
    /// As `load8`, for one value.
    unsafe fn load1(p: *const Self) -> f32;
}

impl CacheValue for f32 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(p: *const f32) -> __m256 {
        // SAFETY: the caller upholds the `# Safety` contract of the trait.
        unsafe { _mm256_loadu_ps(p) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load1(p: *const f32) -> f32 {
        // SAFETY: as above.
        unsafe { *p }
    }
}

impl CacheValue for u16 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(p: *const u16) -> __m256 {
        // SAFETY: the caller upholds the `# Safety` contract of the trait (16 bytes).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load1(p: *const u16) -> f32 {
        // SAFETY: as above.
        unsafe { f16_to_f32(*p) }
    }
}

/// A row's 16 contract lanes (`scalar::lane_dot`) as lanes 0–7 and 8–15: whole chunks of 16 in
/// two registers, a half chunk into the first, the last values (length mod 8) fused into
/// their lanes one by one.
///
/// # Safety
/// The CPU has the enabled target features; the pointers cover every value it reads (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn row_lanes<T: CacheValue>(q: &[f32], r: *const T) -> (__m256, __m256) {
    // SAFETY: the caller upholds the `# Safety` contract above; every load covers values
    // i .. i + 8 < q.len() of the row.
    unsafe {
        let n = q.len();
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), T::load8(r.add(i)), lo);
            hi = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i + 8)), T::load8(r.add(i + 8)), hi);
            i += 16;
        }
        if i + 8 <= n {
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), T::load8(r.add(i)), lo);
            i += 8;
        }
        if i < n {
            let mut l = [0f32; 16];
            _mm256_storeu_ps(l.as_mut_ptr(), lo);
            _mm256_storeu_ps(l.as_mut_ptr().add(8), hi);
            for (j, x) in q.iter().enumerate().skip(i) {
                l[j % 16] = x.mul_add(T::load1(r.add(j)), l[j % 16]);
            }
            (lo, hi) = (_mm256_loadu_ps(l.as_ptr()), _mm256_loadu_ps(l.as_ptr().add(8)));
        }
        (lo, hi)
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_impl<T: CacheValue>(q: &[f32], k: &[T], stride: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let n = out.len();
        let base = k.as_ptr();
        let mut j = 0;
        while j + 4 <= n {
            let l: [(__m256, __m256); 4] = std::array::from_fn(|u| row_lanes(q, base.add((j + u) * stride)));
            let s = crate::x86::sum_lanes4(l.map(|l| l.0), l.map(|l| l.1));
            _mm_storeu_ps(out.as_mut_ptr().add(j), s);
            j += 4;
        }
        while j < n {
            let (lo, hi) = row_lanes(q, base.add(j * stride));
            out[j] = crate::x86::sum_lanes(lo, hi);
            j += 1;
        }
    }
}

/// Outputs `o .. o + 8·V` over every key, in the contract's two accumulators per output
/// (`scalar::pair_wsum`): even keys from the outputs, odd keys from 0, added at the end.
///
/// # Safety
/// The CPU has the enabled target features; `o .. o + 8·V` lies inside the output and
/// `base + j·stride .. + 8·V` inside the values for every j < w.len().
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn wsum_chunk<T: CacheValue, const V: usize>(o: *mut f32, w: &[f32], base: *const T, stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut even: [__m256; V] = std::array::from_fn(|u| _mm256_loadu_ps(o.add(8 * u)));
        let mut odd = [_mm256_setzero_ps(); V];
        let mut pairs = w.chunks_exact(2);
        let mut r = base;
        for p in &mut pairs {
            let (b0, b1) = (_mm256_set1_ps(p[0]), _mm256_set1_ps(p[1]));
            for u in 0..V {
                even[u] = _mm256_fmadd_ps(b0, T::load8(r.add(8 * u)), even[u]);
                odd[u] = _mm256_fmadd_ps(b1, T::load8(r.add(stride + 8 * u)), odd[u]);
            }
            r = r.add(2 * stride);
        }
        if let [wj] = pairs.remainder() {
            let b = _mm256_set1_ps(*wj);
            for (u, e) in even.iter_mut().enumerate() {
                *e = _mm256_fmadd_ps(b, T::load8(r.add(8 * u)), *e);
            }
        }
        for u in 0..V {
            _mm256_storeu_ps(o.add(8 * u), _mm256_add_ps(even[u], odd[u]));
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn wsum_impl<T: CacheValue>(out: &mut [f32], w: &[f32], v: &[T], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above; every chunk covers outputs
    // inside `out.len()`.
    unsafe {
        let d = out.len();
        let base = v.as_ptr();
        let o = out.as_mut_ptr();
        let mut i = 0;
        // 32 outputs (4 registers, twice) at a time over every key, then 8, then one by one.
        while i + 32 <= d {
            wsum_chunk::<T, 4>(o.add(i), w, base.add(i), stride);
            i += 32;
        }
        while i + 8 <= d {
            wsum_chunk::<T, 1>(o.add(i), w, base.add(i), stride);
            i += 8;
        }
        for (i, o) in out.iter_mut().enumerate().skip(i) {
            let (mut even, mut odd) = (*o, 0f32);
            for (j, &wj) in w.iter().enumerate() {
                let x = T::load1(base.add(j * stride + i));
                if j % 2 == 0 {
                    even = wj.mul_add(x, even);
                } else {
                    odd = wj.mul_add(x, odd);
                }
            }
            *o = even + odd;
        }
    }
}

/// Values `8i .. 8i + 8` of a q8_0 block as f32 (`vpmovsxbd` + `vcvtdq2ps`).
///
/// # Safety
/// The CPU has the enabled target features; `i < 4`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q8_values(b: &BlockQ8_0, i: usize) -> __m256 {
    // SAFETY: bytes 8i .. 8i + 8 lie inside the block's 32 (i < 4, by the caller).
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(b.qs.as_ptr().add(8 * i) as *const __m128i))) }
}

/// One block's query products in the contract's 16 lanes (`scalar::dots_q8_0`), as lanes 0–7
/// (values 0–7 and 16–23) and 8–15 (values 8–15 and 24–31): `fma(q_hi, k_hi, q_lo·k_lo)`.
///
/// # Safety
/// The CPU has the enabled target features.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q8_block_dot(q: &[__m256; 4], b: &BlockQ8_0) -> (__m256, __m256) {
    // SAFETY: the caller upholds the `# Safety` contract above; i < 4.
    unsafe {
        let lo = _mm256_fmadd_ps(q[2], q8_values(b, 2), _mm256_mul_ps(q[0], q8_values(b, 0)));
        let hi = _mm256_fmadd_ps(q[3], q8_values(b, 3), _mm256_mul_ps(q[1], q8_values(b, 1)));
        (lo, hi)
    }
}

/// 4 keys per pass: each block of `q` is loaded once for the 4 rows, each row's block sums
/// are scaled into its own two accumulators, and the 4 rows are reduced together.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_q8_0_impl(q: &[f32], k: &[BlockQ8_0], stride: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (n, nb) = (out.len(), q.len() / QK);
        let base = k.as_ptr();
        let qv = |b: usize| -> [__m256; 4] { std::array::from_fn(|i| _mm256_loadu_ps(q.as_ptr().add(QK * b + 8 * i))) };
        let mut j = 0;
        while j + 4 <= n {
            let r: [*const BlockQ8_0; 4] = std::array::from_fn(|u| base.add((j + u) * stride));
            let (mut lo, mut hi) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
            for b in 0..nb {
                let qb = qv(b);
                for u in 0..4 {
                    let blk = &*r[u].add(b);
                    let (l, h) = q8_block_dot(&qb, blk);
                    let d = _mm256_set1_ps(f16_to_f32(blk.d));
                    lo[u] = _mm256_fmadd_ps(l, d, lo[u]);
                    hi[u] = _mm256_fmadd_ps(h, d, hi[u]);
                }
            }
            _mm_storeu_ps(out.as_mut_ptr().add(j), crate::x86::sum_lanes4(lo, hi));
            j += 4;
        }
        while j < n {
            let r = base.add(j * stride);
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for b in 0..nb {
                let blk = &*r.add(b);
                let (l, h) = q8_block_dot(&qv(b), blk);
                let d = _mm256_set1_ps(f16_to_f32(blk.d));
                lo = _mm256_fmadd_ps(l, d, lo);
                hi = _mm256_fmadd_ps(h, d, hi);
            }
            out[j] = crate::x86::sum_lanes(lo, hi);
            j += 1;
        }
    }
}

/// One block of outputs (4 registers) at a time over every key, in the contract's even and odd
/// accumulators (`scalar::wsum_q8_0`): `fma(w_j·d_jb, qs, ·)`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn wsum_q8_0_impl(out: &mut [f32], w: &[f32], v: &[BlockQ8_0], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let nb = out.len() / QK;
        let base = v.as_ptr();
        for b in 0..nb {
            let o = out.as_mut_ptr().add(QK * b);
            let mut acc: [[__m256; 4]; 2] =
                [std::array::from_fn(|i| _mm256_loadu_ps(o.add(8 * i))), [_mm256_setzero_ps(); 4]];
            for (j, &wj) in w.iter().enumerate() {
                let blk = &*base.add(j * stride + b);
                let s = _mm256_set1_ps(wj * f16_to_f32(blk.d));
                let a = &mut acc[j % 2];
                for (i, a) in a.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(s, q8_values(blk, i), *a);
                }
            }
            for (i, (e, d)) in acc[0].iter().zip(&acc[1]).enumerate() {
                _mm256_storeu_ps(o.add(8 * i), _mm256_add_ps(*e, *d));
            }
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_f16_impl(src: &[f32], dst: &mut [u16]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut i = 0;
        while i + 8 <= src.len() {
            // `vcvtps2ph` rounding to nearest even, with the bits of `f32_to_f16` for every
            // input (NaNs quieted with their payload's top bits; tested).
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
            i += 8;
        }
        for (h, &v) in dst[i..].iter_mut().zip(&src[i..]) {
            *h = crate::types::f32_to_f16(v);
        }
    }
}
