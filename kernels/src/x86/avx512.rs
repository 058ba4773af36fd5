//! AVX-512 (F, BW, VL) with VNNI (the `avx512` table, on top of `avx2`'s).
//!
//! The bodies shared with AVX2 (`common.rs`) are compiled here with VNNI, where the 8-bit
//! product-sum is one `vpdpbusd` (`dot_u8i8`): `quantize_act`, the f16/f32 row dots, the
//! row-major legacy dots and tiles, and the byte-coded types' dots come from them. The 16-row
//! interleaved matrices, `exp` and attention run on 512-bit registers below. Every kernel
//! follows the numerical contract (docs/NUMERICS.md), so results are the scalar twins' bits.

use std::arch::x86_64::*;

use crate::exp::{exp, LN2_HI, LN2_LO, LOG2E, MAX_X, MIN_X, P};
use crate::interleave::{BlockQ6Kx16, GroupBlock, KGroupBlock};
use crate::types::{BlockQ8A, BlockQ8_0, DType, QK};
use ymm::{dots_q4_k, dots_q5_0, dots_q5_1, dots_q5_k, dots_q6_k, quantize_act, vec_dot_f16, vec_dot_f32};
use ymm::{gemm_q4_0, gemm_q4_1, gemm_q8_0, vec_dot_q4_0, vec_dot_q4_1, vec_dot_q8_0};
use ymm::{rows_q4_k, rows_q5_0, rows_q5_1, rows_q5_k, rows_q6_k};

plug!(crate::table::Isa::Avx512, available: crate::x86::has, [
    quantize_act, vec_dot_q4_0, vec_dot_q4_1, vec_dot_q8_0, vec_dot_f16, vec_dot_f32,
    gemm_q4_0, gemm_q4_1, gemm_q8_0, gemm_q4_0x16, gemm_q4_1x16, gemm_q8_0x16, gemm_q5_0x16, gemm_q5_1x16,
    gemm_q4_kx16, gemm_q5_kx16, gemm_q6_kx16,
    dots_q5_0, dots_q5_1, dots_q4_k, dots_q5_k, dots_q6_k, exp_f32,
    rows_q5_0, rows_q5_1, rows_q4_k, rows_q5_k, rows_q6_k,
    dots_f32, wsum_f32, dots_f16, wsum_f16, dots_q8_0, wsum_q8_0,
]);

/// The shared 256-bit bodies with VNNI.
#[allow(dead_code)]
mod ymm {
    use std::arch::x86_64::*;

    use crate::types::{BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, QK};

    /// Σ u·s over groups of 4 (unsigned × signed bytes) → 8 × i32 in one `vpdpbusd`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    /// The 32 fifth bits of `qh` (bit j for value j) as bytes: 0x10 where set, else 0 (one
    /// masked move: the bits are the mask).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn high_bits_32(qh: u32) -> __m256i {
        _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10))
    }

    kernel_bodies!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", rows: 4, tokens: 4, byte_tokens: 16);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f16(bits: u16) -> f32 {
    crate::x86::f16_to_f32(bits)
}

// ---- 16-row interleaved matrices: rows in lanes ----------------------------------------------
//
// A group block's quant bytes load as 512-bit registers with 4 bytes of each of the 16 rows
// (`interleave`); made unsigned (nibbles as they are, q8 bytes + 128) they meet 4 activation
// bytes broadcast from memory, so 8 `vpdpbusd` give the 16 rows' exact block sums for one token
// without packing, shuffles or horizontal sums. The weights of a block are unpacked once for up
// to X16_TOKENS tokens: 8 accumulators, 8 weight pieces and the scales fit the 32 registers, and
// a server step of 8 streams unpacks them once. Against 4-token passes the gain was within this
// host's noise (BENCHMARKS.md "Serving").

/// Tokens per pass over a group's blocks.
const X16_TOKENS: usize = 8;

