//! NEON kernel bodies, instantiated twice (plain NEON and NEON + dotprod) around the one
//! helper that differs, `dot_i8x16`.
//!
//! Each block's integer dot product is exact, and the f32 work per block is the scalar
//! reference's expression in the same order, so these kernels give the scalar results bit for
//! bit. `quantize_act` rounds with `fcvtas` (to nearest, ties away from zero), as `f32::round`.

macro_rules! neon_bodies {
    ($isa:expr, $features:literal) => {
        use crate::blocks::{f16_to_f32, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, QK};
        use crate::dispatch::Kernels;
        use crate::scalar;

        pub fn plug(k: &mut Kernels) {
            k.isa = $isa;
            k.quantize_act = quantize_act;
            k.vec_dot_q4_0 = vec_dot_q4_0;
            k.vec_dot_q4_1 = vec_dot_q4_1;
            k.vec_dot_q8_0 = vec_dot_q8_0;
            k.vec_dot_f32 = vec_dot_f32;
            k.gemm_q4_0 = gemm_q4_0;
            k.gemm_q4_1 = gemm_q4_1;
            k.gemm_q8_0 = gemm_q8_0;
        }

        // ---- safe entry points (installed by `plug` after feature detection) ----

        fn quantize_act(src: &[f32], dst: &mut [BlockQ8A]) {
            assert!(src.len() >= dst.len() * QK);
            // SAFETY: features detected before `plug`; lengths asserted.
            unsafe { quantize_act_impl(src, dst) }
        }
        fn vec_dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: features detected before `plug`; lengths asserted.
            unsafe { vec_dot_q4_0_impl(w, a) }
        }
        fn vec_dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: features detected before `plug`; lengths asserted.
            unsafe { vec_dot_q4_1_impl(w, a) }
        }
        fn vec_dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: features detected before `plug`; lengths asserted.
            unsafe { vec_dot_q8_0_impl(w, a) }
        }
        fn vec_dot_f32(w: &[f32], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: features detected before `plug`; lengths asserted.
            unsafe { vec_dot_f32_impl(w, x) }
        }
        fn gemm_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            scalar::gemm_tile(vec_dot_q4_0, w, a, nb, out)
        }
        fn gemm_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            scalar::gemm_tile(vec_dot_q4_1, w, a, nb, out)
        }
        fn gemm_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            scalar::gemm_tile(vec_dot_q8_0, w, a, nb, out)
        }

        // ---- kernels ----

        /// Exact Σ x·y over a 32-value block given as two halves.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn block_dot(x0: int8x16_t, x1: int8x16_t, y: &[i8; QK]) -> i32 {
            let y0 = vld1q_s8(y.as_ptr());
            let y1 = vld1q_s8(y.as_ptr().add(16));
            let acc = dot_i8x16(vdupq_n_s32(0), x0, y0);
            let acc = dot_i8x16(acc, x1, y1);
            vaddvq_s32(acc)
        }

        #[target_feature(enable = $features)]
        unsafe fn quantize_act_impl(src: &[f32], dst: &mut [BlockQ8A]) {
            for (i, b) in dst.iter_mut().enumerate() {
                let p = src.as_ptr().add(i * QK);
                let v: [float32x4_t; 8] = std::array::from_fn(|j| vld1q_f32(p.add(4 * j)));
                let mut m = vabsq_f32(v[0]);
                for x in &v[1..] {
                    m = vmaxq_f32(m, vabsq_f32(*x));
                }
                let amax = vmaxvq_f32(m);
                let d = amax / 127.0;
                let id = vdupq_n_f32(if d != 0.0 { 1.0 / d } else { 0.0 });
                let q: [int32x4_t; 8] = std::array::from_fn(|j| vcvtaq_s32_f32(vmulq_f32(v[j], id)));
                let mut sum = vdupq_n_s32(0);
                for x in &q {
                    sum = vaddq_s32(sum, *x);
                }
                for h in 0..2 {
                    let lo = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
                    let hi = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
                    vst1q_s8(b.qs.as_mut_ptr().add(16 * h), vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
                }
                b.d = d;
                b.sum = vaddvq_s32(sum);
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q8_0_impl(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
            let mut acc = 0.0f32;
            for (bw, ba) in w.iter().zip(a) {
                let x0 = vld1q_s8(bw.qs.as_ptr());
                let x1 = vld1q_s8(bw.qs.as_ptr().add(16));
                let s = block_dot(x0, x1, &ba.qs);
                acc += f16_to_f32(bw.d) * ba.d * s as f32;
            }
            acc
        }

        /// Nibbles as signed bytes minus `bias`: values 0–15 of the block, then 16–31.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn nibbles(qs: &[u8; QK / 2], bias: i8) -> (int8x16_t, int8x16_t) {
            let v = vld1q_u8(qs.as_ptr());
            let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
            let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
            (vsubq_s8(lo, vdupq_n_s8(bias)), vsubq_s8(hi, vdupq_n_s8(bias)))
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_0_impl(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
            let mut acc = 0.0f32;
            for (bw, ba) in w.iter().zip(a) {
                let (x0, x1) = nibbles(&bw.qs, 0);
                // Σ (q − 8)·a = Σ q·a − 8·Σa, exactly as the scalar reference computes it.
                let s = block_dot(x0, x1, &ba.qs) - 8 * ba.sum;
                acc += f16_to_f32(bw.d) * ba.d * s as f32;
            }
            acc
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_1_impl(w: &[BlockQ4_1], a: &[BlockQ8A]) -> f32 {
            let mut acc = 0.0f32;
            for (bw, ba) in w.iter().zip(a) {
                let (x0, x1) = nibbles(&bw.qs, 0);
                let s = block_dot(x0, x1, &ba.qs);
                acc += f16_to_f32(bw.d) * ba.d * s as f32 + f16_to_f32(bw.m) * ba.d * ba.sum as f32;
            }
            acc
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_f32_impl(w: &[f32], x: &[f32]) -> f32 {
            let n = w.len();
            let mut acc = [vdupq_n_f32(0.0); 4];
            let mut i = 0;
            while i + 16 <= n {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = vfmaq_f32(*a, vld1q_f32(w.as_ptr().add(i + 4 * j)), vld1q_f32(x.as_ptr().add(i + 4 * j)));
                }
                i += 16;
            }
            while i + 4 <= n {
                acc[0] = vfmaq_f32(acc[0], vld1q_f32(w.as_ptr().add(i)), vld1q_f32(x.as_ptr().add(i)));
                i += 4;
            }
            let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
            for j in i..n {
                s += w[j] * x[j];
            }
            s
        }
    };
}

/// Plain NEON: 8-bit products widened with `smull`, pair-added with `sadalp`.
pub mod plain {
    use std::arch::aarch64::*;

    /// acc + Σ a·b over groups of 4 signed bytes (4 × i32).
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot_i8x16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }

    neon_bodies!(crate::dispatch::Isa::Neon, "neon");
}

/// NEON with the dot-product extension: one `sdot` per 16 byte pairs. `vdotq_s32` is not
/// stable in Rust 1.95, so the instruction is emitted with `asm!`.
pub mod dotprod {
    use std::arch::aarch64::*;

    /// acc + Σ a·b over groups of 4 signed bytes (4 × i32), with `sdot`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    unsafe fn dot_i8x16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut r = acc;
        // SAFETY: `sdot` exists (the caller's target features include dotprod); it reads only
        // its three vector registers and writes the accumulator.
        unsafe {
            std::arch::asm!(
                "sdot {r:v}.4s, {a:v}.16b, {b:v}.16b",
                r = inout(vreg) r,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack)
            );
        }
        r
    }

    neon_bodies!(crate::dispatch::Isa::NeonDot, "neon,dotprod");
}
