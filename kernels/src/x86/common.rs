//! Kernel bodies shared by `avx2.rs` and `avx512.rs`, as macros that each ISA module
//! instantiates with its target features and the two helpers whose instructions differ:
//! `dot_u8i8` (`vpmaddubsw` + `vpmaddwd`, or VNNI's `vpdpbusd`) and `high_bits_32` (a shuffle,
//! two ANDs and a compare, or AVX-512BW's masked move). The instantiating module imports
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
// activation blocks, `byte_bodies!`, instantiated by `kernel_bodies!` for AVX2 and AVX-512 VNNI (the
// differences are `dot_u8i8` and `high_bits_32`). Scalar twins: `q5::vec_dot_*`, `kquants::vec_dot_*`.
//
// Each 32-value activation block meets one weight sub-block (two 16-value ones for `q6_k`):
// the integer products are exact in the lanes, summed exactly per block, and folded into one
// f32 accumulator per (row, token) with the contract's fused multiply-adds in block order, so
// the results are the scalar twins' bits. Prefill (`dots_*`: one row × tokens) folds 8 tokens'
// block sums at once (lane = token); decode (`rows_*`: rows × one token) folds 8 rows' (lane =
// row). Each type's sub-block decoder (`q5_0_ints`, `q5_1_ints`, `k4_sub`, `q6_sub`) serves both.

