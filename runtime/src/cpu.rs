//! The CPU backend: scratch buffers allocated once, the dispatched SIMD kernels of
//! `autark_kernels`, a fork-join pool for the matrix products and attention, and the KV cache.

use std::sync::Arc;

use autark_format::{FfnActivation, ModelConfig};
use autark_kernels::ops::{
    gelu_tanh_mul, gemm, reads_f32, rmsnorm, rmsnorm_in_place, rope_head, silu_mul, softmax, Activations,
};
use autark_kernels::pool::Pool;

use crate::backend::{Backend, Buf, Seg};
use crate::error::Result;
use crate::forward::rope_tables;
use crate::kv::{CacheType, KvCache};
use crate::model::{Model, T};

pub(crate) struct Cpu {
    model: Arc<Model>,
    pool: Arc<Pool>,
    /// One buffer per `Buf`, `n_batch` rows of `width[b]`.
    bufs: [Vec<f32>; 9],
    width: [usize; 9],
    scores: Vec<f32>, // (n_batch, n_heads, n_ctx) attention weights
    act: Activations, // (n_batch, widest input) quantized inputs
    /// cos/sin of (n_ctx, head_dim / 2); `[1]` for the sliding-window layers when their base
    /// differs (Gemma 3), else empty.
    rope: [(Vec<f32>, Vec<f32>); 2],
    kv: KvCache,
    /// Other sessions' caches, lent for one multi-sequence pass (`Seg::cache` 1, 2, …).
    lent: Vec<KvCache>,
    n_ctx: usize,
}

/// `f(a's row t, b's row t)` for the `n` tokens of a batch (rows of `ca` and `cb` values; `cb`
/// may be 0), a contiguous share of the tokens per thread of the pool (one token, or one
/// thread: in order, on the caller). The element-wise steps between the matrix products (norms,
/// the gated activation, residual adds) ran on one thread while the others waited
/// (BENCHMARKS.md, "Serving"). Each token's values are computed alone either way.
fn per_token(
    a: &mut [f32],
    ca: usize,
    b: &mut [f32],
    cb: usize,
    n: usize,
    f: &(dyn Fn(&mut [f32], &mut [f32]) + Sync),
) {
    autark_kernels::pool::for_each_chunks2(a, ca, b, cb, n, true, &|_, x, y| f(x, y));
}

impl Cpu {
    /// Bytes a backend of `n_ctx` positions and `n_batch`-token batches allocates (KV cache,
    /// scratch, RoPE tables, activation buffers, the logits and token list of its session), or
    /// `None` if that overflows.
    pub fn required_bytes(c: &ModelConfig, n_ctx: usize, n_batch: usize, cache: [CacheType; 2]) -> Option<usize> {
        let q_dim = c.n_heads.checked_mul(c.head_dim)?;
        let widest = c.d_model.max(c.ffn_dim).max(q_dim);
        let per_token = Buf::widths(c).iter().try_fold(0usize, |a, w| a.checked_add(*w))?;
        let scratch =
            n_batch.checked_mul(per_token)?.checked_add(n_batch.checked_mul(c.n_heads)?.checked_mul(n_ctx)?)?;
        let rope = n_ctx.checked_mul(c.head_dim)?.checked_mul(if c.rope_theta_local.is_some() { 2 } else { 1 })?;
        // + the logits and the token list (4 bytes each, like an f32).
        let floats = scratch.checked_add(rope)?.checked_add(c.vocab_size)?.checked_add(n_ctx)?;
        // Activations: f32 copy plus 8-bit blocks (40 bytes per 32 values).
        let act_values = n_batch.checked_mul(widest)?;
        let act = act_values.checked_mul(4)?.checked_add(act_values.div_ceil(32).checked_mul(40)?)?;
        floats.checked_mul(4)?.checked_add(act)?.checked_add(KvCache::bytes(c, n_ctx, n_batch, cache)?)
    }

