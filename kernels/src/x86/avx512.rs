//! AVX-512 (F, BW, VL) with VNNI (the `avx512` table, on top of `avx2`'s).
//!
//! The bodies shared with AVX2 (`common.rs`) are compiled here with VNNI, where the 8-bit
//! product-sum is one `vpdpbusd` (`dot_u8i8`): `quantize_act`, the f16/f32 row dots and the
//! byte-coded types' dots come from them. The legacy types' row dots and tiles run on 512-bit
//! registers, two 32-value blocks per register, one `vpdpbusd` (64 unsigned × signed byte
//! products) per block pair.
//!
//! `vpdpbusd` multiplies unsigned weights by signed activations, so signed weights are made
//! unsigned and the offset is folded into the accumulator's start value: `q4_0` nibbles are
//! used as they are (0..15, true value q − 8) and `q8_0` bytes are flipped to q + 128; the
//! accumulator starts at −8·Σa (or −128·Σa) in the first lane of each block, which makes each
//! block's lane sum the exact integer dot product. Per block pair the scale vector is
//! `[d_w0·d_a0 ×8, d_w1·d_a1 ×8]`; `q4_1`'s minimum term `m·(d_a·Σa)` goes to a second
//! accumulator of the same shape.
//!
//! The row dot (`vec_dot_*`, decode) and the register tiles (`gemm_*` below 16 tokens) run
//! exactly the same per-(row, token) operations, so they agree bit for bit (tested); from 16
//! tokens `gemm_wide` puts tokens in lanes (see there).

use std::arch::x86_64::*;

use crate::exp::{exp, LN2_HI, LN2_LO, LOG2E, MAX_X, MIN_X, P};
use crate::interleave::GroupBlock;
use crate::types::{Block, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, QK};
use ymm::{dots_q4_k, dots_q5_0, dots_q5_1, dots_q5_k, dots_q6_k, quantize_act, vec_dot_f16, vec_dot_f32};

plug!(crate::table::Isa::Avx512, available: crate::x86::has, [
    quantize_act, vec_dot_q4_0, vec_dot_q4_1, vec_dot_q8_0, vec_dot_f16, vec_dot_f32,
    gemm_q4_0, gemm_q4_1, gemm_q8_0, gemm_q4_0x16, gemm_q4_1x16, gemm_q8_0x16,
    dots_q5_0, dots_q5_1, dots_q4_k, dots_q5_k, dots_q6_k, exp_f32,
    dots_f16, wsum_f16, dots_q8_0, wsum_q8_0,
]);

/// The shared 256-bit bodies with VNNI. Their legacy row dots and tiles are superseded by the
/// 512-bit ones below.
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

    kernel_bodies!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", rows: 4, tokens: 4, byte_tokens: 16);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f16(bits: u16) -> f32 {
    crate::x86::f16_to_f32(bits)
}

