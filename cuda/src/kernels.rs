//! The kernels of `cuda/kernels/autark.cu`: their names and launch geometry, one home for the
//! GPU (`gpu.rs`) and the CPU emulation (`emu.rs`), so both run the same launches.

use autark_kernels::{DType, TensorLayout};

/// The kernels' source, compiled by NVRTC for the device (and by the host compiler for `emu`).
pub const SOURCE: &str = include_str!("../kernels/autark.cu");

/// Warps per thread block of `quantize_act` (one warp per activation block).
pub const ACT_WARPS: u32 = 4;
/// Warps per thread block of the row-major GEMV (one warp per row).
pub const ROW_WARPS: u32 = 4;
/// Warps per thread block of the `rows16` GEMV (one group of 16 rows; the warps split its
/// blocks). At most 32 (the kernel's shared array), at least `TILE` (warp j adds token j's sums).
pub const GROUP_WARPS: u32 = 8;
/// Tokens per thread block of the tiled GEMVs (`TILE` in autark.cu).
pub const TILE: usize = 8;
const _: () = assert!(GROUP_WARPS as usize >= TILE && GROUP_WARPS <= 32);

/// A stored matrix type the GEMV kernels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
    F16,
    F32,
}

impl Quant {
    pub const ALL: [Quant; 10] = [
        Quant::Q4_0,
        Quant::Q4_1,
        Quant::Q8_0,
        Quant::Q5_0,
        Quant::Q5_1,
        Quant::Q4K,
        Quant::Q5K,
        Quant::Q6K,
        Quant::F16,
        Quant::F32,
    ];

    pub fn dtype(self) -> DType {
        match self {
            Quant::Q4_0 => DType::Q4_0,
            Quant::Q4_1 => DType::Q4_1,
            Quant::Q8_0 => DType::Q8_0,
            Quant::Q5_0 => DType::Q5_0,
            Quant::Q5_1 => DType::Q5_1,
            Quant::Q4K => DType::Q4K,
            Quant::Q5K => DType::Q5K,
            Quant::Q6K => DType::Q6K,
            Quant::F16 => DType::F16,
            Quant::F32 => DType::F32,
        }
    }

    pub fn of(dtype: DType) -> Option<Quant> {
        Quant::ALL.into_iter().find(|q| q.dtype() == dtype)
    }

    /// Whether the kernel reads f32 activations (f16 and f32 weights, as the CPU's `vec_dot_f16`)
    /// rather than 8-bit activation blocks.
    pub fn is_float(self) -> bool {
        matches!(self, Quant::F16 | Quant::F32)
    }

    /// Whether the quantizer's `rows16` interleave (and its GEMV) exists for the type.
    pub fn has_rows16(self) -> bool {
        matches!(self, Quant::Q4_0 | Quant::Q4_1 | Quant::Q8_0)
    }
}

/// Every kernel of `autark.cu` (the GPU looks each up once, when the module is loaded).
pub fn names() -> Vec<&'static str> {
    let f32_ops = [
        "rmsnorm_f32",
        "add_bias_f32",
        "add_f32",
        "glu_f32",
        "rope_f32",
        "kv_store_f32",
        "kv_store_f16",
        "attention_f32",
        "attention_f16kv",
        "attention_split_f32",
        "attention_split_f16kv",
        "attention_merge_f32",
        "select_rows_f32",
        "argmax_f32",
    ];
    ["quantize_act"]
        .into_iter()
        .chain(f32_ops)
        .chain(Gemv::all().flat_map(|g| [Some(g.name()), g.tiled_name()]).flatten())
        .collect()
}

/// Grid and block dimensions of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

/// `quantize_act` over `n_blocks` blocks of 32 activations.
pub fn quantize_act(n_blocks: usize) -> Launch {
    Launch { grid: [n_blocks.div_ceil(ACT_WARPS as usize) as u32, 1, 1], block: [32 * ACT_WARPS, 1, 1] }
}

