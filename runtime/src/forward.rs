//! The forward pass of the Llama family (Llama 2/3, Mistral, Qwen2, SmolLM2, TinyLlama), read
//! top to bottom like llama2.c's `run.c`: a `Session` owns the KV cache and every scratch
//! buffer, allocated once in `Session::new`; `eval` runs a batch of tokens through the layers.
//! Matrix products and element-wise operations come from the kernels' dispatch table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use autark_format::RopeScaling;
use autark_kernels::kernels;
use autark_kernels::ops::{gelu_tanh_mul, gemm, rmsnorm, rmsnorm_in_place, rope_head, silu_mul, softmax, Activations};

use crate::error::{Result, RuntimeError};
use crate::imatrix::{ActivationStats, Site};
use crate::model::Model;

/// Session settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionParams {
    /// Context length (tokens the KV cache holds); 0 = the model's training context, capped at
    /// 4096.
    pub n_ctx: usize,
    /// Worker threads; 0 = one per core.
    pub n_threads: usize,
    /// Tokens per forward batch during prompt processing.
    pub n_batch: usize,
    /// Refuse to create the session if it needs more than this many bytes (0 = no budget; the
    /// session is then refused only when it needs more than the machine's available memory).
    pub max_memory_bytes: usize,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams { n_ctx: 0, n_threads: 0, n_batch: 64, max_memory_bytes: 0 }
    }
}

pub struct Session {
    model: Arc<Model>,
    /// Set from any thread to stop generation (see `cancel_handle`).
    cancel: Arc<AtomicBool>,
    pool: Arc<autark_kernels::pool::Pool>,
    n_ctx: usize,
    n_batch: usize,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    // ---- KV cache ----
    key_cache: Vec<f32>,   // per layer (kv_slots[l], n_kv_heads * head_dim)
    value_cache: Vec<f32>, // per layer (kv_slots[l], n_kv_heads * head_dim)
    /// Positions each layer's cache holds: n_ctx, or on sliding-window layers a ring of
    /// window + n_batch − 1 (position p in slot p mod slots), enough for every query of a batch.
    kv_slots: Vec<usize>,
    /// Offset of each layer's cache in `key_cache` / `value_cache`, in floats.
    kv_offset: Vec<usize>,
    // ---- scratch for a batch of up to n_batch tokens ----
    x: Vec<f32>,       // (n_batch, d_model) residual stream
    xb: Vec<f32>,      // (n_batch, d_model) normed input of a sub-layer
    q: Vec<f32>,       // (n_batch, n_heads * head_dim)
    k: Vec<f32>,       // (n_batch, n_kv_heads * head_dim)
    v: Vec<f32>,       // (n_batch, n_kv_heads * head_dim)
    att_out: Vec<f32>, // (n_batch, n_heads * head_dim) attention output before o_proj
    scores: Vec<f32>,  // (n_batch, n_heads, n_ctx) attention weights
    proj: Vec<f32>,    // (n_batch, d_model) output of o_proj / down_proj
    /// Input statistics of every linear layer, while collecting them (calibration).
    stats: Option<Box<ActivationStats>>,
    gate: Vec<f32>,     // (n_batch, ffn_dim)
    up: Vec<f32>,       // (n_batch, ffn_dim)
    act: Activations,   // (n_batch, max(d_model, ffn_dim, n_heads * head_dim)) quantized inputs
    logits: Vec<f32>,   // (vocab_size) logits of the last evaluated token
    rope_cos: Vec<f32>, // (n_ctx, head_dim / 2)
    rope_sin: Vec<f32>, // (n_ctx, head_dim / 2)
    /// RoPE tables of the sliding-window layers when their base differs (Gemma 3), else empty.
    rope_local_cos: Vec<f32>,
    rope_local_sin: Vec<f32>,
}

