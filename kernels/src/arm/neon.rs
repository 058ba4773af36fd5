//! NEON kernel bodies, instantiated twice (plain NEON and NEON + dotprod) around the one
//! helper that differs, `dot_i8x16`.
//!
//! Each block's integer dot product is exact, and the f32 work per block is the scalar
//! reference's expression in the same order, so these kernels give the scalar results bit for
//! bit. `quantize_act` rounds with `fcvtas` (to nearest, ties away from zero), as `f32::round`.

/// Safe one-token row dots of the byte-coded types: the row must cover exactly the
/// activation blocks (the `ByteDotsFn` contract), one `$block` per `per` activation blocks.
macro_rules! byte_entries {
    ($($dot:ident($block:ty) => $body:expr),*) => {$(
        fn $dot(w: &[u8], a: &[BlockQ8A]) -> f32 {
            let per = <$block as crate::types::BlockLayout>::BLOCK_LEN / QK;
            assert!(
                a.len().is_multiple_of(per) && w.len() == a.len() / per * size_of::<$block>(),
                "byte-coded row and activations differ"
            );
            // SAFETY: features detected before `plug`; asserted above: one whole block
            // per `per` activation blocks.
            unsafe { $body(w, a) }
        }
    )*};
}

/// Every token of `a` (`nb` activation blocks each) through `$pass::<…, T>(w, tokens
/// from t, nb, out from token t, rows)`, in passes of `TOKENS` (the
/// module's), the rest one by one.
macro_rules! token_passes {
    ($pass:ident $(<$($g:ty),*>)?, $w:expr, $a:expr, $nb:expr, $nw:expr, $out:expr) => {{
        let (w, a, nb, nw, out) = ($w, $a, $nb, $nw, $out);
        let (toks, rows) = (a.len() / nb, 16 * (w.len() / nw));
        let mut t = 0;
        while t + TOKENS <= toks {
            $pass::<$($($g,)*)? TOKENS>(w, &a[t * nb..], nb, &mut out[t * rows..], rows);
            t += TOKENS;
        }
        while t < toks {
            $pass::<$($($g,)*)? 1>(w, &a[t * nb..], nb, &mut out[t * rows..], rows);
            t += 1;
        }
    }};
}

