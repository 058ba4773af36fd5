//! Block formats against hand-computed vectors and error budgets; the dispatched kernels
//! against the scalar reference. (gguf-py is the bit-exact oracle in tests/python.)

use crate::blocks::*;
use crate::dispatch::{available_isas, Kernels};
use crate::scalar;

/// xorshift64*, for reproducible random inputs without a dependency.
pub(crate) struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
}

#[test]
fn q8_0_known_vector() {
    let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect(); // amax 16
    let mut b = [BlockQ8_0::default()];
    BlockQ8_0::quantize_row(&x, &mut b).unwrap();
    assert_eq!(f16_to_f32(b[0].d), half::f16::from_f32(16.0 / 127.0).to_f32());
    assert_eq!(b[0].qs[0], -127);
    assert_eq!(b[0].qs[16], 0);
    assert_eq!(b[0].qs[17], 8); // 1 * 127/16 = 7.94 → 8
    assert_eq!(b[0].qs[31], 119); // 15 * 7.9375 = 119.06
}

#[test]
fn q4_0_known_vector() {
    // Largest magnitude is -8 → d = -8 / -8 = 1; value v ↦ q = v + 8 (after +8.5 truncation).
    let mut x = [0f32; 32];
    x[0] = -8.0;
    x[1] = 7.0;
    x[16] = 3.0;
    x[17] = -2.4;
    let mut b = [BlockQ4_0::default()];
    BlockQ4_0::quantize_row(&x, &mut b).unwrap();
    assert_eq!(f16_to_f32(b[0].d), 1.0);
    assert_eq!(b[0].qs[0], 11 << 4); // -8 → 0 (low nibble) ; 3 → 11 (high nibble)
    assert_eq!(b[0].qs[1], 15 | (6 << 4)); // 7 → 15 ; -2.4 → trunc(6.1) = 6
    let mut y = [0f32; 32];
    BlockQ4_0::dequantize_row(&b, &mut y).unwrap();
    assert_eq!((y[0], y[1], y[16], y[17]), (-8.0, 7.0, 3.0, -2.0));
}

#[test]
fn q4_1_known_vector() {
    let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32 * 0.5 + 1.0).collect(); // min 1, max 8.5
    let mut b = [BlockQ4_1::default()];
    BlockQ4_1::quantize_row(&x, &mut b).unwrap();
    assert_eq!(f16_to_f32(b[0].m), 1.0);
    assert_eq!(f16_to_f32(b[0].d), 0.5);
    let mut y = [0f32; 32];
    BlockQ4_1::dequantize_row(&b, &mut y).unwrap();
    assert_eq!(x, y.to_vec());
}

#[test]
fn zero_blocks_stay_zero() {
    let x = [0f32; 64];
    let mut y = [1f32; 64];
    let mut a = [BlockQ8_0::default(); 2];
    BlockQ8_0::quantize_row(&x, &mut a).unwrap();
    BlockQ8_0::dequantize_row(&a, &mut y).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
    let mut b = [BlockQ4_0::default(); 2];
    BlockQ4_0::quantize_row(&x, &mut b).unwrap();
    BlockQ4_0::dequantize_row(&b, &mut y).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let se: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let ss: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (se / ss).sqrt()
}

/// Round-trip error budgets on uniform random data (the quantization step of each type over
/// a uniform distribution: 4-bit ≈ 1/15 of the range, 8-bit ≈ 1/255).
fn round_trip<B: Block>(budget: f64) {
    let mut rng = Rng::new(1);
    let x = rng.vec(32 * 64, 3.0);
    let mut q = vec![B::default(); 64];
    B::quantize_row(&x, &mut q).unwrap();
    let mut y = vec![0f32; x.len()];
    B::dequantize_row(&q, &mut y).unwrap();
    let e = rel_rms(&x, &y);
    assert!(e < budget, "{}: relative RMS error {e} over budget {budget}", B::DTYPE);
}

#[test]
fn round_trip_budgets() {
    round_trip::<BlockQ8_0>(0.005);
    round_trip::<BlockQ4_0>(0.11);
    round_trip::<BlockQ4_1>(0.07);
}

