//! Kernel bodies shared by `avx2.rs` and `avx512.rs`, as macros that each ISA module
//! instantiates with its target features and its `dot_u8i8` (the one instruction choice that
//! differs: `vpmaddubsw` + `vpmaddwd`, or VNNI's `vpdpbusd`). The instantiating module imports
//! `std::arch::x86_64::*`, the block types and `QK`.
//!
//! Exactness: `quantize_act` reproduces the scalar reference bit for bit (same f32 products,
//! exact round-half-away-from-zero). The legacy row dots and tiles reduce each block to its exact
//! integer sum and fold it into one f32 accumulator per (row, token) with the contract's fused
//! multiply-adds in block order (docs/NUMERICS.md), the f16/f32 row dots keep the contract's 16
//! lanes, and so do the byte-coded types' dots (`byte_bodies!`): all give the scalar twins' bits.

macro_rules! kernel_bodies {
    ($features:literal, rows: $R:literal, tokens: $T:literal, byte_tokens: $BT:literal) => {
        byte_bodies!($features, tokens: $BT);

        // ---- safe entry points (installed by `plug` only after feature detection) ----

        pub(super) fn quantize_act(src: &[f32], dst: &mut [BlockQ8A]) {
            assert!(src.len() >= dst.len() * QK);
            // SAFETY: `plug` runs only after `x86::has_*` detected every feature in
            // `$features`; the slice lengths cover every block accessed (asserted above).
            unsafe { quantize_act_impl(src, dst) }
        }
        dot_entries!(
            vec_dot_q4_0(BlockQ4_0, BlockQ8A) => vec_dot_q4_0_impl,
            vec_dot_q4_1(BlockQ4_1, BlockQ8A) => vec_dot_q4_1_impl,
            vec_dot_q8_0(BlockQ8_0, BlockQ8A) => vec_dot_q8_0_impl,
            vec_dot_f16(u16, f32) => vec_dot_f16_impl,
            vec_dot_f32(f32, f32) => vec_dot_f32_impl,
        );

        pub(super) fn gemm_q4_0(w: &[BlockQ4_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            let (rows, toks) = tile_dims(w.len(), a.len(), nb, out.len());
            // SAFETY: features detected before `plug`; `tile_dims` checked that `w` holds
            // `rows`, `a` holds `toks` whole rows of `nb` blocks and `out` rows × toks values.
            unsafe { gemm_q4_0_impl(w.as_ptr(), a.as_ptr(), nb, rows, toks, out.as_mut_ptr()) }
        }
        pub(super) fn gemm_q4_1(w: &[BlockQ4_1], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            let (rows, toks) = tile_dims(w.len(), a.len(), nb, out.len());
            // SAFETY: as in `gemm_q4_0`.
            unsafe { gemm_q4_1_impl(w.as_ptr(), a.as_ptr(), nb, rows, toks, out.as_mut_ptr()) }
        }
        pub(super) fn gemm_q8_0(w: &[BlockQ8_0], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
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
        // type's `vec_dot` (the contract's: each block's exact integer sum, then
        // `block_term` and `min_term` in block order), so results do not depend on the tiling.
        macro_rules! tiles {
            ($imp:ident, $tile:ident, $blk:ty, |$bw:ident| $load:expr, $prep:ident, $dot:ident, min: $min:tt) => {
                /// # Safety
                /// The CPU has the enabled target features; the pointers cover every value it reads
                /// or writes (the caller checks the lengths).
                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn $tile<const R: usize, const T: usize>(w: *const $blk, a: *const BlockQ8A, nb: usize, out_stride: usize, out: *mut f32) {
                    // SAFETY: the caller upholds the `# Safety` contract above.
                    unsafe {
                        let mut acc = [[0f32; T]; R];
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
                                    let s = hsum_i32x8($dot(x[r], xp[r], y));
                                    acc[r][t] = (s as f32).mul_add(dw[r] * ba.d, acc[r][t]);
                                    tiles!(@min $min, acc[r][t], w.add(r * nb + b), ba);
                                }
                            }
                        }
                        for r in 0..R {
                            for t in 0..T {
                                *out.add(t * out_stride + r) = acc[r][t];
                            }
                        }
                    }
                }

                /// # Safety
                /// The CPU has the enabled target features; the pointers cover every value it reads
                /// or writes (the caller checks the lengths).
                #[target_feature(enable = $features)]
                unsafe fn $imp(w: *const $blk, a: *const BlockQ8A, nb: usize, rows: usize, toks: usize, out: *mut f32) {
                    // SAFETY: the caller upholds the `# Safety` contract above.
                    unsafe {
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
                }
            };
            (@min none, $acc:expr, $bw:expr, $ba:expr) => {};
            (@min q4_1, $acc:expr, $bw:expr, $ba:expr) => {
                $acc = f16_to_f32((*$bw).m).mul_add($ba.d * $ba.sum as f32, $acc);
            };
        }

        /// |x| for the sign trick of signed × signed products.
        #[target_feature(enable = $features)]
        #[inline]
        fn abs_i8(x: __m256i) -> __m256i {
            _mm256_sign_epi8(x, x)
        }
        #[target_feature(enable = $features)]
        #[inline]
        fn same(x: __m256i) -> __m256i {
            x
        }
        /// dot_i8i8 with |x| precomputed.
        #[target_feature(enable = $features)]
        #[inline]
        fn dot_signed(x: __m256i, ax: __m256i, y: __m256i) -> __m256i {
            dot_u8i8(ax, _mm256_sign_epi8(y, x))
        }
        #[target_feature(enable = $features)]
        #[inline]
        fn dot_unsigned(_x: __m256i, u: __m256i, y: __m256i) -> __m256i {
            dot_u8i8(u, y)
        }

        tiles!(gemm_q8_0_impl, tile_q8_0, BlockQ8_0, |bw| _mm256_loadu_si256(bw.qs.as_ptr() as *const __m256i), abs_i8, dot_signed, min: none);
        tiles!(gemm_q4_0_impl, tile_q4_0, BlockQ4_0, |bw| _mm256_sub_epi8(unpack_nibbles_32(bw.qs.as_ptr()), _mm256_set1_epi8(8)), abs_i8, dot_signed, min: none);
        tiles!(gemm_q4_1_impl, tile_q4_1, BlockQ4_1, |bw| unpack_nibbles_32(bw.qs.as_ptr()), same, dot_unsigned, min: q4_1);

        // ---- helpers ----

        /// Maximum of the 8 lanes.
        #[target_feature(enable = $features)]
        #[inline]
        fn hmax_f32x8(v: __m256) -> f32 {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_max_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }

        #[target_feature(enable = $features)]
        #[inline]
        fn hsum_i32x8(v: __m256i) -> i32 {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            _mm_cvtsi128_si32(s)
        }

        /// One f16 (raw bits) to f32 with F16C (see `x86::f16_to_f32`).
        #[target_feature(enable = $features)]
        #[inline]
        fn f16_to_f32(bits: u16) -> f32 {
            crate::x86::f16_to_f32(bits)
        }

        /// Σ x·y over groups of 4 signed bytes → 8 × i32 (sign trick: |x| · (y·sign x)).
        #[target_feature(enable = $features)]
        #[inline]
        fn dot_i8i8(x: __m256i, y: __m256i) -> __m256i {
            dot_u8i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
        }

        /// The 32 nibbles of a `q4_0`/`q4_1` block as bytes: low nibbles (values 0–15) in the
        /// low lane, high nibbles (values 16–31) in the high lane.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn unpack_nibbles_32(qs: *const u8) -> __m256i {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let b = _mm_loadu_si128(qs as *const __m128i);
                let m = _mm_set1_epi8(0x0F);
                let lo = _mm_and_si128(b, m);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
                _mm256_set_m128i(hi, lo)
            }
        }

        // ---- kernels ----

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn quantize_act_impl(src: &[f32], dst: &mut [BlockQ8A]) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
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
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q8_0_impl(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = 0f32;
                for (bw, ba) in w.iter().zip(a) {
                    let x = _mm256_loadu_si256(bw.qs.as_ptr() as *const __m256i);
                    let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                    let s = hsum_i32x8(dot_i8i8(x, y));
                    acc = (s as f32).mul_add(f16_to_f32(bw.d) * ba.d, acc);
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_0_impl(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = 0f32;
                let eight = _mm256_set1_epi8(8);
                for (bw, ba) in w.iter().zip(a) {
                    let x = _mm256_sub_epi8(unpack_nibbles_32(bw.qs.as_ptr()), eight);
                    let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                    let s = hsum_i32x8(dot_i8i8(x, y));
                    acc = (s as f32).mul_add(f16_to_f32(bw.d) * ba.d, acc);
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_1_impl(w: &[BlockQ4_1], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = 0f32;
                for (bw, ba) in w.iter().zip(a) {
                    let x = unpack_nibbles_32(bw.qs.as_ptr());
                    let y = _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i);
                    let s = hsum_i32x8(dot_u8i8(x, y));
                    acc = (s as f32).mul_add(f16_to_f32(bw.d) * ba.d, acc);
                    acc = f16_to_f32(bw.m).mul_add(ba.d * ba.sum as f32, acc);
                }
                acc
            }
        }

        /// The contract's row dot (`scalar::lane_dot`) finished from its lanes 0–7 (`lo`) and
        /// 8–15 (`hi`) after the values before `i`: values `i..n` fused into lane `j mod 16`
        /// one by one, then `sum_lanes`.
        #[target_feature(enable = $features)]
        #[inline]
        fn tail_lanes(lo: __m256, hi: __m256, i: usize, n: usize, xy: impl Fn(usize) -> (f32, f32)) -> f32 {
            if i == n {
                return crate::x86::sum_lanes(lo, hi);
            }
            let mut l = [0f32; 16];
            // SAFETY: two stores of 8 lanes into the 16 of `l`.
            unsafe {
                _mm256_storeu_ps(l.as_mut_ptr(), lo);
                _mm256_storeu_ps(l.as_mut_ptr().add(8), hi);
            }
            for j in i..n {
                let (x, y) = xy(j);
                l[j % 16] = x.mul_add(y, l[j % 16]);
            }
            crate::scalar::sum_lanes(&l)
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_f16_impl(w: &[u16], x: &[f32]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
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
                tail_lanes(acc0, acc1, i, n, |j| (f16_to_f32(w[j]), x[j]))
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_f32_impl(w: &[f32], x: &[f32]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
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
                tail_lanes(acc0, acc1, i, n, |j| (w[j], x[j]))
            }
        }
    };
}

// Dot products of the byte-coded types (`q5_0`, `q5_1`, `q4_k`, `q5_k`, `q6_k`) with 8-bit
// activation blocks, `byte_bodies!`, instantiated by `kernel_bodies!` for AVX2 and AVX-512 VNNI (the one
// difference is `dot_u8i8`). Scalar twins: `q5::vec_dot_*`, `kquants::vec_dot_*`.
//
// Each 32-value activation block meets one weight sub-block (two 16-value ones for `q6_k`):
// the integer products are exact in the lanes, summed exactly per block, and folded into one
// f32 accumulator per token with the contract's fused multiply-adds in block order, so the
// results are the scalar twins' bits.

macro_rules! byte_bodies {
    ($features:literal, tokens: $TOK:literal) => {
        use crate::types::{BlockLayout, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K};
        use std::mem::offset_of;

        /// Tokens per kernel call: each unpacked weight block serves this many tokens (8 with
        /// AVX2's 16 registers, 16 with AVX-512's 32; measured on SmolLM2 Q4_K_M prefill).
        const TOK: usize = $TOK;

        /// A row kernel for `T` tokens: `(row, first token's blocks, nb) → T results`.
        type RowKernel<const T: usize> = unsafe fn(&[u8], *const BlockQ8A, usize) -> [f32; T];

        /// The `ByteDotsFn` contract: the row holds exactly `nb` activation blocks' worth of
        /// blocks and `a` at least `out.len()` tokens; then runs the tokens `TOK` at a time
        /// (the same per-token operations as one at a time, so results do not depend on it).
        fn run_dots<B: BlockLayout>(
            w: &[u8],
            a: &[BlockQ8A],
            nb: usize,
            out: &mut [f32],
            many: RowKernel<TOK>,
            one: RowKernel<1>,
        ) {
            let per = B::BLOCK_LEN / QK;
            assert!(
                nb.is_multiple_of(per) && w.len() == nb / per * size_of::<B>() && a.len() >= out.len() * nb,
                "byte-coded row and activations differ"
            );
            let mut t = 0;
            while t + TOK <= out.len() {
                // SAFETY: `plug` runs only after feature detection (see `x86/mod.rs`); tokens
                // t..t + TOK lie inside `a` (asserted above) and `w` holds one row of `nb` blocks.
                let v = unsafe { many(w, a.as_ptr().add(t * nb), nb) };
                out[t..t + TOK].copy_from_slice(&v);
                t += TOK;
            }
            while t < out.len() {
                // SAFETY: as above, for the one token t.
                out[t] = unsafe { one(w, a.as_ptr().add(t * nb), nb) }[0];
                t += 1;
            }
        }

        pub(super) fn dots_q5_0(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots::<BlockQ5_0>(w, a, nb, out, q5_0_impl::<TOK>, q5_0_impl::<1>)
        }
        pub(super) fn dots_q5_1(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots::<BlockQ5_1>(w, a, nb, out, q5_1_impl::<TOK>, q5_1_impl::<1>)
        }
        pub(super) fn dots_q4_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots::<BlockQ4K>(w, a, nb, out, k4_impl::<TOK, false>, k4_impl::<1, false>)
        }
        pub(super) fn dots_q5_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots::<BlockQ5K>(w, a, nb, out, k4_impl::<TOK, true>, k4_impl::<1, true>)
        }
        pub(super) fn dots_q6_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots::<BlockQ6K>(w, a, nb, out, q6_k_impl::<TOK>, q6_k_impl::<1>)
        }

        /// The 32 fifth bits of `qh` (bit j for value j) as bytes: 0x10 where set, else 0.
        #[target_feature(enable = $features)]
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

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load_act(ba: &BlockQ8A) -> __m256i {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i) }
        }

        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn f16_le(p: *const u8) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { f16_to_f32((p as *const u16).read_unaligned()) }
        }

        /// Token t's activation block i (`a`: T tokens of `nb` blocks each).
        ///
        /// # Safety
        /// The pointers cover every value it reads or writes (the caller checks the lengths).
        #[inline]
        unsafe fn act<'a>(a: *const BlockQ8A, nb: usize, t: usize, i: usize) -> &'a BlockQ8A {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { &*a.add(t * nb + i) }
        }

        /// The exact sums of 8 vectors of 8 i32 lanes, in order (integer additions: exact in any
        /// order).
        #[target_feature(enable = $features)]
        #[inline]
        fn fold8(p: [__m256i; 8]) -> __m256i {
            let a0 = _mm256_hadd_epi32(p[0], p[1]);
            let a1 = _mm256_hadd_epi32(p[2], p[3]);
            let a2 = _mm256_hadd_epi32(p[4], p[5]);
            let a3 = _mm256_hadd_epi32(p[6], p[7]);
            let (b0, b1) = (_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
            _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(b0, b1), _mm256_permute2x128_si256::<0x31>(b0, b1))
        }

        /// One weight block folded into T tokens' accumulators by the contract: token t's exact
        /// sum `s_t` (the lanes of `ints(t's activation block)` added), then
        /// `acc_t = fma(s_t, d·d_a, acc_t)` and, with a minimum `m`, `acc_t = fma(m, d_a·Σa, acc_t)`.
        /// Eight tokens at a time share one transposing sum and one vector multiply-add (lane =
        /// token); the products are the scalar ones, so every token gets the same bits.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `a` holds T tokens of `nb` blocks, i < nb.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn fold_block<const T: usize>(
            acc: &mut [f32; T],
            a: *const BlockQ8A,
            nb: usize,
            i: usize,
            d: f32,
            m: Option<f32>,
            ints: impl Fn(&BlockQ8A) -> __m256i,
        ) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                if T % 8 != 0 {
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let ba = act(a, nb, t, i);
                        *acc = (hsum_i32x8(ints(ba)) as f32).mul_add(d * ba.d, *acc);
                        if let Some(m) = m {
                            *acc = m.mul_add(ba.d * ba.sum as f32, *acc);
                        }
                    }
                    return;
                }
                for t0 in (0..T).step_by(8) {
                    let b: [&BlockQ8A; 8] = std::array::from_fn(|u| act(a, nb, t0 + u, i));
                    let s = _mm256_cvtepi32_ps(fold8(b.map(&ints)));
                    let da = _mm256_setr_ps(b[0].d, b[1].d, b[2].d, b[3].d, b[4].d, b[5].d, b[6].d, b[7].d);
                    let p = acc.as_mut_ptr().add(t0);
                    let mut v = _mm256_fmadd_ps(s, _mm256_mul_ps(_mm256_set1_ps(d), da), _mm256_loadu_ps(p));
                    if let Some(m) = m {
                        let sums = _mm256_setr_epi32(
                            b[0].sum, b[1].sum, b[2].sum, b[3].sum, b[4].sum, b[5].sum, b[6].sum, b[7].sum,
                        );
                        v = _mm256_fmadd_ps(_mm256_set1_ps(m), _mm256_mul_ps(da, _mm256_cvtepi32_ps(sums)), v);
                    }
                    _mm256_storeu_ps(p, v);
                }
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn q5_0_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = [0f32; T];
                let sixteen = _mm256_set1_epi8(16);
                for (i, b) in w.chunks_exact(size_of::<BlockQ5_0>()).enumerate() {
                    let p = b.as_ptr();
                    let qh = (p.add(offset_of!(BlockQ5_0, qh)) as *const u32).read_unaligned();
                    let nibbles = unpack_nibbles_32(p.add(offset_of!(BlockQ5_0, qs)));
                    let x = _mm256_sub_epi8(_mm256_or_si256(nibbles, high_bits_32(qh)), sixteen);
                    let ax = _mm256_sign_epi8(x, x);
                    let d = f16_le(p.add(offset_of!(BlockQ5_0, d)));
                    fold_block(&mut acc, a, nb, i, d, None, |ba| dot_u8i8(ax, _mm256_sign_epi8(load_act(ba), x)));
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn q5_1_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = [0f32; T];
                for (i, b) in w.chunks_exact(size_of::<BlockQ5_1>()).enumerate() {
                    let p = b.as_ptr();
                    let qh = (p.add(offset_of!(BlockQ5_1, qh)) as *const u32).read_unaligned();
                    let q = _mm256_or_si256(unpack_nibbles_32(p.add(offset_of!(BlockQ5_1, qs))), high_bits_32(qh));
                    let (d, m) = (f16_le(p.add(offset_of!(BlockQ5_1, d))), f16_le(p.add(offset_of!(BlockQ5_1, m))));
                    fold_block(&mut acc, a, nb, i, d, Some(m), |ba| dot_u8i8(q, load_act(ba)));
                }
                acc
            }
        }

        /// `q4_k` (`FIVE` false) and `q5_k`: per super-block, 4 groups of 32 bytes hold the
        /// nibbles of sub-blocks 2g (low) and 2g + 1 (high); `q5_k`'s fifth bit of sub-block j is
        /// bit j of `qh[l]`.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn k4_impl<const T: usize, const FIVE: bool>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let bytes = if FIVE { size_of::<BlockQ5K>() } else { size_of::<BlockQ4K>() };
                let m4 = _mm256_set1_epi8(0x0F);
                let h16 = _mm256_set1_epi8(0x10);
                let mut acc = [0f32; T];
                for (sb, b) in w.chunks_exact(bytes).enumerate() {
                    let sm = crate::kquants::scales_k4(b);
                    let p = b.as_ptr();
                    let qh = if FIVE {
                        _mm256_loadu_si256(p.add(offset_of!(BlockQ5K, qh)) as *const __m256i)
                    } else {
                        _mm256_setzero_si256()
                    };
                    let ql = p.add(if FIVE { offset_of!(BlockQ5K, qs) } else { offset_of!(BlockQ4K, qs) });
                    for g in 0..4 {
                        let v = _mm256_loadu_si256(ql.add(32 * g) as *const __m256i);
                        let halves = [_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4)];
                        for (h, mut q) in halves.into_iter().enumerate() {
                            let j = 2 * g + h;
                            if FIVE {
                                let bit = _mm256_set1_epi8(1 << j);
                                let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                                q = _mm256_or_si256(q, _mm256_and_si256(set, h16));
                            }
                            fold_block(&mut acc, a, nb, 8 * sb + j, sm[j].0, Some(-sm[j].1), |ba| {
                                dot_u8i8(q, load_act(ba))
                            });
                        }
                    }
                }
                acc
            }
        }

        /// The low two bits of each byte of `h`, moved to bits 4–5.
        #[target_feature(enable = $features)]
        #[inline]
        fn two_bits(h: __m256i, m2: __m256i) -> __m256i {
            _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2))
        }

        /// `q6_k`: per 128-value half n, sub-block k takes nibbles from `ql[32·(k & 1)..]`
        /// (low for k < 2, high otherwise) and two bits from `qh >> 2k`; the low 8 lanes of a
        /// product cover its first 16 values (scale `sc[2k]`), the high 8 its second 16.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn q6_k_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let m4 = _mm256_set1_epi8(0x0F);
                let m2 = _mm256_set1_epi8(3);
                let off = _mm256_set1_epi8(32);
                let mut acc = [0f32; T];
                for (sb, b) in w.chunks_exact(size_of::<BlockQ6K>()).enumerate() {
                    let p = b.as_ptr();
                    let d = f16_le(p.add(offset_of!(BlockQ6K, d)));
                    for n in 0..2 {
                        let ql = p.add(offset_of!(BlockQ6K, ql) + 64 * n);
                        let ql0 = _mm256_loadu_si256(ql as *const __m256i);
                        let ql1 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                        let qh = _mm256_loadu_si256(p.add(offset_of!(BlockQ6K, qh) + 32 * n) as *const __m256i);
                        let q = [
                            _mm256_or_si256(_mm256_and_si256(ql0, m4), two_bits(qh, m2)),
                            _mm256_or_si256(_mm256_and_si256(ql1, m4), two_bits(_mm256_srli_epi16::<2>(qh), m2)),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                                two_bits(_mm256_srli_epi16::<4>(qh), m2),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                                two_bits(_mm256_srli_epi16::<6>(qh), m2),
                            ),
                        ];
                        let sc = &b[offset_of!(BlockQ6K, scales) + 8 * n..][..8];
                        for (k, q) in q.into_iter().enumerate() {
                            let x = _mm256_sub_epi8(q, off);
                            let ax = _mm256_sign_epi8(x, x);
                            // Lanes 0–3 hold the first 16 values (scale sc[2k]), 4–7 the second.
                            let scales = _mm256_set_m128i(
                                _mm_set1_epi32(sc[2 * k + 1] as i8 as i32),
                                _mm_set1_epi32(sc[2 * k] as i8 as i32),
                            );
                            // The contract (`kquants::vec_dot_q6_k`): scales applied in integers,
                            // then one fma per 32 values.
                            fold_block(&mut acc, a, nb, 8 * sb + 4 * n + k, d, None, |ba| {
                                _mm256_mullo_epi32(dot_u8i8(ax, _mm256_sign_epi8(load_act(ba), x)), scales)
                            });
                        }
                    }
                }
                acc
            }
        }
    };
}