macro_rules! neon_bodies {
    ($isa:expr, $features:literal) => {
        use crate::types::{f16_at, f16_to_f32, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, QK};
        use crate::types::{BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K};
        use std::mem::offset_of;
        use crate::interleave::GroupBlock;
        use crate::scalar;

        plug!($isa, available: crate::arm::has, [
            quantize_act, vec_dot_q4_0, vec_dot_q4_1, vec_dot_q8_0, vec_dot_f32, dots_f32, wsum_f32,
            gemm_q4_0, gemm_q4_1, gemm_q8_0, gemm_q4_0x16, gemm_q4_1x16, gemm_q8_0x16, gemm_q5_0x16, gemm_q5_1x16,
            gemm_q4_kx16, gemm_q5_kx16, gemm_q6_kx16,
            dots_q5_0, dots_q5_1, dots_q4_k, dots_q5_k, dots_q6_k,
            rows_q5_0, rows_q5_1, rows_q4_k, rows_q5_k, rows_q6_k,
            dots_f16, wsum_f16, dots_q8_0, wsum_q8_0,
        ]);

        // One token at a time: the row dots below, per token.
        scalar::row_dots!(
            dots_q5_0, rows_q5_0 => vec_dot_q5_0,
            dots_q5_1, rows_q5_1 => vec_dot_q5_1,
            dots_q4_k, rows_q4_k => vec_dot_q4_k,
            dots_q5_k, rows_q5_k => vec_dot_q5_k,
            dots_q6_k, rows_q6_k => vec_dot_q6_k
        );

        // ---- safe entry points (installed by `plug` after feature detection) ----

        fn quantize_act(src: &[f32], dst: &mut [BlockQ8A]) {
            assert!(src.len() >= dst.len() * QK);
            // SAFETY: features detected before `plug`; lengths asserted.
            unsafe { quantize_act_impl(src, dst) }
        }
        dot_entries!(
            vec_dot_q4_0(BlockQ4_0, BlockQ8A) => vec_dot_q4_0_impl,
            vec_dot_q4_1(BlockQ4_1, BlockQ8A) => vec_dot_q4_1_impl,
            vec_dot_q8_0(BlockQ8_0, BlockQ8A) => vec_dot_q8_0_impl,
            vec_dot_f32(f32, f32) => vec_dot_f32_impl,
        );
        /// Attention scores: the NEON row dot per key row (the contract's `lane_dot`).
        fn dots_f32(q: &[f32], k: &[f32], stride: usize, out: &mut [f32]) {
            scalar::check_strided(q.len(), k.len(), stride, out.len());
            for (j, o) in out.iter_mut().enumerate() {
                // SAFETY: features detected before `plug`; the row lies inside `k` (checked).
                *o = unsafe { vec_dot_f32_impl(q, &k[j * stride..j * stride + q.len()]) };
            }
        }
        /// Attention's weighted sum (the contract's `pair_wsum`).
        fn wsum_f32(out: &mut [f32], w: &[f32], v: &[f32], stride: usize) {
            scalar::check_strided(out.len(), v.len(), stride, w.len());
            let p = v.as_ptr();
            // SAFETY: features detected before `plug`; `check_strided` asserted that values
            // 0 .. out.len() of every row j < w.len() lie inside `v`, and `pair_wsum` reads
            // values i .. i + 4 ≤ out.len() only.
            unsafe {
                super::pair_wsum(out, w.len(), |j, i| (w[j], vld1q_f32(p.add(j * stride + i))), |j, i| (w[j], v[j * stride + i]));
            }
        }
        /// Attention scores over f16 keys: a row dot per key (`lane_dot`), halves widened in
        /// registers.
        fn dots_f16(q: &[f32], k: &[u16], stride: usize, out: &mut [f32]) {
            scalar::check_strided(q.len(), k.len(), stride, out.len());
            for (j, o) in out.iter_mut().enumerate() {
                // SAFETY: features detected before `plug`; the row lies inside `k` (checked) and
                // has the length of `q`.
                *o = unsafe { dot_f16_impl(q, &k[j * stride..j * stride + q.len()]) };
            }
        }
        /// Attention's weighted sum over f16 values (`pair_wsum`).
        fn wsum_f16(out: &mut [f32], w: &[f32], v: &[u16], stride: usize) {
            scalar::check_strided(out.len(), v.len(), stride, w.len());
            let p = v.as_ptr();
            // SAFETY: as in `wsum_f32`.
            unsafe {
                super::pair_wsum(
                    out,
                    w.len(),
                    |j, i| (w[j], super::f16x4_to_f32(vmovl_u16(vld1_u16(p.add(j * stride + i))))),
                    |j, i| (w[j], f16_to_f32(v[j * stride + i])),
                );
            }
        }
        /// Attention scores over q8_0 keys (`stride` in blocks), the query in f32.
        fn dots_q8_0(q: &[f32], k: &[BlockQ8_0], stride: usize, out: &mut [f32]) {
            let nb = scalar::q8_0_blocks(q.len());
            scalar::check_strided(nb, k.len(), stride, out.len());
            for (j, o) in out.iter_mut().enumerate() {
                // SAFETY: features detected before `plug`; the row's `nb` blocks lie inside `k`
                // (checked) and `q` is `nb` whole blocks.
                *o = unsafe { dot_q8_0_f32_impl(q, &k[j * stride..j * stride + nb]) };
            }
        }
        /// Attention's weighted sum over q8_0 values (`stride` in blocks; `pair_wsum` of the
        /// terms `w_j·d_jb` × values).
        fn wsum_q8_0(out: &mut [f32], w: &[f32], v: &[BlockQ8_0], stride: usize) {
            let nb = scalar::q8_0_blocks(out.len());
            scalar::check_strided(nb, v.len(), stride, w.len());
            let blk = |j: usize, i: usize| &v[j * stride + i / QK];
            // SAFETY: features detected before `plug`; `check_strided` asserted that blocks
            // j·stride .. j·stride + nb lie inside `v`; values i .. i + 4 < 32 (i a multiple of
            // 4) lie inside block i / 32.
            unsafe {
                super::pair_wsum(
                    out,
                    w.len(),
                    |j, i| {
                        let b = blk(j, i);
                        (w[j] * f16_to_f32(b.d), super::i8x4_to_f32(b.qs.as_ptr().add(i % QK)))
                    },
                    |j, i| {
                        let b = blk(j, i);
                        (w[j] * f16_to_f32(b.d), b.qs[i % QK] as f32)
                    },
                );
            }
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

        x16_entries!(gemm_x16_impl);
        x16_entries!(k: gemm_kx16_impl);
        x16_entries!(@ gemm_q6x16_impl, gemm_q6_kx16: BlockQ6Kx16);

        byte_entries!(
            vec_dot_q5_0(BlockQ5_0) => vec_dot_q5_impl::<false>,
            vec_dot_q5_1(BlockQ5_1) => vec_dot_q5_impl::<true>,
            vec_dot_q4_k(BlockQ4K) => vec_dot_k4_impl::<false>,
            vec_dot_q5_k(BlockQ5K) => vec_dot_k4_impl::<true>,
            vec_dot_q6_k(BlockQ6K) => vec_dot_q6_k_impl
        );

        // ---- kernels ----

        /// Bytes 0x10 where bit j of the 16-bit `bits` is set (j = lane), else 0.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn high_bits_16(bits: u16) -> uint8x16_t {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
                let v = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
                vandq_u8(vtstq_u8(v, vld1q_u8(BIT.as_ptr())), vdupq_n_u8(0x10))
            }
        }

        /// `q5_0` (`ONE` false) and `q5_1`: the scalar twin's expression per block.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q5_impl<const ONE: bool>(w: &[u8], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let (bytes, qh_at, qs_at) = if ONE {
                    (size_of::<BlockQ5_1>(), offset_of!(BlockQ5_1, qh), offset_of!(BlockQ5_1, qs))
                } else {
                    (size_of::<BlockQ5_0>(), offset_of!(BlockQ5_0, qh), offset_of!(BlockQ5_0, qs))
                };
                let mut acc = 0f32;
                for (b, ba) in w.chunks_exact(bytes).zip(a) {
                    let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
                    let v = vld1q_u8(b.as_ptr().add(qs_at));
                    let lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0F)), high_bits_16(qh as u16));
                    let hi = vorrq_u8(vshrq_n_u8::<4>(v), high_bits_16((qh >> 16) as u16));
                    let s = block_dot(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), &ba.qs);
                    if ONE {
                        let (d, m) = (f16_at(b, offset_of!(BlockQ5_1, d)), f16_at(b, offset_of!(BlockQ5_1, m)));
                        acc = scalar::min_term(m, ba, scalar::block_term(s, d, ba, acc));
                    } else {
                        acc = scalar::block_term(s - 16 * ba.sum, f16_at(b, offset_of!(BlockQ5_0, d)), ba, acc);
                    }
                }
                acc
            }
        }

        /// `q4_k` (`FIVE` false) and `q5_k`: the scalar twin's expression per sub-block.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_k4_impl<const FIVE: bool>(w: &[u8], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let bytes = if FIVE { size_of::<BlockQ5K>() } else { size_of::<BlockQ4K>() };
                let m4 = vdupq_n_u8(0x0F);
                let mut acc = 0f32;
                for (b, a8) in w.chunks_exact(bytes).zip(a.chunks_exact(8)) {
                    let sm = crate::kquants::scales_k4(b);
                    let p = b.as_ptr();
                    let qh = p.add(offset_of!(BlockQ5K, qh));
                    let qh = [vld1q_u8(qh), vld1q_u8(qh.add(16))];
                    let ql = p.add(if FIVE { offset_of!(BlockQ5K, qs) } else { offset_of!(BlockQ4K, qs) });
                    for g in 0..4 {
                        let v = [vld1q_u8(ql.add(32 * g)), vld1q_u8(ql.add(32 * g + 16))];
                        for h in 0..2 {
                            let j = 2 * g + h;
                            let mut q = if h == 0 {
                                [vandq_u8(v[0], m4), vandq_u8(v[1], m4)]
                            } else {
                                [vshrq_n_u8::<4>(v[0]), vshrq_n_u8::<4>(v[1])]
                            };
                            if FIVE {
                                let bit = vdupq_n_u8(1 << j);
                                for (q, qh) in q.iter_mut().zip(qh) {
                                    *q = vorrq_u8(*q, vandq_u8(vtstq_u8(qh, bit), vdupq_n_u8(0x10)));
                                }
                            }
                            let ba = &a8[j];
                            let s = block_dot(vreinterpretq_s8_u8(q[0]), vreinterpretq_s8_u8(q[1]), &ba.qs);
                            acc = scalar::min_term(-sm[j].1, ba, scalar::block_term(s, sm[j].0, ba, acc));
                        }
                    }
                }
                acc
            }
        }

        /// `q6_k`: the scalar twin's expression per 32 values (two 16-value sub-blocks).
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q6_k_impl(w: &[u8], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let m4 = vdupq_n_u8(0x0F);
                let m2 = vdupq_n_u8(3);
                let off = vdupq_n_s8(32);
                let mut acc = 0f32;
                for (b, a8) in w.chunks_exact(size_of::<BlockQ6K>()).zip(a.chunks_exact(8)) {
                    let p = b.as_ptr();
                    let d = f16_at(b, offset_of!(BlockQ6K, d));
                    // Exact integer sums per activation block and 16-value half.
                    let mut sums = [[0i32; 2]; 8];
                    for n in 0..2 {
                        for half in 0..2 {
                            // Values 16·half..16·half + 16 of each of the half's four sub-blocks.
                            let o = 16 * half;
                            let ql = p.add(offset_of!(BlockQ6K, ql) + 64 * n + o);
                            let (ql0, ql1) = (vld1q_u8(ql), vld1q_u8(ql.add(32)));
                            let qh = vld1q_u8(p.add(offset_of!(BlockQ6K, qh) + 32 * n + o));
                            let q = [
                                vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8::<4>(vandq_u8(qh, m2))),
                                vorrq_u8(vandq_u8(ql1, m4), vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh), m2))),
                                vorrq_u8(vshrq_n_u8::<4>(ql0), vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh), m2))),
                                vorrq_u8(vshrq_n_u8::<4>(ql1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh))),
                            ];
                            for (k, q) in q.into_iter().enumerate() {
                                let x = vsubq_s8(vreinterpretq_s8_u8(q), off);
                                let y = vld1q_s8(a8[4 * n + k].qs.as_ptr().add(o));
                                sums[4 * n + k][half] = vaddvq_s32(dot_i8x16(vdupq_n_s32(0), x, y));
                            }
                        }
                    }
                    for (i, (ba, s)) in a8.iter().zip(sums).enumerate() {
                        let sc = &b[offset_of!(BlockQ6K, scales) + 2 * i..];
                        let (sc0, sc1) = (sc[0] as i8 as i32, sc[1] as i8 as i32);
                        acc = scalar::block_term(sc0 * s[0] + sc1 * s[1], d, ba, acc);
                    }
                }
                acc
            }
        }

        /// Exact Σ x·y over a 32-value block given as two halves.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn block_dot(x0: int8x16_t, x1: int8x16_t, y: &[i8; QK]) -> i32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let y0 = vld1q_s8(y.as_ptr());
                let y1 = vld1q_s8(y.as_ptr().add(16));
                let acc = dot_i8x16(vdupq_n_s32(0), x0, y0);
                let acc = dot_i8x16(acc, x1, y1);
                vaddvq_s32(acc)
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn quantize_act_impl(src: &[f32], dst: &mut [BlockQ8A]) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
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
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q8_0_impl(w: &[BlockQ8_0], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = 0.0f32;
                for (bw, ba) in w.iter().zip(a) {
                    let x0 = vld1q_s8(bw.qs.as_ptr());
                    let x1 = vld1q_s8(bw.qs.as_ptr().add(16));
                    acc = scalar::block_term(block_dot(x0, x1, &ba.qs), f16_to_f32(bw.d), ba, acc);
                }
                acc
            }
        }

        /// Nibbles as signed bytes minus `bias`: values 0–15 of the block, then 16–31.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn nibbles(qs: &[u8; QK / 2], bias: i8) -> (int8x16_t, int8x16_t) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let v = vld1q_u8(qs.as_ptr());
                let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
                let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
                (vsubq_s8(lo, vdupq_n_s8(bias)), vsubq_s8(hi, vdupq_n_s8(bias)))
            }
        }

        /// Tokens per pass of the 16-row kernels: each weight quarter-block is unpacked once for
        /// them (a prompt's tokens reuse it; decode takes passes of 1).
        const TOKENS: usize = 4;

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn gemm_x16_impl<B: GroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { token_passes!(x16_pass<B>, w, a, nb, nb, out) }
        }

        /// 16-row interleaved matrices, 4 rows (a quarter of each 64-byte piece) at a time:
        /// the weights as signed bytes (q4: nibble − 8 for `q4_0`, as is for `q4_1`), unpacked
        /// once per block for the pass's T tokens, against 4 activation bytes repeated over the
        /// register, so `dot4_i8x16` gives 4 row sums; then per lane the contract's fused
        /// multiply-adds, so results match the scalar twin bit for bit. Token t's outputs go to
        /// `out[t * rows..]`.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn x16_pass<B: GroupBlock, const T: usize>(
            w: &[B],
            a: &[BlockQ8A],
            nb: usize,
            out: &mut [f32],
            rows: usize,
        ) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let q4 = B::DTYPE != crate::DType::Q8_0;
                // Nibbles (with q5's fifth bits) made signed: q4_0 − 8, q5_0 − 16.
                let bias = if q4 { -B::OFFSET as i8 } else { 0 };
                for (g, wg) in w.chunks_exact(nb).enumerate() {
                    for quad in 0..4 {
                        let mut acc = [vdupq_n_f32(0.0); T];
                        for (b, bw) in wg.iter().enumerate() {
                            // Piece k of this quad meets activation bytes 4k..4k + 4.
                            let qs = &bw.qs()[16 * quad..];
                            let mut x = [vdupq_n_s8(0); 8];
                            if q4 {
                                for k in 0..4 {
                                    let v = vld1q_u8(qs[64 * k..][..16].as_ptr());
                                    let (mut lo, mut hi) = (vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v));
                                    if let Some(qh) = bw.qh() {
                                        // This quad's 16 bits of the piece's masks (bit 4r + i).
                                        let bits = |high| (crate::interleave::qh_mask(qh, k, high) >> (16 * quad)) as u16;
                                        lo = vorrq_u8(lo, high_bits_16(bits(false)));
                                        hi = vorrq_u8(hi, high_bits_16(bits(true)));
                                    }
                                    x[k] = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(bias));
                                    x[4 + k] = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(bias));
                                }
                            } else {
                                for (k, x) in x.iter_mut().enumerate() {
                                    *x = vreinterpretq_s8_u8(vld1q_u8(qs[64 * k..][..16].as_ptr()));
                                }
                            }
                            let (d, m) = (quad_f16(bw.d(), quad), bw.m().map(|m| quad_f16(m, quad)));
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let ba = &a[t * nb + b];
                                let y = ba.qs.as_ptr() as *const i32;
                                let mut s = vdupq_n_s32(0);
                                for (k, x) in x.iter().enumerate() {
                                    // SAFETY: k < 8 and an activation block holds 32 bytes.
                                    let yk = vreinterpretq_s8_s32(vdupq_n_s32(y.add(k).read_unaligned()));
                                    s = dot4_i8x16(s, *x, yk);
                                }
                                // The contract: fma(s, d_w·d_a, acc), then fma(m, d_a·Σa, acc).
                                *acc = vfmaq_f32(*acc, vcvtq_f32_s32(s), vmulq_n_f32(d, ba.d));
                                if let Some(m) = m {
                                    *acc = vfmaq_f32(*acc, m, vdupq_n_f32(ba.d * ba.sum as f32));
                                }
                            }
                        }
                        for (t, acc) in acc.iter().enumerate() {
                            vst1q_f32(out[t * rows + 16 * g + 4 * quad..][..4].as_mut_ptr(), *acc);
                        }
                    }
                }
            }
        }

        /// Four lanes (rows `4·quad..4·quad + 4` of a group) of a 64-byte piece at `p`.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `p` points at a whole piece.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn quad_u8(p: *const u8, quad: usize) -> uint8x16_t {
            // SAFETY: the caller upholds the `# Safety` contract above (16·quad + 16 ≤ 64).
            unsafe { vld1q_u8(p.add(16 * quad)) }
        }

        /// The f16 fields of 4 rows as f32 lanes.
        ///
        /// # Safety
        /// The CPU has the enabled target features.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn quad_f16(f: &[u16; 16], quad: usize) -> float32x4_t {
            let v: [f32; 4] = std::array::from_fn(|i| f16_to_f32(f[4 * quad + i]));
            // SAFETY: `v` holds 4 values.
            unsafe { vld1q_f32(v.as_ptr()) }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn gemm_kx16_impl<B: crate::interleave::KGroupBlock>(w: &[B], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { token_passes!(kx16_pass<B>, w, a, nb, nb / 8, out) }
        }

        /// Interleaved `q4_k` / `q5_k`, 4 rows per register: per 32-value sub-block the 6-bit
        /// scale and min of each row from its scale lanes (shifts per lane, `scale_min_k4`), the
        /// values 0..31 (nibbles, q5_k + 16 where bit j of the fifth-bit byte is set), unpacked
        /// once for the pass's T tokens, against each token's bytes, then the contract's two
        /// FMAs, as the scalar twin.
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn kx16_pass<B: crate::interleave::KGroupBlock, const T: usize>(
            w: &[B],
            a: &[BlockQ8A],
            nb: usize,
            out: &mut [f32],
            rows: usize,
        ) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let sr = |v: uint32x4_t, n: usize| vshlq_u32(v, vdupq_n_s32(-(n as i32)));
                let mask = |v: uint32x4_t, m: u32| vandq_u32(v, vdupq_n_u32(m));
                for (g, wg) in w.chunks_exact(nb / 8).enumerate() {
                    for quad in 0..4 {
                        let mut acc = [vdupq_n_f32(0.0); T];
                        for (b, bw) in wg.iter().enumerate() {
                            let (d, dmin) = (quad_f16(bw.d(), quad), quad_f16(bw.dmin(), quad));
                            let sp = bw.scales().as_ptr();
                            // SAFETY (all piece reads): the fields hold whole pieces.
                            let s = [0, 1, 2].map(|p| vreinterpretq_u32_u8(quad_u8(sp.add(64 * p), quad)));
                            for j in 0..8 {
                                let (sc, m) = if j < 4 {
                                    (mask(sr(s[0], 8 * j), 63), mask(sr(s[1], 8 * j), 63))
                                } else {
                                    let j = j - 4;
                                    let top = |v| vshlq_n_u32::<4>(mask(sr(v, 8 * j + 6), 3));
                                    (
                                        vorrq_u32(mask(sr(s[2], 8 * j), 15), top(s[0])),
                                        vorrq_u32(mask(sr(s[2], 8 * j + 4), 15), top(s[1])),
                                    )
                                };
                                let dsc = vmulq_f32(d, vcvtq_f32_u32(sc));
                                let ndm = vnegq_f32(vmulq_f32(dmin, vcvtq_f32_u32(m)));
                                let q = bw.qs().as_ptr().add(64 * 8 * (j / 2));
                                let mut x = [vdupq_n_s8(0); 8];
                                for (k, x) in x.iter_mut().enumerate() {
                                    let v = quad_u8(q.add(64 * k), quad);
                                    let mut u = if j % 2 == 0 { vandq_u8(v, vdupq_n_u8(0x0F)) } else { vshrq_n_u8::<4>(v) };
                                    if let Some(qh) = bw.qh() {
                                        let h = quad_u8(qh.as_ptr().add(64 * k), quad);
                                        u = vorrq_u8(u, vandq_u8(vtstq_u8(h, vdupq_n_u8(1 << j)), vdupq_n_u8(0x10)));
                                    }
                                    *x = vreinterpretq_s8_u8(u);
                                }
                                for (t, acc) in acc.iter_mut().enumerate() {
                                    let ba = &a[t * nb + 8 * b + j];
                                    let y = ba.qs.as_ptr() as *const i32;
                                    let mut i = vdupq_n_s32(0);
                                    for (k, x) in x.iter().enumerate() {
                                        // SAFETY: k < 8 and an activation block holds 32 bytes.
                                        let yk = vreinterpretq_s8_s32(vdupq_n_s32(y.add(k).read_unaligned()));
                                        i = dot4_i8x16(i, *x, yk);
                                    }
                                    *acc = vfmaq_f32(*acc, vcvtq_f32_s32(i), vmulq_n_f32(dsc, ba.d));
                                    *acc = vfmaq_f32(*acc, ndm, vdupq_n_f32(ba.d * ba.sum as f32));
                                }
                            }
                        }
                        for (t, acc) in acc.iter().enumerate() {
                            vst1q_f32(out[t * rows + 16 * g + 4 * quad..][..4].as_mut_ptr(), *acc);
                        }
                    }
                }
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn gemm_q6x16_impl(w: &[crate::interleave::BlockQ6Kx16], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe { token_passes!(q6x16_pass, w, a, nb, nb / 8, out) }
        }

        /// Interleaved `q6_k`, 4 rows per register: per 32-value activation block the signed
        /// values (6 bits − 32), unpacked once for the pass's T tokens, of each 16-value half
        /// summed apart, the half scales (signed bytes of the scale lanes) applied in integers,
        /// one FMA (the scalar twin's expression).
        ///
        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn q6x16_pass<const T: usize>(
            w: &[crate::interleave::BlockQ6Kx16],
            a: &[BlockQ8A],
            nb: usize,
            out: &mut [f32],
            rows: usize,
        ) {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                for (g, wg) in w.chunks_exact(nb / 8).enumerate() {
                    for quad in 0..4 {
                        let mut acc = [vdupq_n_f32(0.0); T];
                        for (b, bw) in wg.iter().enumerate() {
                            let d = quad_f16(&bw.d, quad);
                            // SAFETY (all piece reads): the fields hold whole pieces.
                            // Scale j of the quad's 4 rows, sign-extended to 32 bits.
                            let scale = |j: usize| {
                                let b = u32::from_le_bytes(bw.scale(j)[4 * quad..][..4].try_into().expect("4 bytes"));
                                vmovl_s16(vget_low_s16(vmovl_s8(vcreate_s8(b as u64))))
                            };
                            for i in 0..8 {
                                let (n, k) = (i / 4, i % 4);
                                let (sc0, sc1) = (scale(2 * i), scale(2 * i + 1));
                                let ql = bw.ql(2 * n + (k & 1)).as_ptr();
                                let qh = bw.qh(n).as_ptr();
                                let mut x = [vdupq_n_s8(0); 8];
                                for (kk, x) in x.iter_mut().enumerate() {
                                    let v = quad_u8(ql.add(64 * kk), quad);
                                    let lo = if k < 2 { vandq_u8(v, vdupq_n_u8(0x0F)) } else { vshrq_n_u8::<4>(v) };
                                    let h = quad_u8(qh.add(64 * kk), quad);
                                    // Bits 2k, 2k + 1 of each byte to bits 4, 5.
                                    let hi = vandq_u8(vshlq_u8(h, vdupq_n_s8(4 - 2 * k as i8)), vdupq_n_u8(0x30));
                                    *x = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), vdupq_n_s8(32));
                                }
                                for (t, acc) in acc.iter_mut().enumerate() {
                                    let ba = &a[t * nb + 8 * b + i];
                                    let y = ba.qs.as_ptr() as *const i32;
                                    let mut half = [vdupq_n_s32(0); 2];
                                    for (kk, x) in x.iter().enumerate() {
                                        // SAFETY: kk < 8 and an activation block holds 32 bytes.
                                        let yk = vreinterpretq_s8_s32(vdupq_n_s32(y.add(kk).read_unaligned()));
                                        half[kk / 4] = dot4_i8x16(half[kk / 4], *x, yk);
                                    }
                                    let sum = vmlaq_s32(vmulq_s32(sc0, half[0]), sc1, half[1]);
                                    *acc = vfmaq_f32(*acc, vcvtq_f32_s32(sum), vmulq_n_f32(d, ba.d));
                                }
                            }
                        }
                        for (t, acc) in acc.iter().enumerate() {
                            vst1q_f32(out[t * rows + 16 * g + 4 * quad..][..4].as_mut_ptr(), *acc);
                        }
                    }
                }
            }
        }

        /// # Safety
        /// The CPU has the enabled target features; the slices hold every block it reads or writes
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q4_0_impl(w: &[BlockQ4_0], a: &[BlockQ8A]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above.
            unsafe {
                let mut acc = 0.0f32;
                for (bw, ba) in w.iter().zip(a) {
                    let (x0, x1) = nibbles(&bw.qs, 0);
                    // Σ (q − 8)·a = Σ q·a − 8·Σa, exactly as the scalar reference computes it.
                    acc = scalar::block_term(block_dot(x0, x1, &ba.qs) - 8 * ba.sum, f16_to_f32(bw.d), ba, acc);
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
                let mut acc = 0.0f32;
                for (bw, ba) in w.iter().zip(a) {
                    let (x0, x1) = nibbles(&bw.qs, 0);
                    acc = scalar::block_term(block_dot(x0, x1, &ba.qs), f16_to_f32(bw.d), ba, acc);
                    acc = scalar::min_term(f16_to_f32(bw.m), ba, acc);
                }
                acc
            }
        }

        /// Σ q·f16(h) (the contract's `lane_dot`): 16 values per step in the 4 registers of
        /// the 16 lanes, then 4 into their lanes, the last ones (mod 4) one by one.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `h` holds `q.len()` values (the caller
        /// checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn dot_f16_impl(q: &[f32], h: &[u16]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above; every load lies below
            // `n` in both slices.
            unsafe {
                let n = q.len();
                let (qp, hp) = (q.as_ptr(), h.as_ptr());
                let mut acc = [vdupq_n_f32(0.0); 4];
                let mut i = 0;
                while i + 16 <= n {
                    let [k0, k1] = super::f16x8_to_f32(vld1q_u16(hp.add(i)));
                    let [k2, k3] = super::f16x8_to_f32(vld1q_u16(hp.add(i + 8)));
                    for (u, k) in [k0, k1, k2, k3].into_iter().enumerate() {
                        acc[u] = vfmaq_f32(acc[u], vld1q_f32(qp.add(i + 4 * u)), k);
                    }
                    i += 16;
                }
                while i + 4 <= n {
                    let k = super::f16x4_to_f32(vmovl_u16(vld1_u16(hp.add(i))));
                    let u = i % 16 / 4;
                    acc[u] = vfmaq_f32(acc[u], vld1q_f32(qp.add(i)), k);
                    i += 4;
                }
                super::finish_lanes(acc, i, n, |j| (q[j], f16_to_f32(h[j])))
            }
        }

        /// Σ_b d_b · (q_b · qs_b) over a row of q8_0 blocks and an f32 query (the contract of
        /// `scalar::dots_q8_0`): lane quad u of block b takes `fma(q[16+4u..], qs[16+4u..],
        /// q[4u..]·qs[4u..])`, then one multiply-add by the block's scale.
        ///
        /// # Safety
        /// The CPU has the enabled target features; `q` holds 32 values per block of `row`
        /// (the caller checks the lengths).
        #[target_feature(enable = $features)]
        unsafe fn dot_q8_0_f32_impl(q: &[f32], row: &[BlockQ8_0]) -> f32 {
            // SAFETY: the caller upholds the `# Safety` contract above: block b reads query
            // values 32b .. 32b + 32 and its own 32 bytes.
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 4];
                for (b, blk) in row.iter().enumerate() {
                    let qp = q.as_ptr().add(QK * b);
                    let lo = super::i8x16_to_f32(vld1q_s8(blk.qs.as_ptr()));
                    let hi = super::i8x16_to_f32(vld1q_s8(blk.qs.as_ptr().add(16)));
                    let d = f16_to_f32(blk.d);
                    for u in 0..4 {
                        let t = vmulq_f32(vld1q_f32(qp.add(4 * u)), lo[u]);
                        let t = vfmaq_f32(t, vld1q_f32(qp.add(16 + 4 * u)), hi[u]);
                        acc[u] = vfmaq_n_f32(acc[u], t, d);
                    }
                }
                super::sum_lanes(acc)
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
                let mut acc = [vdupq_n_f32(0.0); 4];
                let mut i = 0;
                while i + 16 <= n {
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = vfmaq_f32(*a, vld1q_f32(w.as_ptr().add(i + 4 * j)), vld1q_f32(x.as_ptr().add(i + 4 * j)));
                    }
                    i += 16;
                }
                while i + 4 <= n {
                    let u = i % 16 / 4;
                    acc[u] = vfmaq_f32(acc[u], vld1q_f32(w.as_ptr().add(i)), vld1q_f32(x.as_ptr().add(i)));
                    i += 4;
                }
                super::finish_lanes(acc, i, n, |j| (w[j], x[j]))
            }
        }
    };
}