/// Threads per block of the f32 kernels (`ops.rs`).
pub const F32_THREADS: u32 = 256;

/// One thread block per row (RMSNorm, RoPE, KV store), `threads` each.
pub fn per_row(rows: usize, threads: u32) -> Launch {
    Launch { grid: [rows as u32, 1, 1], block: [threads, 1, 1] }
}

/// One thread per value (adds, gating).
pub fn elementwise(total: usize) -> Launch {
    Launch { grid: [total.div_ceil(F32_THREADS as usize) as u32, 1, 1], block: [F32_THREADS, 1, 1] }
}

/// Attention: one thread block of 128 per (row, head).
pub fn attention(rows: usize, heads: usize) -> Launch {
    Launch { grid: [rows as u32, heads as u32, 1], block: [128, 1, 1] }
}

/// The element type of the device's KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    /// f16, rounded to nearest even when stored (as the CPU's f16 cache), f32 when read.
    F16,
}

impl KvType {
    pub fn bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    /// The kernels that store and read it: (KV store, attention, split attention).
    pub fn kernels(self) -> (&'static str, &'static str, &'static str) {
        match self {
            KvType::F32 => ("kv_store_f32", "attention_f32", "attention_split_f32"),
            KvType::F16 => ("kv_store_f16", "attention_f16kv", "attention_split_f16kv"),
        }
    }
}

/// Positions per thread block of the split attention (at most `ATT_CHUNK_MAX` in autark.cu).
pub const ATT_CHUNK: usize = 256;

/// Contexts longer than this run the split attention (`attention_split_f32` over chunks of
/// `ATT_CHUNK` positions, then `attention_merge_f32`); shorter ones one thread block per row and
/// head (`attention_f32`). Fixed per session (a captured graph keeps its launches).
pub const SPLIT_ATTENTION_MIN_CTX: usize = 2 * ATT_CHUNK;

/// Chunks of `chunk` positions that cover `n_ctx`.
pub fn attention_chunks(n_ctx: usize, chunk: usize) -> usize {
    n_ctx.div_ceil(chunk)
}

/// Floats of attention scratch per (row, head) for a context of `n_ctx` positions and heads of
/// `hd`: the scores (`attention_f32`), or the split attention's partial results.
pub fn attention_scratch(n_ctx: usize, hd: usize) -> usize {
    n_ctx.max(attention_chunks(n_ctx, ATT_CHUNK) * (hd + 2))
}

/// The split attention: one thread block of 128 per (row, head, chunk).
pub fn attention_split(rows: usize, heads: usize, chunks: usize) -> Launch {
    Launch { grid: [rows as u32, heads as u32, chunks as u32], block: [128, 1, 1] }
}

/// One thread block (row selection, in order; the argmax of a row).
pub fn single_block() -> Launch {
    Launch { grid: [1, 1, 1], block: [F32_THREADS, 1, 1] }
}

/// One GEMV kernel: `y[t·rows + r] = Σ_b dot(weight row r block b, activation t block b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemv {
    pub quant: Quant,
    pub layout: TensorLayout,
}

impl Gemv {
    pub fn all() -> impl Iterator<Item = Gemv> {
        Quant::ALL.into_iter().flat_map(|quant| {
            let layouts: &[TensorLayout] = if quant.has_rows16() {
                &[TensorLayout::RowMajor, TensorLayout::Rows16]
            } else {
                &[TensorLayout::RowMajor]
            };
            layouts.iter().map(move |&layout| Gemv { quant, layout })
        })
    }

    /// The kernel for a stored matrix, if there is one.
    pub fn of(dtype: DType, layout: TensorLayout) -> Option<Gemv> {
        let quant = Quant::of(dtype)?;
        (layout == TensorLayout::RowMajor || quant.has_rows16()).then_some(Gemv { quant, layout })
    }

