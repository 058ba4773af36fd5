//! `plug!`, with which every ISA module registers its kernels, and the twin checks it turns into
//! tests: one check per dispatch slot, comparing a table's kernel with the scalar reference of
//! the same name on random inputs of every length class (full blocks, odd tails, zero blocks,
//! random bytes). A slot listed in `plug!` without a check here does not compile, so no SIMD
//! kernel ships untested. Every slot follows the numerical contract (docs/NUMERICS.md) and
//! compares bit for bit; the dots' scalar twins are also checked against an f64 sum, within f32
//! rounding of the magnitude of the terms (Σ|w·a|).

/// `plug!(isa, available: has, [slot, …])` defines the module's
/// `pub fn plug(k: &mut Kernels)`, which sets `k.isa` and each listed slot to the module's
/// kernel of the same name, and, under `cfg(test)`, one test per slot that runs
/// `twins::<slot>` on a scalar table upgraded by this `plug`, or prints
/// `SKIP <name>: not available` when `has(isa)` says the CPU lacks it.
macro_rules! plug {
    ($isa:expr, available: $has:path, [$($slot:ident),* $(,)?]) => {
        /// Upgrades the slots of `k` with this module's kernels. Call only after detecting the
        /// ISA (the kernels' safe wrappers rely on it).
        pub fn plug(k: &mut crate::table::Kernels) {
            k.isa = $isa;
            $(k.$slot = $slot;)*
        }

        #[cfg(test)]
        mod twin_tests {
            $(
                #[test]
                fn $slot() {
                    if !$has($isa) {
                        println!("SKIP {}: not available", $isa.name());
                        return;
                    }
                    let mut k = crate::table::Kernels::scalar();
                    super::plug(&mut k);
                    crate::twins::$slot(&k, $isa);
                    println!("checked {} {}", $isa.name(), stringify!($slot));
                }
            )*
        }
    };
}

/// Safe row-dot slots `slot(w, a) -> f32` over the module's `unsafe fn body(w, a)`, after
/// checking that the lengths match.
macro_rules! dot_entries {
    ($($slot:ident($w:ty, $a:ty) => $body:expr),* $(,)?) => {$(
        pub(super) fn $slot(w: &[$w], a: &[$a]) -> f32 {
            assert_eq!(w.len(), a.len());
            // SAFETY: `plug` installs this slot only after detecting the module's ISA (every
            // feature the body enables); the lengths match (asserted above).
            unsafe { $body(w, a) }
        }
    )*};
}

/// The safe slots `gemm_q4_0x16`, `gemm_q4_1x16`, `gemm_q8_0x16`, `gemm_q5_0x16`, `gemm_q5_1x16` (or, with `k:`,
/// `gemm_q4_kx16`, `gemm_q5_kx16`) over the module's generic
/// `unsafe fn body<B: GroupBlock>(w, a, nb, out)`, after checking the lengths.
macro_rules! x16_entries {
    ($body:ident) => {
        x16_entries!(@ $body, gemm_q4_0x16: BlockQ4_0x16, gemm_q4_1x16: BlockQ4_1x16, gemm_q8_0x16: BlockQ8_0x16,
            gemm_q5_0x16: BlockQ5_0x16, gemm_q5_1x16: BlockQ5_1x16);
    };
    (k: $body:ident) => {
        x16_entries!(@ $body, gemm_q4_kx16: BlockQ4Kx16, gemm_q5_kx16: BlockQ5Kx16);
    };
    (@ $body:ident, $($slot:ident: $blk:ident),*) => {$(
        fn $slot(w: &[crate::interleave::$blk], a: &[BlockQ8A], nb: usize, out: &mut [f32]) {
            let per = <crate::interleave::$blk as crate::types::BlockLayout>::BLOCK_LEN / crate::types::QK;
            crate::scalar::check_x16(w.len(), per, a.len(), nb, out.len());
            // SAFETY: `plug` installs this slot only after detecting the module's ISA (every
            // feature the body enables); the lengths are checked above.
            unsafe { $body(w, a, nb, out) }
        }
    )*};
}

#[cfg(test)]
pub(crate) use checks::*;

