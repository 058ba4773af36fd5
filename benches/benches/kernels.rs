//! Matrix–vector products (decode) and matrix–matrix products (prefill, 64 tokens) for every
//! weight type, each ISA this CPU has beside the scalar twin, reported in bytes of weights per
//! second; attention over a KV cache in f32, f16 and q8_0 (`attention_*` groups, per key). Run:
//! `cargo bench -p autark-benches` (AUTARK_ISA is ignored here: every ISA is measured
//! explicitly; `-- attention` runs only the attention groups).
//!
//! Peer: current ggml's row dot products (`ggml_vec_dot_q4_0_q8_0`, `…_q4_1_q8_1`,
//! `…_q8_0_q8_0` from the llama-cpp-python 0.3.36 sources, AVX-512 VNNI build), built by
//! `scripts/ggml-peer.sh` and loaded at run time when present (`AUTARK_GGML_PEER` overrides the
//! path): the `ggml` rows of the GEMV groups, on the same GGUF block bytes, one row per call as
//! our row-major GEMV. (`ggml-sys` bundles 2023 ggml with other block bytes, so it is not used.)
//! ggml's prefill GEMM (repacked tiles, llamafile sgemm) is not a plain exported function; the
//! whole-model comparisons in BENCHMARKS.md cover it.

use autark_benches::ggml_peer::{Kind, Peer};
use autark_kernels::blocks::{
    block_bytes, f32_to_f16, quantize_bytes, Block, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType,
};
use autark_kernels::dispatch::{available_isas, ByteDotsFn, ByteRowsFn, GemmFn, Kernels};
use autark_kernels::interleave::{
    self, BlockQ4Kx16, BlockQ4_0x16, BlockQ4_1x16, BlockQ5Kx16, BlockQ5_0x16, BlockQ5_1x16, BlockQ6Kx16, BlockQ8_0x16,
};
use autark_kernels::types::BlockLayout;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ROWS: usize = 2048;
const COLS: usize = 2048;

fn values(n: usize) -> Vec<f32> {
    let mut s = 12345u32;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn weights<B: Block>(rows: usize, cols: usize) -> Vec<B> {
    let mut q = vec![B::default(); rows * cols / 32];
    B::quantize_row(&values(rows * cols), &mut q).unwrap();
    q
}

fn acts(k: &Kernels, tokens: usize, cols: usize) -> Vec<BlockQ8A> {
    let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let mut q = vec![BlockQ8A::default(); tokens * cols / 32];
    (k.quantize_act)(&x, &mut q);
    q
}

/// A type's row dot and tile from a dispatch table.
type Pick<B> = fn(&Kernels) -> (fn(&[B], &[BlockQ8A]) -> f32, GemmFn<B>);

fn bench_type<B: Block>(c: &mut Criterion, name: &str, pick: Pick<B>, peer: Option<(&Peer, Kind)>) {
    let w = weights::<B>(ROWS, COLS);
    let bytes = (std::mem::size_of_val(w.as_slice())) as u64;
    let nb = COLS / 32;
    let mut g = c.benchmark_group(format!("gemv_{name}"));
    g.throughput(Throughput::Bytes(bytes));
    if let Some((peer, kind)) = peer {
        // Current ggml's row dot on the same GGUF bytes, with its own activation format.
        let raw = block_bytes(&w);
        let rb = raw.len() / ROWS;
        let x: Vec<f32> = (0..COLS).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let a = peer.quantize(kind, &x);
        // Sanity: ggml's value for row 0 against the dequantized product (8-bit activations
        // on both sides, so within a few per cent of Σ|w·x|).
        let mut w0 = vec![0f32; COLS];
        B::dequantize_row(&w[..nb], &mut w0).unwrap();
        let exact: f32 = w0.iter().zip(&x).map(|(a, b)| a * b).sum();
        let mag: f32 = w0.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
        let got = peer.dot(kind, COLS, &raw[..rb], &a);
        assert!((got - exact).abs() <= 0.02 * mag, "ggml peer {name}: {got} vs {exact}");
        let mut out = vec![0f32; ROWS];
        g.bench_function(BenchmarkId::from_parameter("ggml"), |b| {
            b.iter(|| {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = peer.dot(kind, COLS, &raw[r * rb..(r + 1) * rb], &a);
                }
                std::hint::black_box(&out);
            })
        });
    }
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        let (dot, _) = pick(&k);
        let a = acts(&k, 1, COLS);
        let mut out = vec![0f32; ROWS];
        g.bench_with_input(BenchmarkId::from_parameter(isa.name()), &isa, |b, _| {
            b.iter(|| {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = dot(&w[r * nb..(r + 1) * nb], &a);
                }
                std::hint::black_box(&out);
            })
        });
    }
    g.finish();
    let tokens = 64;
    let mut g = c.benchmark_group(format!("gemm64_{name}"));
    g.throughput(Throughput::Bytes(bytes * tokens as u64));
    g.sample_size(10);
    for isa in available_isas() {
        let k = Kernels::best(Some(isa));
        let (_, gemm) = pick(&k);
        let a = acts(&k, tokens, COLS);
        let mut out = vec![0f32; 16 * tokens];
        g.bench_with_input(BenchmarkId::from_parameter(isa.name()), &isa, |b, _| {
            b.iter(|| {
                for r0 in (0..ROWS).step_by(16) {
                    gemm(&w[r0 * nb..(r0 + 16) * nb], &a, nb, &mut out);
                }
                std::hint::black_box(&out);
            })
        });
    }
    g.finish();
}

