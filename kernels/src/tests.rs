//! Block formats against hand-computed vectors and error budgets. The dispatched kernels are
//! tested against the scalar reference where each ISA registers them (`twins`). (gguf-py is the
//! bit-exact oracle in tests/python.)

use crate::blocks::*;
use crate::rng::Rng;
use crate::scalar;

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
    // Unknown names are errors that list the known ones.
    let e = "q9_9".parse::<DType>().unwrap_err().to_string();
    assert!(e.contains("\"q9_9\"") && DType::ALL.iter().all(|d| e.contains(d.name())), "{e}");
    let e = crate::Isa::parse(" SSE4 ").unwrap_err().to_string();
    assert!(e.contains("\"sse4\"") && crate::Isa::ALL.iter().all(|i| e.contains(i.name())), "{e}");
    assert_eq!(crate::Isa::parse("DotProd"), Ok(crate::Isa::NeonDot));
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

/// The KV cache's row stores: the dispatched f16 store gives `f32_to_f16`'s bits (the twin
/// checks cover every ISA's kernel), the q8_0 store is the reference quantizer, and both reject
/// rows of the wrong length.
#[test]
fn cache_row_stores() {
    let mut rng = Rng::new(11);
    let x = rng.vec(6 * QK, 3.0);
    let mut h = vec![0u16; x.len()];
    crate::ops::store_f16(&x, &mut h);
    assert!(h.iter().zip(&x).all(|(&h, &v)| h == f32_to_f16(v)));
    let (mut got, mut want) = (vec![BlockQ8_0::default(); 6], vec![BlockQ8_0::default(); 6]);
    crate::ops::store_q8_0(&x, &mut got);
    scalar::quantize_row_q8_0(&x, &mut want);
    assert_eq!(got, want);
    let bad_f16 = std::panic::catch_unwind(|| crate::ops::store_f16(&[0.0; 3], &mut [0u16; 4]));
    assert!(bad_f16.is_err());
    let bad_q8 = std::panic::catch_unwind(|| crate::ops::store_q8_0(&[0.0; 33], &mut [BlockQ8_0::default(); 1]));
    assert!(bad_q8.is_err());
}