    /// Sizes must have passed `required_bytes`.
    pub fn new(
        model: Arc<Model>,
        pool: Arc<Pool>,
        n_ctx: usize,
        n_batch: usize,
        cache: [CacheType; 2],
    ) -> crate::Result<Cpu> {
        let c = model.config();
        let width = Buf::widths(c);
        let local = match c.rope_theta_local {
            Some(theta) => rope_tables(c, theta, false, n_ctx),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Cpu {
            bufs: width.map(|w| vec![0.0; n_batch * w]),
            width,
            scores: vec![0.0; n_batch * c.n_heads * n_ctx],
            act: Activations::with_capacity(n_batch, width.into_iter().max().unwrap_or(0)),
            rope: [rope_tables(c, c.rope_theta, true, n_ctx), local],
            kv: KvCache::new(c, n_ctx, n_batch, cache)?,
            lent: Vec::new(),
            n_ctx,
            pool,
            model,
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn shared_pool(&self) -> Arc<Pool> {
        Arc::clone(&self.pool)
    }

    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    pub fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }

    /// Lends `other`'s cache to this backend as the next `Seg::cache` (1, 2, …) until
    /// `return_caches`.
    pub fn borrow_cache(&mut self, other: &mut Cpu) {
        self.lent.push(std::mem::replace(&mut other.kv, KvCache::empty()));
    }

    /// Gives the lent caches back, in the order they were lent.
    pub fn return_caches<'a>(&mut self, owners: impl Iterator<Item = &'a mut Cpu>) {
        for (owner, kv) in owners.zip(self.lent.drain(..)) {
            owner.kv = kv;
        }
    }

    /// Context shift (`KvCache::shift`): keys move back by `drop` positions and are rotated by
    /// −`drop` with each layer's RoPE table.
    pub fn shift(&mut self, n_tokens: usize, keep: usize, drop: usize) {
        let c = self.model.config();
        let (half, interleaved) = (c.head_dim / 2, c.rope_layout == autark_format::RopeLayout::Interleaved);
        let table = |local: bool| {
            let (cos, sin) = if local && !self.rope[1].0.is_empty() { &self.rope[1] } else { &self.rope[0] };
            let sin: Vec<f32> = sin[drop * half..(drop + 1) * half].iter().map(|s| -s).collect();
            (cos[drop * half..(drop + 1) * half].to_vec(), sin)
        };
        let tables = [table(false), table(true)];
        let sliding: Vec<bool> = (0..c.n_layers).map(|l| c.is_sliding(l)).collect();
        self.kv.shift(n_tokens, keep, drop, &|l, head| {
            let (cos, sin) = &tables[sliding[l] as usize];
            rope_head(head, cos, sin, interleaved);
        });
    }
}

impl Backend for Cpu {
    fn run(&mut self, f: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let pool = Arc::clone(&self.pool);
        pool.install(|| f(self))
    }

    fn embed(&mut self, w: T, tokens: &[u32], scale: Option<f32>) -> Result<()> {
        let embd = self.model.weight(w);
        let x = &mut self.bufs[Buf::X as usize][..tokens.len() * embd.cols];
        for (row, &tok) in x.chunks_exact_mut(embd.cols).zip(tokens) {
            embd.row_f32(tok as usize, row)?;
        }
        if let Some(s) = scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        Ok(())
    }

    fn rmsnorm(&mut self, dst: Buf, src: Buf, w: T, first: usize, n: usize) {
        let (w, eps) = (self.model.vector(w), self.model.config().norm_eps);
        let d = self.width[src as usize];
        if dst == src {
            per_token(&mut self.bufs[dst as usize][..n * d], d, &mut [], 0, n, &|o, _| rmsnorm_in_place(o, w, eps));
            return;
        }
        let [o, x] = self.bufs.get_disjoint_mut([dst as usize, src as usize]).expect("distinct buffers");
        per_token(&mut o[..n * d], d, &mut x[first * d..(first + n) * d], d, n, &|o, x| rmsnorm(o, x, w, eps));
    }

    fn head_norm(&mut self, buf: Buf, w: T, n: usize) {
        let (w, eps) = (self.model.vector(w), self.model.config().norm_eps);
        let hd = self.model.config().head_dim;
        let width = self.width[buf as usize];
        self.bufs[buf as usize][..n * width].chunks_exact_mut(hd).for_each(|h| rmsnorm_in_place(h, w, eps));
    }

    fn matmul(&mut self, input: Buf, n: usize, outs: &[(T, Buf)]) -> Result<()> {
        let cols = self.width[input as usize];
        // From the tensor table: `weight` validates a view, which the loop below does once.
        let keep_f32 = outs.iter().any(|&(w, _)| reads_f32(self.model.file().tensors()[w].dtype));
        self.act.set_with(&self.bufs[input as usize][..n * cols], n, cols, keep_f32)?;
        for &(w, out) in outs {
            let width = self.width[out as usize];
            gemm(&self.model.weight(w), &self.act, &mut self.bufs[out as usize][..n * width])?;
        }
        Ok(())
    }

    fn add_bias(&mut self, buf: Buf, b: T, n: usize) {
        let b = self.model.vector(b);
        let width = self.width[buf as usize];
        self.bufs[buf as usize][..n * width]
            .chunks_exact_mut(width)
            .for_each(|row| row.iter_mut().zip(b).for_each(|(o, b)| *o += b));
    }

    fn rope(&mut self, local: bool, segs: &[Seg]) {
        let c = self.model.config();
        let (hd, interleaved) = (c.head_dim, c.rope_layout == autark_format::RopeLayout::Interleaved);
        let half = hd / 2;
        let (cos, sin) = if local && !self.rope[1].0.is_empty() { &self.rope[1] } else { &self.rope[0] };
        let [q, k] = self.bufs.get_disjoint_mut([Buf::Q as usize, Buf::K as usize]).expect("distinct buffers");
        let (qw, kw) = (self.width[Buf::Q as usize], self.width[Buf::K as usize]);
        let positions = segs.iter().flat_map(|s| s.pos0..s.pos0 + s.n);
        for (t, p) in positions.enumerate() {
            let (cos, sin) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
            q[t * qw..(t + 1) * qw].chunks_exact_mut(hd).for_each(|h| rope_head(h, cos, sin, interleaved));
            k[t * kw..(t + 1) * kw].chunks_exact_mut(hd).for_each(|h| rope_head(h, cos, sin, interleaved));
        }
    }