impl Session {
    pub fn new(model: Arc<Model>, params: SessionParams) -> Result<Session> {
        let c = model.config().clone();
        let n_ctx = if params.n_ctx == 0 { c.context_length.min(4096) } else { params.n_ctx };
        if n_ctx > c.context_length.max(1) * 8 || n_ctx > 1 << 20 {
            return Err(RuntimeError::InvalidArgument {
                name: "n_ctx",
                what: format!("{n_ctx} exceeds the limit for this model"),
            });
        }
        let n_batch = params.n_batch.clamp(1, 512).min(n_ctx);
        let threads = if params.n_threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            params.n_threads
        };
        if threads > 1024 {
            return Err(RuntimeError::InvalidArgument { name: "n_threads", what: format!("{threads}") });
        }
        // Every byte the session will allocate, checked before the first allocation.
        let needed = Self::required_bytes(&c, n_ctx, n_batch)
            .ok_or(RuntimeError::InvalidArgument { name: "n_ctx", what: "the session's size overflows".into() })?;
        let budget = if params.max_memory_bytes > 0 { Some(params.max_memory_bytes) } else { available_memory() };
        if let Some(budget) = budget.filter(|&b| needed > b) {
            return Err(RuntimeError::MemoryBudget { needed, budget });
        }
        let pool =
            Arc::new(autark_kernels::pool::Pool::new(threads).map_err(|e| RuntimeError::ThreadPool(e.to_string()))?);
        let (q_dim, kv_dim) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        // Cannot overflow: `required_bytes` above computed this product with checked arithmetic.
        let kv_slots: Vec<usize> = (0..c.n_layers).map(|l| Self::kv_slots(&c, l, n_ctx, n_batch)).collect();
        let kv_offset: Vec<usize> =
            kv_slots.iter().scan(0, |o, s| Some(std::mem::replace(o, *o + s * kv_dim))).collect();
        let kv_len = kv_slots.iter().sum::<usize>() * kv_dim;
        let half = c.head_dim / 2;
        let (rope_cos, rope_sin) = rope_tables(&c, c.rope_theta, true, n_ctx);
        debug_assert_eq!(rope_cos.len(), n_ctx * half);
        let (rope_local_cos, rope_local_sin) = match c.rope_theta_local {
            Some(theta) => rope_tables(&c, theta, false, n_ctx),
            None => (Vec::new(), Vec::new()),
        };
        let widest = c.d_model.max(c.ffn_dim).max(q_dim);
        Ok(Session {
            pool,
            n_ctx,
            n_batch,
            tokens: Vec::with_capacity(n_ctx),
            key_cache: vec![0.0; kv_len],
            value_cache: vec![0.0; kv_len],
            kv_slots,
            kv_offset,
            x: vec![0.0; n_batch * c.d_model],
            xb: vec![0.0; n_batch * c.d_model],
            q: vec![0.0; n_batch * q_dim],
            k: vec![0.0; n_batch * kv_dim],
            v: vec![0.0; n_batch * kv_dim],
            att_out: vec![0.0; n_batch * q_dim],
            scores: vec![0.0; n_batch * c.n_heads * n_ctx],
            proj: vec![0.0; n_batch * c.d_model],
            gate: vec![0.0; n_batch * c.ffn_dim],
            up: vec![0.0; n_batch * c.ffn_dim],
            act: Activations::with_capacity(n_batch, widest),
            logits: vec![0.0; c.vocab_size],
            rope_cos,
            rope_sin,
            rope_local_cos,
            rope_local_sin,
            model,
            cancel: Arc::new(AtomicBool::new(false)),
            stats: None,
        })
    }

    /// Starts (or with `false` stops and drops) collecting the mean square of every linear
    /// layer's input columns over everything evaluated from now on (see `crate::imatrix`).
    pub fn collect_activation_stats(&mut self, on: bool) {
        self.stats = on.then(Box::default);
    }

    /// The statistics collected so far, if collecting.
    pub fn activation_stats(&self) -> Option<&ActivationStats> {
        self.stats.as_deref()
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Cache positions of layer `l`: the context, or on a sliding-window layer whose window is
    /// shorter than it, a ring of `window + n_batch − 1` (the oldest position a batch's first query
    /// still sees, up to its last token).
    fn kv_slots(c: &autark_format::ModelConfig, l: usize, n_ctx: usize, n_batch: usize) -> usize {
        match c.sliding_window {
            Some(w) if c.is_sliding(l) => w.saturating_add(n_batch.max(1) - 1).min(n_ctx),
            _ => n_ctx,
        }
    }

    /// Bytes a session of `n_ctx` tokens and `n_batch`-token batches allocates (KV cache,
    /// scratch, RoPE tables, activation buffers), or `None` if that overflows.
    pub fn required_bytes(c: &autark_format::ModelConfig, n_ctx: usize, n_batch: usize) -> Option<usize> {
        let (q_dim, kv_dim) = (c.n_heads.checked_mul(c.head_dim)?, c.n_kv_heads.checked_mul(c.head_dim)?);
        let widest = c.d_model.max(c.ffn_dim).max(q_dim);
        let slots = (0..c.n_layers).try_fold(0usize, |acc, l| acc.checked_add(Self::kv_slots(c, l, n_ctx, n_batch)))?;
        let kv = slots.checked_mul(kv_dim)?.checked_mul(2)?;
        let per_token = c
            .d_model
            .checked_mul(3)?
            .checked_add(q_dim.checked_mul(2)?)?
            .checked_add(kv_dim.checked_mul(2)?)?
            .checked_add(c.ffn_dim.checked_mul(2)?)?;
        let scratch =
            n_batch.checked_mul(per_token)?.checked_add(n_batch.checked_mul(c.n_heads)?.checked_mul(n_ctx)?)?;
        let rope = n_ctx.checked_mul(c.head_dim)?.checked_mul(if c.rope_theta_local.is_some() { 2 } else { 1 })?;
        // + the logits and the token list (4 bytes each, like an f32).
        let floats = kv.checked_add(scratch)?.checked_add(rope)?.checked_add(c.vocab_size)?.checked_add(n_ctx)?;
        // Activations: f32 copy plus 8-bit blocks (40 bytes per 32 values).
        let act_values = n_batch.checked_mul(widest)?;
        let act = act_values.checked_mul(4)?.checked_add(act_values.div_ceil(32).checked_mul(40)?)?;
        floats.checked_mul(4)?.checked_add(act)
    }

    /// A handle that stops this session's generation from any thread: the running (or next)
    /// `generate` returns with `StopReason::Cancelled` after the current token.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(Arc::clone(&self.cancel))
    }

    pub(crate) fn take_cancel(&self) -> bool {
        self.cancel.swap(false, Ordering::AcqRel)
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Tokens in the context so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn n_threads(&self) -> usize {
        self.pool.threads()
    }

    /// Logits of the last evaluated token.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Forgets the context; buffers are kept.
    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Drops the context after its first `n` tokens (the cache beyond is overwritten later).
    /// On a model with sliding-window ring caches, a cut more than `n_batch` tokens back from the
    /// end would need positions the rings have overwritten: the context is then emptied instead
    /// (check `tokens()`).
    pub fn truncate(&mut self, n: usize) {
        let rewind = self.tokens.len().saturating_sub(n);
        self.tokens.truncate(if rewind > self.max_rewind() { 0 } else { n });
    }

    /// How far back the context can be cut and continued: unlimited with full caches; with ring
    /// caches, as long as every position a new token sees is still in its ring.
    fn max_rewind(&self) -> usize {
        let window = self.model.config().sliding_window.unwrap_or(usize::MAX);
        self.kv_slots
            .iter()
            .filter(|&&s| s < self.n_ctx)
            .map(|&s| (s + 1).saturating_sub(window))
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Bytes this session allocated (KV cache, scratch, tables): `required_bytes` of its sizes.
    pub fn memory_bytes(&self) -> usize {
        Self::required_bytes(self.model.config(), self.n_ctx, self.n_batch).unwrap_or(usize::MAX)
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(RuntimeError::EmptyInput);
        }
        let vocab = self.model.config().vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(RuntimeError::InvalidToken { id, vocab });
        }
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx {
            return Err(RuntimeError::ContextOverflow { needed, n_ctx: self.n_ctx });
        }
        Ok(())
    }

    /// Appends `tokens` to the context (prefill in batches); afterwards `logits()` holds the
    /// last token's logits.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<()> {
        self.check_tokens(tokens)?;
        for chunk in tokens.chunks(self.n_batch) {
            self.forward(chunk, None)?;
        }
        Ok(())
    }

    /// As `eval`, writing the logits of every token into `out` (`tokens.len() × vocab_size`).
    pub fn eval_all_logits(&mut self, tokens: &[u32], out: &mut [f32]) -> Result<()> {
        self.check_tokens(tokens)?;
        let vocab = self.model.config().vocab_size;
        if out.len() != tokens.len() * vocab {
            return Err(RuntimeError::InvalidArgument {
                name: "out",
                what: format!("{} values for {} tokens", out.len(), tokens.len()),
            });
        }
        for (chunk, o) in tokens.chunks(self.n_batch).zip(out.chunks_mut(self.n_batch * vocab)) {
            self.forward(chunk, Some(o))?;
        }
        Ok(())
    }

    /// Makes the context equal to `tokens`, re-using the longest common prefix already in the
    /// cache (a chat turn re-evaluates only what is new). At least the last token is evaluated
    /// so that `logits()` belong to it.
    pub fn eval_continuing(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(RuntimeError::EmptyInput);
        }
        let common = self.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count().min(tokens.len() - 1);
        self.truncate(common);
        let common = self.tokens.len();
        self.eval(&tokens[common..])
    }

    /// One batch of tokens at positions `self.tokens.len()..`; `all_logits` receives every
    /// token's logits, otherwise only the last token's go to `self.logits`.
    fn forward(&mut self, batch: &[u32], all_logits: Option<&mut [f32]>) -> Result<()> {
        let model = Arc::clone(&self.model);
        let pool = Arc::clone(&self.pool);
        pool.install(|| self.forward_inner(&model, batch, all_logits))
    }

    fn forward_inner(&mut self, m: &Model, batch: &[u32], all_logits: Option<&mut [f32]>) -> Result<()> {
        let c = m.config();
        let n = batch.len();
        let pos0 = self.tokens.len();
        let (d, hd) = (c.d_model, c.head_dim);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let group = c.n_heads / c.n_kv_heads;
        let interleaved = c.rope_layout == "interleaved";
        let half = hd / 2;
        let scale = c.attention_scale.unwrap_or(1.0 / (hd as f32).sqrt());
        let gelu = c.ffn_activation.as_deref() == Some("gelu_tanh");
        let n_ctx = self.n_ctx;

        // x = embed_tokens(tokens)   (× √d_model for Gemma)
        let embd = m.weight(m.token_embd);
        for (t, &tok) in batch.iter().enumerate() {
            embd.row_f32(tok as usize, &mut self.x[t * d..(t + 1) * d])?;
        }
        if let Some(s) = c.embedding_scale {
            self.x[..n * d].iter_mut().for_each(|v| *v *= s);
        }

        for (l, layer) in m.layers.iter().enumerate() {
            // Sliding-window layers see the last `sliding_window` positions (and may have their
            // own RoPE base); the others attend to everything.
            let sliding = c.is_sliding(l);
            let window = if sliding { c.sliding_window.unwrap_or(usize::MAX) } else { usize::MAX };
            let (rope_cos, rope_sin) = if sliding && !self.rope_local_cos.is_empty() {
                (&self.rope_local_cos, &self.rope_local_sin)
            } else {
                (&self.rope_cos, &self.rope_sin)
            };
            // ---- attention block ----
            // xb = input_layernorm(x)
            let w = m.vector(layer.attn_norm);
            for t in 0..n {
                rmsnorm(&mut self.xb[t * d..(t + 1) * d], &self.x[t * d..(t + 1) * d], w, c.norm_eps);
            }
            // q, k, v = q_proj(xb), k_proj(xb), v_proj(xb)   (+ biases for Qwen2)
            if let Some(s) = self.stats.as_mut() {
                s.record(l, Site::AttnIn, &self.xb[..n * d], d);
            }
            self.act.set(&self.xb[..n * d], n, d)?;
            gemm(&m.weight(layer.wq), &self.act, &mut self.q[..n * q_dim])?;
            gemm(&m.weight(layer.wk), &self.act, &mut self.k[..n * kv_dim])?;
            gemm(&m.weight(layer.wv), &self.act, &mut self.v[..n * kv_dim])?;
            for (bias, out, dim) in
                [(layer.bq, &mut self.q, q_dim), (layer.bk, &mut self.k, kv_dim), (layer.bv, &mut self.v, kv_dim)]
            {
                if let Some(b) = bias {
                    let b = m.vector(b);
                    out[..n * dim]
                        .chunks_exact_mut(dim)
                        .for_each(|row| row.iter_mut().zip(b).for_each(|(o, b)| *o += b));
                }
            }
            // q, k = q_norm(q), k_norm(k) per head (Qwen3)
            for (norm, out, dim) in [(layer.q_norm, &mut self.q, q_dim), (layer.k_norm, &mut self.k, kv_dim)] {
                if let Some(w) = norm {
                    let w = m.vector(w);
                    for h in out[..n * dim].chunks_exact_mut(hd) {
                        rmsnorm_in_place(h, w, c.norm_eps);
                    }
                }
            }
            // q, k = apply_rotary_pos_emb(q, k, cos, sin)
            for t in 0..n {
                let p = pos0 + t;
                let (cos, sin) = (&rope_cos[p * half..(p + 1) * half], &rope_sin[p * half..(p + 1) * half]);
                self.q[t * q_dim..(t + 1) * q_dim]
                    .chunks_exact_mut(hd)
                    .for_each(|h| rope_head(h, cos, sin, interleaved));
                self.k[t * kv_dim..(t + 1) * kv_dim]
                    .chunks_exact_mut(hd)
                    .for_each(|h| rope_head(h, cos, sin, interleaved));
            }
            // past_key_values.update(k, v)   (position p in slot p mod slots)
            let (off, slots) = (self.kv_offset[l], self.kv_slots[l]);
            for t in 0..n {
                let slot = off + (pos0 + t) % slots * kv_dim;
                self.key_cache[slot..slot + kv_dim].copy_from_slice(&self.k[t * kv_dim..(t + 1) * kv_dim]);
                self.value_cache[slot..slot + kv_dim].copy_from_slice(&self.v[t * kv_dim..(t + 1) * kv_dim]);
            }
            // att_out = softmax(q·kᵀ / √head_dim + causal mask) · v, per token and head (GQA:
            // query head h reads kv head h / group). Parallel over tokens.
            let keys = &self.key_cache[off..off + slots * kv_dim];
            let values = &self.value_cache[off..off + slots * kv_dim];
            let q = &self.q;
            let scores_per_token = c.n_heads * n_ctx;
            autark_kernels::pool::for_each_chunks2(
                &mut self.att_out[..n * q_dim],
                q_dim,
                &mut self.scores[..n * scores_per_token],
                scores_per_token,
                n,
                &|t, out, scores| {
                    let p = pos0 + t;
                    let first = (p + 1).saturating_sub(window);
                    let len = p + 1 - first;
                    // Cache slots of positions first..=p, in order: one run, or two where the
                    // ring wraps (it wraps once at most).
                    let start = first % slots;
                    let run = len.min(slots - start);
                    let k = kernels();
                    for h in 0..c.n_heads {
                        let qh = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                        let kvh = h / group;
                        let s = &mut scores[h * n_ctx..h * n_ctx + len];
                        let segs = [(start, 0..run), (0, run..len)];
                        for (slot, js) in segs.iter().cloned() {
                            if js.is_empty() {
                                continue;
                            }
                            let at = slot * kv_dim + kvh * hd;
                            let rows = &keys[at..at + (js.len() - 1) * kv_dim + hd];
                            (k.dots_f32)(qh, rows, kv_dim, &mut s[js]);
                        }
                        s.iter_mut().for_each(|v| *v *= scale);
                        softmax(s);
                        let o = &mut out[h * hd..(h + 1) * hd];
                        o.fill(0.0);
                        for (slot, js) in segs {
                            if js.is_empty() {
                                continue;
                            }
                            let at = slot * kv_dim + kvh * hd;
                            let rows = &values[at..at + (js.len() - 1) * kv_dim + hd];
                            (k.wsum_f32)(o, &s[js], rows, kv_dim);
                        }
                    }
                },
            );
            // x = x + o_proj(att_out)
            if let Some(s) = self.stats.as_mut() {
                s.record(l, Site::AttnOut, &self.att_out[..n * q_dim], q_dim);
            }
            self.act.set(&self.att_out[..n * q_dim], n, q_dim)?;
            gemm(&m.weight(layer.wo), &self.act, &mut self.proj[..n * d])?;
            if let Some(w) = layer.post_attn_norm {
                // o = post_attention_norm(o)   (Gemma)
                let w = m.vector(w);
                self.proj[..n * d].chunks_exact_mut(d).for_each(|o| rmsnorm_in_place(o, w, c.norm_eps));
            }
            self.x[..n * d].iter_mut().zip(&self.proj[..n * d]).for_each(|(x, p)| *x += p);

            // ---- feed-forward block ----
            // xb = post_attention_layernorm(x)
            let w = m.vector(layer.ffn_norm);
            for t in 0..n {
                rmsnorm(&mut self.xb[t * d..(t + 1) * d], &self.x[t * d..(t + 1) * d], w, c.norm_eps);
            }
            // x = x + down_proj(silu(gate_proj(xb)) * up_proj(xb))
            let f = c.ffn_dim;
            if let Some(s) = self.stats.as_mut() {
                s.record(l, Site::FfnIn, &self.xb[..n * d], d);
            }
            self.act.set(&self.xb[..n * d], n, d)?;
            gemm(&m.weight(layer.w_gate), &self.act, &mut self.gate[..n * f])?;
            gemm(&m.weight(layer.w_up), &self.act, &mut self.up[..n * f])?;
            if gelu {
                gelu_tanh_mul(&mut self.gate[..n * f], &self.up[..n * f]); // Gemma: GELU(tanh) gate
            } else {
                silu_mul(&mut self.gate[..n * f], &self.up[..n * f]);
            }
            if let Some(s) = self.stats.as_mut() {
                s.record(l, Site::FfnDown, &self.gate[..n * f], f);
            }
            self.act.set(&self.gate[..n * f], n, f)?;
            gemm(&m.weight(layer.w_down), &self.act, &mut self.proj[..n * d])?;
            if let Some(w) = layer.post_ffn_norm {
                // o = post_feedforward_norm(o)   (Gemma)
                let w = m.vector(w);
                self.proj[..n * d].chunks_exact_mut(d).for_each(|o| rmsnorm_in_place(o, w, c.norm_eps));
            }
            self.x[..n * d].iter_mut().zip(&self.proj[..n * d]).for_each(|(x, p)| *x += p);
        }

        // logits = lm_head(norm(x)), for the last token or for all of them
        let w = m.vector(m.output_norm);
        let head = m.weight(m.output);
        match all_logits {
            Some(out) => {
                for t in 0..n {
                    rmsnorm(&mut self.xb[t * d..(t + 1) * d], &self.x[t * d..(t + 1) * d], w, c.norm_eps);
                }
                if let Some(s) = self.stats.as_mut() {
                    s.record(usize::MAX, Site::Output, &self.xb[..n * d], d);
                }
                self.act.set(&self.xb[..n * d], n, d)?;
                gemm(&head, &self.act, out)?;
                self.logits.copy_from_slice(&out[(n - 1) * c.vocab_size..]);
            }
            None => {
                let last = (n - 1) * d;
                rmsnorm(&mut self.xb[..d], &self.x[last..last + d], w, c.norm_eps);
                if let Some(s) = self.stats.as_mut() {
                    s.record(usize::MAX, Site::Output, &self.xb[..d], d);
                }
                self.act.set(&self.xb[..d], 1, d)?;
                gemm(&head, &self.act, &mut self.logits)?;
            }
        }
        self.tokens.extend_from_slice(batch);
        Ok(())
    }
}

