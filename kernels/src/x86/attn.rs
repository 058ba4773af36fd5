//! Attention's f32 loops over the key/value cache (AVX2 + FMA, used by both x86 tables):
//! `dots_f32` keeps 4 keys' products in 4 registers and reduces them together; `wsum_f32`
//! keeps up to 64 output values in registers across all keys, instead of loading and storing
//! them once per key. Sums run in another order than the scalar twins (within f32 rounding,
//! tested).

use std::arch::x86_64::*;

use crate::dispatch::Kernels;

pub fn plug(k: &mut Kernels) {
    k.dots_f32 = dots_f32;
    k.wsum_f32 = wsum_f32;
}

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

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_dot(q: &[f32], r: *const f32) -> __m256 {
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= q.len() {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(r.add(i)), acc);
        i += 8;
    }
    acc
}

/// Σ over the tail of a row that is not a multiple of 8.
#[inline]
unsafe fn row_tail(q: &[f32], r: *const f32) -> f32 {
    let mut s = 0.0;
    for (i, x) in q.iter().enumerate().skip(q.len() / 8 * 8) {
        s += x * *r.add(i);
    }
    s
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dots_impl(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
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

#[target_feature(enable = "avx2,fma")]
unsafe fn wsum_impl(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
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
