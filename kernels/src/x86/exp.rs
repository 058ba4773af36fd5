//! `e^x` over a slice (`crate::exp`): the scalar twin's operations lane by lane (the same FMAs,
//! the same exactly rounded steps), so results match it bit for bit (tested); the tail runs
//! the scalar twin itself.

use std::arch::x86_64::*;

use crate::dispatch::Kernels;
use crate::exp::{exp, LN2_HI, LN2_LO, LOG2E, MAX_X, MIN_X, P};

pub fn plug_avx2(k: &mut Kernels) {
    k.exp_f32 = exp_avx2;
}

pub fn plug_avx512(k: &mut Kernels) {
    k.exp_f32 = exp_avx512;
}

fn exp_avx2(x: &mut [f32]) {
    // SAFETY: installed only after AVX2 and FMA were detected; every access is within `x`
    // (whole chunks of 8, the tail in scalar code).
    unsafe { exp8(x) }
}

fn exp_avx512(x: &mut [f32]) {
    // SAFETY: installed only after AVX-512 F was detected; as above with chunks of 16.
    unsafe { exp16(x) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn exp8(x: &mut [f32]) {
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
        res =
            _mm256_blendv_ps(res, _mm256_set1_ps(f32::INFINITY), _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_set1_ps(MAX_X)));
        res = _mm256_blendv_ps(res, v, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        _mm256_storeu_ps(c.as_mut_ptr(), res);
    }
    chunks.into_remainder().iter_mut().for_each(|v| *v = exp(*v));
}

#[target_feature(enable = "avx512f")]
unsafe fn exp16(x: &mut [f32]) {
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
        res =
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_set1_ps(MIN_X)), res, _mm512_setzero_ps());
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