macro_rules! byte_bodies {
    ($features:literal, tokens: $TOK:literal) => {
        use crate::types::{BlockLayout, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K};
        use std::mem::offset_of;

        /// Tokens per kernel call: each unpacked weight block serves this many tokens (8 with
        /// AVX2's 16 registers, 16 with AVX-512's 32; measured on SmolLM2 Q4_K_M prefill).
        const TOK: usize = $TOK;

        /// Rows per decode kernel call: their block sums fold in one transposing sum.
        const ROWS: usize = 8;

        /// A row kernel for `T` tokens: `(row, first token's blocks, nb) → T results`.
        type RowKernel<const T: usize> = unsafe fn(&[u8], *const BlockQ8A, usize) -> [f32; T];

        /// A decode kernel: `(first of ROWS rows, bytes per row, the token's blocks, nb)`.
        type RowsKernel = unsafe fn(*const u8, usize, *const BlockQ8A, usize) -> [f32; ROWS];

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

        /// The `ByteRowsFn` contract: `w` holds `out.len()` rows of exactly `nb` activation
        /// blocks' worth and `a` at least one token; then runs the rows `ROWS` at a time (the
        /// same per-row operations as one at a time).
        fn run_rows<B: BlockLayout>(
            w: &[u8],
            a: &[BlockQ8A],
            nb: usize,
            out: &mut [f32],
            many: RowsKernel,
            one: RowKernel<1>,
        ) {
            let per = B::BLOCK_LEN / QK;
            let rb = nb / per * size_of::<B>();
            assert!(
                nb.is_multiple_of(per) && w.len() == out.len() * rb && a.len() >= nb,
                "byte-coded rows and activations differ"
            );
            let mut r = 0;
            while r + ROWS <= out.len() && rb > 0 {
                // SAFETY: `plug` runs only after feature detection; rows r..r + ROWS lie inside
                // `w` and `a` holds the token's `nb` blocks (asserted above).
                let v = unsafe { many(w.as_ptr().add(r * rb), rb, a.as_ptr(), nb) };
                out[r..r + ROWS].copy_from_slice(&v);
                r += ROWS;
            }
            while r < out.len() {
                // SAFETY: as above, for the one row r.
                out[r] = unsafe { one(&w[r * rb..(r + 1) * rb], a.as_ptr(), nb) }[0];
                r += 1;
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
        pub(super) fn rows_q5_0(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_rows::<BlockQ5_0>(w, a, nb, out, q5_0_rows, q5_0_impl::<1>)
        }
        pub(super) fn rows_q5_1(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_rows::<BlockQ5_1>(w, a, nb, out, q5_1_rows, q5_1_impl::<1>)
        }
        pub(super) fn rows_q4_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_rows::<BlockQ4K>(w, a, nb, out, k4_rows::<false>, k4_impl::<1, false>)
        }
        pub(super) fn rows_q5_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_rows::<BlockQ5K>(w, a, nb, out, k4_rows::<true>, k4_impl::<1, true>)
        }
        pub(super) fn rows_q6_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_rows::<BlockQ6K>(w, a, nb, out, q6_k_rows, q6_k_impl::<1>)
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
            unsafe { f16_to_f32(f16_bits(p)) }
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
        /// sum `s_t` (the lanes of `ints(t's activation block)` added, less `off·Σa`), then
        /// `acc_t = fma(s_t, d·d_a, acc_t)` and, with a minimum `m`, `acc_t = fma(m, d_a·Σa, acc_t)`.
        /// Eight tokens at a time share one transposing sum and one vector multiply-add (lane =
        /// token); the products are the scalar ones, so every token gets the same bits.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `a` holds T tokens of `nb` blocks, i < nb.
        #[target_feature(enable = $features)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn fold_block<const T: usize>(
            acc: &mut [f32; T],
            a: *const BlockQ8A,
            nb: usize,
            i: usize,
            d: f32,
            m: Option<f32>,
            off: i32,
            ints: impl Fn(&BlockQ8A) -> __m256i,
        ) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                if T % 8 != 0 {
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let ba = act(a, nb, t, i);
                        *acc = ((hsum_i32x8(ints(ba)) - off * ba.sum) as f32).mul_add(d * ba.d, *acc);
                        if let Some(m) = m {
                            *acc = m.mul_add(ba.d * ba.sum as f32, *acc);
                        }
                    }
                    return;
                }
                for t0 in (0..T).step_by(8) {
                    let b: [&BlockQ8A; 8] = std::array::from_fn(|u| act(a, nb, t0 + u, i));
                    let mut v8 = [_mm256_setzero_si256(); 8];
                    for (v, ba) in v8.iter_mut().zip(b) {
                        *v = ints(ba);
                    }
                    let sums = _mm256_setr_epi32(
                        b[0].sum, b[1].sum, b[2].sum, b[3].sum, b[4].sum, b[5].sum, b[6].sum, b[7].sum,
                    );
                    let mut si = fold8(v8);
                    if off != 0 {
                        si = _mm256_sub_epi32(si, _mm256_mullo_epi32(sums, _mm256_set1_epi32(off)));
                    }
                    let s = _mm256_cvtepi32_ps(si);
                    let da = _mm256_setr_ps(b[0].d, b[1].d, b[2].d, b[3].d, b[4].d, b[5].d, b[6].d, b[7].d);
                    let p = acc.as_mut_ptr().add(t0);
                    let mut v = _mm256_fmadd_ps(s, _mm256_mul_ps(_mm256_set1_ps(d), da), _mm256_loadu_ps(p));
                    if let Some(m) = m {
                        v = _mm256_fmadd_ps(_mm256_set1_ps(m), _mm256_mul_ps(da, _mm256_cvtepi32_ps(sums)), v);
                    }
                    _mm256_storeu_ps(p, v);
                }
            }
        }

        /// `ROWS` rows (`rb` bytes apart from `w`) × one token by the contract, lane = row: per
        /// weight block (`bytes` long, `per` sub-blocks), `prep` reads the row's block-wide
        /// values once; per sub-block j, `sub(row's block, its prep, j, activation block)` gives
        /// the row's integer lanes, `d` and minimum (as stored: `D`, which `dv` turns into 8 f32
        /// lanes from 8 consecutive values, e.g. 8 f16 in one conversion). The rows' exact sums
        /// fold in one transposing sum (less `off·Σa`, the same for every row), then
        /// `acc = fma(s, d·d_a, acc)` and, with `MIN`, `acc = fma(m, d_a·Σa, acc)`: the scalar
        /// products, so every row gets its one-row bits.
        ///
        /// The rows are read one after the other, a panel of `PANEL` sub-blocks at a time, so the
        /// bytes stream in order (eight rows read side by side are eight strided streams, which
        /// the hardware prefetchers do not follow: measured 30 % slower decode); each row's
        /// block lanes wait in `ints` (exact i32) for the fold, whole: reducing them there, 8 rows
        /// at a time, costs fewer instructions than halving each row's vector first, and the
        /// `d`s convert 8 at a time in the fold instead of one by one per row.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `w` holds `ROWS` rows of `nb / per` blocks,
        /// `a` the token's `nb` activation blocks.
        #[target_feature(enable = $features)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows8<S, D: Copy, const MIN: bool>(
            w: *const u8,
            rb: usize,
            a: *const BlockQ8A,
            nb: usize,
            bytes: usize,
            per: usize,
            off: i32,
            prep: impl Fn(*const u8) -> S,
            sub: impl Fn(*const u8, &S, usize, &BlockQ8A) -> (__m256i, D, D),
            dv: impl Fn(*const D) -> __m256,
        ) -> [f32; ROWS] {
            const PANEL: usize = 64;
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                // Left uninitialised (zeroing the scratch per call measured 12 % of decode): slot
                // (k, u) is written below before the fold reads it, for every k < (b1 − b0)·per.
                let mut ints = std::mem::MaybeUninit::<[[__m256i; ROWS]; PANEL]>::uninit();
                let mut d = std::mem::MaybeUninit::<[[D; ROWS]; PANEL]>::uninit();
                let mut m = std::mem::MaybeUninit::<[[D; ROWS]; PANEL]>::uninit();
                let (ints, d, m) =
                    (ints.as_mut_ptr() as *mut __m256i, d.as_mut_ptr() as *mut D, m.as_mut_ptr() as *mut D);
                let mut acc = _mm256_setzero_ps();
                let (blocks, step) = (nb / per, (PANEL / per).max(1));
                for b0 in (0..blocks).step_by(step) {
                    let b1 = (b0 + step).min(blocks);
                    // Plain loops, not `array::from_fn`/`map`: a closure called from a generic
                    // function without these target features is not inlined, and every vector
                    // then crosses a call through memory (measured: q6_k decode 2.4× slower).
                    for u in 0..ROWS {
                        for blk in b0..b1 {
                            let p = w.add(u * rb + blk * bytes);
                            let s = prep(p);
                            for j in 0..per {
                                let k = (blk - b0) * per + j;
                                let (v, dk, mk) = sub(p, &s, j, &*a.add(blk * per + j));
                                let at = k * ROWS + u;
                                ints.add(at).write(v);
                                d.add(at).write(dk);
                                if MIN {
                                    m.add(at).write(mk);
                                }
                            }
                        }
                    }
                    for k in 0..(b1 - b0) * per {
                        let ba = &*a.add(b0 * per + k);
                        let r = ints.add(k * ROWS);
                        let v = [*r, *r.add(1), *r.add(2), *r.add(3), *r.add(4), *r.add(5), *r.add(6), *r.add(7)];
                        let si = _mm256_sub_epi32(fold8(v), _mm256_set1_epi32(off * ba.sum));
                        let sums = _mm256_cvtepi32_ps(si);
                        acc = _mm256_fmadd_ps(sums, _mm256_mul_ps(dv(d.add(k * ROWS)), _mm256_set1_ps(ba.d)), acc);
                        if MIN {
                            acc = _mm256_fmadd_ps(dv(m.add(k * ROWS)), _mm256_set1_ps(ba.d * ba.sum as f32), acc);
                        }
                    }
                }
                let mut out = [0f32; ROWS];
                _mm256_storeu_ps(out.as_mut_ptr(), acc);
                out
            }
        }

        /// 8 consecutive f32 as a vector (`rows8`'s `dv` for values computed in f32).
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at 8 values.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn f32x8(p: *const f32) -> __m256 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { _mm256_loadu_ps(p) }
        }

        /// 8 consecutive f16 bit patterns as f32 lanes, in one conversion (exact, the same
        /// values as `f16_le` one at a time: `rows8`'s `dv` for stored `d`s and `m`s).
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at 8 values.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn f16x8(p: *const u16) -> __m256 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
        }

        /// The f16 bits at `p` (an unaligned little-endian `u16`).
        ///
        /// # Safety
        /// `p` points at 2 readable bytes.
        #[inline]
        unsafe fn f16_bits(p: *const u8) -> u16 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { (p as *const u16).read_unaligned() }
        }

        /// A `q5_0` block's 32 values as unsigned bytes (0–31: the contract's sum is
        /// `Σ q·a − 16·Σa`, `Q5_0_OFFSET`).
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at a whole block.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn q5_0_ints(p: *const u8) -> __m256i {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let qh = (p.add(offset_of!(BlockQ5_0, qh)) as *const u32).read_unaligned();
                _mm256_or_si256(unpack_nibbles_32(p.add(offset_of!(BlockQ5_0, qs))), high_bits_32(qh))
            }
        }

        /// What a `q5_0` block sum subtracts per unit of Σa (its values are stored as q + 16).
        const Q5_0_OFFSET: i32 = 16;

        /// A `q5_1` block's 32 values as unsigned bytes.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at a whole block.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn q5_1_ints(p: *const u8) -> __m256i {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let qh = (p.add(offset_of!(BlockQ5_1, qh)) as *const u32).read_unaligned();
                _mm256_or_si256(unpack_nibbles_32(p.add(offset_of!(BlockQ5_1, qs))), high_bits_32(qh))
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
                for (i, b) in w.chunks_exact(size_of::<BlockQ5_0>()).enumerate() {
                    let (q, d) = (q5_0_ints(b.as_ptr()), f16_le(b.as_ptr().add(offset_of!(BlockQ5_0, d))));
                    fold_block(&mut acc, a, nb, i, d, None, Q5_0_OFFSET, |ba| dot_u8i8(q, load_act(ba)));
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; `w` holds `ROWS` rows `rb` bytes apart, `a`
        /// the token's `nb` blocks.
        #[target_feature(enable = $features)]
        unsafe fn q5_0_rows(w: *const u8, rb: usize, a: *const BlockQ8A, nb: usize) -> [f32; ROWS] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                rows8::<(), u16, false>(
                    w,
                    rb,
                    a,
                    nb,
                    size_of::<BlockQ5_0>(),
                    1,
                    Q5_0_OFFSET,
                    |_| (),
                    |p, _, _, ba| {
                        let q = q5_0_ints(p);
                        (dot_u8i8(q, load_act(ba)), f16_bits(p.add(offset_of!(BlockQ5_0, d))), 0)
                    },
                    |p| f16x8(p),
                )
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
                    let q = q5_1_ints(p);
                    let (d, m) = (f16_le(p.add(offset_of!(BlockQ5_1, d))), f16_le(p.add(offset_of!(BlockQ5_1, m))));
                    fold_block(&mut acc, a, nb, i, d, Some(m), 0, |ba| dot_u8i8(q, load_act(ba)));
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; `w` holds `ROWS` rows `rb` bytes apart, `a`
        /// the token's `nb` blocks.
        #[target_feature(enable = $features)]
        unsafe fn q5_1_rows(w: *const u8, rb: usize, a: *const BlockQ8A, nb: usize) -> [f32; ROWS] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                rows8::<(), u16, true>(
                    w,
                    rb,
                    a,
                    nb,
                    size_of::<BlockQ5_1>(),
                    1,
                    0,
                    |_| (),
                    |p, _, _, ba| {
                        let q = q5_1_ints(p);
                        let (d, m) = (offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m));
                        (dot_u8i8(q, load_act(ba)), f16_bits(p.add(d)), f16_bits(p.add(m)))
                    },
                    |p| f16x8(p),
                )
            }
        }

        /// Sub-block j of a `q4_k` (`FIVE` false) or `q5_k` super-block as unsigned bytes: 4
        /// groups of 32 bytes hold the nibbles of sub-blocks 2g (low) and 2g + 1 (high); `q5_k`'s
        /// fifth bit of sub-block j is bit j of `qh[l]`.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at a whole super-block, j < 8.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn k4_sub<const FIVE: bool>(p: *const u8, j: usize) -> __m256i {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let m4 = _mm256_set1_epi8(0x0F);
                let ql = p.add(if FIVE { offset_of!(BlockQ5K, qs) } else { offset_of!(BlockQ4K, qs) });
                // Shifts by a register count, not branches: j is a run-time value in `rows8`.
                let v = _mm256_loadu_si256(ql.add(32 * (j / 2)) as *const __m256i);
                let q = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(4 * (j % 2) as i32)), m4);
                if !FIVE {
                    return q;
                }
                let qh = _mm256_loadu_si256(p.add(offset_of!(BlockQ5K, qh)) as *const __m256i);
                let bit = _mm256_set1_epi8(1 << j);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
            }
        }

        /// The (scale, minimum) multipliers of a `q4_k`/`q5_k` super-block at `p`: the products
        /// `d·sc` and `dmin·m` of `kquants::scales_k4`, with `d` and `dmin` converted by F16C
        /// and plain loops (measured: `scales_k4` itself was not inlined and took 3–4 % of
        /// Q4_K_M decode).
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at a whole super-block.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn k4_scales(p: *const u8) -> [(f32, f32); 8] {
            // `q4_k` and `q5_k` share `d`, `dmin` and the 12 scale bytes at the same offsets.
            const _: () = assert!(offset_of!(BlockQ4K, scales) == offset_of!(BlockQ5K, scales));
            const _: () = assert!(offset_of!(BlockQ4K, d) == offset_of!(BlockQ5K, d));
            const _: () = assert!(offset_of!(BlockQ4K, dmin) == offset_of!(BlockQ5K, dmin));
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let d = f16_le(p.add(offset_of!(BlockQ4K, d)));
                let dmin = f16_le(p.add(offset_of!(BlockQ4K, dmin)));
                let q = &*(p.add(offset_of!(BlockQ4K, scales)) as *const [u8; 12]);
                let mut out = [(0f32, 0f32); 8];
                for (j, o) in out.iter_mut().enumerate() {
                    let (sc, m) = crate::kquants::scale_min_k4(j, q);
                    *o = (d * sc as f32, dmin * m as f32);
                }
                out
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn k4_impl<const T: usize, const FIVE: bool>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let bytes = if FIVE { size_of::<BlockQ5K>() } else { size_of::<BlockQ4K>() };
                let mut acc = [0f32; T];
                for (sb, b) in w.chunks_exact(bytes).enumerate() {
                    let sm = k4_scales(b.as_ptr());
                    for (j, &(d, m)) in sm.iter().enumerate() {
                        let q = k4_sub::<FIVE>(b.as_ptr(), j);
                        fold_block(&mut acc, a, nb, 8 * sb + j, d, Some(-m), 0, |ba| dot_u8i8(q, load_act(ba)));
                    }
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; `w` holds `ROWS` rows `rb` bytes apart, `a`
        /// the token's `nb` blocks.
        #[target_feature(enable = $features)]
        unsafe fn k4_rows<const FIVE: bool>(w: *const u8, rb: usize, a: *const BlockQ8A, nb: usize) -> [f32; ROWS] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let bytes = if FIVE { size_of::<BlockQ5K>() } else { size_of::<BlockQ4K>() };
                rows8::<_, f32, true>(
                    w,
                    rb,
                    a,
                    nb,
                    bytes,
                    8,
                    0,
                    |p| k4_scales(p),
                    |p, sm, j, ba| (dot_u8i8(k4_sub::<FIVE>(p, j), load_act(ba)), sm[j].0, -sm[j].1),
                    |p| f32x8(p),
                )
            }
        }

        /// Sub-block j of a `q6_k` super-block: its values as signed bytes and its two 16-value
        /// scales (lanes 0–3 of a product cover the first 16 values, scale `sc[2k]`; lanes 4–7
        /// the second). Half n = j / 4, k = j % 4: nibbles from `ql[64n + 32·(k & 1)..]` (low
        /// for k < 2, high otherwise), two bits from `qh[32n..] >> 2k`.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at a whole super-block, j < 8.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn q6_sub(p: *const u8, j: usize) -> (__m256i, __m256i) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let (n, k) = (j / 4, j % 4);
                let m4 = _mm256_set1_epi8(0x0F);
                // Shifts by a register count, not branches: j is a run-time value in `rows8`.
                let l = _mm256_loadu_si256(p.add(offset_of!(BlockQ6K, ql) + 64 * n + 32 * (k & 1)) as *const __m256i);
                let l = _mm256_and_si256(_mm256_srl_epi16(l, _mm_cvtsi32_si128(4 * (k / 2) as i32)), m4);
                let h = _mm256_loadu_si256(p.add(offset_of!(BlockQ6K, qh) + 32 * n) as *const __m256i);
                let h = _mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * k as i32));
                let h = _mm256_slli_epi16::<4>(_mm256_and_si256(h, _mm256_set1_epi8(3)));
                let x = _mm256_sub_epi8(_mm256_or_si256(l, h), _mm256_set1_epi8(32));
                let sc = p.add(offset_of!(BlockQ6K, scales) + 8 * n + 2 * k);
                // Each i32 lane holds the scale in its low 16 bits and 0 above (`q6_ints`).
                let lane = |b: u8| (b as i8 as i16 as u16) as i32;
                let scales = _mm256_set_m128i(_mm_set1_epi32(lane(*sc.add(1))), _mm_set1_epi32(lane(*sc)));
                (x, scales)
            }
        }

        /// A `q6_k` sub-block's integer lanes against an activation block: the contract
        /// (`kquants::vec_dot_q6_k`) applies the two half-scales in integers, then one fma per
        /// 32 values.
        #[target_feature(enable = $features)]
        #[inline]
        fn q6_ints(x: __m256i, scales: __m256i, act: __m256i) -> __m256i {
            // A lane sums 4 products |x|·a with |x| ≤ 32 and |a| ≤ 128: |lane| ≤ 16384 fits an
            // i16, so `vpmaddwd` against (scale, 0) multiplies it exactly, in one µop where
            // `vpmulld` takes two (10 cycles on Intel cores).
            _mm256_madd_epi16(dot_u8i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(act, x)), scales)
        }

        /// # Safety
        /// The CPU has the enabled target features; the pointers cover every value it reads or
        /// writes (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn q6_k_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = [0f32; T];
                for (sb, b) in w.chunks_exact(size_of::<BlockQ6K>()).enumerate() {
                    let d = f16_le(b.as_ptr().add(offset_of!(BlockQ6K, d)));
                    for j in 0..8 {
                        let (x, scales) = q6_sub(b.as_ptr(), j);
                        fold_block(&mut acc, a, nb, 8 * sb + j, d, None, 0, |ba| q6_ints(x, scales, load_act(ba)));
                    }
                }
                acc
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; `w` holds `ROWS` rows `rb` bytes apart, `a`
        /// the token's `nb` blocks.
        #[target_feature(enable = $features)]
        unsafe fn q6_k_rows(w: *const u8, rb: usize, a: *const BlockQ8A, nb: usize) -> [f32; ROWS] {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let bytes = size_of::<BlockQ6K>();
                rows8::<f32, f32, false>(
                    w,
                    rb,
                    a,
                    nb,
                    bytes,
                    8,
                    0,
                    |p| f16_le(p.add(offset_of!(BlockQ6K, d))),
                    |p, &d, j, ba| {
                        let (x, scales) = q6_sub(p, j);
                        (q6_ints(x, scales, load_act(ba)), d, 0.0)
                    },
                    |p| f32x8(p),
                )
            }
        }
    };
}