/// The 16-row interleaved layout (`rows16`, what the quantizer writes) of every type that has it:
/// 1 token (decode) and 64 tokens (prefill), all rows per call as the runtime's tasks make them.
fn bench_x16<X: BlockLayout>(c: &mut Criterion, pick: fn(&Kernels) -> GemmFn<X>) {
    let dtype = X::DTYPE;
    let mut raw = Vec::new();
    quantize_bytes(dtype, &values(ROWS * COLS), &mut raw).unwrap();
    let mut bytes = Vec::new();
    interleave::interleave(dtype, ROWS, COLS, &raw, &mut bytes).unwrap();
    let wx: Vec<X> = interleave::to_blocks(&bytes).unwrap();
    // Activation blocks per token and group blocks per 16 rows (a K super-block spans 8 of
    // the former).
    let (nb, nw) = (COLS / 32, COLS / X::BLOCK_LEN);
    for tokens in [1usize, 64] {
        let mut g =
            c.benchmark_group(if tokens == 1 { format!("gemv_{dtype}x16") } else { format!("gemm64_{dtype}x16") });
        g.throughput(Throughput::Bytes((bytes.len() * tokens) as u64));
        if tokens > 1 {
            g.sample_size(10);
        }
        for isa in available_isas() {
            let k = Kernels::best(Some(isa));
            let gemm = pick(&k);
            let a = acts(&k, tokens, COLS);
            // 256 rows (16 groups) per call, as a decode task of the runtime.
            let mut out = vec![0f32; 256 * tokens];
            g.bench_with_input(BenchmarkId::from_parameter(isa.name()), &isa, |b, _| {
                b.iter(|| {
                    for g0 in (0..ROWS / 16).step_by(16) {
                        gemm(&wx[g0 * nw..(g0 + 16) * nw], &a, nb, &mut out);
                    }
                    std::hint::black_box(&out);
                })
            });
        }
        g.finish();
    }
}

/// The byte-coded types (raw GGUF bytes): decode (1 token) through the rows kernel (`ISA`, all
/// rows in one call, as a decode task) and one row per call (`ISA-row`), and one row × 64 tokens
/// (prefill).
fn bench_bytes(c: &mut Criterion, dtype: DType, pick: fn(&Kernels) -> (ByteDotsFn, ByteRowsFn)) {
    let rb = dtype.row_bytes(COLS).unwrap();
    let mut w = Vec::with_capacity(ROWS * rb);
    let mut row = Vec::new();
    for r in values(ROWS * COLS).chunks_exact(COLS) {
        quantize_bytes(dtype, r, &mut row).unwrap();
        w.extend_from_slice(&row);
    }
    let nb = COLS / 32;
    for tokens in [1usize, 64] {
        let mut g = c.benchmark_group(if tokens == 1 { format!("gemv_{dtype}") } else { format!("gemm64_{dtype}") });
        g.throughput(Throughput::Bytes((w.len() * tokens) as u64));
        if tokens > 1 {
            g.sample_size(10);
        }
        for isa in available_isas() {
            let k = Kernels::best(Some(isa));
            let (dots, rows) = pick(&k);
            let a = acts(&k, tokens, COLS);
            if tokens == 1 {
                let mut out = vec![0f32; ROWS];
                g.bench_with_input(BenchmarkId::from_parameter(isa.name()), &isa, |b, _| {
                    b.iter(|| {
                        rows(&w, &a, nb, &mut out);
                        std::hint::black_box(&out);
                    })
                });
            }
            let mut out = vec![0f32; tokens];
            let id = if tokens == 1 { format!("{}-row", isa.name()) } else { isa.name().to_string() };
            g.bench_with_input(BenchmarkId::from_parameter(id), &isa, |b, _| {
                b.iter(|| {
                    for r in 0..ROWS {
                        dots(&w[r * rb..(r + 1) * rb], &a, nb, &mut out);
                        std::hint::black_box(&out);
                    }
                })
            });
        }
        g.finish();
    }
}