/// `[a ×8, b ×8]`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn pair_ps(a: f32, b: f32) -> __m512 {
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(_mm512_set1_ps(a)), _mm256_castps_pd(_mm256_set1_ps(b))))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn pair_si(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Weights of one block pair of one row, ready for every token.
#[derive(Clone, Copy)]
struct WPair {
    /// 64 unsigned bytes (block b in the low 256 bits, b + 1 in the high).
    x: __m512i,
    /// `[d_w0 ×8, d_w1 ×8]`.
    dw: __m512,
    /// `q4_1` minimums `[m0 ×8, m1 ×8]` (0 for other types).
    m: __m512,
}

/// Activations of one block pair of one token, for one weight type.
#[derive(Clone, Copy)]
struct APair {
    y: __m512i,
    da: __m512,
    /// The accumulator's start: −OFFSET·Σa in the first lane of each block.
    start: __m512i,
    /// `[d_a0·Σa0 ×8, d_a1·Σa1 ×8]` (for the `q4_1` minimum term).
    dsum: __m512,
}

/// Offset the unsigned weight bytes carry.
const fn offset(t: DType) -> i32 {
    match t {
        DType::Q4_0 => 8,
        DType::Q8_0 => 128,
        _ => 0,
    }
}

/// The 32 values of one weight block as unsigned bytes (value + offset); nibbles as in the
/// activation order: values 0–15 in the low 128 bits, 16–31 in the high.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn block_u8<B: Block>(b: &B) -> __m256i {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        if B::DTYPE == DType::Q8_0 {
            _mm256_xor_si256(_mm256_loadu_si256(b.qs() as *const __m256i), _mm256_set1_epi8(-128))
        } else {
            let v = _mm_loadu_si128(b.qs() as *const __m128i);
            let m = _mm_set1_epi8(0x0F);
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(v), m), _mm_and_si128(v, m))
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn load_pair<B: Block>(b0: &B, b1: Option<&B>) -> WPair {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let (hi, d1, m1) = match b1 {
            Some(b) => (block_u8(b), f16(b.d()), f16(b.m())),
            None => (_mm256_setzero_si256(), 0.0, 0.0),
        };
        WPair { x: pair_si(block_u8(b0), hi), dw: pair_ps(f16(b0.d()), d1), m: pair_ps(f16(b0.m()), m1) }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn load_act<B: Block>(a0: &BlockQ8A, a1: Option<&BlockQ8A>) -> APair {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let y0 = _mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i);
        let (y1, d1, s1) = match a1 {
            Some(a) => (_mm256_loadu_si256(a.qs.as_ptr() as *const __m256i), a.d, a.sum),
            None => (_mm256_setzero_si256(), 0.0, 0),
        };
        let o = offset(B::DTYPE);
        let start = _mm512_setr_epi32(-o * a0.sum, 0, 0, 0, 0, 0, 0, 0, -o * s1, 0, 0, 0, 0, 0, 0, 0);
        APair { y: pair_si(y0, y1), da: pair_ps(a0.d, d1), start, dsum: pair_ps(a0.d * a0.sum as f32, d1 * s1 as f32) }
    }
}

/// One block pair of one (row, token): `acc += lanes(x·y − OFFSET·Σy) · (d_w·d_a)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn step<B: Block>(w: &WPair, a: &APair, acc: __m512, acc_m: &mut __m512) -> __m512 {
    let p = _mm512_dpbusd_epi32(a.start, w.x, a.y);
    if B::DTYPE == DType::Q4_1 {
        // Each block's m·d·Σa in all 8 of its lanes: a second, independent accumulator.
        *acc_m = _mm512_fmadd_ps(w.m, a.dsum, *acc_m);
    }
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(w.dw, a.da), acc)
}

/// Row `w` (nb blocks) × token `a` (nb blocks).
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot<B: Block>(w: &[B], a: &[BlockQ8A]) -> f32 {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut acc = _mm512_setzero_ps();
        let mut acc_m = _mm512_setzero_ps();
        let mut b = 0;
        // Whole pairs, then the odd block: per pair the operations of `tile`, without a branch
        // per pair.
        while b + 2 <= w.len() {
            let wp = load_pair(&w[b], Some(&w[b + 1]));
            let ap = load_act::<B>(&a[b], Some(&a[b + 1]));
            acc = step::<B>(&wp, &ap, acc, &mut acc_m);
            b += 2;
        }
        if b < w.len() {
            let wp = load_pair(&w[b], None);
            let ap = load_act::<B>(&a[b], None);
            acc = step::<B>(&wp, &ap, acc, &mut acc_m);
        }
        _mm512_reduce_add_ps(acc) + min_term(acc_m)
    }
}

/// The `q4_1` minimum term: lanes 0 (even blocks) and 8 (odd blocks) of its accumulator.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn min_term(acc_m: __m512) -> f32 {
    _mm512_cvtss_f32(acc_m) + _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(acc_m))
}

/// R rows × T tokens into `out[t * out_stride + r]`; rows start at `w[r * nb]`, tokens at
/// `a[t * nb]`. Each loaded weight pair serves T tokens, each activation pair R rows.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn tile<B: Block, const R: usize, const T: usize>(
    w: &[B],
    a: &[BlockQ8A],
    nb: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let mut acc_m = [[_mm512_setzero_ps(); T]; R];
        let mut b = 0;
        while b < nb {
            let two = b + 1 < nb;
            let mut wp = [WPair { x: _mm512_setzero_si512(), dw: _mm512_setzero_ps(), m: _mm512_setzero_ps() }; R];
            for (r, p) in wp.iter_mut().enumerate() {
                let row = &w[r * nb..];
                *p = load_pair(&row[b], if two { Some(&row[b + 1]) } else { None });
            }
            for t in 0..T {
                let col = &a[t * nb..];
                let ap = load_act::<B>(&col[b], if two { Some(&col[b + 1]) } else { None });
                for r in 0..R {
                    acc[r][t] = step::<B>(&wp[r], &ap, acc[r][t], &mut acc_m[r][t]);
                }
            }
            b += 2;
        }
        for r in 0..R {
            for t in 0..T {
                out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]) + min_term(acc_m[r][t]);
            }
        }
    }
}