/// Every group of 16 rows (`nw` group blocks each) × every token: `$pass::<…, T>(group's
/// blocks, tokens from t, nb, out from (t, row 16g), stride)` in passes of `X16_TOKENS` tokens,
/// then 4, 2 and 1, so that 7 tokens unpack the weights 3 times, not 7.
macro_rules! groups_x16 {
    ($pass:ident $(<$($g:ty),*>)?, $w:expr, $a:expr, $nb:expr, $nw:expr, $out:expr) => {{
        let (w, a, nb, nw, out) = ($w, $a, $nb, $nw, $out);
        let (toks, groups) = (a.len() / nb, w.len() / nw);
        let rows = 16 * groups;
        for g in 0..groups {
            let wg = &w[g * nw..(g + 1) * nw];
            let mut t = 0;
            while t + X16_TOKENS <= toks {
                $pass::<$($($g,)*)? X16_TOKENS>(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
                t += X16_TOKENS;
            }
            if t + 4 <= toks {
                $pass::<$($($g,)*)? 4>(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
                t += 4;
            }
            if t + 2 <= toks {
                $pass::<$($($g,)*)? 2>(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
                t += 2;
            }
            if t < toks {
                $pass::<$($($g,)*)? 1>(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
            }
        }
    }};
}

/// The 64-byte piece at `p`; with `halves` as two 256-bit loads joined in one register (see
/// `decode_x`).
///
/// # Safety
/// The caller's target features include AVX-512 F; `p .. p + 64` is readable.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn load_piece(p: *const u8, halves: bool) -> __m512i {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        if halves {
            let lo = _mm256_loadu_si256(p as *const __m256i);
            let hi = _mm256_loadu_si256(p.add(32) as *const __m256i);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        } else {
            _mm512_loadu_si512(p as *const _)
        }
    }
}

/// The 8 unsigned 512-bit pieces of group block `blk` (piece i meets activation bytes 4i..4i+4);
/// they carry the offset `B::OFFSET`. `halves`: as `load_piece`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn unpack16<B: GroupBlock>(blk: &B, halves: bool) -> [__m512i; 8] {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let q = blk.qs().as_ptr();
        let mut x = [_mm512_setzero_si512(); 8];
        if B::DTYPE == DType::Q8_0 {
            for (i, x) in x.iter_mut().enumerate() {
                // SAFETY (caller): a q8_0 group block holds 8 pieces of 64 bytes.
                *x = _mm512_xor_si512(load_piece(q.add(64 * i), halves), _mm512_set1_epi8(-128));
            }
        } else {
            let m = _mm512_set1_epi8(0x0F);
            for j in 0..4 {
                // SAFETY (caller): a q4/q5 group block holds 4 pieces of 64 bytes.
                let v = load_piece(q.add(64 * j), halves);
                x[j] = _mm512_and_si512(v, m);
                x[4 + j] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m);
                if let Some(qh) = blk.qh() {
                    // q5: the piece's masks are byte masks of these registers; +16 where set.
                    let five = _mm512_set1_epi8(0x10);
                    let (lo, hi) = (crate::interleave::qh_mask(qh, j, false), crate::interleave::qh_mask(qh, j, true));
                    x[j] = _mm512_mask_add_epi8(x[j], lo, x[j], five);
                    x[4 + j] = _mm512_mask_add_epi8(x[4 + j], hi, x[4 + j], five);
                }
            }
        }
        x
    }
}

/// `init[t]` plus Σ_k piece `x[k]` · token t's activation word k, for T tokens side by side:
/// T independent `vpdpbusd` chains, piece by piece (one token's 8 in a row wait on each
/// other's latency): 2–3 % faster 64-token q4_0/q8_0 GEMMs on Zen 5 (the K kernels' sub-block
/// loops measured 3 % faster for q4_k, 8 % slower for q5_k, so they keep a chain per token).
/// One token (decode) has no other chain beside it: `dot1` splits its 8 in two.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dots<const T: usize>(x: &[__m512i; 8], ab: &[&BlockQ8A; T], mut init: [__m512i; T]) -> [__m512i; T] {
    for (k, x) in x.iter().enumerate() {
        for (i, ab) in init.iter_mut().zip(ab) {
            // SAFETY: k < 8 and an activation block holds 32 bytes.
            let w = unsafe { (ab.qs.as_ptr() as *const i32).add(k).read_unaligned() };
            *i = _mm512_dpbusd_epi32(*i, *x, _mm512_set1_epi32(w));
        }
    }
    init
}

/// `init` plus Σ_k piece `x[k]` · the token's activation word k, for one token: two chains
/// (even and odd pieces), so that decode's 8 `vpdpbusd` per sub-block do not wait on each
/// other's latency one by one (exact: integer sums in any order).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot1(x: &[__m512i; 8], ab: &BlockQ8A, init: __m512i) -> __m512i {
    let qa = ab.qs.as_ptr() as *const i32;
    let mut i = [init, _mm512_setzero_si512()];
    for (k, x) in x.iter().enumerate() {
        // SAFETY: k < 8 and an activation block holds 32 bytes.
        let w = unsafe { qa.add(k).read_unaligned() };
        i[k % 2] = _mm512_dpbusd_epi32(i[k % 2], *x, _mm512_set1_epi32(w));
    }
    _mm512_add_epi32(i[0], i[1])
}

/// 16 rows (group blocks `w[..nb]`) × T tokens (`a[t * nb..]`) into `out[t * stride..][..16]`.
/// One token goes to `decode_x`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn group_x<B: GroupBlock, const T: usize>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        if T == 1 {
            return decode_x(w, a, nb, out);
        }
        let off = B::OFFSET;
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, blk) in w[..nb].iter().enumerate() {
            // A pass of several tokens waits on each block it reads first; one-token decode
            // (`decode_x`) measured no better with it (BENCHMARKS.md, issue 23).
            crate::x86::prefetch_block(blk);
            let x = unpack16(blk, false);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.d().as_ptr() as *const __m256i));
            let m = blk.m().map(|m| _mm512_cvtph_ps(_mm256_loadu_si256(m.as_ptr() as *const __m256i)));
            let ab: [&BlockQ8A; T] = std::array::from_fn(|t| &a[t * nb + b]);
            let i = dots(&x, &ab, ab.map(|ab| _mm512_set1_epi32(off * ab.sum)));
            for t in 0..T {
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[t]), _mm512_mul_ps(d, _mm512_set1_ps(ab[t].d)), acc[t]);
                if let Some(m) = m {
                    acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(ab[t].d * ab[t].sum as f32), acc[t]);
                }
            }
        }
        for (t, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out[t * stride..][..16].as_mut_ptr(), *v);
        }
    }
}

