//! Kernel bodies shared by the AVX2 and AVX-512 tables (see `x86/mod.rs`). Each module
//! supplies `dot_u8i8` — the one instruction choice that differs — and instantiates the
//! bodies with its target features.
//!
//! Exactness: `quantize_act` reproduces the scalar reference bit for bit (same f32 products,
//! exact round-half-away-from-zero). Dot products sum exact integer block dot products, then
//! scale and accumulate per SIMD lane, so they differ from the scalar order only by f32
//! rounding (tested with a tolerance relative to the magnitude of the terms).

macro_rules! kernel_bodies {
    ($isa:expr, $features:literal, rows: $R:literal, tokens: $T:literal, byte_tokens: $BT:literal) => {
        use std::arch::x86_64::*;

        use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, QK};
        use crate::dispatch::Kernels;

        pub fn plug(k: &mut Kernels) {
            k.isa = $isa;
            k.quantize_act = quantize_act;
            k.vec_dot_q4_0 = vec_dot_q4_0;
            k.vec_dot_q4_1 = vec_dot_q4_1;
            k.vec_dot_q8_0 = vec_dot_q8_0;
            k.vec_dot_f16 = vec_dot_f16;
            k.vec_dot_f32 = vec_dot_f32;
            k.gemm_q4_0 = gemm_q4_0;
            k.gemm_q4_1 = gemm_q4_1;
            k.gemm_q8_0 = gemm_q8_0;
            plug_bytes(k);
        }

        byte_bodies!($features, tokens: $BT);

        // ---- safe entry points (installed by `plug` only after feature detection) ----

        fn quantize_act(src: &[f32], dst: &mut [BlockQ8A]) {
            assert!(src.len() >= dst.len() * QK);
            // SAFETY: `plug` runs only after `x86::has_*` detected every feature in
            // `$features`; the slice lengths cover every block accessed (asserted above).
            unsafe { quantize_act_impl(src, dst) }
        }
        fn vec_dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: features detected before `plug`; equal lengths asserted.
            unsafe { vec_dot_q4_0_impl(w, a) }
        }
        fn vec_dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: features detected before `plug`; equal lengths asserted.
            unsafe { vec_dot_q4_1_impl(w, a) }
        }
        fn vec_dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: features detected before `plug`; equal lengths asserted.
            unsafe { vec_dot_q8_0_impl(w, a) }
        }
        fn vec_dot_f16(w: &[u16], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: features detected before `plug`; equal lengths asserted.
            unsafe { vec_dot_f16_impl(w, x) }
        }
        fn vec_dot_f32(w: &[f32], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len());
            // SAFETY: features detected before `plug`; equal lengths asserted.
            unsafe { vec_dot_f32_impl(w, x) }
        }

        fn gemm_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            let (rows, toks) = tile_dims(w.len(), a.len(), nb, out.len());
            // SAFETY: features detected before `plug`; `tile_dims` checked that `w` holds
            // `rows`, `a` holds `toks` whole rows of `nb` blocks and `out` rows × toks values.
            unsafe { gemm_q4_0_impl(w.as_ptr(), a.as_ptr(), nb, rows, toks, out.as_mut_ptr()) }
        }
        fn gemm_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            let (rows, toks) = tile_dims(w.len(), a.len(), nb, out.len());
            // SAFETY: as in `gemm_q4_0`.
            unsafe { gemm_q4_1_impl(w.as_ptr(), a.as_ptr(), nb, rows, toks, out.as_mut_ptr()) }
        }
        fn gemm_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            let (rows, toks) = tile_dims(w.len(), a.len(), nb, out.len());
            // SAFETY: as in `gemm_q4_0`.
            unsafe { gemm_q8_0_impl(w.as_ptr(), a.as_ptr(), nb, rows, toks, out.as_mut_ptr()) }
        }

        fn tile_dims(w: usize, a: usize, nb: usize, out: usize) -> (usize, usize) {
            assert!(nb > 0 && w % nb == 0 && a % nb == 0);
            let (rows, toks) = (w / nb, a / nb);
            assert!(out >= rows * toks);
            (rows, toks)
        }

        // One tile of R weight rows × T tokens: every loaded (and unpacked) weight block
        // serves T tokens. Per (row, token) the operations are exactly those of the
        // type's `vec_dot`, so results do not depend on the tiling.
        macro_rules! tiles {
            ($imp:ident, $tile:ident, $blk:ty, |$bw:ident| $load:expr, $prep:ident, $dot:ident, min: $min:tt) => {
                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn $tile<const R: usize, const T: usize>(w: *const $blk, a: *const BlockQ8A, nb: usize, out_stride: usize, out: *mut f32) {
                    let mut acc = [[_mm256_setzero_ps(); T]; R];
                    #[allow(unused_mut)]
                    let mut acc_m = [[0f32; T]; R];
                    for b in 0..nb {
                        let mut x = [_mm256_setzero_si256(); R];
                        let mut xp = [_mm256_setzero_si256(); R];
                        let mut dw = [0f32; R];
                        for r in 0..R {
                            let $bw = &*w.add(r * nb + b);
                            x[r] = $load;
                            xp[r] = $prep(x[r]);
                            dw[r] = f16_to_f32($bw.d);
                        }
                        for t in 0..T {
                            let ba = &*a.add(t * nb + b);
                            let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                            for r in 0..R {
                                let s = _mm256_cvtepi32_ps($dot(x[r], xp[r], y));
                                acc[r][t] = _mm256_fmadd_ps(s, _mm256_set1_ps(dw[r] * ba.d), acc[r][t]);
                                tiles!(@min $min, acc_m[r][t], w.add(r * nb + b), ba);
                            }
                        }
                    }
                    for r in 0..R {
                        for t in 0..T {
                            *out.add(t * out_stride + r) = hsum_f32x8(acc[r][t]) + acc_m[r][t];
                        }
                    }
                }

                #[target_feature(enable = $features)]
                unsafe fn $imp(w: *const $blk, a: *const BlockQ8A, nb: usize, rows: usize, toks: usize, out: *mut f32) {
                    let mut t = 0;
                    while t + $T <= toks {
                        let mut r = 0;
                        while r + $R <= rows {
                            $tile::<$R, $T>(w.add(r * nb), a.add(t * nb), nb, rows, out.add(t * rows + r));
                            r += $R;
                        }
                        while r < rows {
                            $tile::<1, $T>(w.add(r * nb), a.add(t * nb), nb, rows, out.add(t * rows + r));
                            r += 1;
                        }
                        t += $T;
                    }
                    while t < toks {
                        let mut r = 0;
                        while r + $R <= rows {
                            $tile::<$R, 1>(w.add(r * nb), a.add(t * nb), nb, rows, out.add(t * rows + r));
                            r += $R;
                        }
                        while r < rows {
                            $tile::<1, 1>(w.add(r * nb), a.add(t * nb), nb, rows, out.add(t * rows + r));
                            r += 1;
                        }
                        t += 1;
                    }
                }
            };
            (@min none, $acc:expr, $bw:expr, $ba:expr) => {};
            (@min q4_1, $acc:expr, $bw:expr, $ba:expr) => {
                $acc += f16_to_f32((*$bw).m) * $ba.d * $ba.sum as f32;
            };
        }

        /// |x| for the sign trick of signed × signed products.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn abs_i8(x: __m256i) -> __m256i {
            _mm256_sign_epi8(x, x)
        }
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn same(x: __m256i) -> __m256i {
            x
        }
        /// dot_i8i8 with |x| precomputed.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn dot_signed(x: __m256i, ax: __m256i, y: __m256i) -> __m256i {
            dot_u8i8(ax, _mm256_sign_epi8(y, x))
        }
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn dot_unsigned(_x: __m256i, u: __m256i, y: __m256i) -> __m256i {
            dot_u8i8(u, y)
        }

        tiles!(gemm_q8_0_impl, tile_q8_0, BlockQ8_0, |bw| _mm256_loadu_si256(bw.qs.as_ptr() as *const __m256i), abs_i8, dot_signed, min: none);
        tiles!(gemm_q4_0_impl, tile_q4_0, BlockQ4_0, |bw| _mm256_sub_epi8(unpack_nibbles_32(bw.qs.as_ptr()), _mm256_set1_epi8(8)), abs_i8, dot_signed, min: none);
        tiles!(gemm_q4_1_impl, tile_q4_1, BlockQ4_1, |bw| unpack_nibbles_32(bw.qs.as_ptr()), same, dot_unsigned, min: q4_1);

        // ---- helpers ----

        /// Sum of the 8 lanes.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn hsum_f32x8(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }

        /// Maximum of the 8 lanes.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn hmax_f32x8(v: __m256) -> f32 {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_max_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn hsum_i32x8(v: __m256i) -> i32 {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            _mm_cvtsi128_si32(s)
        }

        /// One f16 (raw bits) to f32 with F16C (see `x86::f16_to_f32`).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn f16_to_f32(bits: u16) -> f32 {
            super::super::f16_to_f32(bits)
        }

        /// Σ x·y over groups of 4 signed bytes → 8 × i32 (sign trick: |x| · (y·sign x)).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn dot_i8i8(x: __m256i, y: __m256i) -> __m256i {
            dot_u8i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
        }

        /// The 32 nibbles of a `q4_0`/`q4_1` block as bytes: low nibbles (values 0–15) in the
        /// low lane, high nibbles (values 16–31) in the high lane.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn unpack_nibbles_32(qs: *const u8) -> __m256i {
            let b = _mm_loadu_si128(qs as *const __m128i);
            let m = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(b, m);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
            _mm256_set_m128i(hi, lo)
        }

        // ---- kernels ----

        #[target_feature(enable = $features)]
        unsafe fn quantize_act_impl(src: &[f32], dst: &mut [BlockQ8A]) {
            let sign = _mm256_set1_ps(-0.0);
            let half = _mm256_set1_ps(0.5);
            let one = _mm256_set1_ps(1.0);
            let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            for (i, b) in dst.iter_mut().enumerate() {
                let p = src.as_ptr().add(i * QK);
                let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
                let a01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
                let a23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
                let amax = hmax_f32x8(_mm256_max_ps(a01, a23));
                let d = amax / 127.0;
                let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
                let mut q = [_mm256_setzero_si256(); 4];
                for j in 0..4 {
                    // round half away from zero, exactly: trunc, then step away by one where
                    // the dropped fraction is at least one half.
                    let t = _mm256_mul_ps(v[j], id);
                    let tr = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
                    let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(t, tr));
                    let step = _mm256_or_ps(_mm256_and_ps(t, sign), one);
                    let r = _mm256_add_ps(tr, _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), step));
                    q[j] = _mm256_cvtps_epi32(r);
                }
                let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                let packed = _mm256_permutevar8x32_epi32(packed, perm);
                b.d = d;
                b.sum = hsum_i32x8(sum);
                _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, packed);
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q8_0_impl(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (bw, ba) in w.iter().zip(a) {
                let x = _mm256_loadu_si256(bw.qs.as_ptr() as *const __m256i);
                let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                let s = _mm256_cvtepi32_ps(dot_i8i8(x, y));
                acc = _mm256_fmadd_ps(s, _mm256_set1_ps(f16_to_f32(bw.d) * ba.d), acc);
            }
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_0_impl(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let eight = _mm256_set1_epi8(8);
            for (bw, ba) in w.iter().zip(a) {
                let x = _mm256_sub_epi8(unpack_nibbles_32(bw.qs.as_ptr()), eight);
                let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                let s = _mm256_cvtepi32_ps(dot_i8i8(x, y));
                acc = _mm256_fmadd_ps(s, _mm256_set1_ps(f16_to_f32(bw.d) * ba.d), acc);
            }
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_1_impl(w: &[BlockQ4_1], a: &[BlockQ8A]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = 0.0f32;
            for (bw, ba) in w.iter().zip(a) {
                let x = unpack_nibbles_32(bw.qs.as_ptr());
                let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                let s = _mm256_cvtepi32_ps(dot_u8i8(x, y));
                acc = _mm256_fmadd_ps(s, _mm256_set1_ps(f16_to_f32(bw.d) * ba.d), acc);
                acc_m += f16_to_f32(bw.m) * ba.d * ba.sum as f32;
            }
            hsum_f32x8(acc) + acc_m
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_f16_impl(w: &[u16], x: &[f32]) -> f32 {
            let n = w.len();
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                let w0 = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i) as *const __m128i));
                let w1 = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i + 8) as *const __m128i));
                acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.as_ptr().add(i + 8)), acc1);
                i += 16;
            }
            if i + 8 <= n {
                let w0 = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(i) as *const __m128i));
                acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                i += 8;
            }
            let mut s = hsum_f32x8(_mm256_add_ps(acc0, acc1));
            for j in i..n {
                s += f16_to_f32(w[j]) * x[j];
            }
            s
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_f32_impl(w: &[f32], x: &[f32]) -> f32 {
            let n = w.len();
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i + 8)), _mm256_loadu_ps(x.as_ptr().add(i + 8)), acc1);
                i += 16;
            }
            if i + 8 <= n {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                i += 8;
            }
            let mut s = hsum_f32x8(_mm256_add_ps(acc0, acc1));
            for j in i..n {
                s += w[j] * x[j];
            }
            s
        }
    };
}

/// AVX2 + FMA + F16C.
pub mod avx2 {
    /// Σ u·s over groups of 4 (unsigned × signed bytes) → 8 × i32, via `vpmaddubsw` (pairs to
    /// saturating i16; no saturation here: |u| ≤ 128 and |s| ≤ 127 give at most 2·128·127)
    /// and `vpmaddwd`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dot_u8i8(u: std::arch::x86_64::__m256i, s: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    kernel_bodies!(crate::dispatch::Isa::Avx2, "avx2,fma,f16c", rows: 2, tokens: 4, byte_tokens: 8);
}

/// AVX-512 (F, BW, VL) with VNNI.
pub mod avx512 {
    /// Σ u·s over groups of 4 (unsigned × signed bytes) → 8 × i32 in one `vpdpbusd`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_u8i8(u: std::arch::x86_64::__m256i, s: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    kernel_bodies!(crate::dispatch::Isa::Avx512, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", rows: 4, tokens: 4, byte_tokens: 16);
}