/// Tile shape: rows × tokens per register block. 2 × 4 measured fastest on SmolLM2 prefill
/// (1 thread, pp128: 2×4 462 t/s; 4×2 370; 4×4 385; 2×8 431; 3×4 367; 6×2 322).
const TILE_R: usize = 2;
const TILE_T: usize = 4;

/// The whole rows × tokens product in TILE_R × TILE_T tiles (remainders in smaller tiles).
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm<B: Block>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let rows = w.len() / nb;
        let toks = a.len() / nb;
        macro_rules! sweep {
            ($t:expr, $T:expr) => {{
                let mut r = 0;
                while r + TILE_R <= rows {
                    tile::<B, TILE_R, { $T }>(&w[r * nb..], &a[$t * nb..], nb, &mut out[$t * rows + r..], rows);
                    r += TILE_R;
                }
                while r < rows {
                    tile::<B, 1, { $T }>(&w[r * nb..], &a[$t * nb..], nb, &mut out[$t * rows + r..], rows);
                    r += 1;
                }
            }};
        }
        let mut t = 0;
        while t + TILE_T <= toks {
            sweep!(t, TILE_T);
            t += TILE_T;
        }
        while t < toks {
            sweep!(t, 1);
            t += 1;
        }
    }
}

// ---- prefill with tokens in lanes ----------------------------------------------------------
//
// For 16 or more tokens, activations are packed once per call so that a register holds one
// 4-byte group of a block for 16 tokens (lane = token); each weight row then streams its blocks
// once per 16 tokens: 8 `vpdpbusd` with the row's 4-byte groups broadcast cover 16 tokens × 32
// values. The offset correction and scales are 16-token vectors. These sums run in another
// order than the row dot, so prefill and decode agree within f32 rounding (tested), and results
// still do not depend on the thread count.

/// Tokens per lane group.
const LANES: usize = 16;

/// Activations of 16 tokens for every block: `qs[b][k]` = lane t holds bytes 4k..4k+4 of token
/// t's block b; `da`, `start` (−OFFSET·Σa) and `dsum` (d·Σa) as 16-lane vectors per block.
struct Packed {
    qs: Vec<__m512i>,
    da: Vec<__m512>,
    start: Vec<__m512i>,
    dsum: Vec<__m512>,
}

thread_local! {
    static PACKED: std::cell::RefCell<Packed> =
        const { std::cell::RefCell::new(Packed { qs: Vec::new(), da: Vec::new(), start: Vec::new(), dsum: Vec::new() }) };
}

/// Packs tokens `t0..t0 + n` (n ≤ 16; missing lanes are zero) of `a` (`nb` blocks per token).
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pack<B: Block>(a: &[BlockQ8A], nb: usize, t0: usize, n: usize, p: &mut Packed) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let stride = (nb * std::mem::size_of::<BlockQ8A>()) as i32;
        let lanes = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(stride),
        );
        let mask: __mmask16 = if n >= LANES { 0xFFFF } else { (1u16 << n) - 1 };
        let off = _mm512_set1_epi32(-offset(B::DTYPE));
        p.qs.clear();
        p.da.clear();
        p.start.clear();
        p.dsum.clear();
        for b in 0..nb {
            // All indices stay inside `a`: lane t < n reads token t0 + t, block b (masked lanes
            // read nothing).
            let base = a.as_ptr().add(t0 * nb + b) as *const u8;
            for k in 0..8 {
                p.qs.push(_mm512_mask_i32gather_epi32::<1>(
                    _mm512_setzero_si512(),
                    mask,
                    lanes,
                    base.add(8 + 4 * k) as *const i32,
                ));
            }
            let d = _mm512_mask_i32gather_ps::<1>(_mm512_setzero_ps(), mask, lanes, base as *const f32);
            let sum = _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), mask, lanes, base.add(4) as *const i32);
            p.da.push(d);
            p.start.push(_mm512_mullo_epi32(sum, off));
            p.dsum.push(_mm512_mul_ps(d, _mm512_cvtepi32_ps(sum)));
        }
    }
}