/// `group_x` for one token (decode), streaming the matrix: each block's scales first, then its
/// pieces as 256-bit halves (`load_piece`), as AVX2 reads them. Those were first taken for q4_1
/// and q5_1, whose 64-byte pieces start on a cache line in every block; for q8_0 too they ran
/// 7 % faster from L3 (`gemv_q8_0x16`) and streamed the 1B shapes at 20.9–22.1 t/s against
/// 18.3–22.2 with one 512-bit load per piece (seven alternations on Zen 4), q4_0 and q5_0 the
/// same as before (BENCHMARKS.md, 2026-12-08). Loading the pieces first, one 512-bit
/// load per line, a q4_1 matrix larger than the cache decoded at 25 t/s on AMD Zen 4 where the
/// AVX2 kernel ran 31, with a third of the samples on each block's first piece; this order
/// and the halves read 32 (1B shapes; BENCHMARKS.md, issue 23): the hardware prefetchers seem
/// to follow the stream better so. Its own function, not `group_x`'s body for T = 1: that body
/// with the same order and halves read 24.8 t/s where this one read 31.9 (unexplained; the
/// loop carries `group_x`'s per-token arrays).
///
/// # Safety
/// As `group_x`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn decode_x<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut acc = _mm512_setzero_ps();
        for (blk, ab) in w[..nb].iter().zip(&a[..nb]) {
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.d().as_ptr() as *const __m256i));
            let m = blk.m().map(|m| _mm512_cvtph_ps(_mm256_loadu_si256(m.as_ptr() as *const __m256i)));
            let x = unpack16(blk, true);
            let i = dot1(&x, ab, _mm512_set1_epi32(B::OFFSET * ab.sum));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, _mm512_set1_ps(ab.d)), acc);
            if let Some(m) = m {
                acc = _mm512_fmadd_ps(m, _mm512_set1_ps(ab.d * ab.sum as f32), acc);
            }
        }
        _mm512_storeu_ps(out[..16].as_mut_ptr(), acc);
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_x16<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        groups_x16!(group_x<B>, w, a, nb, nb, out);
    }
}

// ---- interleaved q4_k / q5_k: rows in lanes, one 32-value sub-block at a time --------------------
//
// The three scale pieces load as 16 lanes of 32 bits (a row's 12 packed scale bytes in 3
// registers), so each sub-block's 6-bit scale and min come out of shifts and masks per lane,
// and the contract's `d·sc` and `dmin·m` are two f32 products per lane. A sub-block's 8 nibble
// pieces (and q5_k's 8 fifth-bit pieces, bit `j` of each byte: one `vptestmb` gives the byte
// mask for a masked add of 16) meet each token's 8 broadcast activation words in 8 `vpdpbusd`.

/// Sub-block `j`'s (scale, min) of the 16 rows from the scale pieces `s` (`scale_min_k4` per
/// lane: bytes 0–3 of a row in `s[0]`, 4–7 in `s[1]`, 8–11 in `s[2]`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn scale_min_x16(s: &[__m512i; 3], j: usize) -> (__m512i, __m512i) {
    let sr = |v: __m512i, n: usize| _mm512_srlv_epi32(v, _mm512_set1_epi32(n as i32));
    let mask = |v: __m512i, m: i32| _mm512_and_si512(v, _mm512_set1_epi32(m));
    if j < 4 {
        (mask(sr(s[0], 8 * j), 63), mask(sr(s[1], 8 * j), 63))
    } else {
        let j = j - 4;
        let top = |v: __m512i| _mm512_slli_epi32::<4>(mask(sr(v, 8 * j + 6), 3));
        (
            _mm512_or_si512(mask(sr(s[2], 8 * j), 15), top(s[0])),
            _mm512_or_si512(mask(sr(s[2], 8 * j + 4), 15), top(s[1])),
        )
    }
}

/// 16 rows (group blocks `w[..nb / 8]`) × T tokens (`a[t * nb..]`) into `out[t * stride..][..16]`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn kgroup_x<B: KGroupBlock, const T: usize>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let sign = _mm512_set1_epi32(i32::MIN);
        let (low, five) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x10));
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.d().as_ptr() as *const __m256i));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(blk.dmin().as_ptr() as *const __m256i));
            let sp = blk.scales().as_ptr();
            // SAFETY (caller): the scales hold 3 pieces of 64 bytes.
            let s = [0, 1, 2].map(|p| _mm512_loadu_si512(sp.add(64 * p) as *const _));
            for j in 0..8 {
                if T > 1 {
                    // Passes of several tokens: an eighth of the block four ahead into L2 per
                    // sub-block (as the q6_k decode; 8 sequences on 1B shapes, q4_k, Zen 4:
                    // 41–46 → 63–66 t/s). One-token decode reads these blocks in memory
                    // order and measured slower with it (BENCHMARKS.md).
                    crate::x86::prefetch_next(blk, j, 8, crate::x86::PREFETCH_AHEAD);
                }
                let (sc, m) = scale_min_x16(&s, j);
                let dsc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
                // −(dmin·m): the product's sign flipped, as the scalar twin's negation.
                let ndm = _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(_mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m))),
                    sign,
                ));
                let q = blk.qs().as_ptr().add(64 * 8 * (j / 2));
                let mut x = [_mm512_setzero_si512(); 8];
                for (k, x) in x.iter_mut().enumerate() {
                    // SAFETY (caller): qs holds 32 pieces of 64 bytes; 8·(j/2) + k < 32.
                    let v = _mm512_loadu_si512(q.add(64 * k) as *const _);
                    *x = if j % 2 == 0 {
                        _mm512_and_si512(v, low)
                    } else {
                        _mm512_and_si512(_mm512_srli_epi16::<4>(v), low)
                    };
                    if let Some(qh) = blk.qh() {
                        // SAFETY (caller): qh holds 8 pieces of 64 bytes.
                        let h = _mm512_loadu_si512(qh.as_ptr().add(64 * k) as *const _);
                        // Bit j of each byte to bit 4 (a 16-bit shift brings no other byte's
                        // bit there), or'd onto the nibble.
                        let moved = if j <= 4 {
                            _mm512_sll_epi16(h, _mm_cvtsi32_si128(4 - j as i32))
                        } else {
                            _mm512_srl_epi16(h, _mm_cvtsi32_si128(j as i32 - 4))
                        };
                        *x = _mm512_or_si512(*x, _mm512_and_si512(moved, five));
                    }
                }
                for t in 0..T {
                    let ab = &a[t * nb + 8 * b + j];
                    // One chain per token beside other tokens' (`dots`), two alone (`dot1`).
                    let i = match T {
                        1 => dot1(&x, ab, _mm512_setzero_si512()),
                        _ => dots(&x, &[ab], [_mm512_setzero_si512()])[0],
                    };
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dsc, _mm512_set1_ps(ab.d)), acc[t]);
                    acc[t] = _mm512_fmadd_ps(ndm, _mm512_set1_ps(ab.d * ab.sum as f32), acc[t]);
                }
            }
        }
        for (t, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out[t * stride..][..16].as_mut_ptr(), *v);
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_kx16<B: KGroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        groups_x16!(kgroup_x<B>, w, a, nb, nb / 8, out);
    }
}