    /// The kernel's name in `autark.cu` for one token per thread block, e.g. `gemv_q4_1_rows16`;
    /// `tiled_name` is its twin that takes `TILE` tokens per thread block.
    pub fn name(self) -> &'static str {
        self.names().0
    }

    /// The twin of `name` for batches: each thread block computes `TILE` tokens, reading each
    /// weight block once for all of them (`gemv_q4_1_rows16_x8`). None for f16 and f32 weights:
    /// one multiply-add per weight loaded leaves nothing to amortise the eight tokens' loads
    /// over (it ran 3× slower than one token per thread block on the H200).
    pub fn tiled_name(self) -> Option<&'static str> {
        self.names().1
    }

    /// The kernel a launch of `tokens` rows uses: the tiled one for more than one, if there is one.
    pub fn kernel(self, tokens: usize) -> &'static str {
        match self.tiled_name() {
            Some(tiled) if tokens > 1 => tiled,
            _ => self.name(),
        }
    }

    fn names(self) -> (&'static str, Option<&'static str>) {
        use Quant::*;
        use TensorLayout::*;
        let (one, tiled) = match (self.quant, self.layout) {
            (Q4_0, RowMajor) => ("gemv_q4_0_rows", "gemv_q4_0_rows_x8"),
            (Q4_0, Rows16) => ("gemv_q4_0_rows16", "gemv_q4_0_rows16_x8"),
            (Q4_1, RowMajor) => ("gemv_q4_1_rows", "gemv_q4_1_rows_x8"),
            (Q4_1, Rows16) => ("gemv_q4_1_rows16", "gemv_q4_1_rows16_x8"),
            (Q8_0, RowMajor) => ("gemv_q8_0_rows", "gemv_q8_0_rows_x8"),
            (Q8_0, Rows16) => ("gemv_q8_0_rows16", "gemv_q8_0_rows16_x8"),
            (Q5_0, _) => ("gemv_q5_0_rows", "gemv_q5_0_rows_x8"),
            (Q5_1, _) => ("gemv_q5_1_rows", "gemv_q5_1_rows_x8"),
            (Q4K, _) => ("gemv_q4_k_rows", "gemv_q4_k_rows_x8"),
            (Q5K, _) => ("gemv_q5_k_rows", "gemv_q5_k_rows_x8"),
            (Q6K, _) => ("gemv_q6_k_rows", "gemv_q6_k_rows_x8"),
            (F16, _) => return ("gemv_f16_rows", None),
            (F32, _) => return ("gemv_f32_rows", None),
        };
        (one, Some(tiled))
    }

    /// Bytes of a `rows × cols` matrix; `None` when `cols` is not a whole number of blocks.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> Option<usize> {
        self.quant.dtype().row_bytes(cols).ok()?.checked_mul(rows)
    }

    /// The kernel's last argument: activation blocks per row (quantized types), or values per
    /// row (f16, f32).
    pub fn cols_arg(self, cols: usize) -> usize {
        if self.quant.is_float() {
            cols
        } else {
            cols / autark_kernels::QK
        }
    }

    /// The kernel's `rows` argument: rows, or groups of 16 rows for `rows16`.
    pub fn rows_arg(self, rows: usize) -> usize {
        match self.layout {
            TensorLayout::RowMajor => rows,
            TensorLayout::Rows16 => rows / autark_kernels::interleave::GROUP,
        }
    }

    /// The launch of `kernel(tokens)`: grid (row blocks, token tiles).
    pub fn launch(self, rows: usize, tokens: usize) -> Launch {
        let tiled = tokens > 1 && self.tiled_name().is_some();
        let tiles = if tiled { tokens.div_ceil(TILE) } else { tokens } as u32;
        match self.layout {
            TensorLayout::RowMajor => {
                Launch { grid: [rows.div_ceil(ROW_WARPS as usize) as u32, tiles, 1], block: [32 * ROW_WARPS, 1, 1] }
            }
            TensorLayout::Rows16 => {
                Launch { grid: [self.rows_arg(rows) as u32, tiles, 1], block: [32 * GROUP_WARPS, 1, 1] }
            }
        }
    }
}