/// Where a lane group's results go: `out[(t0 + t) * rows + r]` for t < n.
struct LaneOut<'a> {
    out: &'a mut [f32],
    rows: usize,
    t0: usize,
    n: usize,
}

/// R rows (starting at row `r0` of `w`) × the 16 packed tokens. R independent accumulator
/// chains hide the latency of `vpdpbusd`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
#[allow(clippy::needless_range_loop)] // k indexes both the packed activations and the rows' groups
unsafe fn rows_x16<B: Block, const R: usize>(w: &[B], nb: usize, r0: usize, p: &Packed, o: &mut LaneOut<'_>) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut tmp = [[0i32; 8]; R];
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..nb {
            let mut i = [p.start[b]; R];
            for r in 0..R {
                let blk = &w[(r0 + r) * nb + b];
                _mm256_storeu_si256(tmp[r].as_mut_ptr() as *mut __m256i, block_u8(blk));
            }
            for k in 0..8 {
                let a = p.qs[8 * b + k];
                for r in 0..R {
                    i[r] = _mm512_dpbusd_epi32(i[r], _mm512_set1_epi32(tmp[r][k]), a);
                }
            }
            for r in 0..R {
                let blk = &w[(r0 + r) * nb + b];
                let scale = _mm512_mul_ps(p.da[b], _mm512_set1_ps(f16(blk.d())));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[r]), scale, acc[r]);
                if B::DTYPE == DType::Q4_1 {
                    acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(f16(blk.m())), p.dsum[b], acc[r]);
                }
            }
        }
        let mut res = [0f32; LANES];
        for (r, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(res.as_mut_ptr(), *v);
            for (t, x) in res.iter().enumerate().take(o.n) {
                o.out[(o.t0 + t) * o.rows + r0 + r] = *x;
            }
        }
    }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_wide<B: Block>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let rows = w.len() / nb;
        let toks = a.len() / nb;
        PACKED.with(|cell| {
            let mut p = cell.borrow_mut();
            let mut t0 = 0;
            while t0 < toks {
                let n = LANES.min(toks - t0);
                pack::<B>(a, nb, t0, n, &mut p);
                let mut o = LaneOut { out: &mut *out, rows, t0, n };
                let mut r = 0;
                while r + 4 <= rows {
                    rows_x16::<B, 4>(w, nb, r, &p, &mut o);
                    r += 4;
                }
                while r < rows {
                    rows_x16::<B, 1>(w, nb, r, &p, &mut o);
                    r += 1;
                }
                t0 += n;
            }
        });
    }
}

// ---- 16-row interleaved matrices: rows in lanes ----------------------------------------------
//
// A group block's quant bytes load as 512-bit registers with 4 bytes of each of the 16 rows
// (`interleave`); made unsigned (nibbles as they are, q8 bytes + 128) they meet 4 activation
// bytes broadcast from memory, so 8 `vpdpbusd` give the 16 rows' exact block sums for one token
// without packing, shuffles or horizontal sums. The weights of a block are unpacked once for up
// to X16_TOKENS tokens.

/// Tokens per pass over a group's blocks.
const X16_TOKENS: usize = 4;

/// The 8 unsigned 512-bit pieces of group block `blk` (piece i meets activation bytes 4i..4i+4)
/// and the offset they carry.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn unpack16<B: GroupBlock>(blk: &B) -> [__m512i; 8] {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let q = blk.qs().as_ptr();
        let mut x = [_mm512_setzero_si512(); 8];
        if B::DTYPE == DType::Q8_0 {
            for (i, x) in x.iter_mut().enumerate() {
                // SAFETY (caller): a q8_0 group block holds 8 pieces of 64 bytes.
                *x = _mm512_xor_si512(_mm512_loadu_si512(q.add(64 * i) as *const _), _mm512_set1_epi8(-128));
            }
        } else {
            let m = _mm512_set1_epi8(0x0F);
            for j in 0..4 {
                // SAFETY (caller): a q4 group block holds 4 pieces of 64 bytes.
                let v = _mm512_loadu_si512(q.add(64 * j) as *const _);
                x[j] = _mm512_and_si512(v, m);
                x[4 + j] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m);
            }
        }
        x
    }
}