// ---- interleaved q6_k ------------------------------------------------------------------------------
//
// Per 32-value activation block: 8 `ql` pieces (one nibble each) with 8 `qh` pieces (two bits
// each, moved to bits 4–5 by one shift) make the unsigned 6-bit values 0..63; `vpdpbusd` sums
// each 16-value half separately, the −32 offset comes off as −32 × the half's activation sum,
// and the two signed 8-bit half scales (sign-extended per lane from the scale pieces) are
// applied in integers (exact), as the scalar twin: then one FMA.

/// Sub-block `sb`'s two signed 8-bit half scales (scales `2sb`, `2sb + 1`) of each of the 16
/// rows, sign-extended to 32 bits: one load each (the group block keeps a scale's 16 rows side
/// by side).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn q6_scales(blk: &BlockQ6Kx16, sb: usize) -> (__m512i, __m512i) {
    // SAFETY: `scale(j)` is 16 bytes.
    let at = |j: usize| unsafe { _mm512_cvtepi8_epi32(_mm_loadu_si128(blk.scale(j).as_ptr() as *const __m128i)) };
    (at(2 * sb), at(2 * sb + 1))
}

/// One token's exact integer sum for a sub-block of 16 rows: Σ over both halves of scale ·
/// (value − 32) · activation, from the unsigned values `x` (pieces 0–3 the first half, 4–7 the
/// second), the token's block `ab` and the half scales `sc`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn q6_sum(x: &[__m512i; 8], ab: &BlockQ8A, sc: (__m512i, __m512i)) -> __m512i {
    let qa = ab.qs.as_ptr() as *const i32;
    // Two chains per half (integer sums: the order does not matter), so that the four
    // `vpdpbusd` of a half are not one chain of their latencies.
    let mut i = [_mm512_setzero_si512(); 4];
    for k in 0..4 {
        // SAFETY: k + 4 < 8 and an activation block holds 32 bytes.
        let (y0, y1) = unsafe { (qa.add(k).read_unaligned(), qa.add(k + 4).read_unaligned()) };
        i[k % 2] = _mm512_dpbusd_epi32(i[k % 2], x[k], _mm512_set1_epi32(y0));
        i[2 + k % 2] = _mm512_dpbusd_epi32(i[2 + k % 2], x[k + 4], _mm512_set1_epi32(y1));
    }
    let (i0, i1) = (_mm512_add_epi32(i[0], i[1]), _mm512_add_epi32(i[2], i[3]));
    let a0 = crate::x86::sum16(&ab.qs);
    let s0 = _mm512_sub_epi32(i0, _mm512_set1_epi32(32 * a0));
    let s1 = _mm512_sub_epi32(i1, _mm512_set1_epi32(32 * (ab.sum - a0)));
    _mm512_add_epi32(_mm512_mullo_epi32(sc.0, s0), _mm512_mullo_epi32(sc.1, s1))
}