// ---- the numerical contract's reductions and conversions, shared by both instantiations ------------

use std::arch::aarch64::*;

/// The contract's sum of 16 lanes (`scalar::sum_lanes`), lanes 4u .. 4u + 4 in `acc[u]`.
#[target_feature(enable = "neon")]
#[inline]
fn sum_lanes(acc: [float32x4_t; 4]) -> f32 {
    let g = vaddq_f32(vaddq_f32(acc[0], acc[2]), vaddq_f32(acc[1], acc[3]));
    let f = vadd_f32(vget_low_f32(g), vget_high_f32(g));
    vget_lane_f32::<0>(f) + vget_lane_f32::<1>(f)
}

/// A row dot's lanes finished after its values before `i`: values `i..n` fused into lane
/// `j mod 16` one by one (`xy(j)` = the pair), then `sum_lanes`.
#[target_feature(enable = "neon")]
#[inline]
fn finish_lanes(acc: [float32x4_t; 4], i: usize, n: usize, xy: impl Fn(usize) -> (f32, f32)) -> f32 {
    if i == n {
        return sum_lanes(acc);
    }
    let mut l = [0f32; 16];
    for (u, a) in acc.iter().enumerate() {
        // SAFETY: 4 lanes into l[4u .. 4u + 4], u < 4.
        unsafe { vst1q_f32(l.as_mut_ptr().add(4 * u), *a) };
    }
    for j in i..n {
        let (x, y) = xy(j);
        l[j % 16] = x.mul_add(y, l[j % 16]);
    }
    crate::scalar::sum_lanes(&l)
}