/// 16 rows (group blocks `w[..nb]`) × T tokens (`a[t * nb..]`) into `out[t * stride..][..16]`.
///
/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn group_x<B: GroupBlock, const T: usize>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let off = match B::DTYPE {
            DType::Q4_0 => -8,
            DType::Q8_0 => -128,
            _ => 0,
        };
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, blk) in w[..nb].iter().enumerate() {
            let x = unpack16(blk);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.d().as_ptr() as *const __m256i));
            let m = blk.m().map(|m| _mm512_cvtph_ps(_mm256_loadu_si256(m.as_ptr() as *const __m256i)));
            for t in 0..T {
                let ab = &a[t * nb + b];
                let q = ab.qs.as_ptr() as *const i32;
                let mut i = _mm512_set1_epi32(off * ab.sum);
                for (k, x) in x.iter().enumerate() {
                    // SAFETY: k < 8 and an activation block holds 32 bytes.
                    i = _mm512_dpbusd_epi32(i, *x, _mm512_set1_epi32(q.add(k).read_unaligned()));
                }
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(d, _mm512_set1_ps(ab.d)), acc[t]);
                if let Some(m) = m {
                    acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(ab.d * ab.sum as f32), acc[t]);
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
unsafe fn gemm_x16<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let groups = w.len() / nb;
        let toks = a.len() / nb;
        let rows = 16 * groups;
        for g in 0..groups {
            let wg = &w[g * nb..(g + 1) * nb];
            let mut t = 0;
            while t + X16_TOKENS <= toks {
                group_x::<B, X16_TOKENS>(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
                t += X16_TOKENS;
            }
            while t < toks {
                group_x::<B, 1>(wg, &a[t * nb..], nb, &mut out[t * rows + 16 * g..], rows);
                t += 1;
            }
        }
    }
}

// ---- safe entry points, installed by `plug` only after AVX-512 F/BW/VL/VNNI were detected ----

x16_entries!(gemm_x16);
dot_entries!(vec_dot_q4_0(BlockQ4_0, BlockQ8A) => dot, vec_dot_q4_1(BlockQ4_1, BlockQ8A) => dot, vec_dot_q8_0(BlockQ8_0, BlockQ8A) => dot);

macro_rules! entries {
    ($gemm:ident, $blk:ty) => {
        fn $gemm(w: &[$blk], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            assert!(nb > 0 && w.len() % nb == 0 && a.len() % nb == 0 && out.len() >= (w.len() / nb) * (a.len() / nb));
            assert!(nb * std::mem::size_of::<BlockQ8A>() * LANES < i32::MAX as usize);
            // SAFETY: `plug` runs only after `x86::has` detected every feature these
            // functions enable; the lengths are checked here (gather offsets fit in i32).
            unsafe {
                if a.len() / nb >= LANES {
                    gemm_wide(w, a, nb, out)
                } else {
                    gemm(w, a, nb, out)
                }
            }
        }
    };
}

entries!(gemm_q4_0, BlockQ4_0);
entries!(gemm_q4_1, BlockQ4_1);
entries!(gemm_q8_0, BlockQ8_0);

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

// ---- attention over f16 and q8_0 caches ----------------------------------------------------------
//
// 16 values per register. f16 rows widen with `vcvtph2ps`; a row's tail (length mod 16) is read
// with a masked load, which touches no memory in the masked-off lanes, so rows of any length
// need no scalar tail and no padding. q8_0 rows widen 16 bytes at a time with `vpmovsxbd` +
// `vcvtdq2ps`; a block's product with the query (2 registers) is scaled by its f16 scale into
// the key's accumulator. Scores: 4 keys per pass, each query register loaded once for the 4,
// the 4 accumulators reduced together. Weighted sums: up to 128 outputs in registers across all
// keys, in two accumulator sets (even and odd keys) so that consecutive keys' multiply-adds
// do not wait on each other; the sets are added at the end. Sums run in another order than
// the scalar twins (within f32 rounding of Σ|terms|, tested).

fn dots_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    crate::scalar::check_strided(q.len(), k.len(), stride, out.len());
    // SAFETY: installed only after AVX-512 F/BW/VL (and AVX2/F16C) were detected;
    // `check_strided` asserted that row j < out.len() of `k` (j·stride .. j·stride + q.len())
    // lies inside `k`.
    unsafe { dots_f16_impl(q, k, stride, out) }
}

