//! Matrix products over weights in place (GEMV for one token, GEMM for a batch) and the
//! element-wise operations of a transformer layer.
//!
//! Threads split the output rows; every output value is one dot-product call over the whole
//! row, so results are identical for any thread count.

use crate::blocks::{cast_blocks, check_blocks, Block, BlockQ4_0, BlockQ4_1, BlockQ8A, BlockQ8_0, DType, QK};
use crate::dispatch::{kernels, GemmFn};
use crate::interleave::{
    self, BlockQ4Kx16, BlockQ4_0x16, BlockQ4_1x16, BlockQ5Kx16, BlockQ5_0x16, BlockQ5_1x16, BlockQ6Kx16, BlockQ8_0x16,
    TensorLayout, GROUP,
};
use crate::types::{BlockLayout, KernelError, Result};

/// A weight matrix of `rows` × `cols` (PyTorch `nn.Linear.weight` layout: one row per output),
/// borrowed from the mapping.
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    pub dtype: DType,
    pub layout: TensorLayout,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> WeightView<'a> {
    pub fn new(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        Self::with_layout(dtype, TensorLayout::RowMajor, rows, cols, data)
    }

    /// A matrix stored in `layout` (checked against the dtype and shape).
    pub fn with_layout(dtype: DType, layout: TensorLayout, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        layout.check(dtype, &[rows, cols])?;
        if !dtype.is_native() {
            return Err(KernelError::Unsupported { op: "matmul", dtype });
        }
        let expected = dtype.row_bytes(cols)? * rows;
        if data.len() != expected {
            return Err(KernelError::LengthMismatch { op: "WeightView", expected, got: data.len() });
        }
        let align = match dtype {
            DType::F32 => 4,
            _ => 2,
        };
        if !(data.as_ptr() as usize).is_multiple_of(align) {
            return Err(KernelError::Misaligned { op: "WeightView", dtype, align });
        }
        Ok(WeightView { dtype, layout, rows, cols, data })
    }

    /// Row `r` dequantized into `dst` (used for embedding look-ups).
    pub fn row_f32(&self, r: usize, dst: &mut [f32]) -> Result<()> {
        let rb = self.dtype.row_bytes(self.cols)?;
        if r >= self.rows {
            return Err(KernelError::LengthMismatch { op: "row_f32", expected: self.rows, got: r });
        }
        match self.layout {
            TensorLayout::RowMajor => {
                crate::blocks::dequantize_bytes(self.dtype, &self.data[r * rb..(r + 1) * rb], dst)
            }
            TensorLayout::Rows16 => {
                // Block by block through a stack buffer: the embedding lookup of every decoded
                // token comes here and must not allocate.
                let (bs, bl) = (self.dtype.block_bytes(), self.dtype.block_len());
                let mut block = [0u8; interleave::MAX_BLOCK_BYTES];
                let block = block.get_mut(..bs).ok_or_else(|| KernelError::BadLayout {
                    layout: TensorLayout::Rows16.name(),
                    dtype: self.dtype,
                    shape: vec![self.rows, self.cols],
                })?;
                if dst.len() != self.cols {
                    return Err(KernelError::LengthMismatch { op: "row_f32", expected: self.cols, got: dst.len() });
                }
                for (b, out) in dst.chunks_exact_mut(bl).enumerate() {
                    interleave::block(self.dtype, self.cols, self.data, r, b, block)?;
                    crate::blocks::dequantize_bytes(self.dtype, block, out)?;
                }
                Ok(())
            }
        }
    }
}

/// Whether `gemm` multiplies matrices of `dtype` by the activations' f32 copy (f16 / f32)
/// rather than by their 8-bit blocks: `Activations::set_with`'s `keep_f32`.
pub fn reads_f32(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::F32)
}