/// Quantized dot (weights × 8-bit activations) against the f32 dot of the dequantized weights
/// with the exact activations: the only extra error is activation quantization (< 1%).
fn dot_accuracy<B: Block<Activation = BlockQ8A>>() {
    let mut rng = Rng::new(2);
    for nb in [1, 3, 18, 48] {
        let w = rng.vec(32 * nb, 1.0);
        let x = rng.vec(32 * nb, 2.0);
        let mut qw = vec![B::default(); nb];
        B::quantize_row(&w, &mut qw).unwrap();
        let mut wd = vec![0f32; w.len()];
        B::dequantize_row(&qw, &mut wd).unwrap();
        let mut qa = vec![BlockQ8A::default(); nb];
        quantize_act(&x, &mut qa).unwrap();
        let exact: f32 = wd.iter().zip(&x).map(|(a, b)| a * b).sum();
        let norm: f32 = wd.iter().map(|v| v.abs()).sum::<f32>() * 2.0 / 127.0;
        let got = B::vec_dot_scalar(&qw, &qa).unwrap();
        assert!((got - exact).abs() <= norm, "{} nb={nb}: {got} vs {exact}", B::DTYPE);
    }
}

#[test]
fn dot_accuracy_all_types() {
    dot_accuracy::<BlockQ8_0>();
    dot_accuracy::<BlockQ4_0>();
    dot_accuracy::<BlockQ4_1>();
}

#[test]
fn lengths_are_checked() {
    let mut q = vec![BlockQ4_0::default(); 1];
    assert!(BlockQ4_0::quantize_row(&[0.0; 33], &mut q).is_err());
    assert!(BlockQ4_0::quantize_row(&[0.0; 64], &mut q).is_err());
    let a = vec![BlockQ8A::default(); 2];
    assert!(BlockQ4_0::vec_dot(&q, &a).is_err());
    assert!(cast_blocks::<BlockQ4_0>(&[0u8; 19]).is_err());
    assert!(DType::Q4_0.row_bytes(31).is_err());
    assert!(DType::Q8_0.row_bytes(usize::MAX - 31).is_err());
}

#[test]
fn dtype_codes_round_trip() {
    for d in DType::ALL {
        assert_eq!(DType::try_from(d as u32).unwrap(), d);
        assert_eq!(d.name().parse::<DType>().unwrap(), d);
    }
    assert!(DType::try_from(99).is_err());
}