/// The contract's weighted sum (`scalar::pair_wsum`) of `n` keys into `out`: 16 outputs, then
/// 4, in two accumulator sets (even keys from the outputs, odd keys from 0, added at the end),
/// the last outputs (mod 4) one by one. `term4(j, i)` gives key j's multiplier and its values
/// i .. i + 4 (called only with i + 4 ≤ out.len()); `term1(j, i)` its multiplier and value i.
#[target_feature(enable = "neon")]
fn pair_wsum(
    out: &mut [f32],
    n: usize,
    term4: impl Fn(usize, usize) -> (f32, float32x4_t),
    term1: impl Fn(usize, usize) -> (f32, f32),
) {
    /// Outputs `i .. i + 4·V` over every key.
    #[target_feature(enable = "neon")]
    #[inline]
    fn chunk<const V: usize>(o: &mut [f32], i: usize, n: usize, term4: &impl Fn(usize, usize) -> (f32, float32x4_t)) {
        let o = &mut o[i..i + 4 * V];
        // SAFETY: `o` holds 4·V values.
        let mut even: [float32x4_t; V] = std::array::from_fn(|u| unsafe { vld1q_f32(o.as_ptr().add(4 * u)) });
        let mut odd = [vdupq_n_f32(0.0); V];
        for j in 0..n {
            let acc = if j % 2 == 0 { &mut even } else { &mut odd };
            for (u, a) in acc.iter_mut().enumerate() {
                let (s, x) = term4(j, i + 4 * u);
                *a = vfmaq_n_f32(*a, x, s);
            }
        }
        for u in 0..V {
            // SAFETY: as above.
            unsafe { vst1q_f32(o.as_mut_ptr().add(4 * u), vaddq_f32(even[u], odd[u])) };
        }
    }
    let d = out.len();
    let mut i = 0;
    while i + 16 <= d {
        chunk::<4>(out, i, n, &term4);
        i += 16;
    }
    while i + 4 <= d {
        chunk::<1>(out, i, n, &term4);
        i += 4;
    }
    for (i, o) in out.iter_mut().enumerate().skip(i) {
        let (mut even, mut odd) = (*o, 0f32);
        for j in 0..n {
            let (s, x) = term1(j, i);
            if j % 2 == 0 {
                even = s.mul_add(x, even);
            } else {
                odd = s.mul_add(x, odd);
            }
        }
        *o = even + odd;
    }
}