/// The scalar K-quant code (`kquants`), here because it uses the dispatched `quantize_act`.
mod kquants {
    use crate::blocks::{f32_to_f16, quantize_act, BlockQ4K, BlockQ5_1, BlockQ6K, BlockQ8A, DType, QK, QK_K};
    use crate::kquants::*;
    use std::mem::offset_of;
    /// The f16 scales of `q4_k` and `q5_k` (`d`, `dmin`: one header), and of `q6_k`.
    const K4: [usize; 2] = [offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)];
    const D6: usize = offset_of!(BlockQ6K, d);

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Random super-blocks with sane f16 scales (the integer fields take any value).
    fn random_blocks(dtype: DType, n: usize, f16_at: &[usize], seed: &mut u64) -> Vec<u8> {
        let bytes = dtype.block_bytes();
        let mut v: Vec<u8> = (0..bytes * n).map(|_| lcg(seed) as u8).collect();
        for b in v.chunks_exact_mut(bytes) {
            for &o in f16_at {
                let x = (lcg(seed) % 1000) as f32 / 1000.0 * 0.01 + 0.001;
                b[o..o + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
            }
        }
        v
    }

    /// The scalar dot product of every byte-coded type against an independent product: the
    /// weights dequantized (bit-exact with gguf-py, tested at import) times the dequantized
    /// activation blocks, in f64.
    #[test]
    fn scalar_dots_match_dequantized_products() {
        type Deq = fn(&[u8], &mut [f32]);
        type Dot = fn(&[u8], &[BlockQ8A]) -> f32;
        let mut seed = 11u64;
        for n in [1usize, 2, 3, 5] {
            let cols = n * QK_K;
            let q5 = {
                let w: Vec<f32> = (0..cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
                let mut b = vec![0u8; DType::Q5_0.row_bytes(cols).unwrap()];
                crate::q5::quantize_row(&w, &mut b);
                b
            };
            let cases: [(DType, Vec<u8>, Deq, Dot); 5] = [
                (DType::Q5_0, q5, crate::q5::dequantize_row, crate::q5::vec_dot_q5_0),
                (
                    DType::Q5_1,
                    random_blocks(DType::Q5_1, 8 * n, &[offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)], &mut seed),
                    crate::q5::dequantize_row_1,
                    crate::q5::vec_dot_q5_1,
                ),
                (DType::Q4K, random_blocks(DType::Q4K, n, &K4, &mut seed), dequantize_row_q4_k, vec_dot_q4_k),
                (DType::Q5K, random_blocks(DType::Q5K, n, &K4, &mut seed), dequantize_row_q5_k, vec_dot_q5_k),
                (DType::Q6K, random_blocks(DType::Q6K, n, &[D6], &mut seed), dequantize_row_q6_k, vec_dot_q6_k),
            ];
            let x: Vec<f32> = (0..cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
            let mut a = vec![BlockQ8A::default(); cols / QK];
            quantize_act(&x, &mut a).unwrap();
            for (dtype, w, deq, dot) in cases {
                let mut wf = vec![0f32; cols];
                deq(&w, &mut wf);
                let want: f64 = wf
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v as f64 * a[i / QK].qs[i % QK] as f64 * a[i / QK].d as f64)
                    .sum();
                let got = dot(&w, &a) as f64;
                let scale: f64 = wf.iter().map(|v| v.abs() as f64).sum();
                assert!((got - want).abs() <= 1e-5 * scale.max(1.0), "{dtype} × {n}: {got} vs {want}");
            }
        }
    }

    /// The K-quant quantizers round-trip through the dequantizers (bit-exact with gguf-py, tested
    /// at import) within the error their bit widths allow, and weighting moves error away from
    /// the weighted values.
    #[test]
    fn k_quant_quantizers_round_trip() {
        let mut seed = 3u64;
        let n = 3 * QK_K;
        let x: Vec<f32> = (0..n)
            .map(|i| ((lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0) * if i % 53 == 0 { 5.0 } else { 1.0 })
            .collect();
        let flat = vec![1f32; n];
        let hot: Vec<f32> = (0..n).map(|i| if i % 8 == 0 { 100.0 } else { 1.0 }).collect();
        type Q = fn(&[f32], Option<&[f32]>, &mut [u8]);
        type Deq = fn(&[u8], &mut [f32]);
        for (name, quant, deq, rel) in [
            (DType::Q4K, quantize_row_q4_k as Q, dequantize_row_q4_k as Deq, 0.12f64),
            (DType::Q5K, quantize_row_q5_k, dequantize_row_q5_k, 0.06),
            (DType::Q6K, quantize_row_q6_k, dequantize_row_q6_k, 0.03),
        ] {
            let err = |w: &[f32], sel: &dyn Fn(usize) -> bool| -> f64 {
                let mut b = vec![0u8; name.row_bytes(n).unwrap()];
                quant(&x, Some(w), &mut b);
                let mut y = vec![0f32; n];
                deq(&b, &mut y);
                let num: f64 = (0..n).filter(|&i| sel(i)).map(|i| ((x[i] - y[i]) as f64).powi(2)).sum();
                let den: f64 = (0..n).filter(|&i| sel(i)).map(|i| (x[i] as f64).powi(2)).sum();
                (num / den).sqrt()
            };
            let all = err(&flat, &|_| true);
            assert!(all < rel, "{name}: relative RMS error {all}");
            let hot_plain = err(&flat, &|i| i % 8 == 0);
            let hot_weighted = err(&hot, &|i| i % 8 == 0);
            assert!(
                hot_weighted < hot_plain,
                "{name}: weighting did not help the weighted values ({hot_weighted} vs {hot_plain})"
            );
        }
    }
}

/// `ops::argmax` against the sequential scan it replaces, on random vectors of every length
/// 0–100 and a vocabulary's, with ties, NaNs, infinities and all-−∞/NaN vectors.
#[test]
fn argmax_equals_the_sequential_scan() {
    let scan = |v: &[f32]| {
        v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
    };
    let mut rng = Rng::new(7);
    for n in (0..100).chain([49_152, 49_153]) {
        for case in 0..8 {
            let mut v: Vec<f32> = rng.vec(n, 4.0).iter().map(|x| (x * 4.0).round()).collect(); // ties
            for x in v.iter_mut() {
                let r = rng.next() % 16;
                *x = match (case, r) {
                    (1, 0) => f32::NAN,
                    (2, 0) => f32::INFINITY,
                    (3, _) => f32::NEG_INFINITY,
                    (4, _) => f32::NAN,
                    (5, 0..=7) => f32::NAN,
                    (5, _) => f32::NEG_INFINITY,
                    (6, 0) => -0.0,
                    _ => *x,
                };
            }
            assert_eq!(crate::ops::argmax(&v), scan(&v), "n {n} case {case}: {v:?}");
        }
    }
}

/// `with_isa` gives its table on the calling thread only, and restores the previous one after
/// `f` returns or panics; nested calls nest.
#[test]
fn with_isa_is_scoped_to_the_thread_and_the_call() {
    use crate::dispatch::{kernels, with_isa, Isa};
    let global = kernels().isa;
    with_isa(Isa::Scalar, || {
        assert_eq!(kernels().isa, Isa::Scalar);
        let other = std::thread::spawn(|| kernels().isa).join().unwrap();
        assert_eq!(other, global, "another thread keeps the process-wide table");
        with_isa(global, || assert_eq!(kernels().isa, global));
        assert_eq!(kernels().isa, Isa::Scalar);
    });
    assert_eq!(kernels().isa, global);
    let r = std::panic::catch_unwind(|| with_isa(Isa::Scalar, || panic!("inside")));
    assert!(r.is_err());
    assert_eq!(kernels().isa, global, "restored after a panic");
}

/// `v` less its last byte, starting on an even address (weights are read as f16).
fn aligned(v: &mut [u8]) -> &mut [u8] {
    let n = v.len() - 1;
    let skip = (v.as_ptr() as usize) % 2;
    &mut v[skip..skip + n]
}

/// The embedding lookup's path: a row of an interleaved matrix, dequantized block by block
/// through a stack buffer, equals the row-major row's, for every interleavable type.
#[test]
fn rows16_row_lookup_equals_row_major() {
    use crate::interleave::{interleave, TensorLayout};
    use crate::ops::WeightView;
    let mut rng = Rng::new(11);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4K, DType::Q5K, DType::Q6K] {
        let (rows, cols) = (32, 3 * dtype.block_len());
        let rb = dtype.row_bytes(cols).unwrap();
        let src: Vec<u8> = (0..rows * rb).map(|_| rng.next() as u8).collect();
        let mut dst = Vec::new();
        interleave(dtype, rows, cols, &src, &mut dst).unwrap();
        let (mut a, mut b) = (vec![0u8; src.len() + 1], vec![0u8; src.len() + 1]);
        let (a, b) = (aligned(&mut a), aligned(&mut b));
        a.copy_from_slice(&src);
        b.copy_from_slice(&dst);
        let plain = WeightView::new(dtype, rows, cols, a).unwrap();
        let inter = WeightView::with_layout(dtype, TensorLayout::Rows16, rows, cols, b).unwrap();
        let (mut x, mut y) = (vec![0f32; cols], vec![0f32; cols]);
        for r in [0, 17, rows - 1] {
            plain.row_f32(r, &mut x).unwrap();
            inter.row_f32(r, &mut y).unwrap();
            assert!(x.iter().zip(&y).all(|(x, y)| x.to_bits() == y.to_bits()), "{dtype}: row {r}");
        }
    }
}