/// Every ISA this machine has, slot by slot, against the scalar twin on random blocks of every
/// length class. Integer-exact slots compare bit for bit; float slots within a per-type
/// tolerance (summation order differs).
#[test]
fn dispatched_kernels_match_scalar() {
    let reference = Kernels::scalar();
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        assert_eq!(k.isa, isa);
        let mut rng = Rng::new(3 + isa as u64);
        for nb in [1usize, 2, 3, 7, 8, 9, 16, 17, 18, 48, 49] {
            let n = nb * 32;
            let mut x = rng.vec(n, 4.0);
            if nb % 3 == 0 {
                x[..32].fill(0.0); // an all-zero block
            }
            let mut qa_ref = vec![BlockQ8A::default(); nb];
            let mut qa = vec![BlockQ8A::default(); nb];
            (reference.quantize_act)(&x, &mut qa_ref);
            (k.quantize_act)(&x, &mut qa);
            assert_eq!(qa, qa_ref, "{isa:?} quantize_act nb={nb}");
            let w = rng.vec(n, 1.0);
            let mut q40 = vec![BlockQ4_0::default(); nb];
            let mut q41 = vec![BlockQ4_1::default(); nb];
            let mut q80 = vec![BlockQ8_0::default(); nb];
            scalar::quantize_row_q4_0(&w, &mut q40);
            scalar::quantize_row_q4_1(&w, &mut q41);
            scalar::quantize_row_q8_0(&w, &mut q80);
            // Float paths: the SIMD kernels sum the same exact integer block products in
            // another order, so they may differ by f32 rounding relative to the magnitude of
            // the terms (Σ|w·a|), never more.
            let tol = |a: f32, b: f32, mag: f32| (a - b).abs() <= 1e-5 * mag + 1e-6;
            let mut deq = vec![0f32; n];
            let mut act = vec![0f32; n];
            for (blk, o) in qa.iter().zip(act.chunks_exact_mut(32)) {
                blk.qs.iter().zip(o).for_each(|(q, o)| *o = *q as f32 * blk.d);
            }
            let mag = |deq: &[f32]| deq.iter().zip(&act).map(|(w, a)| (w * a).abs()).sum::<f32>();
            scalar::dequantize_row_q4_0(&q40, &mut deq);
            let m40 = mag(&deq);
            scalar::dequantize_row_q4_1(&q41, &mut deq);
            let m41 = mag(&deq);
            scalar::dequantize_row_q8_0(&q80, &mut deq);
            let m80 = mag(&deq);
            let pairs = [
                ("q4_0", (reference.vec_dot_q4_0)(&q40, &qa), (k.vec_dot_q4_0)(&q40, &qa), m40),
                ("q4_1", (reference.vec_dot_q4_1)(&q41, &qa), (k.vec_dot_q4_1)(&q41, &qa), m41),
                ("q8_0", (reference.vec_dot_q8_0)(&q80, &qa), (k.vec_dot_q8_0)(&q80, &qa), m80),
            ];
            for (name, r, g, m) in pairs {
                assert!(tol(r, g, m), "{isa:?} {name} nb={nb}: {g} vs scalar {r}");
            }
            for len in [1usize, 7, 8, 15, 16, 17, 31, 33, 64, 100] {
                let a = rng.vec(len, 1.0);
                let b = rng.vec(len, 1.0);
                let h: Vec<u16> = a.iter().map(|&v| f32_to_f16(v)).collect();
                let m: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
                let (r, g) = ((reference.vec_dot_f32)(&a, &b), (k.vec_dot_f32)(&a, &b));
                assert!(tol(r, g, m), "{isa:?} f32 len={len}: {g} vs {r}");
                let (r, g) = ((reference.vec_dot_f16)(&h, &b), (k.vec_dot_f16)(&h, &b));
                assert!(tol(r, g, m), "{isa:?} f16 len={len}: {g} vs {r}");
            }
        }
        // Tiles (weight rows × tokens) against the kernel's own vec_dot for every remainder
        // shape of the tiling: bit for bit below 16 tokens (register tiles run the row dot's
        // exact operations); from 16 tokens the AVX-512 kernels put tokens in lanes and sum in
        // another order, so there they agree within f32 rounding of the terms' magnitude.
        for (rows, toks) in
            [(1usize, 1usize), (2, 4), (3, 5), (4, 4), (5, 9), (8, 1), (7, 3), (5, 16), (4, 17), (9, 33)]
        {
            let nb = 3;
            let w = rng.vec(rows * nb * 32, 1.0);
            let x = rng.vec(toks * nb * 32, 1.0);
            let mut qa = vec![BlockQ8A::default(); toks * nb];
            (k.quantize_act)(&x, &mut qa);
            let (q40, q41, q80) = legacy_blocks(&w);
            let mut out = vec![0f32; rows * toks];
            let exact = toks < 16;
            macro_rules! check {
                ($tile:ident, $dot:ident, $q:expr, $deq:ident) => {
                    (k.$tile)(&$q, &qa, nb, &mut out);
                    let mut wd = vec![0f32; nb * 32];
                    for t in 0..toks {
                        let mut ad = vec![0f32; nb * 32];
                        for (blk, o) in qa[t * nb..(t + 1) * nb].iter().zip(ad.chunks_exact_mut(32)) {
                            blk.qs.iter().zip(o).for_each(|(q, o)| *o = *q as f32 * blk.d);
                        }
                        for r in 0..rows {
                            let want = (k.$dot)(&$q[r * nb..(r + 1) * nb], &qa[t * nb..(t + 1) * nb]);
                            let got = out[t * rows + r];
                            if exact {
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{isa:?} {} {rows}x{toks} ({r},{t})",
                                    stringify!($tile)
                                );
                            } else {
                                scalar::$deq(&$q[r * nb..(r + 1) * nb], &mut wd);
                                let mag: f32 = wd.iter().zip(&ad).map(|(a, b)| (a * b).abs()).sum();
                                assert!(
                                    (got - want).abs() <= 1e-5 * mag + 1e-6,
                                    "{isa:?} {} {rows}x{toks} ({r},{t}): {got} vs {want}",
                                    stringify!($tile)
                                );
                            }
                        }
                    }
                };
            }
            check!(gemm_q4_0, vec_dot_q4_0, q40, dequantize_row_q4_0);
            check!(gemm_q4_1, vec_dot_q4_1, q41, dequantize_row_q4_1);
            check!(gemm_q8_0, vec_dot_q8_0, q80, dequantize_row_q8_0);
        }
        if isa == crate::Isa::Scalar {
            continue;
        }
        println!("checked {isa:?} against scalar");
    }
    #[cfg(target_arch = "aarch64")]
    let expected = [(crate::Isa::Neon, "neon"), (crate::Isa::NeonDot, "neon-dotprod")];
    #[cfg(target_arch = "x86_64")]
    let expected = [(crate::Isa::Avx2, "avx2"), (crate::Isa::Avx512, "avx512")];
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    for (isa, name) in expected {
        if !available_isas().contains(&isa) {
            println!("SKIP {name}: not available on this CPU");
        }
    }
}