/// Four signed bytes at `p` as f32.
///
/// # Safety
/// `p .. p + 4` is readable.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn i8x4_to_f32(p: *const i8) -> float32x4_t {
    // SAFETY: the caller upholds the `# Safety` contract above (one 4-byte read).
    let b = unsafe { (p as *const u32).read_unaligned() };
    let w = vmovl_s8(vcreate_s8(b as u64));
    vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)))
}

/// 2^112: the distance between the f16 and f32 exponent biases (15 and 127).
const F16_BIAS_GAP: f32 = f32::from_bits((127 + 112) << 23);

/// Four halves (raw bits in the low 16 bits of each lane) to f32 with integer operations (Rust's
/// f16 NEON intrinsics are unstable). The 15 bits below the sign, shifted up by 13, read as an
/// f32 whose exponent is 112 too small; one multiply by 2^112 gives every normal and subnormal
/// half exactly (a subnormal half becomes a normal f32: exact, with FPCR.FZ clear as on Linux).
/// Exponent 31 (∞, NaN) is set apart and gets exponent 255, NaNs quieted with their payload, as
/// `types::f16_to_f32` does (tested on all 65536 halves). The sign goes back on last.
#[target_feature(enable = "neon")]
#[inline]
fn f16x4_to_f32(h: uint32x4_t) -> float32x4_t {
    let em = vandq_u32(h, vdupq_n_u32(0x7FFF));
    let sign = vshlq_n_u32::<16>(veorq_u32(h, em));
    let shifted = vshlq_n_u32::<13>(em);
    let finite = vreinterpretq_u32_f32(vmulq_n_f32(vreinterpretq_f32_u32(shifted), F16_BIAS_GAP));
    let special = vcgeq_u32(em, vdupq_n_u32(0x7C00));
    let quiet = vandq_u32(vcgtq_u32(em, vdupq_n_u32(0x7C00)), vdupq_n_u32(0x0040_0000));
    let inf_nan = vorrq_u32(vorrq_u32(shifted, vdupq_n_u32(0x7000_0000)), quiet);
    vreinterpretq_f32_u32(vorrq_u32(vbslq_u32(special, inf_nan, finite), sign))
}