fn wsum_f16(out: &mut [f32], w: &[f32], v: &[u16], stride: usize) {
    crate::scalar::check_strided(out.len(), v.len(), stride, w.len());
    // SAFETY: as in `dots_f16`, with the rows of `v` for j < w.len().
    unsafe { wsum_f16_impl(out, w, v, stride) }
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

/// The lane sums of 4 vectors, in order.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn hsum4_512(a: [__m512; 4]) -> __m128 {
    let h: [__m256; 4] = std::array::from_fn(|u| {
        _mm256_add_ps(
            _mm512_castps512_ps256(a[u]),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a[u]))),
        )
    });
    let t = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t))
}

/// Values `i .. i + 16` of an f16 row (lanes outside `m` read nothing and are 0).
///
/// # Safety
/// The CPU has the enabled target features; the lanes of `m` lie inside the row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn f16x16(p: *const u16, m: __mmask16) -> __m512 {
    // SAFETY: the caller upholds the `# Safety` contract above; a masked load reads only the
    // lanes of `m`.
    unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16)) }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every value it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dots_f16_impl(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
    // SAFETY: the caller upholds the `# Safety` contract above; every load below covers lanes
    // i .. i + 16 of a row only where they are < q.len() (full chunks, then the tail's mask).
    unsafe {
        let (n, hd) = (out.len(), q.len());
        let base = k.as_ptr();
        let (full, tail) = (hd / 16 * 16, lanes(hd % 16));
        let mut j = 0;
        while j + 4 <= n {
            let r: [*const u16; 4] = std::array::from_fn(|u| base.add((j + u) * stride));
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i < full {
                let qv = _mm512_loadu_ps(q.as_ptr().add(i));
                for u in 0..4 {
                    acc[u] = _mm512_fmadd_ps(qv, f16x16(r[u].add(i), 0xFFFF), acc[u]);
                }
                i += 16;
            }
            if tail != 0 {
                let qv = _mm512_maskz_loadu_ps(tail, q.as_ptr().add(i));
                for u in 0..4 {
                    acc[u] = _mm512_fmadd_ps(qv, f16x16(r[u].add(i), tail), acc[u]);
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
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(q.as_ptr().add(i)), f16x16(r.add(i), 0xFFFF), acc);
                i += 16;
            }
            if tail != 0 {
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q.as_ptr().add(i)), f16x16(r.add(i), tail), acc);
            }
            out[j] = _mm512_reduce_add_ps(acc);
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
unsafe fn wsum_f16_chunk<const V: usize>(
    out: &mut [f32],
    i0: usize,
    last: __mmask16,
    w: &[f32],
    v: &[u16],
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
                    acc[s][u] = _mm512_fmadd_ps(b, f16x16(r.add(16 * u), m(u)), acc[s][u]);
                }
            }
            j += 2;
        }
        if let [wj] = pairs.remainder() {
            let r = base.add(j * stride);
            for u in 0..V {
                acc[0][u] = _mm512_fmadd_ps(_mm512_set1_ps(*wj), f16x16(r.add(16 * u), m(u)), acc[0][u]);
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
unsafe fn wsum_f16_impl(out: &mut [f32], w: &[f32], v: &[u16], stride: usize) {
    // SAFETY: the caller upholds the `# Safety` contract above; each chunk covers outputs
    // inside `out.len()` (its last register masked to the values left).
    unsafe {
        let d = out.len();
        let mut i = 0;
        while i + 128 <= d {
            wsum_f16_chunk::<8>(out, i, 0xFFFF, w, v, stride);
            i += 128;
        }
        let regs = (d - i).div_ceil(16);
        let last = lanes(d - i - 16 * regs.saturating_sub(1));
        match regs {
            0 => {}
            1 => wsum_f16_chunk::<1>(out, i, last, w, v, stride),
            2 => wsum_f16_chunk::<2>(out, i, last, w, v, stride),
            3 => wsum_f16_chunk::<3>(out, i, last, w, v, stride),
            4 => wsum_f16_chunk::<4>(out, i, last, w, v, stride),
            5 => wsum_f16_chunk::<5>(out, i, last, w, v, stride),
            6 => wsum_f16_chunk::<6>(out, i, last, w, v, stride),
            7 => wsum_f16_chunk::<7>(out, i, last, w, v, stride),
            _ => wsum_f16_chunk::<8>(out, i, last, w, v, stride),
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
            out[j] = _mm512_reduce_add_ps(acc);
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