/// Attention over one head of a KV cache in each storage type (issue 18): scores (`dots_*`)
/// and the weighted sum of values (`wsum_*`) at SmolLM2's shapes (head_dim 64, 3 KV heads: rows
/// 3·64 values = 6 q8_0 blocks apart), 512 and 4096 keys, every ISA beside the scalar twin.
/// Reported per key (the same work in every type; the bytes read differ by type: 256, 128 and
/// 68 per row).
fn bench_attention(c: &mut Criterion) {
    const HD: usize = 64;
    const STRIDE: usize = 3 * HD;
    for n in [512usize, 4096] {
        let x = values(n * STRIDE);
        let f16: Vec<u16> = x.iter().map(|&v| f32_to_f16(v)).collect();
        let mut q8 = vec![BlockQ8_0::default(); n * STRIDE / 32];
        BlockQ8_0::quantize_row(&x, &mut q8).unwrap();
        let q = values(HD);
        let w: Vec<f32> = values(n).iter().map(|v| v.abs()).collect();
        for op in ["dots", "wsum"] {
            let mut g = c.benchmark_group(format!("attention_{op}_n{n}"));
            g.throughput(Throughput::Elements(n as u64));
            g.warm_up_time(std::time::Duration::from_millis(500));
            g.measurement_time(std::time::Duration::from_secs(2));
            for isa in available_isas() {
                let k = Kernels::best(Some(isa));
                let mut out = vec![0f32; if op == "dots" { n } else { HD }];
                let id = |t: &str| BenchmarkId::new(t, isa.name());
                if op == "dots" {
                    g.bench_function(id("f32"), |b| b.iter(|| (k.dots_f32)(&q, &x, STRIDE, &mut out)));
                    g.bench_function(id("f16"), |b| b.iter(|| (k.dots_f16)(&q, &f16, STRIDE, &mut out)));
                    g.bench_function(id("q8_0"), |b| b.iter(|| (k.dots_q8_0)(&q, &q8, STRIDE / 32, &mut out)));
                } else {
                    g.bench_function(id("f32"), |b| b.iter(|| (k.wsum_f32)(&mut out, &w, &x, STRIDE)));
                    g.bench_function(id("f16"), |b| b.iter(|| (k.wsum_f16)(&mut out, &w, &f16, STRIDE)));
                    g.bench_function(id("q8_0"), |b| b.iter(|| (k.wsum_q8_0)(&mut out, &w, &q8, STRIDE / 32)));
                }
                std::hint::black_box(&out);
            }
            g.finish();
        }
    }
}

fn kernels(c: &mut Criterion) {
    bench_attention(c);
    let peer = Peer::find();
    let peer = peer.as_ref();
    bench_type::<BlockQ4_0>(c, "q4_0", |k| (k.vec_dot_q4_0, k.gemm_q4_0), peer.map(|p| (p, Kind::Q4_0)));
    bench_type::<BlockQ4_1>(c, "q4_1", |k| (k.vec_dot_q4_1, k.gemm_q4_1), peer.map(|p| (p, Kind::Q4_1)));
    bench_type::<BlockQ8_0>(c, "q8_0", |k| (k.vec_dot_q8_0, k.gemm_q8_0), peer.map(|p| (p, Kind::Q8_0)));
    bench_x16::<BlockQ4_0x16>(c, |k| k.gemm_q4_0x16);
    bench_x16::<BlockQ4_1x16>(c, |k| k.gemm_q4_1x16);
    bench_x16::<BlockQ8_0x16>(c, |k| k.gemm_q8_0x16);
    bench_x16::<BlockQ5_0x16>(c, |k| k.gemm_q5_0x16);
    bench_x16::<BlockQ5_1x16>(c, |k| k.gemm_q5_1x16);
    bench_x16::<BlockQ4Kx16>(c, |k| k.gemm_q4_kx16);
    bench_x16::<BlockQ5Kx16>(c, |k| k.gemm_q5_kx16);
    bench_x16::<BlockQ6Kx16>(c, |k| k.gemm_q6_kx16);
    bench_bytes(c, DType::Q5_0, |k| (k.dots_q5_0, k.rows_q5_0));
    bench_bytes(c, DType::Q5_1, |k| (k.dots_q5_1, k.rows_q5_1));
    bench_bytes(c, DType::Q4K, |k| (k.dots_q4_k, k.rows_q4_k));
    bench_bytes(c, DType::Q5K, |k| (k.dots_q5_k, k.rows_q5_k));
    bench_bytes(c, DType::Q6K, |k| (k.dots_q6_k, k.rows_q6_k));
}

criterion_group!(benches, kernels);
criterion_main!(benches);