/// `Activations::set_with` without the f32 copy: quantized matrices give the same bits as after
/// `set`; f16/f32 matrices get a typed error instead of reading a stale or empty copy.
#[test]
fn activations_without_their_f32_copy() {
    use crate::ops::{gemm, reads_f32, Activations, WeightView};
    use crate::types::KernelError;
    let (rows, cols, n) = (4, 64, 3);
    let mut rng = Rng::new(7);
    let x = rng.vec(n * cols, 1.0);
    let w = rng.vec(rows * cols, 1.0);
    let mut q = vec![BlockQ8_0::default(); rows * cols / 32];
    BlockQ8_0::quantize_row(&w, &mut q).unwrap();
    let qbytes: Vec<u8> = q.iter().flat_map(|b| b.d.to_le_bytes().into_iter().chain(b.qs.map(|v| v as u8))).collect();
    // f32 weights start on a 4-byte boundary: the bytes are written at the buffer's first one.
    let mut fbuf = vec![0u8; w.len() * 4 + 3];
    let at = fbuf.as_ptr().align_offset(4);
    let fbytes = &mut fbuf[at..at + w.len() * 4];
    for (c, v) in fbytes.chunks_exact_mut(4).zip(&w) {
        c.copy_from_slice(&v.to_le_bytes());
    }
    let wq = WeightView::new(DType::Q8_0, rows, cols, &qbytes).unwrap();
    let wf = WeightView::new(DType::F32, rows, cols, fbytes).unwrap();
    assert!(!reads_f32(wq.dtype) && reads_f32(wf.dtype));
    let mut act = Activations::with_capacity(n, cols);
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (mut full, mut lean, mut float) = (vec![0f32; n * rows], vec![0f32; n * rows], vec![0f32; n * rows]);
    act.set(&x, n, cols).unwrap();
    gemm(&wq, &act, &mut full).unwrap();
    gemm(&wf, &act, &mut float).unwrap();
    assert!(float.iter().all(|v| v.is_finite() && *v != 0.0));
    act.set_with(&x, n, cols, false).unwrap();
    gemm(&wq, &act, &mut lean).unwrap();
    assert_eq!(bits(&full), bits(&lean));
    assert!(matches!(gemm(&wf, &act, &mut float), Err(KernelError::NoFloatActivations { dtype: DType::F32 })));
    // Rows that are not whole blocks (no 8-bit blocks) keep the copy whatever was asked.
    let wf40 = WeightView::new(DType::F32, 2, 40, &fbytes[..2 * 40 * 4]).unwrap();
    act.set_with(&x[..n * 40], n, 40, false).unwrap();
    let mut out40 = vec![0f32; n * 2];
    gemm(&wf40, &act, &mut out40).unwrap();
    act.set(&x[..n * 40], n, 40).unwrap();
    let mut ref40 = vec![0f32; n * 2];
    gemm(&wf40, &act, &mut ref40).unwrap();
    assert_eq!(bits(&out40), bits(&ref40));
}
