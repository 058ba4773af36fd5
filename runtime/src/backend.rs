//! The seam between the forward pass (`forward.rs`, which knows the model) and the hardware that
//! computes it (`cpu.rs`; a CUDA backend implements the same trait). The backend owns a batch's
//! activation buffers, the RoPE tables and the KV cache, so a GPU backend keeps all of them in
//! device memory; the spine names buffers and weights and never touches their contents.

use autark_format::{FfnActivation, ModelConfig};

use crate::error::Result;
use crate::model::T;

/// A batch's activation buffers, each `n_tokens` rows wide as named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buf {
    /// The residual stream (d_model).
    X,
    /// A sub-layer's normed input (d_model).
    Xb,
    /// Queries (n_heads × head_dim), keys and values (n_kv_heads × head_dim).
    Q,
    K,
    V,
    /// The attention heads' output (n_heads × head_dim).
    AttOut,
    /// The output of o_proj / down_proj (d_model).
    Proj,
    /// The FFN's gate and up projections (ffn_dim); `Gate` then holds act(gate) · up.
    Gate,
    Up,
}

/// One sequence's rows in a batch: `n` consecutive rows holding the tokens of positions
/// `pos0..pos0 + n` of the sequence whose KV cache is `cache` (0: the backend's own; `i > 0`: the
/// `i`-th cache lent to it for a multi-sequence pass, see `Session::eval_together`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub pos0: usize,
    pub n: usize,
    pub cache: usize,
}

impl Buf {
    pub const ALL: [Buf; 9] = [Buf::X, Buf::Xb, Buf::Q, Buf::K, Buf::V, Buf::AttOut, Buf::Proj, Buf::Gate, Buf::Up];

    /// Each buffer's row width for a model, in `ALL`'s order.
    pub fn widths(c: &ModelConfig) -> [usize; 9] {
        let (q, kv) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        Buf::ALL.map(|b| match b {
            Buf::X | Buf::Xb | Buf::Proj => c.d_model,
            Buf::Q | Buf::AttOut => q,
            Buf::K | Buf::V => kv,
            Buf::Gate | Buf::Up => c.ffn_dim,
        })
    }
}

/// The per-layer operations of a forward pass. Weights are tensor indices of the model the
/// backend was made for; `n` is the number of tokens in the batch.
pub trait Backend {
    /// Runs `f` where the backend computes (the CPU backend: inside its thread pool).
    fn run(&mut self, f: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()>;
    /// `X` = rows `tokens` of the embedding, times `scale`.
    fn embed(&mut self, w: T, tokens: &[u32], scale: Option<f32>) -> Result<()>;
    /// Rows `0..n` of `dst` = RMSNorm of rows `first..first + n` of `src`, times `w` (`dst` may be
    /// `src`, with `first` 0).
    fn rmsnorm(&mut self, dst: Buf, src: Buf, w: T, first: usize, n: usize);
    /// RMSNorm of each head of `buf` (head_dim values) times `w`.
    fn head_norm(&mut self, buf: Buf, w: T, n: usize);
    /// `out = w · input` for each `(w, out)`, the input prepared (quantized) once for all.
    fn matmul(&mut self, input: Buf, n: usize, outs: &[(T, Buf)]) -> Result<()>;
    /// `buf += b` on every row.
    fn add_bias(&mut self, buf: Buf, b: T, n: usize);
    /// Rotates the heads of `Q` and `K`, each segment's rows for its positions, with the local
    /// RoPE base (`local`, Gemma 3's sliding layers) or the global one.
    fn rope(&mut self, local: bool, segs: &[Seg]);
    /// Stores each segment's `K`, `V` rows in layer `l` of its cache at its positions, then
    /// `AttOut = softmax(scale · Q·Kᵀ + causal mask over the last `window` positions) · V` per head
    /// (grouped-query: query head h reads KV head h / (n_heads / n_kv_heads)), each row against
    /// its own segment's cache.
    fn attention(&mut self, l: usize, segs: &[Seg], window: usize, scale: f32);
    /// Moves rows `rows[i]` of `buf` to row `i` (`rows` ascending): the rows whose logits are
    /// wanted, before the output norm.
    fn select_rows(&mut self, buf: Buf, rows: &[usize]);
    /// `dst += src`.
    fn add(&mut self, dst: Buf, src: Buf, n: usize);
    /// `Gate = act(Gate) · Up`.
    fn glu(&mut self, act: FfnActivation, n: usize);
    /// `out = w · input` into host memory (the logits).
    fn output(&mut self, w: T, input: Buf, n: usize, out: &mut [f32]) -> Result<()>;
    /// Rows `0..n` of `buf` in host memory (for observers such as calibration).
    fn read(&mut self, buf: Buf, n: usize) -> &[f32];
}
