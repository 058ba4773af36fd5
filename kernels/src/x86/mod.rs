//! x86-64 kernels, one module per ISA, each with one `plug`:
//! - `avx2`: AVX2 + FMA + F16C; signed 8-bit products through `vpmaddubsw` + `vpmaddwd`.
//! - `avx512`: AVX-512 F/BW/VL + VNNI on top of `avx2`'s table, where the product-sum is one
//!   `vpdpbusd`, the choice that matters for quantized dot products.
//!
//! `common.rs` holds the bodies both compile with their own features. The bodies are
//! `#[target_feature]` functions; the table slots are safe wrappers that are only installed
//! after `is_x86_feature_detected!` confirmed every feature the body needs.

use crate::table::{Isa, PlugFn};
use std::arch::x86_64::*;

#[macro_use]
mod common;
mod avx2;
mod avx512;

/// One f16 (raw bits) to f32 with F16C. The bits go in with `vmovd` from a general register,
/// which writes the whole vector register: built from intrinsics, LLVM inserts the 16 bits into
/// whatever register is at hand (`vpinsrw`), often the dot product's accumulator, and every
/// block's scale then waits for the previous block's multiply-add (measured: half the AVX2 row
/// dot's time).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_to_f32(bits: u16) -> f32 {
    let v: __m128i;
    // SAFETY: `vmovd` reads one general register and writes one vector register; no memory,
    // no stack, no flags. The caller's target features include AVX (the VEX encoding).
    unsafe {
        std::arch::asm!("vmovd {v}, {b:e}", v = out(xmm_reg) v, b = in(reg) bits as u32,
                        options(pure, nomem, nostack, preserves_flags));
    }
    _mm_cvtss_f32(_mm_cvtph_ps(v))
}

/// Group blocks between the block a decode step reads and the block `prefetch_next` fetches.
pub(crate) const PREFETCH_AHEAD: usize = 4;

/// Decode streams each matrix once: prefetch part `i` of `n` of the cache lines of the block
/// `ahead` blocks after `blk` (`PREFETCH_AHEAD` but for the AVX-512 q6_k decode), one part per
/// sub-block, into the L2 cache (`T1`). The hardware prefetchers do not follow the 16-row q6_k
/// blocks (3360 bytes) even in format 1.3's read order: without a prefetch q6_k decode of a model
/// larger than the cache runs at half the speed. Into L1 (`T0`) and one block ahead it ran at 53 %
/// of the read bandwidth; into L2 and four blocks ahead (13 KB, about half a microsecond of
/// decode) at 70 % on AMD Zen 5, because an L1 prefetch holds one of the core's few L1 miss
/// buffers for the whole memory latency (BENCHMARKS.md, "q6_k prefetch into L2"); on Zen 4 with
/// 2 MiB mappings two blocks ahead read 6–17 % faster than four for the AVX-512 q6_k decode (one
/// block: 20 % slower; three: no gain) and no differently for the others. All lines of a block at
/// once was slower; the q4_k / q5_k blocks, read in order, lost up to 8 % with the L1 form; the
/// AVX2 q4_k / q5_k decode (`avx2::kdecode_x16`, a quarter per sub-block pair) gained 41 % / 35 %
/// with this one on AMD Zen 3, where its compute per byte is higher than AVX-512's, and the
/// one-pass AVX2 q6_k decode uses it too. (The group kernels' small blocks, read in order, take
/// whole blocks into L2 in their passes of several tokens instead, `prefetch_block`; their
/// one-token decode has none.) The K-quant and q6_k passes of several tokens use it per
/// sub-block too (AVX2: the first half's pass), as a step of several sequences streams the
/// matrix once: 8 sequences on the 1B shapes, Zen 4, AVX-512 q6_k 25 → 54–58 t/s, q4_k and q5_k
/// +16–31 %, AVX2 −5 to +23 % (BENCHMARKS.md, "Serving"). Past the matrix the addresses may lie
/// outside it: prefetches never fault.
#[inline(always)]
pub(crate) fn prefetch_next<B>(blk: &B, i: usize, n: usize, ahead: usize) {
    let size = std::mem::size_of::<B>();
    let next = (blk as *const B as *const i8).wrapping_add(ahead * size);
    for line in (i * size / n..(i + 1) * size / n).step_by(64) {
        // SAFETY: a prefetch is a hint: it reads nothing into the program and never faults,
        // whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(line)) };
    }
}

/// Group blocks between the block a pass of several tokens reads and the block
/// `prefetch_block` fetches.
const BLOCKS_AHEAD: usize = 16;