/// Eight halves to f32 (`f16x4_to_f32` on each half of the register).
#[target_feature(enable = "neon")]
#[inline]
fn f16x8_to_f32(h: uint16x8_t) -> [float32x4_t; 2] {
    [f16x4_to_f32(vmovl_u16(vget_low_u16(h))), f16x4_to_f32(vmovl_high_u16(h))]
}

/// Sixteen signed bytes to f32, in order (`sxtl` twice, `scvtf`).
#[target_feature(enable = "neon")]
#[inline]
fn i8x16_to_f32(x: int8x16_t) -> [float32x4_t; 4] {
    let (lo, hi) = (vmovl_s8(vget_low_s8(x)), vmovl_high_s8(x));
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
        vcvtq_f32_s32(vmovl_high_s16(lo)),
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
        vcvtq_f32_s32(vmovl_high_s16(hi)),
    ]
}

#[cfg(test)]
mod conversions {
    use super::*;
    use crate::types::f16_to_f32;

    /// The register conversion against `types::f16_to_f32` on every half, bit for bit
    /// (zeros, subnormals, normals, ±∞, every NaN payload), through both entry points.
    #[test]
    fn f16_to_f32_every_half() {
        for h0 in (0..=u16::MAX).step_by(8) {
            let h: [u16; 8] = std::array::from_fn(|i| h0 + i as u16);
            let mut got = [0f32; 8];
            // SAFETY: NEON is part of AArch64; the loads and stores cover the 8-value arrays.
            unsafe {
                let [a, b] = f16x8_to_f32(vld1q_u16(h.as_ptr()));
                vst1q_f32(got.as_mut_ptr(), a);
                vst1q_f32(got.as_mut_ptr().add(4), b);
                let c = f16x4_to_f32(vmovl_u16(vld1_u16(h.as_ptr().add(4))));
                assert_eq!(vgetq_lane_u32::<3>(vreinterpretq_u32_f32(c)), f16_to_f32(h[7]).to_bits());
            }
            for (g, &h) in got.iter().zip(&h) {
                assert_eq!(g.to_bits(), f16_to_f32(h).to_bits(), "half {h:#06x}: {g} vs {}", f16_to_f32(h));
            }
        }
    }