/// Stops a session's generation from another thread (`Session::cancel_handle`).
#[derive(Clone, Debug)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Memory the system can still give (Linux `MemAvailable`), if known.
fn available_memory() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: usize = s.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// cos/sin of every position × frequency: θ_i = base^(−2i/head_dim), adjusted (when `scaled`)
/// by the model's RoPE scaling (linear: positions / factor; llama3: the piecewise rule of Llama 3.1's
/// `_compute_llama3_parameters`; or explicit per-frequency divisors).
fn rope_tables(c: &autark_format::ModelConfig, theta: f32, scaled: bool, n_ctx: usize) -> (Vec<f32>, Vec<f32>) {
    let half = c.head_dim / 2;
    let mut inv_freq: Vec<f64> =
        (0..half).map(|i| (theta as f64).powf(-((2 * i) as f64) / c.head_dim as f64)).collect();
    match c.rope_scaling.as_ref().filter(|_| scaled) {
        Some(RopeScaling::Linear { factor }) => inv_freq.iter_mut().for_each(|f| *f /= *factor as f64),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context_length }) => {
            let (factor, lo, hi, old) =
                (*factor as f64, *low_freq_factor as f64, *high_freq_factor as f64, *original_context_length as f64);
            let low_wavelen = old / lo;
            let high_wavelen = old / hi;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - lo) / (hi - lo);
                    *f = (1.0 - smooth) * *f / factor + smooth * *f;
                }
            }
        }
        None => {}
    }
    if let Some(factors) = &c.rope_freq_factors {
        inv_freq.iter_mut().zip(factors).for_each(|(f, d)| *f /= *d as f64);
    }
    let mut cos = Vec::with_capacity(n_ctx * half);
    let mut sin = Vec::with_capacity(n_ctx * half);
    for p in 0..n_ctx {
        for f in &inv_freq {
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}
