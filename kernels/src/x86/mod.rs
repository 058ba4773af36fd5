//! x86-64 kernels, one module per ISA, each with one `plug`:
//! - `avx2`: AVX2 + FMA + F16C; signed 8-bit products through `vpmaddubsw` + `vpmaddwd`.
//! - `avx512`: AVX-512 F/BW/VL + VNNI on top of `avx2`'s table, where the product-sum is one
//!   `vpdpbusd`, the choice that matters for quantized dot products.
//!
//! `common.rs` holds the bodies both compile with their own features. The bodies are
//! `#[target_feature]` functions; the table slots are safe wrappers that are only installed
//! after `is_x86_feature_detected!` confirmed every feature the body needs.

use crate::table::{Isa, PlugFn};

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
    use std::arch::x86_64::*;
    let v: __m128i;
    // SAFETY: `vmovd` reads one general register and writes one vector register; no memory,
    // no stack, no flags. The caller's target features include AVX (the VEX encoding).
    unsafe {
        std::arch::asm!("vmovd {v}, {b:e}", v = out(xmm_reg) v, b = in(reg) bits as u32,
                        options(pure, nomem, nostack, preserves_flags));
    }
    _mm_cvtss_f32(_mm_cvtph_ps(v))
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
        use std::arch::x86_64::*;
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