    /// Every byte value.
    #[test]
    fn i8_to_f32_every_byte() {
        for b0 in (0..=255u8).step_by(16) {
            let x: [i8; 16] = std::array::from_fn(|i| (b0 + i as u8) as i8);
            let mut got = [0f32; 16];
            // SAFETY: NEON is part of AArch64; the loads and stores cover the 16-value arrays.
            unsafe {
                for (i, v) in i8x16_to_f32(vld1q_s8(x.as_ptr())).into_iter().enumerate() {
                    vst1q_f32(got.as_mut_ptr().add(4 * i), v);
                }
            }
            assert!(got.iter().zip(&x).all(|(&g, &x)| g == x as f32), "{x:?}: {got:?}");
        }
    }
}

/// Plain NEON: 8-bit products widened with `smull`, pair-added with `sadalp`.
pub mod plain {
    use std::arch::aarch64::*;

    /// acc + a·b in 4 × i32 partial sums whose total is Σ a·b (lane i gets byte pairs 2i, 2i+1
    /// and 8+2i, 9+2i: only the horizontal total is meaningful).
    #[target_feature(enable = "neon")]
    #[inline]
    fn dot_i8x16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }

    /// acc + Σ a·b over each group of 4 bytes (lane i: bytes 4i..4i+4). A pair of products
    /// fits i16 because one side is an activation (|a| ≤ 127).
    #[target_feature(enable = "neon")]
    #[inline]
    fn dot4_i8x16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(acc, vpaddq_s16(lo, hi))
    }

    neon_bodies!(crate::table::Isa::Neon, "neon");
}

/// NEON with the dot-product extension: one `sdot` per 16 byte pairs. `vdotq_s32` is not
/// stable in Rust 1.95, so the instruction is emitted with `asm!`.
pub mod dotprod {
    use std::arch::aarch64::*;

    /// acc + Σ a·b over groups of 4 signed bytes (4 × i32), with `sdot`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    fn dot_i8x16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
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

    /// `sdot` already sums each group of 4 bytes into its own lane.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    fn dot4_i8x16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        dot_i8x16(acc, a, b)
    }

    neon_bodies!(crate::table::Isa::NeonDot, "neon,dotprod");
}