/// The byte-coded types (q5_0, q5_1, q4_k, q5_k, q6_k), ISA by ISA, against their scalar twins:
/// rows from the quantizers and rows of random bytes (every bit pattern of the integer fields,
/// sane f16 scales), 1–5 super-blocks (1–49 blocks for the 32-value types), zero activation
/// blocks included, 1–33 tokens per call (beyond the 8 or 16 an x86 call takes at once). NEON runs the scalar expression per block and must agree
/// bit for bit; x86 sums lanes in another order and agrees within f32 rounding of Σ|w·a|. Every
/// ISA gives each token the same bits whether it comes alone or with others.
#[test]
fn byte_kernels_match_scalar() {
    use crate::dispatch::ByteDotsFn;
    type Deq = fn(&[u8], &mut [f32]);
    let reference = Kernels::scalar();
    let pick = |k: &Kernels, d: DType| -> ByteDotsFn {
        match d {
            DType::Q5_0 => k.dots_q5_0,
            DType::Q5_1 => k.dots_q5_1,
            DType::Q4K => k.dots_q4_k,
            DType::Q5K => k.dots_q5_k,
            _ => k.dots_q6_k,
        }
    };
    // (type, f16 offsets inside a block, dequantizer)
    let types: [(DType, &[usize], Deq); 5] = [
        (DType::Q5_0, &[0], crate::q5::dequantize_row),
        (DType::Q5_1, &[0, 2], crate::q5::dequantize_row_1),
        (DType::Q4K, &[0, 2], crate::kquants::dequantize_row_q4_k),
        (DType::Q5K, &[0, 2], crate::kquants::dequantize_row_q5_k),
        (DType::Q6K, &[208], crate::kquants::dequantize_row_q6_k),
    ];
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        let mut rng = Rng::new(40 + isa as u64);
        let exact = matches!(isa, crate::Isa::Neon | crate::Isa::NeonDot | crate::Isa::Scalar);
        for (dtype, f16s, deq) in types {
            let lens: &[usize] = if dtype.block_len() == QK_K { &[8, 16, 24, 40] } else { &[1, 2, 3, 7, 8, 9, 17, 49] };
            for (ci, &nb) in lens.iter().enumerate() {
                let toks = [1usize, 9, 5, 33][ci % 4];
                let n = nb * QK;
                let mut x = rng.vec(n * toks, 4.0);
                if nb % 3 == 0 {
                    x[..QK].fill(0.0);
                }
                let mut qa = vec![BlockQ8A::default(); nb * toks];
                (reference.quantize_act)(&x, &mut qa);
                let w = rng.vec(n, 1.0);
                let mut quantized = Vec::new();
                quantize_bytes(dtype, &w, &mut quantized).unwrap();
                let mut random: Vec<u8> = (0..quantized.len()).map(|_| rng.next() as u8).collect();
                for blk in random.chunks_exact_mut(dtype.block_bytes()) {
                    for &o in f16s {
                        blk[o..o + 2].copy_from_slice(&f32_to_f16(rng.f() * 0.01).to_le_bytes());
                    }
                }
                for (what, row) in [("quantized", &quantized), ("random", &random)] {
                    let mut wd = vec![0f32; n];
                    deq(row, &mut wd);
                    let (mut r, mut g) = (vec![0f32; toks], vec![0f32; toks]);
                    pick(&reference, dtype)(row, &qa, nb, &mut r);
                    pick(&k, dtype)(row, &qa, nb, &mut g);
                    for t in 0..toks {
                        let at = &qa[t * nb..(t + 1) * nb];
                        let mag: f32 = wd
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (v * at[i / QK].qs[i % QK] as f32 * at[i / QK].d).abs())
                            .sum();
                        let (r, g) = (r[t], g[t]);
                        let ctx = format!("{isa:?} {dtype} {what} nb={nb} token {t}/{toks}");
                        if exact {
                            assert_eq!(g.to_bits(), r.to_bits(), "{ctx}: {g} vs scalar {r}");
                        } else {
                            assert!((g - r).abs() <= 1e-5 * mag + 1e-6, "{ctx}: {g} vs scalar {r} (Σ|w·a| {mag})");
                        }
                        let mut alone = [0f32];
                        pick(&k, dtype)(row, at, nb, &mut alone);
                        assert_eq!(alone[0].to_bits(), g.to_bits(), "{ctx}: alone {} vs batched {g}", alone[0]);
                    }
                }
            }
        }
        println!("checked byte-coded types on {isa:?}");
    }
}