/// Activations of `n_tokens` × `cols`, kept as 8-bit blocks (for quantized weights), quantized
/// once per matrix product input, and as an f32 copy where f16/f32 weights need it. Buffers are
/// sized at creation; `set` never allocates within that capacity.
pub struct Activations {
    n_tokens: usize,
    cols: usize,
    x: Vec<f32>,
    /// Whether `x` holds this input (`set_with`'s `keep_f32`).
    has_x: bool,
    q8: Vec<BlockQ8A>,
}

impl Activations {
    pub fn with_capacity(max_tokens: usize, max_cols: usize) -> Self {
        let n = max_tokens * max_cols;
        Activations {
            n_tokens: 0,
            cols: 0,
            x: Vec::with_capacity(n),
            has_x: false,
            q8: Vec::with_capacity(n.div_ceil(QK)),
        }
    }

    /// Takes `x` (`n_tokens` rows of `cols`), quantizes it and keeps an f32 copy.
    pub fn set(&mut self, x: &[f32], n_tokens: usize, cols: usize) -> Result<()> {
        self.set_with(x, n_tokens, cols, true)
    }

    /// As `set`; the f32 copy only with `keep_f32` (`reads_f32` of some matrix it meets) or when
    /// `cols` is not a multiple of 32 (no 8-bit blocks then). Quantized matrices need only the
    /// blocks: the copy was 1–2 % of a prompt's time (BENCHMARKS.md). A `gemm` with f16/f32
    /// weights on activations set without it returns `KernelError::NoFloatActivations`.
    pub fn set_with(&mut self, x: &[f32], n_tokens: usize, cols: usize, keep_f32: bool) -> Result<()> {
        if x.len() != n_tokens * cols {
            return Err(KernelError::LengthMismatch {
                op: "Activations::set",
                expected: n_tokens * cols,
                got: x.len(),
            });
        }
        self.n_tokens = n_tokens;
        self.cols = cols;
        self.x.clear();
        self.has_x = keep_f32 || !cols.is_multiple_of(QK);
        if self.has_x {
            self.x.extend_from_slice(x);
        }
        self.q8.clear();
        if cols.is_multiple_of(QK) {
            self.q8.resize(x.len() / QK, BlockQ8A::default());
            // A token's blocks alone (the same bits on any pool); a batch's tokens over the pool.
            let (quantize, nq) = (kernels().quantize_act, cols / QK);
            crate::pool::for_each_chunks2(&mut self.q8, nq, &mut [0u8; 0], 0, n_tokens, true, &|t, q, _| {
                quantize(&x[t * cols..(t + 1) * cols], q)
            });
        }
        Ok(())
    }

    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// A pointer to the output that row-chunk tasks share; each task writes disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only used by `gemm_rows`, whose tasks write disjoint elements of a
// buffer that outlives the parallel loop (see there).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for every token `t` of `act` and row `r` of `w`;
/// `out` holds `n_tokens` × `rows` values. Runs on the current `pool`.
pub fn gemm(w: &WeightView<'_>, act: &Activations, out: &mut [f32]) -> Result<()> {
    if act.cols != w.cols {
        return Err(KernelError::LengthMismatch { op: "gemm", expected: w.cols, got: act.cols });
    }
    if out.len() != act.n_tokens * w.rows {
        return Err(KernelError::LengthMismatch { op: "gemm out", expected: act.n_tokens * w.rows, got: out.len() });
    }
    let k = kernels();
    if w.layout == TensorLayout::Rows16 {
        return match w.dtype {
            DType::Q4_0 => gemm_groups::<BlockQ4_0x16>(w, act, out, k.gemm_q4_0x16),
            DType::Q4_1 => gemm_groups::<BlockQ4_1x16>(w, act, out, k.gemm_q4_1x16),
            DType::Q8_0 => gemm_groups::<BlockQ8_0x16>(w, act, out, k.gemm_q8_0x16),
            DType::Q5_0 => gemm_groups::<BlockQ5_0x16>(w, act, out, k.gemm_q5_0x16),
            DType::Q5_1 => gemm_groups::<BlockQ5_1x16>(w, act, out, k.gemm_q5_1x16),
            DType::Q4K => gemm_groups::<BlockQ4Kx16>(w, act, out, k.gemm_q4_kx16),
            DType::Q5K => gemm_groups::<BlockQ5Kx16>(w, act, out, k.gemm_q5_kx16),
            DType::Q6K => gemm_groups::<BlockQ6Kx16>(w, act, out, k.gemm_q6_kx16),
            other => Err(KernelError::Unsupported { op: "gemm (rows16)", dtype: other }),
        };
    }
    match w.dtype {
        DType::Q4_0 => gemm_q::<BlockQ4_0>(w, act, out, k.gemm_q4_0, k.vec_dot_q4_0),
        DType::Q4_1 => gemm_q::<BlockQ4_1>(w, act, out, k.gemm_q4_1, k.vec_dot_q4_1),
        DType::Q8_0 => gemm_q::<BlockQ8_0>(w, act, out, k.gemm_q8_0, k.vec_dot_q8_0),
        DType::F16 => gemm_float(w, act, out, cast_u16(w.data)?, k.vec_dot_f16),
        DType::F32 => gemm_float(w, act, out, cast_f32(w.data)?, k.vec_dot_f32),
        DType::Q5_0 | DType::Q5_1 | DType::Q4K | DType::Q5K | DType::Q6K => {
            let (dots, rows) = match w.dtype {
                DType::Q5_0 => (k.dots_q5_0, k.rows_q5_0),
                DType::Q5_1 => (k.dots_q5_1, k.rows_q5_1),
                DType::Q4K => (k.dots_q4_k, k.rows_q4_k),
                DType::Q5K => (k.dots_q5_k, k.rows_q5_k),
                _ => (k.dots_q6_k, k.rows_q6_k),
            };
            gemm_bytes(w, act, out, dots, rows)
        }
        other => Err(KernelError::Unsupported { op: "gemm", dtype: other }),
    }
}

/// f16 or f32 weights `wb` × f32 activations, one row dot per (row, token).
fn gemm_float<T: Sync>(
    w: &WeightView<'_>,
    act: &Activations,
    out: &mut [f32],
    wb: &[T],
    dot: fn(&[T], &[f32]) -> f32,
) -> Result<()> {
    if !act.has_x {
        return Err(KernelError::NoFloatActivations { dtype: w.dtype });
    }
    let c = w.cols;
    gemm_rows(w.rows, act.n_tokens, out, |r, t| dot(&wb[r * c..(r + 1) * c], &act.x[t * c..(t + 1) * c]));
    Ok(())
}

/// Quantized weights × 8-bit activations. One token (decode) streams each row through the
/// row dot product; a batch (prefill) goes through tiles that reuse each weight block across
/// tokens. Both give identical values (tested), so results never depend on the path.
fn gemm_q<B: Block>(
    w: &WeightView<'_>,
    act: &Activations,
    out: &mut [f32],
    tile: GemmFn<B>,
    dot: fn(&[B], &[BlockQ8A]) -> f32,
) -> Result<()> {
    check_blocks("gemm", B::DTYPE, w.cols, w.cols / QK)?;
    let blocks: &[B] = cast_blocks(w.data)?;
    let nb = w.cols / QK;
    let (rows, n_tokens) = (w.rows, act.n_tokens);
    let a = &act.q8;
    if n_tokens == 1 {
        gemm_rows(rows, 1, out, |r, _| dot(&blocks[r * nb..(r + 1) * nb], a));
        return Ok(());
    }
    let ptr = OutPtr(out.as_mut_ptr());
    let chunk = row_chunk(rows);
    // Tokens per tile call, so that a tile's output fits the stack buffer.
    let tok_chunk = (TILE_OUT / chunk).max(1);
    crate::pool::for_each(rows.div_ceil(chunk), &|c| {
        let p = ptr;
        let r0 = c * chunk;
        let nr = chunk.min(rows - r0);
        TILE_BUF.with_borrow_mut(|buf| {
            for t0 in (0..n_tokens).step_by(tok_chunk) {
                let nt = tok_chunk.min(n_tokens - t0);
                tile(&blocks[r0 * nb..(r0 + nr) * nb], &a[t0 * nb..(t0 + nt) * nb], nb, &mut buf[..nr * nt]);
                for t in 0..nt {
                    for r in 0..nr {
                        // SAFETY: t0 + t < n_tokens and r0 + r < rows, inside `out` (length
                        // checked by `gemm`); row chunks are disjoint across tasks.
                        unsafe { *p.0.add((t0 + t) * rows + r0 + r) = buf[t * nr + r] };
                    }
                }
            }
        });
    });
    Ok(())
}

/// 16-row interleaved weights × 8-bit activations: tasks take chunks of row groups; a tile
/// call covers the chunk's groups for as many tokens as its output buffer holds (decode: one).
fn gemm_groups<B: BlockLayout>(w: &WeightView<'_>, act: &Activations, out: &mut [f32], tile: GemmFn<B>) -> Result<()> {
    check_blocks("gemm", B::DTYPE, w.cols, w.cols / B::BLOCK_LEN)?;
    let blocks: &[B] = cast_blocks(w.data)?;
    // Activation blocks per row, group blocks per group.
    let (nb, nw) = (w.cols / QK, w.cols / B::BLOCK_LEN);
    let (rows, n_tokens) = (w.rows, act.n_tokens);
    let a = &act.q8;
    let ptr = OutPtr(out.as_mut_ptr());
    let chunk = (row_chunk(rows) / GROUP).max(1);
    let groups = rows / GROUP;
    let tok_chunk = (TILE_OUT / (chunk * GROUP)).max(1);
    crate::pool::for_each(groups.div_ceil(chunk), &|c| {
        let p = ptr;
        let g0 = c * chunk;
        let ng = chunk.min(groups - g0);
        let (r0, nr) = (g0 * GROUP, ng * GROUP);
        TILE_BUF.with_borrow_mut(|buf| {
            for t0 in (0..n_tokens).step_by(tok_chunk) {
                let nt = tok_chunk.min(n_tokens - t0);
                tile(&blocks[g0 * nw..(g0 + ng) * nw], &a[t0 * nb..(t0 + nt) * nb], nb, &mut buf[..nr * nt]);
                for t in 0..nt {
                    // SAFETY: t0 + t < n_tokens and r0 + nr <= rows, inside `out` (length checked
                    // by `gemm`); group chunks are disjoint across tasks.
                    unsafe { std::ptr::copy_nonoverlapping(buf[t * nr..].as_ptr(), p.0.add((t0 + t) * rows + r0), nr) };
                }
            }
        });
    });
    Ok(())
}

/// Byte-coded weights (raw bytes) × 8-bit activations. One token (decode): each task's chunk
/// of rows in one `rows` call (x86 folds 8 rows' block sums at once). A batch: per weight row,
/// one `dots` call over up to `BYTE_TOKENS` tokens, which unpacks each weight block once for all
/// of them. Both give every (row, token) the same bits (tested).
fn gemm_bytes(
    w: &WeightView<'_>,
    act: &Activations,
    out: &mut [f32],
    dots: crate::dispatch::ByteDotsFn,
    rows_fn: crate::dispatch::ByteRowsFn,
) -> Result<()> {
    const BYTE_TOKENS: usize = 64;
    let rb = w.dtype.row_bytes(w.cols)?;
    let nb = w.cols / QK;
    let (rows, n_tokens) = (w.rows, act.n_tokens);
    let a = &act.q8;
    let ptr = OutPtr(out.as_mut_ptr());
    // Whole 8-row passes per task where the matrix allows.
    let chunk = (row_chunk(rows) / 8 * 8).max(8);
    if n_tokens == 1 {
        crate::pool::for_each(rows.div_ceil(chunk), &|c| {
            let p = ptr;
            let (r0, r1) = (c * chunk, ((c + 1) * chunk).min(rows));
            // SAFETY: r0..r1 lies inside `out` (one token: length `rows`, checked by `gemm`);
            // row chunks are disjoint across tasks, so no two tasks write the same element.
            let o = unsafe { std::slice::from_raw_parts_mut(p.0.add(r0), r1 - r0) };
            rows_fn(&w.data[r0 * rb..r1 * rb], a, nb, o);
        });
        return Ok(());
    }
    crate::pool::for_each(rows.div_ceil(chunk), &|c| {
        let p = ptr;
        let mut buf = [0f32; BYTE_TOKENS];
        for t0 in (0..n_tokens).step_by(BYTE_TOKENS) {
            let nt = BYTE_TOKENS.min(n_tokens - t0);
            for r in c * chunk..((c + 1) * chunk).min(rows) {
                dots(&w.data[r * rb..(r + 1) * rb], &a[t0 * nb..(t0 + nt) * nb], nb, &mut buf[..nt]);
                for (t, &v) in buf[..nt].iter().enumerate() {
                    // SAFETY: t0 + t < n_tokens and r < rows, inside `out` (length checked by
                    // `gemm`); row chunks are disjoint across tasks.
                    unsafe { *p.0.add((t0 + t) * rows + r) = v };
                }
            }
        }
    });
    Ok(())
}

/// Output values of one tile call (16 KiB).
const TILE_OUT: usize = 4096;

thread_local! {
    /// Each pool thread's tile output buffer: allocated once, never zeroed per call (a
    /// zeroed stack array cost a 16 KiB memset per task, 6 % of two-thread decode).
    static TILE_BUF: std::cell::RefCell<Vec<f32>> = std::cell::RefCell::new(vec![0f32; TILE_OUT]);
}

/// Rows per parallel task: enough tasks to balance the threads, few enough that scheduling
/// costs nothing next to the work (a 49152-row output head gets 256-row tasks).
fn row_chunk(rows: usize) -> usize {
    let threads = crate::pool::current_threads();
    (rows / (threads * 8)).clamp(16, 256) / 4 * 4
}

/// Splits rows into chunks over the pool; inside a chunk, every token reuses the chunk's
/// weight rows while they are in cache.
fn gemm_rows<F: Fn(usize, usize) -> f32 + Sync>(rows: usize, n_tokens: usize, out: &mut [f32], f: F) {
    assert_eq!(out.len(), rows * n_tokens);
    let ptr = OutPtr(out.as_mut_ptr());
    let chunk = row_chunk(rows);
    crate::pool::for_each(rows.div_ceil(chunk), &|c| {
        let p = ptr;
        let r0 = c * chunk;
        let r1 = (r0 + chunk).min(rows);
        for t in 0..n_tokens {
            for r in r0..r1 {
                let v = f(r, t);
                // SAFETY: t < n_tokens and r < rows, so the index is inside `out`, whose length
                // was asserted above; chunks cover disjoint row ranges, so no two tasks write
                // the same element; `out` is borrowed mutably for the whole loop.
                unsafe { *p.0.add(t * rows + r) = v };
            }
        }
    });
}

fn cast_u16(b: &[u8]) -> Result<&[u16]> {
    if !b.len().is_multiple_of(2) || !(b.as_ptr() as usize).is_multiple_of(2) {
        return Err(KernelError::Misaligned { op: "cast_u16", dtype: DType::F16, align: 2 });
    }
    // SAFETY: length and alignment checked; every bit pattern is a valid u16.
    Ok(unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u16>(), b.len() / 2) })
}

