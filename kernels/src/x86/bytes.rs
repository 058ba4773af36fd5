//! Dot products of the byte-coded types (`q5_0`, `q5_1`, `q4_k`, `q5_k`, `q6_k`) with 8-bit
//! activation blocks, instantiated by `kernel_bodies!` for AVX2 and AVX-512 VNNI (the one
//! difference is `dot_u8i8`). Scalar twins: `q5::vec_dot_*`, `kquants::vec_dot_*`.
//!
//! Each 32-value activation block meets one weight sub-block (two 16-value ones for `q6_k`):
//! the integer products are exact in the lanes, and each lane is scaled and accumulated in f32,
//! so the results differ from the scalar twins only by the order of f32 additions.

macro_rules! byte_bodies {
    ($features:literal) => {
        fn plug_bytes(k: &mut Kernels) {
            k.vec_dot_q5_0 = vec_dot_q5_0;
            k.vec_dot_q5_1 = vec_dot_q5_1;
            k.vec_dot_q4_k = vec_dot_q4_k;
            k.vec_dot_q5_k = vec_dot_q5_k;
            k.vec_dot_q6_k = vec_dot_q6_k;
        }

        /// Bytes per block and activation blocks per block of each byte-coded type.
        const Q5_0: (usize, usize) = (crate::q5::BYTES, 1);
        const Q5_1: (usize, usize) = (crate::q5::BYTES_1, 1);
        const Q4_K: (usize, usize) = (144, 8);
        const Q5_K: (usize, usize) = (176, 8);
        const Q6_K: (usize, usize) = (210, 8);

        /// The row covers exactly the activation blocks (the `ByteDotFn` contract).
        fn check_row(w: &[u8], a: &[BlockQ8A], (bytes, per): (usize, usize)) {
            assert!(a.len().is_multiple_of(per) && w.len() == a.len() / per * bytes, "byte-coded row and activations differ");
        }

        fn vec_dot_q5_0(w: &[u8], a: &[BlockQ8A]) -> f32 {
            check_row(w, a, Q5_0);
            // SAFETY: `plug` runs only after feature detection (see `x86/mod.rs`); `check_row`
            // asserted that `w` holds one whole block per activation block.
            unsafe { vec_dot_q5_0_impl(w, a) }
        }
        fn vec_dot_q5_1(w: &[u8], a: &[BlockQ8A]) -> f32 {
            check_row(w, a, Q5_1);
            // SAFETY: as in `vec_dot_q5_0`.
            unsafe { vec_dot_q5_1_impl(w, a) }
        }
        fn vec_dot_q4_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
            check_row(w, a, Q4_K);
            // SAFETY: as in `vec_dot_q5_0` (one super-block per 8 activation blocks).
            unsafe { vec_dot_k4_impl::<false>(w, a) }
        }
        fn vec_dot_q5_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
            check_row(w, a, Q5_K);
            // SAFETY: as in `vec_dot_q4_k`.
            unsafe { vec_dot_k4_impl::<true>(w, a) }
        }
        fn vec_dot_q6_k(w: &[u8], a: &[BlockQ8A]) -> f32 {
            check_row(w, a, Q6_K);
            // SAFETY: as in `vec_dot_q4_k`.
            unsafe { vec_dot_q6_k_impl(w, a) }
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

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q5_0_impl(w: &[u8], a: &[BlockQ8A]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let sixteen = _mm256_set1_epi8(16);
            for (b, ba) in w.chunks_exact(crate::q5::BYTES).zip(a) {
                let p = b.as_ptr();
                let qh = (p.add(2) as *const u32).read_unaligned();
                let q = _mm256_or_si256(unpack_nibbles_32(p.add(6)), high_bits_32(qh));
                let s = _mm256_cvtepi32_ps(dot_i8i8(_mm256_sub_epi8(q, sixteen), load_act(ba)));
                acc = _mm256_fmadd_ps(s, _mm256_set1_ps(f16_le(p) * ba.d), acc);
            }
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $features)]
        unsafe fn vec_dot_q5_1_impl(w: &[u8], a: &[BlockQ8A]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = 0f32;
            for (b, ba) in w.chunks_exact(crate::q5::BYTES_1).zip(a) {
                let p = b.as_ptr();
                let qh = (p.add(4) as *const u32).read_unaligned();
                let q = _mm256_or_si256(unpack_nibbles_32(p.add(8)), high_bits_32(qh));
                let s = _mm256_cvtepi32_ps(dot_u8i8(q, load_act(ba)));
                acc = _mm256_fmadd_ps(s, _mm256_set1_ps(f16_le(p) * ba.d), acc);
                acc_m += f16_le(p.add(2)) * ba.d * ba.sum as f32;
            }
            hsum_f32x8(acc) + acc_m
        }

        /// `q4_k` (`FIVE` false) and `q5_k`: per super-block, 4 groups of 32 bytes hold the
        /// nibbles of sub-blocks 2g (low) and 2g + 1 (high); `q5_k`'s fifth bit of sub-block j is
        /// bit j of `qh[l]`.
        #[target_feature(enable = $features)]
        unsafe fn vec_dot_k4_impl<const FIVE: bool>(w: &[u8], a: &[BlockQ8A]) -> f32 {
            let bytes = if FIVE { 176 } else { 144 };
            let m4 = _mm256_set1_epi8(0x0F);
            let h16 = _mm256_set1_epi8(0x10);
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = 0f32;
            for (b, a8) in w.chunks_exact(bytes).zip(a.chunks_exact(8)) {
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
                        let ba = &a8[j];
                        let s = _mm256_cvtepi32_ps(dot_u8i8(q, load_act(ba)));
                        acc = _mm256_fmadd_ps(s, _mm256_set1_ps(sm[j].0 * ba.d), acc);
                        acc_m += sm[j].1 * ba.d * ba.sum as f32;
                    }
                }
            }
            hsum_f32x8(acc) - acc_m
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
        unsafe fn vec_dot_q6_k_impl(w: &[u8], a: &[BlockQ8A]) -> f32 {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(3);
            let off = _mm256_set1_epi8(32);
            let mut acc = _mm256_setzero_ps();
            for (b, a8) in w.chunks_exact(210).zip(a.chunks_exact(8)) {
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
                        let ba = &a8[4 * n + k];
                        let s = _mm256_cvtepi32_ps(dot_i8i8(_mm256_sub_epi8(q, off), load_act(ba)));
                        let f0 = _mm_set1_ps(d * (sc[2 * k] as i8) as f32 * ba.d);
                        let f1 = _mm_set1_ps(d * (sc[2 * k + 1] as i8) as f32 * ba.d);
                        acc = _mm256_fmadd_ps(s, _mm256_set_m128(f1, f0), acc);
                    }
                }
            }
            hsum_f32x8(acc)
        }
    };
}