/// `w` quantized by the reference quantizers of the three legacy types.
fn legacy_blocks(w: &[f32]) -> (Vec<BlockQ4_0>, Vec<BlockQ4_1>, Vec<BlockQ8_0>) {
    let n = w.len() / 32;
    let (mut q40, mut q41, mut q80) =
        (vec![BlockQ4_0::default(); n], vec![BlockQ4_1::default(); n], vec![BlockQ8_0::default(); n]);
    scalar::quantize_row_q4_0(w, &mut q40);
    scalar::quantize_row_q4_1(w, &mut q41);
    scalar::quantize_row_q8_0(w, &mut q80);
    (q40, q41, q80)
}

/// 16-row interleaved matrices, ISA by ISA, against the row-major scalar dot products of the
/// same rows: quantizer output and random bytes (every q8 byte, every nibble), 1–19 blocks per
/// row, 1–3 groups, 1–19 tokens per call (beyond the 8 an x86 pass takes). The scalar twin and
/// NEON run the row-major expression per (row, token) and must agree bit for bit; x86 fuses the
/// multiply-add and agrees within f32 rounding of Σ|w·a|. A token's result never depends on the
/// tokens beside it.
#[test]
fn x16_kernels_match_row_major() {
    use crate::interleave::{self, BlockQ4_0x16, BlockQ4_1x16, BlockQ8_0x16};
    let mut rng = Rng::new(16);
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        let exact = !matches!(isa, crate::Isa::Avx2 | crate::Isa::Avx512);
        for &(groups, nb, toks) in &[(1, 1, 1), (1, 3, 9), (2, 18, 8), (3, 19, 19), (1, 2, 17), (2, 5, 3)] {
            let rows = 16 * groups;
            let x = rng.vec(toks * nb * 32, 1.0);
            let mut qa = vec![BlockQ8A::default(); toks * nb];
            (k.quantize_act)(&x, &mut qa);
            for random_bytes in [false, true] {
                let w = rng.vec(rows * nb * 32, 1.0);
                let (mut q40, mut q41, mut q80) = legacy_blocks(&w);
                if random_bytes {
                    q40.iter_mut().flat_map(|b| b.qs.iter_mut()).for_each(|q| *q = rng.next() as u8);
                    q41.iter_mut().flat_map(|b| b.qs.iter_mut()).for_each(|q| *q = rng.next() as u8);
                    q80.iter_mut().flat_map(|b| b.qs.iter_mut()).for_each(|q| *q = rng.next() as i8);
                }
                macro_rules! check {
                    ($q:expr, $x16:ty, $gemm:ident, $dot:ident, $deq:ident) => {{
                        let dtype = <$x16 as interleave::GroupBlock>::DTYPE;
                        let mut bytes = Vec::new();
                        interleave::interleave(dtype, rows, nb * 32, block_bytes(&$q), &mut bytes).unwrap();
                        let wx: Vec<$x16> = interleave::to_blocks(&bytes).unwrap();
                        let wx = &wx[..];
                        let mut out = vec![f32::NAN; rows * toks];
                        (k.$gemm)(wx, &qa, nb, &mut out);
                        let mut one = vec![f32::NAN; rows];
                        let (mut wd, mut ad) = (vec![0f32; nb * 32], vec![0f32; nb * 32]);
                        for t in 0..toks {
                            let at = &qa[t * nb..(t + 1) * nb];
                            (k.$gemm)(wx, at, nb, &mut one);
                            for (blk, o) in at.iter().zip(ad.chunks_exact_mut(32)) {
                                blk.qs.iter().zip(o).for_each(|(q, o)| *o = *q as f32 * blk.d);
                            }
                            for r in 0..rows {
                                let want = scalar::$dot(&$q[r * nb..(r + 1) * nb], at);
                                let got = out[t * rows + r];
                                assert_eq!(
                                    got.to_bits(),
                                    one[r].to_bits(),
                                    "{isa:?} {dtype} alone vs batched ({r},{t})"
                                );
                                if exact {
                                    assert_eq!(
                                        got.to_bits(),
                                        want.to_bits(),
                                        "{isa:?} {dtype} {rows}x{toks} nb {nb} ({r},{t})"
                                    );
                                } else {
                                    scalar::$deq(&$q[r * nb..(r + 1) * nb], &mut wd);
                                    let mag: f32 = wd.iter().zip(&ad).map(|(a, b)| (a * b).abs()).sum();
                                    assert!(
                                        (got - want).abs() <= 1e-5 * mag + 1e-6,
                                        "{isa:?} {dtype} {rows}x{toks} nb {nb} ({r},{t}): {got} vs {want}"
                                    );
                                }
                            }
                        }
                    }};
                }
                check!(q40, BlockQ4_0x16, gemm_q4_0x16, vec_dot_q4_0_q8a, dequantize_row_q4_0);
                check!(q41, BlockQ4_1x16, gemm_q4_1x16, vec_dot_q4_1_q8a, dequantize_row_q4_1);
                check!(q80, BlockQ8_0x16, gemm_q8_0x16, vec_dot_q8_0_q8a, dequantize_row_q8_0);
            }
        }
        println!("checked {isa:?} x16 kernels");
    }
}