/// 16 rows (group blocks `w[..nb / 8]`) × T tokens (`a[t * nb..]`) into `out[t * stride..][..16]`.
/// One token goes to `q6decode_x`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn q6group_x<const T: usize>(w: &[BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        if T == 1 {
            return q6decode_x(w, a, nb, out);
        }
        let (low, high) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.d.as_ptr() as *const __m256i));
            // SAFETY (all loads below): the runs hold 8 pieces of 64 bytes; the piece indices
            // stay inside them.
            for i in 0..8 {
                // As in `kgroup_x`: an eighth of the block four ahead into L2 per sub-block.
                crate::x86::prefetch_next(blk, i, 8, crate::x86::PREFETCH_AHEAD);
                let (n, k) = (i / 4, i % 4);
                let sc = q6_scales(blk, i);
                let ql = blk.ql(2 * n + (k & 1)).as_ptr();
                let qh = blk.qh(n).as_ptr();
                let mut x = [_mm512_setzero_si512(); 8];
                for (kk, x) in x.iter_mut().enumerate() {
                    let v = _mm512_loadu_si512(ql.add(64 * kk) as *const _);
                    let lo =
                        if k < 2 { _mm512_and_si512(v, low) } else { _mm512_and_si512(_mm512_srli_epi16::<4>(v), low) };
                    let h = _mm512_loadu_si512(qh.add(64 * kk) as *const _);
                    // Bits 2k, 2k + 1 of each byte to bits 4, 5 (no 16-bit shift here brings
                    // another byte's bits there).
                    let moved = if 2 * k <= 4 {
                        _mm512_sll_epi16(h, _mm_cvtsi32_si128(4 - 2 * k as i32))
                    } else {
                        _mm512_srl_epi16(h, _mm_cvtsi32_si128(2 * k as i32 - 4))
                    };
                    *x = _mm512_or_si512(lo, _mm512_and_si512(moved, high));
                }
                for (t, acc) in acc.iter_mut().enumerate() {
                    let ab = &a[t * nb + 8 * b + i];
                    let sum = q6_sum(&x, ab, sc);
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, _mm512_set1_ps(ab.d)), *acc);
                }
            }
        }
        for (t, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out[t * stride..][..16].as_mut_ptr(), *v);
        }
    }
}

/// Group blocks ahead for the q6_k decode's prefetch (`x86::prefetch_next`): two, where the
/// other decodes take four (1B shapes, AMD Zen 4, one thread: 23.5–25.5 t/s against 21.1–22.0).
const Q6_DECODE_AHEAD: usize = 2;

/// `q6group_x` for one token (decode), streaming the matrix: sub-blocks k and k + 2 of each
/// half n read the same `ql` bytes (low and high nibbles) and `qh` bytes (bits 2k, 2k + 1 and
/// 2k + 4, 2k + 5), so one pass unpacks both. Sub-block 2's exact sum waits until sub-block 1's
/// FMA, so the FMAs run in sub-block order, as the scalar twin's. The group block's pieces lie
/// in this read order (`BlockQ6Kx16`; in row order decode ran up to 6 % slower on 1B shapes). It
/// prefetches the block two ahead (`Q6_DECODE_AHEAD`) into L2 in eighths in memory order
/// (`prefetch_next`), one eighth before each sub-block's product (without it decode ran at half
/// the speed even in read order, on AMD Zen 4); issued two at a time at a pass's start, decode
/// ran a third slower.
/// On Llama-3.2-1B shapes it decodes 13 % faster than a pass per sub-block (BENCHMARKS.md).
///
/// # Safety
/// As `q6group_x`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn q6decode_x(w: &[BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = _mm512_setzero_ps();
        for (b, blk) in w[..nb / 8].iter().enumerate() {
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.d.as_ptr() as *const __m256i));
            // SAFETY (all loads below): as in `q6group_x`.
            let fma = |acc: __m512, sum: __m512i, i: usize| {
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, _mm512_set1_ps(a[8 * b + i].d)), acc)
            };
            for n in 0..2 {
                let mut held = _mm512_setzero_si512();
                for k in 0..2 {
                    crate::x86::prefetch_next(blk, 4 * n + 2 * k, 8, Q6_DECODE_AHEAD);
                    let ql = blk.ql(2 * n + k).as_ptr();
                    let qh = blk.qh(n).as_ptr();
                    let mut x = [[_mm512_setzero_si512(); 8]; 2];
                    let [x0, x2] = &mut x;
                    // Bits 2k, 2k + 1 (sub-block k) and 2k + 4, 2k + 5 (sub-block k + 2) of
                    // each `qh` byte.
                    let keep = _mm512_set1_epi8((0x33u8 << (2 * k)) as i8);
                    for (kk, (x0, x2)) in x0.iter_mut().zip(x2.iter_mut()).enumerate() {
                        let v = _mm512_loadu_si512(ql.add(64 * kk) as *const _);
                        let h = _mm512_and_si512(_mm512_loadu_si512(qh.add(64 * kk) as *const _), keep);
                        // Shifted 16 bits at a time, the kept pairs land on bits 4, 5 with zeros
                        // above them; whatever lands on bits 0–3 is replaced by the nibble
                        // (`vpternlogd` 0xE4: the nibble where `low` is set, else the bits).
                        let (h0, h2) = (
                            _mm512_sll_epi16(h, _mm_cvtsi32_si128(4 - 2 * k as i32)),
                            _mm512_srl_epi16(h, _mm_cvtsi32_si128(2 * k as i32)),
                        );
                        *x0 = _mm512_ternarylogic_epi32::<0xE4>(v, h0, low);
                        *x2 = _mm512_ternarylogic_epi32::<0xE4>(_mm512_srli_epi16::<4>(v), h2, low);
                    }
                    // Sub-block k.
                    acc = fma(acc, q6_sum(&x[0], &a[8 * b + 4 * n + k], q6_scales(blk, 4 * n + k)), 4 * n + k);
                    if k == 1 {
                        acc = fma(acc, held, 4 * n + 2);
                    }
                    // Sub-block k + 2.
                    crate::x86::prefetch_next(blk, 4 * n + 2 * k + 1, 8, Q6_DECODE_AHEAD);
                    let sum = q6_sum(&x[1], &a[8 * b + 4 * n + k + 2], q6_scales(blk, 4 * n + k + 2));
                    if k == 0 {
                        held = sum;
                    } else {
                        acc = fma(acc, sum, 4 * n + 3);
                    }
                }
            }
        }
        _mm512_storeu_ps(out[..16].as_mut_ptr(), acc);
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_q6x16(w: &[BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        groups_x16!(q6group_x, w, a, nb, nb / 8, out);
    }
}