pub fn cast_f32(b: &[u8]) -> Result<&[f32]> {
    if !b.len().is_multiple_of(4) || !(b.as_ptr() as usize).is_multiple_of(4) {
        return Err(KernelError::Misaligned { op: "cast_f32", dtype: DType::F32, align: 4 });
    }
    // SAFETY: length and alignment checked; every bit pattern is a valid f32.
    Ok(unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) })
}

// ---- element-wise operations -------------------------------------------------------------------

/// `out = x / sqrt(mean(x²) + eps) * w` (Llama RMSNorm), sum accumulated in f32 in order.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// `rmsnorm` of `x` into itself (per-head query/key norms).
pub fn rmsnorm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// Index of the first maximum of `v`, NaN never the maximum; 0 when nothing exceeds −∞ (as
/// the sequential scan `if x > best`). Sixteen running maxima (vectorised by the compiler), then
/// the first position holding their maximum: about 6 µs for a 49 152-token vocabulary, against
/// 35 µs for the sequential scan, whose every step waits for the previous comparison.
pub fn argmax(v: &[f32]) -> usize {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            // `f32::max` returns the other operand when one is NaN.
            *m = m.max(x);
        }
    }
    for &x in chunks.remainder() {
        lanes[0] = lanes[0].max(x);
    }
    let max = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if max == f32::NEG_INFINITY {
        return 0;
    }
    v.iter().position(|&x| x == max).unwrap_or(0)
}

