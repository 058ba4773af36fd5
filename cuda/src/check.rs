//! The kernel checks a CPU emulation (`emu`) and a real GPU (`gpu`) both run: random weights in
//! the file's byte layouts, random activations, the scalar CPU kernels' results as the oracle,
//! and the comparison. Activation blocks must match bit for bit; a GEMV output within
//! `REL_TOL` of Σ|w·a| (the GPU sums a row's block terms in another order than the CPU).

use autark_kernels::blocks::{cast_blocks, dequantize_bytes, quantize_bytes};
use autark_kernels::interleave::{self, GROUP};
use autark_kernels::rng::Rng;
use autark_kernels::{kquants, q5, scalar, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, TensorLayout, QK};

use crate::kernels::{Gemv, Quant};

/// Allowed |y − y_cpu| relative to Σ|w_i·a_i| of the row (f32 sums of a few hundred terms in
/// another order differ by far less; a wrong index or scale by far more).
pub const REL_TOL: f64 = 1e-5;

/// Bytes of one activation block (`BlockQ8A`: f32 d, i32 sum, 32 × i8).
pub const ACT_BLOCK_BYTES: usize = size_of::<BlockQ8A>();

/// One GEMV check: `tokens` activation rows of `cols` values against a `rows × cols` matrix.
pub struct Case {
    pub gemv: Gemv,
    pub rows: usize,
    pub cols: usize,
    pub tokens: usize,
    /// The weights as the kernel reads them (row-major or `rows16`).
    pub w: Vec<u8>,
    /// The same weights row-major (the CPU oracle's input).
    pub w_rows: Vec<u8>,
    pub x: Vec<f32>,
}

impl Case {
    pub fn new(gemv: Gemv, rows: usize, cols: usize, tokens: usize, seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        // Rows of different magnitudes, and activations with outliers and one all-zero block
        // (scale 0).
        let mut wf = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            let scale = 0.02 * (1 + r % 7) as f32;
            wf.extend(rng.vec(cols, scale));
        }
        let mut x = rng.vec(tokens * cols, 1.0);
        for v in x.iter_mut().step_by(97) {
            *v *= 30.0;
        }
        if x.len() > 2 * QK {
            x[QK..2 * QK].fill(0.0);
        }
        let dtype = gemv.quant.dtype();
        let mut w_rows = Vec::new();
        quantize_bytes(dtype, &wf, &mut w_rows).expect("whole blocks");
        if seed.is_multiple_of(2) {
            randomize_quants(dtype, &mut w_rows, &mut rng);
        }
        let w = match gemv.layout {
            TensorLayout::RowMajor => w_rows.clone(),
            TensorLayout::Rows16 => {
                let mut w = Vec::new();
                interleave::interleave(dtype, rows, cols, &w_rows, &mut w).expect("rows a multiple of 16");
                w
            }
        };
        Case { gemv, rows, cols, tokens, w, w_rows, x }
    }

    /// Activation blocks the kernel reads: none for f16 and f32 weights (they read x).
    pub fn n_act_blocks(&self) -> usize {
        if self.gemv.quant.is_float() {
            0
        } else {
            self.tokens * self.cols / QK
        }
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    pub fn name(&self) -> String {
        format!("{} {}×{}, {} token(s)", self.gemv.kernel(self.tokens), self.rows, self.cols, self.tokens)
    }
}

/// Where a block's f16 scales lie (the quantizer's values are kept there; every other byte —
/// quants, high bits, packed sub-block scales — may be anything in a file).
fn scale_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        DType::F16 | DType::F32 => &[],
        _ => &[0],
    }
}

/// Replaces every byte of the blocks but their f16 scales with random ones: the integers a
/// file may hold beyond what the quantizer writes (6-bit scales of 63, q6_k scales of −128,
/// every high bit set).
fn randomize_quants(dtype: DType, w: &mut [u8], rng: &mut Rng) {
    if matches!(dtype, DType::F16 | DType::F32) {
        return;
    }
    let keep = scale_fields(dtype);
    for block in w.chunks_exact_mut(dtype.block_bytes()) {
        for (i, b) in block.iter_mut().enumerate() {
            if !keep.iter().any(|&k| i == k || i == k + 1) {
                *b = rng.next() as u8;
            }
        }
    }
}

/// Every GEMV kernel on a few shapes: a single block, a row shorter than the warps that share
/// it, rows and block counts that are not multiples of the warp or lane counts, several tokens
/// (11: a whole token tile and a partial one). K-quant rows are whole super-blocks of 256 (an odd number of them). Every second case has
/// random quant bytes (`randomize_quants`).
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (i, gemv) in Gemv::all().enumerate() {
        let k_quant = gemv.quant.dtype().block_len() == 256;
        let shapes: &[(usize, usize, usize)] = match gemv.layout {
            TensorLayout::Rows16 => &[(GROUP, 32, 1), (3 * GROUP, 288, 2), (2 * GROUP, 2080, 1), (GROUP, 96, 11)],
            TensorLayout::RowMajor if k_quant => &[(1, 256, 1), (7, 768, 3), (37, 2304, 2), (5, 512, 11)],
            TensorLayout::RowMajor => &[(1, 32, 1), (7, 96, 3), (37, 1056, 2), (5, 64, 11)],
        };
        for (j, &(rows, cols, tokens)) in shapes.iter().enumerate() {
            out.push(Case::new(gemv, rows, cols, tokens, (i * 16 + j) as u64 + 1));
        }
    }
    out
}