// ---- safe entry points, installed by `plug` only after AVX-512 F/BW/VL/VNNI were detected ----

x16_entries!(gemm_x16);
x16_entries!(k: gemm_kx16);
x16_entries!(@ gemm_q6x16, gemm_q6_kx16: BlockQ6Kx16);
// ---- e^x -----------------------------------------------------------------------------------------

fn exp_f32(x: &mut [f32]) {
    // SAFETY: installed only after AVX-512 F was detected; as above with chunks of 16.
    unsafe { exp16(x) }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx512f")]
unsafe fn exp16(x: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            let v = _mm512_loadu_ps(c.as_ptr());
            let xc = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(MIN_X)), _mm512_set1_ps(MAX_X));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
                xc,
                _mm512_set1_ps(LOG2E),
                _mm512_set1_ps(0.5),
            ));
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), xc);
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
            let z = _mm512_mul_ps(r, r);
            let mut p = _mm512_set1_ps(P[0]);
            for c in &P[1..] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
            }
            let y = _mm512_add_ps(_mm512_fmadd_ps(p, z, r), _mm512_set1_ps(1.0));
            let ni = _mm512_cvttps_epi32(n);
            let h = _mm512_srai_epi32::<1>(ni);
            let bias = _mm512_set1_epi32(127);
            let s1 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_sub_epi32(ni, h), bias)));
            let s2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(h, bias)));
            let mut res = _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
            res = _mm512_mask_blend_ps(
                _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_set1_ps(MIN_X)),
                res,
                _mm512_setzero_ps(),
            );
            res = _mm512_mask_blend_ps(
                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_set1_ps(MAX_X)),
                res,
                _mm512_set1_ps(f32::INFINITY),
            );
            res = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v), res, v);
            _mm512_storeu_ps(c.as_mut_ptr(), res);
        }
        chunks.into_remainder().iter_mut().for_each(|v| *v = exp(*v));
    }
}

// ---- attention over f32, f16 and q8_0 caches ------------------------------------------------------
//
// 16 values per register. f32 rows load as they are, f16 rows widen with `vcvtph2ps` (one
// generic body for both); a row's tail (length mod 16) is read
// with a masked load, which touches no memory in the masked-off lanes, so rows of any length
// need no scalar tail and no padding. q8_0 rows widen 16 bytes at a time with `vpmovsxbd` +
// `vcvtdq2ps`; a block's product with the query (2 registers) is scaled by its f16 scale into
// the key's accumulator. Scores: 4 keys per pass, each query register loaded once for the 4,
// the 4 accumulators reduced together. Weighted sums: up to 128 outputs in registers across all
// keys, in two accumulator sets (even and odd keys) so that consecutive keys' multiply-adds
// do not wait on each other; the sets are added at the end. This is the numerical contract's
// order (docs/NUMERICS.md: 16 lanes, `sum_lanes`, `pair_wsum`), so the results are the scalar
// twins' bits (tested).

fn dots_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    crate::scalar::check_strided(q.len(), k.len(), stride, out.len());
    // SAFETY: installed only after AVX-512 F/BW/VL (and AVX2/F16C) were detected;
    // `check_strided` asserted that row j < out.len() of `k` (j·stride .. j·stride + q.len())
    // lies inside `k`.
    unsafe { dots_impl(q, k, stride, out) }
}

fn wsum_f16(out: &mut [f32], w: &[f32], v: &[u16], stride: usize) {
    crate::scalar::check_strided(out.len(), v.len(), stride, w.len());
    // SAFETY: as in `dots_f16`, with the rows of `v` for j < w.len().
    unsafe { wsum_impl(out, w, v, stride) }
}

fn dots_f32(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
    crate::scalar::check_strided(q.len(), k.len(), stride, out.len());
    // SAFETY: as in `dots_f16`.
    unsafe { dots_impl(q, k, stride, out) }
}

fn wsum_f32(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
    crate::scalar::check_strided(out.len(), v.len(), stride, w.len());
    // SAFETY: as in `wsum_f16`.
    unsafe { wsum_impl(out, w, v, stride) }
}

fn dots_q8_0(q: &[f32], k: &[BlockQ8_0], stride: usize, out: &mut [f32]) {
    let nb = crate::scalar::q8_0_blocks(q.len());
    crate::scalar::check_strided(nb, k.len(), stride, out.len());
    // SAFETY: features detected before `plug`; `q` is `nb` whole blocks and `check_strided`
    // asserted that blocks j·stride .. j·stride + nb lie inside `k` for every j < out.len().
    unsafe { dots_q8_0_impl(q, k, stride, out) }
}

fn wsum_q8_0(out: &mut [f32], w: &[f32], v: &[BlockQ8_0], stride: usize) {
    let nb = crate::scalar::q8_0_blocks(out.len());
    crate::scalar::check_strided(nb, v.len(), stride, w.len());
    // SAFETY: as in `dots_q8_0`, with `out` and the rows of `v` for j < w.len().
    unsafe { wsum_q8_0_impl(out, w, v, stride) }
}

/// The mask of the first `n` of 16 lanes (n ≤ 16).
#[inline]
fn lanes(n: usize) -> __mmask16 {
    (((1u32 << n) - 1) & 0xFFFF) as __mmask16
}