#[cfg(test)]
mod checks {
    use crate::blocks::{f16_to_f32, f32_to_f16, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, QK, QK_K};
    use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K};
    use crate::rng::Rng;
    use crate::scalar;
    use crate::table::{ByteDotsFn, ByteRowsFn, Isa, Kernels};
    use std::mem::offset_of;

    /// Block counts of every length class: one block, odd tails, SIMD widths ± 1, long rows.
    const BLOCK_COUNTS: [usize; 11] = [1, 2, 3, 7, 8, 9, 16, 17, 18, 48, 49];

    /// Agreement within f32 rounding of the terms' magnitude.
    fn close(a: f32, b: f32, mag: f32) -> bool {
        (a - b).abs() <= 1e-5 * mag + 1e-6
    }

    /// Activations of `n` values (an all-zero first block when `zero`), quantized by the scalar
    /// reference, with their dequantized values.
    fn acts(rng: &mut Rng, n: usize, zero: bool) -> (Vec<BlockQ8A>, Vec<f32>) {
        let mut x = rng.vec(n, 4.0);
        if zero {
            x[..QK].fill(0.0);
        }
        let mut qa = vec![BlockQ8A::default(); n / QK];
        scalar::quantize_act(&x, &mut qa);
        let ad = dequantize_act(&qa);
        (qa, ad)
    }

    fn dequantize_act(qa: &[BlockQ8A]) -> Vec<f32> {
        qa.iter().flat_map(|b| b.qs.map(|q| q as f32 * b.d)).collect()
    }

    /// Σ|w·a|, the scale of f32 rounding in a dot product.
    fn mag(w: &[f32], a: &[f32]) -> f32 {
        w.iter().zip(a).map(|(w, a)| (w * a).abs()).sum()
    }

    /// `w` quantized by the reference quantizers of the three legacy types.
    fn legacy_blocks(w: &[f32]) -> (Vec<BlockQ4_0>, Vec<BlockQ4_1>, Vec<BlockQ8_0>) {
        let n = w.len() / QK;
        let (mut q40, mut q41, mut q80) =
            (vec![BlockQ4_0::default(); n], vec![BlockQ4_1::default(); n], vec![BlockQ8_0::default(); n]);
        scalar::quantize_row_q4_0(w, &mut q40);
        scalar::quantize_row_q4_1(w, &mut q41);
        scalar::quantize_row_q8_0(w, &mut q80);
        (q40, q41, q80)
    }

    pub(crate) fn quantize_act(k: &Kernels, isa: Isa) {
        let mut rng = Rng::new(3 + isa as u64);
        for nb in BLOCK_COUNTS {
            let mut x = rng.vec(nb * QK, 4.0);
            if nb % 3 == 0 {
                x[..QK].fill(0.0); // an all-zero block
            }
            let (mut want, mut got) = (vec![BlockQ8A::default(); nb], vec![BlockQ8A::default(); nb]);
            scalar::quantize_act(&x, &mut want);
            (k.quantize_act)(&x, &mut got);
            assert_eq!(got, want, "{isa:?} quantize_act nb={nb}");
        }
    }

    type DotFn<B> = fn(&[B], &[BlockQ8A]) -> f32;

    /// A legacy type's row dot against the scalar twin, bit for bit (the contract's
    /// `block_term`/`min_term` chain), and the scalar twin within f32 rounding of the f64 sum.
    fn legacy_dot<B: Copy>(
        isa: Isa,
        name: &str,
        quant: fn(&[f32]) -> Vec<B>,
        deq: fn(&[B], &mut [f32]),
        want: DotFn<B>,
        got: DotFn<B>,
    ) {
        let mut rng = Rng::new(4 + isa as u64);
        for nb in BLOCK_COUNTS {
            let (qa, ad) = acts(&mut rng, nb * QK, nb % 3 == 0);
            let q = quant(&rng.vec(nb * QK, 1.0));
            let mut wd = vec![0f32; nb * QK];
            deq(&q, &mut wd);
            let (r, g) = (want(&q, &qa), got(&q, &qa));
            assert_eq!(g.to_bits(), r.to_bits(), "{isa:?} {name} nb={nb}: {g} vs scalar {r}");
            let exact: f64 = wd.iter().zip(&ad).map(|(&w, &a)| w as f64 * a as f64).sum();
            assert!(close(r, exact as f32, mag(&wd, &ad)), "{name} nb={nb}: scalar {r} vs f64 {exact}");
        }
    }

    /// Float row dots: every tail length around the SIMD widths, bit for bit (`lane_dot`).
    fn float_dot(isa: Isa, name: &str, f16: bool, got: &dyn Fn(&[f32], &[f32]) -> f32) {
        let mut rng = Rng::new(5 + isa as u64);
        for _ in BLOCK_COUNTS {
            for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 24, 31, 33, 64, 100, 577] {
                let (a, b) = (rng.vec(len, 1.0), rng.vec(len, 1.0));
                let want = if f16 {
                    scalar::vec_dot_f16(&a.iter().map(|&v| f32_to_f16(v)).collect::<Vec<_>>(), &b)
                } else {
                    scalar::vec_dot_f32(&a, &b)
                };
                let g = got(&a, &b);
                assert_eq!(g.to_bits(), want.to_bits(), "{isa:?} {name} len={len}: {g} vs {want}");
            }
        }
    }

    pub(crate) fn vec_dot_f32(k: &Kernels, isa: Isa) {
        float_dot(isa, "f32", false, &|a, b| (k.vec_dot_f32)(a, b));
    }

    pub(crate) fn vec_dot_f16(k: &Kernels, isa: Isa) {
        float_dot(isa, "f16", true, &|a, b| (k.vec_dot_f16)(&a.iter().map(|&v| f32_to_f16(v)).collect::<Vec<_>>(), b));
    }

    /// Tiles (weight rows × tokens) against the table's own row dot for every remainder shape
    /// of the tiling, bit for bit (register tiles run the row dot's exact operations).
    fn tiles<B: Copy>(
        isa: Isa,
        name: &str,
        pick: fn(Vec<BlockQ4_0>, Vec<BlockQ4_1>, Vec<BlockQ8_0>) -> Vec<B>,
        dot: fn(&[B], &[BlockQ8A]) -> f32,
        gemm: crate::table::GemmFn<B>,
    ) {
        let mut rng = Rng::new(6 + isa as u64);
        let nb = 3;
        for (rows, toks) in
            [(1usize, 1usize), (2, 4), (3, 5), (4, 4), (5, 9), (8, 1), (7, 3), (5, 16), (4, 17), (9, 33)]
        {
            let (q40, q41, q80) = legacy_blocks(&rng.vec(rows * nb * QK, 1.0));
            let q = pick(q40, q41, q80);
            let (qa, _) = acts(&mut rng, toks * nb * QK, false);
            let mut out = vec![0f32; rows * toks];
            gemm(&q, &qa, nb, &mut out);
            for t in 0..toks {
                for r in 0..rows {
                    let want = dot(&q[r * nb..(r + 1) * nb], &qa[t * nb..(t + 1) * nb]);
                    let got = out[t * rows + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "{isa:?} {name} {rows}x{toks} ({r},{t})");
                }
            }
        }
    }

    /// A byte-coded type (q5_0, q5_1, q4_k, q5_k, q6_k) against its scalar twin: rows from the
    /// quantizer and rows of random bytes (every bit pattern of the integer fields, sane f16
    /// scales at `f16s`), 1–5 super-blocks (1–49 blocks for the 32-value types), zero activation
    /// blocks included, 1–33 tokens per call (beyond the 8 or 16 an x86 call takes at once).
    /// Every ISA runs the contract's expression per block and agrees bit for bit. Every ISA
    /// gives each token the same bits whether it comes alone or with others.
    fn byte_dots(isa: Isa, dtype: DType, f16s: &[usize], want: ByteDotsFn, got: ByteDotsFn) {
        let mut rng = Rng::new(40 + isa as u64 + dtype as u64);
        let lens: &[usize] = if dtype.block_len() == QK_K { &[8, 16, 24, 40] } else { &[1, 2, 3, 7, 8, 9, 17, 49] };
        for (ci, &nb) in lens.iter().enumerate() {
            let toks = [1usize, 9, 5, 33][ci % 4];
            let n = nb * QK;
            let mut x = rng.vec(n * toks, 4.0);
            if nb % 3 == 0 {
                x[..QK].fill(0.0);
            }
            let mut qa = vec![BlockQ8A::default(); nb * toks];
            scalar::quantize_act(&x, &mut qa);
            let mut quantized = Vec::new();
            crate::blocks::quantize_bytes(dtype, &rng.vec(n, 1.0), &mut quantized).unwrap();
            let mut random: Vec<u8> = (0..quantized.len()).map(|_| rng.next() as u8).collect();
            for blk in random.chunks_exact_mut(dtype.block_bytes()) {
                for &o in f16s {
                    blk[o..o + 2].copy_from_slice(&f32_to_f16(rng.f() * 0.01).to_le_bytes());
                }
            }
            for (what, row) in [("quantized", &quantized), ("random", &random)] {
                let mut wd = vec![0f32; n];
                crate::blocks::dequantize_bytes(dtype, row, &mut wd).unwrap();
                let (mut r, mut g) = (vec![0f32; toks], vec![0f32; toks]);
                want(row, &qa, nb, &mut r);
                got(row, &qa, nb, &mut g);
                for t in 0..toks {
                    let at = &qa[t * nb..(t + 1) * nb];
                    let m = mag(&wd, &dequantize_act(at));
                    let (r, g) = (r[t], g[t]);
                    let ctx = format!("{isa:?} {dtype} {what} nb={nb} token {t}/{toks}");
                    assert_eq!(g.to_bits(), r.to_bits(), "{ctx}: {g} vs scalar {r}");
                    if what == "quantized" {
                        let exact: f64 = wd.iter().zip(dequantize_act(at)).map(|(&w, a)| w as f64 * a as f64).sum();
                        assert!(close(r, exact as f32, m), "{ctx}: scalar {r} vs f64 {exact} (Σ|w·a| {m})");
                    }
                    let mut alone = [0f32];
                    got(row, at, nb, &mut alone);
                    assert_eq!(alone[0].to_bits(), g.to_bits(), "{ctx}: alone {} vs batched {g}", alone[0]);
                }
            }
        }
    }

    /// Rows × one token (decode) against the scalar one-row dots: quantizer output and random
    /// bytes, 1–19 rows (beyond the 8 an x86 pass takes, with odd remainders), one to several
    /// blocks per row. A row's result never depends on the rows beside it.
    fn byte_rows(isa: Isa, dtype: DType, f16s: &[usize], want: ByteDotsFn, got: ByteRowsFn) {
        let mut rng = Rng::new(70 + isa as u64 + dtype as u64);
        let lens: &[usize] = if dtype.block_len() == QK_K { &[8, 16, 24] } else { &[1, 2, 7, 9, 70] };
        for (ci, &nb) in lens.iter().enumerate() {
            for rows in [1usize, 7, 8, 9, 16, 19].into_iter().skip(ci % 2) {
                let n = nb * QK;
                let mut qa = vec![BlockQ8A::default(); nb];
                scalar::quantize_act(&rng.vec(n, 4.0), &mut qa);
                let mut quantized = Vec::new();
                crate::blocks::quantize_bytes(dtype, &rng.vec(n * rows, 1.0), &mut quantized).unwrap();
                let mut random: Vec<u8> = (0..quantized.len()).map(|_| rng.next() as u8).collect();
                for blk in random.chunks_exact_mut(dtype.block_bytes()) {
                    for &o in f16s {
                        blk[o..o + 2].copy_from_slice(&f32_to_f16(rng.f() * 0.01).to_le_bytes());
                    }
                }
                let rb = quantized.len() / rows;
                for (what, w) in [("quantized", &quantized), ("random", &random)] {
                    let mut g = vec![f32::NAN; rows];
                    got(w, &qa, nb, &mut g);
                    for (r, g) in g.iter().enumerate() {
                        let row = &w[r * rb..(r + 1) * rb];
                        let mut one = [0f32];
                        want(row, &qa, nb, &mut one);
                        let mut alone = [0f32];
                        got(row, &qa, nb, &mut alone);
                        let ctx = format!("{isa:?} {dtype} {what} nb={nb} row {r}/{rows}");
                        assert_eq!(g.to_bits(), one[0].to_bits(), "{ctx}: {g} vs scalar {}", one[0]);
                        assert_eq!(alone[0].to_bits(), g.to_bits(), "{ctx}: alone {} vs beside others {g}", alone[0]);
                    }
                }
            }
        }
    }

    /// 16-row interleaved matrices against the row-major scalar dot products of the same rows:
    /// quantizer output and random bytes (every q8 byte, every nibble and fifth bit; the f16
    /// fields small random values), 1–19 blocks per row, 1–3 groups, 1–19 tokens per call
    /// (beyond the 8 an x86 pass takes). Every ISA runs the contract's expression per (row,
    /// token) (`block_term`, `min_term`) and agrees bit for bit. A token's result never depends
    /// on the tokens beside it.
    fn x16<X: crate::types::BlockLayout>(
        isa: Isa,
        f16s: &[usize],
        dot: fn(&[u8], &[BlockQ8A]) -> f32,
        gemm: crate::table::GemmFn<X>,
    ) {
        let mut rng = Rng::new(16 + X::DTYPE as u64);
        let dtype = X::DTYPE;
        // Activation blocks per weight block (8 for the K super-blocks); `nw` counts weight
        // blocks per row below, `nb` activation blocks.
        let per = X::BLOCK_LEN / QK;
        // Token counts leave every remainder of the kernels' 8-token passes (0–7: the 4-, 2- and
        // 1-token passes of AVX-512 in every combination).
        for &(groups, nw, toks) in &[
            (1, 1, 1),
            (1, 3, 9),
            (2, 18, 8),
            (3, 19, 19),
            (1, 2, 17),
            (2, 5, 3),
            (1, 4, 6),
            (2, 3, 2),
            (1, 2, 4),
            (2, 3, 5),
            (1, 2, 7),
            (1, 3, 15),
        ] {
            // K rows are long already: at most 3 super-blocks (768 values).
            let nw = if per > 1 { nw.min(3) } else { nw };
            let (rows, nb) = (16 * groups, nw * per);
            let (qa, _) = acts(&mut rng, toks * nb * QK, false);
            let mut quantized = Vec::new();
            crate::blocks::quantize_bytes(dtype, &rng.vec(rows * nb * QK, 1.0), &mut quantized).unwrap();
            let mut random: Vec<u8> = (0..quantized.len()).map(|_| rng.next() as u8).collect();
            for blk in random.chunks_exact_mut(dtype.block_bytes()) {
                for &o in f16s {
                    blk[o..o + 2].copy_from_slice(&f32_to_f16(rng.f() * 0.01).to_le_bytes());
                }
            }
            let rb = quantized.len() / rows;
            for (what, q) in [("quantized", &quantized), ("random", &random)] {
                let mut bytes = Vec::new();
                crate::interleave::interleave(dtype, rows, nb * QK, q, &mut bytes).unwrap();
                let wx: Vec<X> = crate::interleave::to_blocks(&bytes).unwrap();
                let mut out = vec![f32::NAN; rows * toks];
                gemm(&wx, &qa, nb, &mut out);
                let mut one = vec![f32::NAN; rows];
                for t in 0..toks {
                    let at = &qa[t * nb..(t + 1) * nb];
                    gemm(&wx, at, nb, &mut one);
                    for r in 0..rows {
                        let want = dot(&q[r * rb..(r + 1) * rb], at);
                        let got = out[t * rows + r];
                        let ctx = format!("{isa:?} {dtype} {what} {rows}x{toks} nb {nb} ({r},{t})");
                        assert_eq!(got.to_bits(), one[r].to_bits(), "{ctx}: alone vs batched");
                        assert_eq!(got.to_bits(), want.to_bits(), "{ctx}: {got} vs scalar {want}");
                    }
                }
            }
        }
    }

    /// A legacy type's scalar row dot over raw bytes.
    fn legacy_bytes<B: crate::blocks::Block>(dot: DotFn<B>) -> impl Fn(&[u8], &[BlockQ8A]) -> f32 {
        move |w, a| dot(&crate::types::blocks_of::<B>(w).collect::<Vec<_>>(), a)
    }

    /// The check of each slot: `check: slot(args…)` runs `check(isa, args…, k.slot)`.
    macro_rules! slot_checks {
        ($k:ident; $($check:ident: $($slot:ident($($arg:expr),*)),+;)+) => {$($(
            pub(crate) fn $slot($k: &Kernels, isa: Isa) {
                $check(isa, $($arg,)* $k.$slot);
            }
        )+)+};
    }

    #[rustfmt::skip]
    slot_checks! { k;
        legacy_dot:
            vec_dot_q4_0("q4_0", |w| legacy_blocks(w).0, scalar::dequantize_row_q4_0, scalar::vec_dot_q4_0),
            vec_dot_q4_1("q4_1", |w| legacy_blocks(w).1, scalar::dequantize_row_q4_1, scalar::vec_dot_q4_1),
            vec_dot_q8_0("q8_0", |w| legacy_blocks(w).2, scalar::dequantize_row_q8_0, scalar::vec_dot_q8_0);
        tiles:
            gemm_q4_0("gemm_q4_0", |q, _, _| q, scalar::vec_dot_q4_0),
            gemm_q4_1("gemm_q4_1", |_, q, _| q, scalar::vec_dot_q4_1),
            gemm_q8_0("gemm_q8_0", |_, _, q| q, scalar::vec_dot_q8_0);
        byte_dots:
            dots_q5_0(DType::Q5_0, &[offset_of!(BlockQ5_0, d)], scalar::dots_q5_0),
            dots_q5_1(DType::Q5_1, &[offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)], scalar::dots_q5_1),
            dots_q4_k(DType::Q4K, &[offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)], scalar::dots_q4_k),
            dots_q5_k(DType::Q5K, &[offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)], scalar::dots_q5_k),
            dots_q6_k(DType::Q6K, &[offset_of!(BlockQ6K, d)], scalar::dots_q6_k);
        byte_rows:
            rows_q5_0(DType::Q5_0, &[offset_of!(BlockQ5_0, d)], scalar::dots_q5_0),
            rows_q5_1(DType::Q5_1, &[offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)], scalar::dots_q5_1),
            rows_q4_k(DType::Q4K, &[offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)], scalar::dots_q4_k),
            rows_q5_k(DType::Q5K, &[offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)], scalar::dots_q5_k),
            rows_q6_k(DType::Q6K, &[offset_of!(BlockQ6K, d)], scalar::dots_q6_k);
        x16:
            gemm_q4_0x16(&[offset_of!(BlockQ4_0, d)], |w, a| legacy_bytes(scalar::vec_dot_q4_0)(w, a)),
            gemm_q4_1x16(&[offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)], |w, a| legacy_bytes(scalar::vec_dot_q4_1)(w, a)),
            gemm_q5_0x16(&[offset_of!(BlockQ5_0, d)], crate::q5::vec_dot_q5_0),
            gemm_q5_1x16(&[offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)], crate::q5::vec_dot_q5_1),
            gemm_q8_0x16(&[offset_of!(BlockQ8_0, d)], |w, a| legacy_bytes(scalar::vec_dot_q8_0)(w, a)),
            gemm_q4_kx16(&[offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)], crate::kquants::vec_dot_q4_k),
            gemm_q5_kx16(&[offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)], crate::kquants::vec_dot_q5_k),
            gemm_q6_kx16(&[offset_of!(BlockQ6K, d)], crate::kquants::vec_dot_q6_k);
    }

    /// `exp_f32` against the scalar twin bit for bit: random values over the whole f32 range of
    /// the function (and beyond both ends), the edges, ±∞, NaN, every tail length.
    pub(crate) fn exp_f32(k: &Kernels, isa: Isa) {
        let mut rng = Rng::new(99);
        let mut x: Vec<f32> = (0..4000).map(|_| rng.f() * 100.0).collect();
        x.extend((0..1000).map(|_| rng.f() * 2.0));
        let (lo, hi) = (crate::exp::MIN_X, crate::exp::MAX_X);
        x.extend([0.0, -0.0, lo, hi, -87.4, 88.8, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-30]);
        for len in (0..40).chain([x.len()]) {
            let mut got = x[x.len() - len..].to_vec();
            (k.exp_f32)(&mut got);
            for (g, v) in got.iter().zip(&x[x.len() - len..]) {
                let want = crate::exp::exp(*v);
                let same = g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan());
                assert!(same, "{isa:?} exp({v}): {g} vs {want}");
            }
        }
    }

    /// Attention's strided loops: row lengths 1–130 (odd tails), 0–17 rows, strides longer than
    /// a row (a GQA cache), bit for bit (`lane_dot`, `pair_wsum`).
    fn strided(isa: Isa, f: impl Fn(&mut Rng, [usize; 3], &[f32])) {
        let mut rng = Rng::new(5 + isa as u64);
        for hd in [1, 7, 8, 16, 24, 64, 72, 128, 130] {
            for n in [0, 1, 3, 4, 5, 17] {
                let stride = 3 * hd + 5;
                let kv = rng.vec(n.max(1) * stride, 1.0);
                f(&mut rng, [hd, n, stride], &kv);
            }
        }
    }

    pub(crate) fn dots_f32(k: &Kernels, isa: Isa) {
        strided(isa, |rng: &mut Rng, [hd, n, stride]: [usize; 3], kv: &[f32]| {
            let q = rng.vec(hd, 1.0);
            let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
            (k.dots_f32)(&q, kv, stride, &mut got);
            scalar::dots_f32(&q, kv, stride, &mut want);
            check_dots(isa, "dots_f32", &q, kv, stride, &got, &want);
        });
    }

    pub(crate) fn wsum_f32(k: &Kernels, isa: Isa) {
        strided(isa, |rng: &mut Rng, [hd, n, stride]: [usize; 3], kv: &[f32]| {
            let (w, init) = (rng.vec(n, 1.0), rng.vec(hd, 1.0));
            let (mut got, mut want) = (init.clone(), init.clone());
            (k.wsum_f32)(&mut got, &w, kv, stride);
            scalar::wsum_f32(&mut want, &w, kv, stride);
            check_wsum(isa, "wsum_f32", &init, &w, (kv, stride), &got, &want);
        });
    }

    /// Key counts of the quantized-cache checks: every count up to 70 (each remainder of the
    /// kernels' key groups and unrolled loops), and a long context where `long` (a few row
    /// lengths only: the tests run unoptimised).
    fn key_counts(long: bool) -> impl Iterator<Item = usize> {
        (0..=70).chain(long.then_some(LONG))
    }

    const LONG: usize = 4096;

    /// The first `n` of `stride`-apart rows of `len`, ending right after the last row: no kernel
    /// may count on anything past it.
    fn rows_end(n: usize, stride: usize, len: usize) -> usize {
        if n == 0 {
            0
        } else {
            (n - 1) * stride + len
        }
    }

    /// f16 caches: row lengths 1–256 (odd ones, every tail of 8- and 16-lane loops), a tight
    /// stride and a GQA-like one (`3·hd + 5`), `key_counts` rows of random halves with zero
    /// rows and rows of f16 subnormals (4096 rows at 17, 64 and 256 values). Calls `f(rng, [hd, stride, n], bits, values)`.
    fn f16_cache(isa: Isa, f: impl Fn(&mut Rng, [usize; 3], &[u16], &[f32])) {
        let mut rng = Rng::new(60 + isa as u64);
        for hd in [1, 3, 8, 15, 16, 17, 33, 64, 80, 128, 130, 256] {
            let long = [17, 64, 256].contains(&hd);
            for stride in [hd, 3 * hd + 5] {
                let mut x = rng.vec(rows_end(if long { LONG } else { 70 }, stride, hd), 1.0);
                for (j, row) in x.chunks_mut(stride).enumerate() {
                    match j % 11 {
                        3 => row.fill(0.0),
                        7 => row.iter_mut().for_each(|v| *v *= 1e-5),
                        _ => {}
                    }
                }
                let bits: Vec<u16> = x.iter().map(|&v| f32_to_f16(v)).collect();
                let vals: Vec<f32> = bits.iter().map(|&h| f16_to_f32(h)).collect();
                for n in key_counts(long) {
                    let end = rows_end(n, stride, hd);
                    f(&mut rng, [hd, stride, n], &bits[..end], &vals[..end]);
                }
            }
        }
    }

    /// q8_0 caches: 1–8 blocks per row (head dims 32–256), a tight stride and a GQA-like one
    /// (`3·nb + 1` blocks), `key_counts` rows (4096 at 2 and 5 blocks) from the reference quantizer, with blocks of random
    /// bytes (−128 included), zero scales and f16-subnormal scales. Calls
    /// `f(rng, [hd, stride, n], blocks, values)` (`stride` in blocks).
    fn q8_0_cache(isa: Isa, f: impl Fn(&mut Rng, [usize; 3], &[BlockQ8_0], &[f32])) {
        let mut rng = Rng::new(70 + isa as u64);
        for nb in [1, 2, 3, 4, 5, 8] {
            let long = [2, 5].contains(&nb);
            for stride in [nb, 3 * nb + 1] {
                let len = rows_end(if long { LONG } else { 70 }, stride, nb);
                let mut blocks = vec![BlockQ8_0::default(); len];
                scalar::quantize_row_q8_0(&rng.vec(len * QK, 1.0), &mut blocks);
                for (i, b) in blocks.iter_mut().enumerate() {
                    if i % 5 == 1 {
                        b.qs.iter_mut().for_each(|q| *q = rng.next() as i8);
                    }
                    match i % 13 {
                        0 => b.d = 0,
                        7 => b.d = rng.next() as u16 & 0x83FF,
                        _ => {}
                    }
                }
                let mut vals = vec![0f32; len * QK];
                scalar::dequantize_row_q8_0(&blocks, &mut vals);
                for n in key_counts(long) {
                    let end = rows_end(n, stride, nb);
                    f(&mut rng, [nb * QK, stride, n], &blocks[..end], &vals[..end * QK]);
                }
            }
        }
    }

    /// Scores bit for bit, and within f32 rounding of Σ|q·k| of the f64 sum (`vals`: the keys
    /// as f32, rows `stride` apart), so a wrong contract cannot pass by being shared.
    fn check_dots(isa: Isa, name: &str, q: &[f32], vals: &[f32], stride: usize, got: &[f32], want: &[f32]) {
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            let row = &vals[j * stride..];
            let mag: f32 = q.iter().zip(row).map(|(a, b)| (a * b).abs()).sum();
            let exact: f64 = q.iter().zip(row).map(|(&a, &b)| a as f64 * b as f64).sum();
            let n = got.len();
            assert_eq!(g.to_bits(), w.to_bits(), "{isa:?} {name} hd {} n {n} j {j}: {g} vs {w}", q.len());
            assert!((*w as f64 - exact).abs() <= 1e-6 * mag as f64 + 1e-7, "{name}: scalar {w} vs f64 {exact}");
        }
    }

    /// Weighted sums bit for bit, and within f32 rounding of |init| + Σ|w·v| of the f64 sum.
    fn check_wsum(
        isa: Isa,
        name: &str,
        init: &[f32],
        w: &[f32],
        (vals, stride): (&[f32], usize),
        got: &[f32],
        want: &[f32],
    ) {
        let mut mag: Vec<f32> = init.iter().map(|v| v.abs()).collect();
        let mut exact: Vec<f64> = init.iter().map(|&v| v as f64).collect();
        for (j, &wj) in w.iter().enumerate() {
            mag.iter_mut().zip(&vals[j * stride..]).for_each(|(m, v)| *m += (wj * v).abs());
            exact.iter_mut().zip(&vals[j * stride..]).for_each(|(e, &v)| *e += wj as f64 * v as f64);
        }
        for (i, ((g, w), (m, e))) in got.iter().zip(want).zip(mag.iter().zip(&exact)).enumerate() {
            let (hd, n) = (init.len(), got.len());
            assert_eq!(g.to_bits(), w.to_bits(), "{isa:?} {name} hd {hd} n {n} i {i}: {g} vs {w}");
            assert!((*w as f64 - e).abs() <= 1e-6 * *m as f64 + 1e-7, "{name}: scalar {w} vs f64 {e}");
        }
    }

    pub(crate) fn dots_f16(k: &Kernels, isa: Isa) {
        f16_cache(isa, |rng: &mut Rng, [hd, stride, n]: [usize; 3], bits: &[u16], vals: &[f32]| {
            let q = rng.vec(hd, 1.0);
            let (mut got, mut want) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            (k.dots_f16)(&q, bits, stride, &mut got);
            scalar::dots_f16(&q, bits, stride, &mut want);
            check_dots(isa, "dots_f16", &q, vals, stride, &got, &want);
        });
    }

    pub(crate) fn wsum_f16(k: &Kernels, isa: Isa) {
        f16_cache(isa, |rng: &mut Rng, [hd, stride, n]: [usize; 3], bits: &[u16], vals: &[f32]| {
            let (w, init) = (rng.vec(n, 1.0), rng.vec(hd, 1.0));
            let (mut got, mut want) = (init.clone(), init.clone());
            (k.wsum_f16)(&mut got, &w, bits, stride);
            scalar::wsum_f16(&mut want, &w, bits, stride);
            check_wsum(isa, "wsum_f16", &init, &w, (vals, stride), &got, &want);
        });
    }

    pub(crate) fn dots_q8_0(k: &Kernels, isa: Isa) {
        q8_0_cache(isa, |rng: &mut Rng, [hd, stride, n]: [usize; 3], blocks: &[BlockQ8_0], vals: &[f32]| {
            let q = rng.vec(hd, 1.0);
            let (mut got, mut want) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            (k.dots_q8_0)(&q, blocks, stride, &mut got);
            scalar::dots_q8_0(&q, blocks, stride, &mut want);
            check_dots(isa, "dots_q8_0", &q, vals, stride * QK, &got, &want);
        });
    }

    pub(crate) fn wsum_q8_0(k: &Kernels, isa: Isa) {
        q8_0_cache(isa, |rng: &mut Rng, [hd, stride, n]: [usize; 3], blocks: &[BlockQ8_0], vals: &[f32]| {
            let (w, init) = (rng.vec(n, 1.0), rng.vec(hd, 1.0));
            let (mut got, mut want) = (init.clone(), init.clone());
            (k.wsum_q8_0)(&mut got, &w, blocks, stride);
            scalar::wsum_q8_0(&mut want, &w, blocks, stride);
            check_wsum(isa, "wsum_q8_0", &init, &w, (vals, stride * QK), &got, &want);
        });
    }

    /// `store_f16` against `types::f32_to_f16` bit for bit: the edges of the f16 range, ties
    /// to even (normal and subnormal), f32 subnormals, ±∞, quiet and signalling NaNs with
    /// payloads, random values of f16 magnitude and random f32 bit patterns, every tail length.
    pub(crate) fn store_f16(k: &Kernels, isa: Isa) {
        let mut rng = Rng::new(80 + isa as u64);
        let mut x: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65519.996,
            65520.0,
            -65520.0,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7F80_0001),
            f32::from_bits(0xFFC0_0001),
            f32::from_bits(0x7FBF_FFFF),
            f32::from_bits(0x7F80_2000),
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            2f32.powi(-24),
            2f32.powi(-25),
            2f32.powi(-25) * 1.000_001,
            3.0 * 2f32.powi(-25),
            2f32.powi(-14),
            2f32.powi(-14) - 2f32.powi(-25),
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
        ];
        // Midpoints between neighbouring halves (exact in f32): ties, both parities.
        for _ in 0..4096 {
            let h = rng.next() as u16 & 0x7BFE;
            let (a, b) = (f16_to_f32(h), f16_to_f32(h + 1));
            x.push(0.5 * (a + b));
            x.push(-0.5 * (a + b));
        }
        x.extend((0..1 << 15).map(|_| rng.f() * 70000.0));
        x.extend((0..1 << 15).map(|_| rng.f() * 1e-4));
        x.extend((0..1 << 16).map(|_| f32::from_bits(rng.next() as u32)));
        for len in (0..40).chain([x.len()]) {
            let src = &x[x.len() - len..];
            let (mut got, mut want) = (vec![0u16; len], vec![0u16; len]);
            (k.store_f16)(src, &mut got);
            src.iter().zip(&mut want).for_each(|(&v, h)| *h = f32_to_f16(v));
            for ((g, w), v) in got.iter().zip(&want).zip(src) {
                assert_eq!(g, w, "{isa:?} store_f16({v:e} = {:#010x}): {g:#06x} vs {w:#06x}", v.to_bits());
            }
        }
    }

    /// The scalar table against itself: the tiles and the interleaved kernels against the row
    /// dots, the rest trivially.
    #[test]
    fn scalar_table() {
        let k = Kernels::scalar();
        let checks: [fn(&Kernels, Isa); 35] = [
            quantize_act,
            vec_dot_q4_0,
            vec_dot_q4_1,
            vec_dot_q8_0,
            vec_dot_f16,
            vec_dot_f32,
            gemm_q4_0,
            gemm_q4_1,
            gemm_q8_0,
            gemm_q4_0x16,
            gemm_q4_1x16,
            gemm_q8_0x16,
            gemm_q5_0x16,
            gemm_q5_1x16,
            gemm_q4_kx16,
            gemm_q5_kx16,
            gemm_q6_kx16,
            dots_q5_0,
            dots_q5_1,
            dots_q4_k,
            dots_q5_k,
            dots_q6_k,
            rows_q5_0,
            rows_q5_1,
            rows_q4_k,
            rows_q5_k,
            rows_q6_k,
            exp_f32,
            dots_f32,
            wsum_f32,
            dots_f16,
            wsum_f16,
            dots_q8_0,
            wsum_q8_0,
            store_f16,
        ];
        checks.iter().for_each(|c| c(&k, Isa::Scalar));
    }
}