/// `exp_f32`, ISA by ISA, against the scalar twin bit for bit: random values over the whole
/// f32 range of the function (and beyond both ends), the edges, ±∞, NaN, every tail length.
#[test]
fn exp_matches_scalar_twin() {
    let mut rng = Rng::new(99);
    let mut x: Vec<f32> = (0..4000).map(|_| rng.f() * 100.0).collect();
    x.extend((0..1000).map(|_| rng.f() * 2.0));
    x.extend([
        0.0,
        -0.0,
        crate::exp::MIN_X,
        crate::exp::MAX_X,
        -87.4,
        88.8,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-30,
    ]);
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        for len in (0..40).chain([x.len()]) {
            let mut got = x[x.len() - len..].to_vec();
            (k.exp_f32)(&mut got);
            for (g, v) in got.iter().zip(&x[x.len() - len..]) {
                let want = crate::exp::exp(*v);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{isa:?} exp({v}): {g} vs {want}"
                );
            }
        }
    }
}

/// Attention's strided loops (`dots_f32`, `wsum_f32`), ISA by ISA, against the scalar twins:
/// row lengths 1–130 (odd tails), 0–17 rows, strides longer than a row (a GQA cache). Sums run
/// in another order, so they agree within f32 rounding of Σ|terms|.
#[test]
fn attention_loops_match_scalar() {
    let mut rng = Rng::new(5);
    let reference = Kernels::scalar();
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        for hd in [1, 7, 8, 16, 24, 64, 72, 128, 130] {
            for n in [0, 1, 3, 4, 5, 17] {
                let stride = 3 * hd + 5;
                let q = rng.vec(hd, 1.0);
                let kv = rng.vec(n.max(1) * stride, 1.0);
                let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
                (k.dots_f32)(&q, &kv, stride, &mut got);
                (reference.dots_f32)(&q, &kv, stride, &mut want);
                for j in 0..n {
                    let mag: f32 = (0..hd).map(|i| (q[i] * kv[j * stride + i]).abs()).sum();
                    assert!((got[j] - want[j]).abs() <= 1e-6 * mag + 1e-7, "{isa:?} dots hd {hd} n {n} j {j}");
                }
                let w = rng.vec(n, 1.0);
                let init = rng.vec(hd, 1.0);
                let (mut got, mut want) = (init.clone(), init.clone());
                (k.wsum_f32)(&mut got, &w, &kv, stride);
                (reference.wsum_f32)(&mut want, &w, &kv, stride);
                for i in 0..hd {
                    let mag: f32 = init[i].abs() + (0..n).map(|j| (w[j] * kv[j * stride + i]).abs()).sum::<f32>();
                    assert!((got[i] - want[i]).abs() <= 1e-6 * mag + 1e-7, "{isa:?} wsum hd {hd} n {n} i {i}");
                }
            }
        }
    }
}

/// The bandwidth probe's sum against its scalar twin, every tail length up to two 128-byte steps.
#[test]
fn probe_sum_matches_scalar() {
    let mut rng = Rng::new(3);
    let x: Vec<u8> = (0..4096 + 7).map(|_| rng.next() as u8).collect();
    for len in (0..300).chain([4096, 4096 + 7]) {
        assert_eq!(crate::ops::sum_u64(&x[..len]), scalar::sum_u64(&x[..len]), "len {len}");
        assert_eq!(crate::ops::sum_u64(&x[3..3 + len.min(4096)]), scalar::sum_u64(&x[3..3 + len.min(4096)]));
    }
}