/// Lanes 0–7 and 8–15 of a register.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn halves(a: __m512) -> (__m256, __m256) {
    (_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a))))
}

/// The contract's lane sums (`scalar::sum_lanes`) of one register.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn hsum_512(a: __m512) -> f32 {
    let (lo, hi) = halves(a);
    crate::x86::sum_lanes(lo, hi)
}

/// The contract's lane sums of 4 registers, in order.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn hsum4_512(a: [__m512; 4]) -> __m128 {
    let h = a.map(|v| halves(v));
    crate::x86::sum_lanes4(h.map(|h| h.0), h.map(|h| h.1))
}

/// An element of a cache row: f32, or f16 as raw bits (widened on load).
trait CacheValue: Copy {
    /// The 16 values at `p` as f32 (lanes outside `m` read nothing and are 0).
    ///
    /// # Safety
    /// The CPU has the features of this file's kernels; the lanes of `m` lie inside the row.
    unsafe fn x16(p: *const Self, m: __mmask16) -> __m512;
}

impl CacheValue for u16 {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn x16(p: *const u16, m: __mmask16) -> __m512 {
        // SAFETY: the caller upholds the trait's `# Safety` contract; a masked load reads only
        // the lanes of `m`.
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16)) }
    }
}

impl CacheValue for f32 {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn x16(p: *const f32, m: __mmask16) -> __m512 {
        // SAFETY: as for `u16`.
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every value it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dots_impl<T: CacheValue>(q: &[f32], k: &[T], stride: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above; every load below covers lanes
    // i .. i + 16 of a row only where they are < q.len() (full chunks, then the tail's mask).
    unsafe {
        let (n, hd) = (out.len(), q.len());
        let base = k.as_ptr();
        let (full, tail) = (hd / 16 * 16, lanes(hd % 16));
        let mut j = 0;
        while j + 4 <= n {
            let r: [*const T; 4] = std::array::from_fn(|u| base.add((j + u) * stride));
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i < full {
                let qv = _mm512_loadu_ps(q.as_ptr().add(i));
                for u in 0..4 {
                    acc[u] = _mm512_fmadd_ps(qv, T::x16(r[u].add(i), 0xFFFF), acc[u]);
                }
                i += 16;
            }
            if tail != 0 {
                let qv = _mm512_maskz_loadu_ps(tail, q.as_ptr().add(i));
                for u in 0..4 {
                    acc[u] = _mm512_fmadd_ps(qv, T::x16(r[u].add(i), tail), acc[u]);
                }
            }
            _mm_storeu_ps(out.as_mut_ptr().add(j), hsum4_512(acc));
            j += 4;
        }
        while j < n {
            let r = base.add(j * stride);
            let mut acc = _mm512_setzero_ps();
            let mut i = 0;
            while i < full {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(q.as_ptr().add(i)), T::x16(r.add(i), 0xFFFF), acc);
                i += 16;
            }
            if tail != 0 {
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q.as_ptr().add(i)), T::x16(r.add(i), tail), acc);
            }
            out[j] = hsum_512(acc);
            j += 1;
        }
    }
}

/// Outputs `i0 .. i0 + 16·V` (the last register masked by `last`) over every key.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every value it reads or writes (the
/// caller checks the lengths; the lanes written lie inside `out` and every row).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
#[allow(clippy::needless_range_loop)] // u indexes the accumulators, the rows' registers and the masks
unsafe fn wsum_chunk<T: CacheValue, const V: usize>(
    out: &mut [f32],
    i0: usize,
    last: __mmask16,
    w: &[f32],
    v: &[T],
    stride: usize,
) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let m = |u: usize| if u + 1 == V { last } else { 0xFFFF };
        let o = out.as_mut_ptr().add(i0);
        let base = v.as_ptr().add(i0);
        let mut acc = [[_mm512_setzero_ps(); V]; 2];
        for u in 0..V {
            acc[0][u] = _mm512_maskz_loadu_ps(m(u), o.add(16 * u));
        }
        let mut pairs = w.chunks_exact(2);
        let mut j = 0;
        for p in &mut pairs {
            for (s, &wj) in p.iter().enumerate() {
                let r = base.add((j + s) * stride);
                let b = _mm512_set1_ps(wj);
                for u in 0..V {
                    acc[s][u] = _mm512_fmadd_ps(b, T::x16(r.add(16 * u), m(u)), acc[s][u]);
                }
            }
            j += 2;
        }
        if let [wj] = pairs.remainder() {
            let r = base.add(j * stride);
            for u in 0..V {
                acc[0][u] = _mm512_fmadd_ps(_mm512_set1_ps(*wj), T::x16(r.add(16 * u), m(u)), acc[0][u]);
            }
        }
        for u in 0..V {
            _mm512_mask_storeu_ps(o.add(16 * u), m(u), _mm512_add_ps(acc[0][u], acc[1][u]));
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every value it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn wsum_impl<T: CacheValue>(out: &mut [f32], w: &[f32], v: &[T], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above; each chunk covers outputs
    // inside `out.len()` (its last register masked to the values left).
    unsafe {
        let d = out.len();
        let mut i = 0;
        while i + 128 <= d {
            wsum_chunk::<T, 8>(out, i, 0xFFFF, w, v, stride);
            i += 128;
        }
        let regs = (d - i).div_ceil(16);
        let last = lanes(d - i - 16 * regs.saturating_sub(1));
        match regs {
            0 => {}
            1 => wsum_chunk::<T, 1>(out, i, last, w, v, stride),
            2 => wsum_chunk::<T, 2>(out, i, last, w, v, stride),
            3 => wsum_chunk::<T, 3>(out, i, last, w, v, stride),
            4 => wsum_chunk::<T, 4>(out, i, last, w, v, stride),
            5 => wsum_chunk::<T, 5>(out, i, last, w, v, stride),
            6 => wsum_chunk::<T, 6>(out, i, last, w, v, stride),
            7 => wsum_chunk::<T, 7>(out, i, last, w, v, stride),
            _ => wsum_chunk::<T, 8>(out, i, last, w, v, stride),
        }
    }
}

/// Values `16h .. 16h + 16` of a q8_0 block as f32.
///
/// # Safety
/// The CPU has the enabled target features; `h < 2`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn q8x16(b: &BlockQ8_0, h: usize) -> __m512 {
    // SAFETY: bytes 16h .. 16h + 16 lie inside the block's 32 (h < 2, by the caller).
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.qs.as_ptr().add(16 * h) as *const __m128i))) }
}