/// In-place softmax (`e^x` through the dispatched `exp_f32`).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    x.iter_mut().for_each(|v| *v -= max);
    (kernels().exp_f32)(x);
    let sum: f32 = x.iter().sum();
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `gate = silu(gate) * up` (SwiGLU; `e^x` through the dispatched `exp_f32`).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    let exp = kernels().exp_f32;
    let mut e = [0f32; 256];
    for (g, u) in gate.chunks_mut(e.len()).zip(up.chunks(e.len())) {
        let e = &mut e[..g.len()];
        e.iter_mut().zip(g.iter()).for_each(|(e, g)| *e = -g);
        exp(e);
        for ((g, &u), &e) in g.iter_mut().zip(u).zip(e.iter()) {
            *g = *g / (1.0 + e) * u;
        }
    }
}

/// `gate = gelu_tanh(gate) · up`, with GELU's tanh approximation
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (PyTorch's `gelu(approximate="tanh")`).
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()) * u;
    }
}

/// Rotates one head in place. `cos`/`sin` hold `head_dim / 2` values for this position.
/// `interleaved`: pairs (2i, 2i+1) (GGUF Llama layout); otherwise pairs (i, i + d/2)
/// (Hugging Face `rotate_half`, GGUF's NeoX layout).
pub fn rope_head(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x0 * sin[i] + x1 * cos[i];
    }
}

// ---- KV cache rows ------------------------------------------------------------------------------

/// One row appended to an f16 cache: `dst[i]` = the IEEE half bits of `src[i]`, rounded to
/// nearest even (the bits of `types::f32_to_f16`, by F16C where the table has it). Panics when
/// the lengths differ.
pub fn store_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "store_f16: {} values into {} halves", src.len(), dst.len());
    (kernels().store_f16)(src, dst)
}

/// One row appended to a q8_0 cache: ggml's reference `quantize_row_q8_0`
/// (`scalar::quantize_row_q8_0`: scale amax/127, round half away from zero). Panics unless
/// `src` is exactly `dst.len()` blocks of 32 values.
pub fn store_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    assert_eq!(src.len(), dst.len() * QK, "store_q8_0: {} values into {} blocks of {QK}", src.len(), dst.len());
    crate::scalar::quantize_row_q8_0(src, dst)
}

/// The wrapping sum of `x` as little-endian u64 with the widest loads this CPU has (the
/// read-bandwidth probe of `autark bench --memory`; `x` a multiple of 8 bytes).
pub fn sum_u64(x: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    return crate::x86::sum_u64(x);
    #[cfg(not(target_arch = "x86_64"))]
    crate::scalar::sum_u64(x)
}