/// All cache lines of the group block `BLOCKS_AHEAD` blocks after `blk`, into L2 (`T1`): for
/// the passes of several tokens that stream a matrix of small blocks in memory order — the
/// AVX2 first half-group pass and the AVX-512 group kernels' passes. (One-token decode of these
/// blocks runs faster without it: the hardware prefetchers follow the stream.) Without it an
/// 8-token step of 8 sequences waited on memory for every block of a model larger than the
/// cache (the weights are read once per step there, and once per group for a long prompt, whose
/// later passes find them in L1); with it, SmolLM2 `Q4_0` decoding 8 sequences ran about 10–15 %
/// faster on AMD Zen 4 with either ISA. Into L1 four blocks ahead (the first form) an L1 prefetch
/// held one of the core's few L1 miss buffers for the whole memory latency: into L2 and 12–24
/// blocks ahead, one thread decoding 8 sequences ran another 6–9 % (AVX2) and 8–12 % (AVX-512)
/// faster, two threads 2 % / 4 %, prompts unchanged (BENCHMARKS.md, "Serving"). Past the matrix
/// the addresses may lie outside it: prefetches never fault.
#[inline(always)]
pub(crate) fn prefetch_block<B>(blk: &B) {
    let size = std::mem::size_of::<B>();
    let next = (blk as *const B as *const i8).wrapping_add(BLOCKS_AHEAD * size);
    for line in (0..size).step_by(64) {
        // SAFETY: a prefetch is a hint: it reads nothing into the program and never faults,
        // whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(line)) };
    }
}

/// The sum of the first 16 of an activation block's bytes (a q6_k half's offset term): one
/// `psadbw` of the bytes + 128, less 16 · 128. Written out per token, the scalar sum cost a
/// sixth of the 16-row q6_k kernels (criterion, 2026-12-06).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn sum16(q: &[i8; 32]) -> i32 {
    // SAFETY: the load reads bytes 0..16 of `q`, which holds 32.
    let v = unsafe { _mm_loadu_si128(q.as_ptr() as *const __m128i) };
    let sad = _mm_sad_epu8(_mm_xor_si128(v, _mm_set1_epi8(-128)), _mm_setzero_si128());
    _mm_cvtsi128_si32(_mm_add_epi64(sad, _mm_unpackhi_epi64(sad, sad))) - 16 * 128
}

/// The contract's sum of 16 lanes (`scalar::sum_lanes`) given as lanes 0–7 and 8–15:
/// `h = lo + hi`, then the upper half of `h` onto the lower, twice, then lane 1 onto lane 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn sum_lanes(lo: __m256, hi: __m256) -> f32 {
    let h = _mm256_add_ps(lo, hi);
    let g = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let f = _mm_add_ps(g, _mm_movehl_ps(g, g));
    _mm_cvtss_f32(_mm_add_ss(f, _mm_shuffle_ps::<1>(f, f)))
}

/// `sum_lanes` of four rows at once (each as lanes 0–7 and 8–15), in order: the same
/// additions, the last two steps on the transposed quarter sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn sum_lanes4(lo: [__m256; 4], hi: [__m256; 4]) -> __m128 {
    let g: [__m128; 4] = std::array::from_fn(|u| {
        let h = _mm256_add_ps(lo[u], hi[u]);
        _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
    });
    // Columns: c_i = (g0_i, g1_i, g2_i, g3_i).
    let (t0, t1) = (_mm_unpacklo_ps(g[0], g[1]), _mm_unpacklo_ps(g[2], g[3]));
    let (t2, t3) = (_mm_unpackhi_ps(g[0], g[1]), _mm_unpackhi_ps(g[2], g[3]));
    let (c0, c1) = (_mm_movelh_ps(t0, t1), _mm_movehl_ps(t1, t0));
    let (c2, c3) = (_mm_movelh_ps(t2, t3), _mm_movehl_ps(t3, t2));
    _mm_add_ps(_mm_add_ps(c0, c2), _mm_add_ps(c1, c3))
}

/// This module's ISAs, lowest first, each with its `plug`.
pub(crate) const PLUGS: [(Isa, PlugFn); 2] = [(Isa::Avx2, avx2::plug), (Isa::Avx512, avx512::plug)];

/// Whether this CPU runs `isa` (every feature its kernels enable).
pub(crate) fn has(isa: Isa) -> bool {
    match isa {
        Isa::Avx2 => {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
        }
        Isa::Avx512 => {
            has(Isa::Avx2)
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        }
        _ => false,
    }
}

/// The wrapping sum of `x` read as little-endian u64 (the read-bandwidth probe of
/// `autark bench --memory`): four 256-bit accumulators, 128 bytes per step, so the loop is
/// bound by memory, not by adds.
pub fn sum_u64(x: &[u8]) -> u64 {
    if !has(Isa::Avx2) {
        return crate::scalar::sum_u64(x);
    }
    // SAFETY: AVX2 was detected just above; every load is of 32 bytes inside a whole 128-byte
    // chunk of `x`; the remainder is summed by the scalar twin.
    unsafe { sum_u64_avx2(x) }
}

/// # Safety
/// The CPU has the enabled target features; the slices hold every block it reads or writes (the
/// caller checks the lengths).
#[target_feature(enable = "avx2")]
unsafe fn sum_u64_avx2(x: &[u8]) -> u64 {
    // SAFETY: the caller upholds the `# Safety` contract above.
    unsafe {
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut chunks = x.chunks_exact(128);
        for c in &mut chunks {
            for (u, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_epi64(*a, _mm256_loadu_si256(c.as_ptr().add(32 * u) as *const __m256i));
            }
        }
        let s = _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3]));
        let mut lanes = [0u64; 4];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, s);
        lanes.iter().fold(crate::scalar::sum_u64(chunks.remainder()), |a, &v| a.wrapping_add(v))
    }
}