/// What the scalar CPU kernels give for a case.
pub struct Expected {
    /// The activation blocks (none for f16 and f32 weights, which read x itself).
    pub act: Vec<BlockQ8A>,
    pub y: Vec<f32>,
    /// Σ|w_i·a_i| per output, for the tolerance.
    pub magnitude: Vec<f64>,
}

/// The CPU's row · activation product of a stored type (`autark_kernels::scalar` and the
/// K-quant and q5 twins).
fn cpu_dot(quant: Quant, row: &[u8], a: &[BlockQ8A]) -> f32 {
    match quant {
        Quant::Q4_0 => scalar::vec_dot_q4_0(cast_blocks::<BlockQ4_0>(row).expect("blocks"), a),
        Quant::Q4_1 => scalar::vec_dot_q4_1(cast_blocks::<BlockQ4_1>(row).expect("blocks"), a),
        Quant::Q8_0 => scalar::vec_dot_q8_0(cast_blocks::<BlockQ8_0>(row).expect("blocks"), a),
        Quant::Q5_0 => q5::vec_dot_q5_0(row, a),
        Quant::Q5_1 => q5::vec_dot_q5_1(row, a),
        Quant::Q4K => kquants::vec_dot_q4_k(row, a),
        Quant::Q5K => kquants::vec_dot_q5_k(row, a),
        Quant::Q6K => kquants::vec_dot_q6_k(row, a),
        Quant::F16 | Quant::F32 => unreachable!("float weights take f32 activations"),
    }
}

pub fn expected(case: &Case) -> Expected {
    let nb = case.blocks_per_row();
    let float = case.gemv.quant.is_float();
    let mut act = vec![BlockQ8A::default(); case.n_act_blocks()];
    scalar::quantize_act(&case.x, &mut act);
    let row_bytes = case.w_rows.len() / case.rows;
    let mut y = vec![0f32; case.tokens * case.rows];
    let mut magnitude = vec![0f64; y.len()];
    let mut wr = vec![0f32; case.cols];
    for r in 0..case.rows {
        let row = &case.w_rows[r * row_bytes..][..row_bytes];
        dequantize_bytes(case.gemv.quant.dtype(), row, &mut wr).expect("whole blocks");
        for t in 0..case.tokens {
            let i = t * case.rows + r;
            let x = &case.x[t * case.cols..][..case.cols];
            if float {
                y[i] = match case.gemv.quant {
                    Quant::F16 => {
                        let h: Vec<u16> = row.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
                        scalar::vec_dot_f16(&h, x)
                    }
                    _ => scalar::vec_dot_f32(&wr, x),
                };
                magnitude[i] = wr.iter().zip(x).map(|(&w, &v)| (w as f64 * v as f64).abs()).sum();
                continue;
            }
            let a = &act[t * nb..][..nb];
            y[i] = cpu_dot(case.gemv.quant, row, a);
            magnitude[i] = wr
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let b = &a[i / QK];
                    (w as f64 * b.qs[i % QK] as f64 * b.d as f64).abs()
                })
                .sum();
        }
    }
    Expected { act, y, magnitude }
}

/// Activation blocks from the bytes a kernel wrote.
pub fn parse_act(bytes: &[u8]) -> Vec<BlockQ8A> {
    bytes
        .chunks_exact(ACT_BLOCK_BYTES)
        .map(|b| {
            let mut qs = [0i8; QK];
            for (q, &v) in qs.iter_mut().zip(&b[8..]) {
                *q = v as i8;
            }
            BlockQ8A {
                d: f32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
                sum: i32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
                qs,
            }
        })
        .collect()
}

/// Compares a kernel run's activation bytes and outputs with the CPU's; the first difference
/// as the error.
pub fn compare(case: &Case, exp: &Expected, act_bytes: &[u8], y: &[f32]) -> Result<(), String> {
    let act = parse_act(act_bytes);
    if act.len() != exp.act.len() {
        return Err(format!("{} activation blocks, expected {}", act.len(), exp.act.len()));
    }
    for (i, (got, want)) in act.iter().zip(&exp.act).enumerate() {
        if got.d.to_bits() != want.d.to_bits() || got.sum != want.sum || got.qs != want.qs {
            return Err(format!("activation block {i}: {got:?}, the CPU gives {want:?}"));
        }
    }
    if y.len() != exp.y.len() {
        return Err(format!("{} outputs, expected {}", y.len(), exp.y.len()));
    }
    for (i, (&got, &want)) in y.iter().zip(&exp.y).enumerate() {
        let tol = REL_TOL * exp.magnitude[i] + 1e-6;
        if !got.is_finite() || (got as f64 - want as f64).abs() > tol {
            let (t, r) = (i / case.rows, i % case.rows);
            return Err(format!("token {t} row {r}: {got}, the CPU gives {want} (tolerance {tol:.3e})"));
        }
    }
    Ok(())
}