/// Σ_i q_i · qs_i over one block as 16 lane sums (`q`: the block's 32 query values).
///
/// # Safety
/// The CPU has the enabled target features.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn q8_block_dot(q: [__m512; 2], b: &BlockQ8_0) -> __m512 {
    // SAFETY: the caller upholds the `# Safety` contract above; h < 2.
    unsafe { _mm512_fmadd_ps(q[1], q8x16(b, 1), _mm512_mul_ps(q[0], q8x16(b, 0))) }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dots_q8_0_impl(q: &[f32], k: &[BlockQ8_0], stride: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (n, nb) = (out.len(), q.len() / QK);
        let base = k.as_ptr();
        let qv =
            |b: usize| -> [__m512; 2] { std::array::from_fn(|h| _mm512_loadu_ps(q.as_ptr().add(QK * b + 16 * h))) };
        let mut j = 0;
        while j + 4 <= n {
            let r: [*const BlockQ8_0; 4] = std::array::from_fn(|u| base.add((j + u) * stride));
            let mut acc = [_mm512_setzero_ps(); 4];
            for b in 0..nb {
                let qb = qv(b);
                for (u, a) in acc.iter_mut().enumerate() {
                    let blk = &*r[u].add(b);
                    *a = _mm512_fmadd_ps(q8_block_dot(qb, blk), _mm512_set1_ps(f16(blk.d)), *a);
                }
            }
            _mm_storeu_ps(out.as_mut_ptr().add(j), hsum4_512(acc));
            j += 4;
        }
        while j < n {
            let r = base.add(j * stride);
            let mut acc = _mm512_setzero_ps();
            for b in 0..nb {
                let blk = &*r.add(b);
                acc = _mm512_fmadd_ps(q8_block_dot(qv(b), blk), _mm512_set1_ps(f16(blk.d)), acc);
            }
            out[j] = hsum_512(acc);
            j += 1;
        }
    }
}

/// Outputs of blocks `b0 .. b0 + B` over every key.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths; blocks b0 .. b0 + B lie inside `out` and every row).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
#[allow(clippy::needless_range_loop)] // b, h index both accumulator sets and the outputs
unsafe fn wsum_q8_0_chunk<const B: usize>(out: &mut [f32], b0: usize, w: &[f32], v: &[BlockQ8_0], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let o = out.as_mut_ptr().add(QK * b0);
        let base = v.as_ptr().add(b0);
        let mut acc = [[[_mm512_setzero_ps(); 2]; B]; 2];
        for b in 0..B {
            for h in 0..2 {
                acc[0][b][h] = _mm512_loadu_ps(o.add(QK * b + 16 * h));
            }
        }
        let step = |acc: &mut [[__m512; 2]; B], wj: f32, r: *const BlockQ8_0| {
            for (b, a) in acc.iter_mut().enumerate() {
                let blk = &*r.add(b);
                let s = _mm512_set1_ps(wj * f16(blk.d));
                a[0] = _mm512_fmadd_ps(s, q8x16(blk, 0), a[0]);
                a[1] = _mm512_fmadd_ps(s, q8x16(blk, 1), a[1]);
            }
        };
        let mut pairs = w.chunks_exact(2);
        let mut j = 0;
        for p in &mut pairs {
            step(&mut acc[0], p[0], base.add(j * stride));
            step(&mut acc[1], p[1], base.add((j + 1) * stride));
            j += 2;
        }
        if let [wj] = pairs.remainder() {
            step(&mut acc[0], *wj, base.add(j * stride));
        }
        for b in 0..B {
            for h in 0..2 {
                _mm512_storeu_ps(o.add(QK * b + 16 * h), _mm512_add_ps(acc[0][b][h], acc[1][b][h]));
            }
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn wsum_q8_0_impl(out: &mut [f32], w: &[f32], v: &[BlockQ8_0], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above; every chunk lies inside the
    // `out.len() / 32` blocks.
    unsafe {
        let nb = out.len() / QK;
        let mut b = 0;
        while b + 4 <= nb {
            wsum_q8_0_chunk::<4>(out, b, w, v, stride);
            b += 4;
        }
        match nb - b {
            3 => wsum_q8_0_chunk::<3>(out, b, w, v, stride),
            2 => wsum_q8_0_chunk::<2>(out, b, w, v, stride),
            1 => wsum_q8_0_chunk::<1>(out, b, w, v, stride),
            _ => {}
        }
    }
}
