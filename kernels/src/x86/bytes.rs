//! Dot products of the byte-coded types (`q5_0`, `q5_1`, `q4_k`, `q5_k`, `q6_k`) with 8-bit
//! activation blocks, instantiated by `kernel_bodies!` for AVX2 and AVX-512 VNNI (the one
//! difference is `dot_u8i8`). Scalar twins: `q5::vec_dot_*`, `kquants::vec_dot_*`.
//!
//! Each 32-value activation block meets one weight sub-block (two 16-value ones for `q6_k`):
//! the integer products are exact in the lanes, and each lane is scaled and accumulated in f32,
//! so the results differ from the scalar twins only by the order of f32 additions.

macro_rules! byte_bodies {
    ($features:literal, tokens: $TOK:literal) => {
        fn plug_bytes(k: &mut Kernels) {
            k.dots_q5_0 = dots_q5_0;
            k.dots_q5_1 = dots_q5_1;
            k.dots_q4_k = dots_q4_k;
            k.dots_q5_k = dots_q5_k;
            k.dots_q6_k = dots_q6_k;
        }

        /// Bytes per block and activation blocks per block of each byte-coded type.
        const Q5_0: (usize, usize) = (crate::q5::BYTES, 1);
        const Q5_1: (usize, usize) = (crate::q5::BYTES_1, 1);
        const Q4_K: (usize, usize) = (144, 8);
        const Q5_K: (usize, usize) = (176, 8);
        const Q6_K: (usize, usize) = (210, 8);

        /// Tokens per kernel call: each unpacked weight block serves this many tokens (8 with
        /// AVX2's 16 registers, 16 with AVX-512's 32; measured on SmolLM2 Q4_K_M prefill).
        const TOK: usize = $TOK;

        /// A row kernel for `T` tokens: `(row, first token's blocks, nb) → T results`.
        type RowKernel<const T: usize> = unsafe fn(&[u8], *const BlockQ8A, usize) -> [f32; T];

        /// The `ByteDotsFn` contract: the row holds exactly `nb` activation blocks' worth of
        /// blocks and `a` at least `out.len()` tokens; then runs the tokens `TOK` at a time
        /// (the same per-token operations as one at a time, so results do not depend on it).
        fn run_dots(
            w: &[u8],
            a: &[BlockQ8A],
            nb: usize,
            out: &mut [f32],
            (bytes, per): (usize, usize),
            many: RowKernel<TOK>,
            one: RowKernel<1>,
        ) {
            assert!(
                nb.is_multiple_of(per) && w.len() == nb / per * bytes && a.len() >= out.len() * nb,
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

        fn dots_q5_0(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots(w, a, nb, out, Q5_0, q5_0_impl::<TOK>, q5_0_impl::<1>)
        }
        fn dots_q5_1(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots(w, a, nb, out, Q5_1, q5_1_impl::<TOK>, q5_1_impl::<1>)
        }
        fn dots_q4_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots(w, a, nb, out, Q4_K, k4_impl::<TOK, false>, k4_impl::<1, false>)
        }
        fn dots_q5_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots(w, a, nb, out, Q5_K, k4_impl::<TOK, true>, k4_impl::<1, true>)
        }
        fn dots_q6_k(w: &[u8], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            run_dots(w, a, nb, out, Q6_K, q6_k_impl::<TOK>, q6_k_impl::<1>)
        }

        /// The 32 fifth bits of `qh` (bit j for value j) as bytes: 0x10 where set, else 0.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn high_bits_32(qh: u32) -> __m256i {
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

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load_act(ba: &BlockQ8A) -> __m256i {
            _mm256_loadu_si256(ba.qs.as_ptr() as *const __m256i)
        }

        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn f16_le(p: *const u8) -> f32 {
            f16_to_f32((p as *const u16).read_unaligned())
        }

        /// Per token: the lane sum plus a scalar term.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn finish<const T: usize>(acc: [__m256; T], extra: [f32; T]) -> [f32; T] {
            let mut r = extra;
            for (r, acc) in r.iter_mut().zip(acc) {
                *r += hsum_f32x8(acc);
            }
            r
        }

        /// Token t's activation block i (`a`: T tokens of `nb` blocks each).
        #[inline]
        unsafe fn act<'a>(a: *const BlockQ8A, nb: usize, t: usize, i: usize) -> &'a BlockQ8A {
            &*a.add(t * nb + i)
        }

        #[target_feature(enable = $features)]
        unsafe fn q5_0_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            let mut acc = [_mm256_setzero_ps(); T];
            let sixteen = _mm256_set1_epi8(16);
            for (i, b) in w.chunks_exact(crate::q5::BYTES).enumerate() {
                let p = b.as_ptr();
                let qh = (p.add(2) as *const u32).read_unaligned();
                let x = _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles_32(p.add(6)), high_bits_32(qh)), sixteen);
                let ax = _mm256_sign_epi8(x, x);
                let d = f16_le(p);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let ba = act(a, nb, t, i);
                    let s = _mm256_cvtepi32_ps(dot_u8i8(ax, _mm256_sign_epi8(load_act(ba), x)));
                    *acc = _mm256_fmadd_ps(s, _mm256_set1_ps(d * ba.d), *acc);
                }
            }
            finish(acc, [0f32; T])
        }

        #[target_feature(enable = $features)]
        unsafe fn q5_1_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            let mut acc = [_mm256_setzero_ps(); T];
            let mut acc_m = [0f32; T];
            for (i, b) in w.chunks_exact(crate::q5::BYTES_1).enumerate() {
                let p = b.as_ptr();
                let qh = (p.add(4) as *const u32).read_unaligned();
                let q = _mm256_or_si256(unpack_nibbles_32(p.add(8)), high_bits_32(qh));
                let (d, m) = (f16_le(p), f16_le(p.add(2)));
                for t in 0..T {
                    let ba = act(a, nb, t, i);
                    let s = _mm256_cvtepi32_ps(dot_u8i8(q, load_act(ba)));
                    acc[t] = _mm256_fmadd_ps(s, _mm256_set1_ps(d * ba.d), acc[t]);
                    acc_m[t] += m * ba.d * ba.sum as f32;
                }
            }
            finish(acc, acc_m)
        }

        /// `q4_k` (`FIVE` false) and `q5_k`: per super-block, 4 groups of 32 bytes hold the
        /// nibbles of sub-blocks 2g (low) and 2g + 1 (high); `q5_k`'s fifth bit of sub-block j is
        /// bit j of `qh[l]`.
        #[target_feature(enable = $features)]
        unsafe fn k4_impl<const T: usize, const FIVE: bool>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            let bytes = if FIVE { 176 } else { 144 };
            let m4 = _mm256_set1_epi8(0x0F);
            let h16 = _mm256_set1_epi8(0x10);
            let mut acc = [_mm256_setzero_ps(); T];
            let mut acc_m = [0f32; T];
            for (sb, b) in w.chunks_exact(bytes).enumerate() {
                let sm = crate::kquants::scales_k4(b);
                let p = b.as_ptr();
                let qh = if FIVE { _mm256_loadu_si256(p.add(16) as *const __m256i) } else { _mm256_setzero_si256() };
                let ql = p.add(if FIVE { 48 } else { 16 });
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
                        for t in 0..T {
                            let ba = act(a, nb, t, 8 * sb + j);
                            let s = _mm256_cvtepi32_ps(dot_u8i8(q, load_act(ba)));
                            acc[t] = _mm256_fmadd_ps(s, _mm256_set1_ps(sm[j].0 * ba.d), acc[t]);
                            acc_m[t] += sm[j].1 * ba.d * ba.sum as f32;
                        }
                    }
                }
            }
            finish(acc, acc_m.map(|m| -m))
        }

        /// The low two bits of each byte of `h`, moved to bits 4–5.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn two_bits(h: __m256i, m2: __m256i) -> __m256i {
            _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2))
        }

        /// `q6_k`: per 128-value half n, sub-block k takes nibbles from `ql[32·(k & 1)..]`
        /// (low for k < 2, high otherwise) and two bits from `qh >> 2k`; the low 8 lanes of a
        /// product cover its first 16 values (scale `sc[2k]`), the high 8 its second 16.
        #[target_feature(enable = $features)]
        unsafe fn q6_k_impl<const T: usize>(w: &[u8], a: *const BlockQ8A, nb: usize) -> [f32; T] {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(3);
            let off = _mm256_set1_epi8(32);
            let mut acc = [_mm256_setzero_ps(); T];
            for (sb, b) in w.chunks_exact(210).enumerate() {
                let p = b.as_ptr();
                let d = f16_le(p.add(208));
                for n in 0..2 {
                    let ql0 = _mm256_loadu_si256(p.add(64 * n) as *const __m256i);
                    let ql1 = _mm256_loadu_si256(p.add(64 * n + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
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
                    let sc = &b[192 + 8 * n..200 + 8 * n];
                    for (k, q) in q.into_iter().enumerate() {
                        let x = _mm256_sub_epi8(q, off);
                        let ax = _mm256_sign_epi8(x, x);
                        let (d0, d1) = (d * (sc[2 * k] as i8) as f32, d * (sc[2 * k + 1] as i8) as f32);
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let ba = act(a, nb, t, 8 * sb + 4 * n + k);
                            let s = _mm256_cvtepi32_ps(dot_u8i8(ax, _mm256_sign_epi8(load_act(ba), x)));
                            let f = _mm256_set_m128(_mm_set1_ps(d1 * ba.d), _mm_set1_ps(d0 * ba.d));
                            *acc = _mm256_fmadd_ps(s, f, *acc);
                        }
                    }
                }
            }
            finish(acc, [0f32; T])
        }
    };
}