    fn attention(&mut self, l: usize, segs: &[Seg], window: usize, scale: f32) {
        let c = self.model.config();
        let (hd, n_heads, n_ctx) = (c.head_dim, c.n_heads, self.n_ctx);
        let group = n_heads / c.n_kv_heads;
        let (q_dim, kv_dim) = (self.width[Buf::Q as usize], self.width[Buf::K as usize]);
        let mut row = 0;
        for s in segs {
            let (k, v) = (&self.bufs[Buf::K as usize], &self.bufs[Buf::V as usize]);
            let rows = row * kv_dim..(row + s.n) * kv_dim;
            let kv = if s.cache == 0 { &mut self.kv } else { &mut self.lent[s.cache - 1] };
            kv.store(l, s.pos0, &k[rows.clone()], &v[rows]);
            row += s.n;
        }
        let n = row;
        let (own, lent) = (&self.kv, &self.lent);
        let [q, att_out] = self.bufs.get_disjoint_mut([Buf::Q as usize, Buf::AttOut as usize]).expect("distinct");
        let q: &[f32] = q;
        let scores_per_token = n_heads * n_ctx;
        // Parallel over tokens, each token's heads in order; with fewer tokens than threads
        // (decode), over (token, head) pairs, so that one token's heads spread over the pool
        // (attention ran on one of two threads in two-thread decode while the other waited).
        // A head's result does not depend on which task computes it.
        let heads = if n >= autark_kernels::pool::current_threads() { n_heads } else { 1 };
        autark_kernels::pool::for_each_chunks2(
            &mut att_out[..n * q_dim],
            heads * hd,
            &mut self.scores[..n * scores_per_token],
            heads * n_ctx,
            n * n_heads / heads,
            false,
            &|i, out, scores| {
                let (t, h0) = (i * heads / n_heads, i * heads % n_heads);
                // The row's segment (a few at most: a walk, not an allocated table), its position
                // and its sequence's layer cache.
                let (mut seg, mut first_row) = (&segs[0], 0);
                for s in segs {
                    if t < first_row + s.n {
                        seg = s;
                        break;
                    }
                    first_row += s.n;
                }
                let p = seg.pos0 + t - first_row;
                let cache = if seg.cache == 0 { own } else { &lent[seg.cache - 1] }.layer(l);
                let first = (p + 1).saturating_sub(window);
                let len = p + 1 - first;
                let runs = cache.runs(first, len);
                for (j, h) in (h0..h0 + heads).enumerate() {
                    let qh = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                    let kvh = h / group;
                    let s = &mut scores[j * n_ctx..j * n_ctx + len];
                    for (slot, js) in runs.iter().filter(|r| !r.1.is_empty()).cloned() {
                        cache.scores(qh, kvh, slot, &mut s[js]);
                    }
                    s.iter_mut().for_each(|v| *v *= scale);
                    softmax(s);
                    let o = &mut out[j * hd..(j + 1) * hd];
                    o.fill(0.0);
                    for (slot, js) in runs.iter().filter(|r| !r.1.is_empty()).cloned() {
                        cache.weighted_sum(o, &s[js], kvh, slot);
                    }
                }
            },
        );
    }

    fn select_rows(&mut self, buf: Buf, rows: &[usize]) {
        let w = self.width[buf as usize];
        let b = &mut self.bufs[buf as usize];
        for (i, &r) in rows.iter().enumerate() {
            debug_assert!(i <= r);
            b.copy_within(r * w..(r + 1) * w, i * w);
        }
    }

    fn add(&mut self, dst: Buf, src: Buf, n: usize) {
        let w = self.width[dst as usize];
        let [d, s] = self.bufs.get_disjoint_mut([dst as usize, src as usize]).expect("distinct buffers");
        per_token(&mut d[..n * w], w, &mut s[..n * w], w, n, &|d, s| d.iter_mut().zip(&*s).for_each(|(x, p)| *x += p));
    }

    fn glu(&mut self, act: FfnActivation, n: usize) {
        let f = self.width[Buf::Gate as usize];
        let [gate, up] = self.bufs.get_disjoint_mut([Buf::Gate as usize, Buf::Up as usize]).expect("distinct buffers");
        let glu = match act {
            FfnActivation::Silu => silu_mul,
            FfnActivation::GeluTanh => gelu_tanh_mul,
        };
        per_token(&mut gate[..n * f], f, &mut up[..n * f], f, n, &|g, u| glu(g, u));
    }

    fn output(&mut self, w: T, input: Buf, n: usize, out: &mut [f32]) -> Result<()> {
        let cols = self.width[input as usize];
        let weight = self.model.weight(w);
        self.act.set_with(&self.bufs[input as usize][..n * cols], n, cols, reads_f32(weight.dtype))?;
        gemm(&weight, &self.act, out)?;
        Ok(())
    }

    fn read(&mut self, buf: Buf, n: usize) -> &[f32] {
        &self.bufs[buf as usize][..n * self.width[buf as usize]]
    }
}
