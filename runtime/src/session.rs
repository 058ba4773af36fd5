//! `Session`: one context of a model — its tokens, KV cache and scratch (in a backend, allocated
//! once in `Session::new`), logits and cancellation. `eval` runs tokens through `forward`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use autark_format::ModelConfig;
use autark_kernels::pool::Pool;

use crate::backend::{Backend, Seg};
use crate::cpu::Cpu;
use crate::error::{Result, RuntimeError};
use crate::forward::forward;
use crate::imatrix::ActivationStats;
use crate::kv::{CacheType, KvCache};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerParams};
use crate::tokenizer::Detokenizer;

/// Most worker threads a session accepts.
const MAX_THREADS: usize = 1024;

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
    /// How the KV cache stores keys and values (docs/RUNTIME.md, "KV cache types").
    pub cache_type_k: CacheType,
    pub cache_type_v: CacheType,
    /// Where the forward pass runs (docs/CUDA.md).
    pub device: Device,
}

/// Where a session's forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with the `cuda` feature): weights, activations and the KV
    /// cache (f32) in device memory. Saving states, context shift and multi-sequence passes are
    /// CPU-only for now and refused on such a session.
    Cuda,
}

impl Device {
    /// "cpu" or "cuda".
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }

    pub fn parse(s: &str) -> Option<Device> {
        [Device::Cpu, Device::Cuda].into_iter().find(|d| d.name() == s)
    }
}

/// A generation that stopped at its token limit or was cancelled, kept so that it can continue
/// exactly where it stopped (`Session::generate_continue`, and saved with `Session::save`).
#[derive(Debug)]
pub(crate) struct Suspended {
    /// The sampler's random stream (`Sampler::rng_state`).
    pub rng: u64,
    /// Tokens whose text is not complete yet (an unfinished UTF-8 character).
    pub detok: Detokenizer,
    /// Text that may still begin a stop string, of which the first `held_emitted` bytes were
    /// emitted.
    pub held: String,
    pub held_emitted: usize,
    /// The generation's constraint, having accepted its tokens so far.
    pub guide: Option<Box<crate::constraint::Guide>>,
}

impl Suspended {
    /// The state of a generation that has not started: the sampler's stream at its seed.
    pub fn start(p: &SamplerParams) -> Suspended {
        Suspended {
            rng: Sampler::initial_rng(p.seed),
            detok: Detokenizer::new(),
            held: String::new(),
            held_emitted: 0,
            guide: None,
        }
    }
}

pub struct Session {
    model: Arc<Model>,
    /// Set from any thread to stop generation (see `cancel_handle`).
    cancel: Arc<AtomicBool>,
    /// Where the forward pass runs: scratch, KV cache, threads.
    backend: Cpu,
    /// The CUDA backend, when the session runs on the GPU (`Device::Cuda`); `backend` then only
    /// lends its thread pool (its KV cache's pages are never touched, so never committed).
    #[cfg(feature = "cuda")]
    cuda: Option<Box<crate::cuda::Cuda>>,
    n_ctx: usize,
    n_batch: usize,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    logits: Vec<f32>, // (vocab_size) logits of the last evaluated token
    /// `logits` are behind the device's: an argmax pass (`eval_argmax`) left them there, until
    /// `sync_logits`.
    logits_stale: bool,
    /// The logits of the passes this session leads in `eval_together` (one row per segment),
    /// kept between calls so that a server step allocates nothing.
    together: Vec<f32>,
    /// Input statistics of every linear layer, while collecting them (calibration).
    stats: Option<Box<ActivationStats>>,
    cache: [CacheType; 2],
    /// The generation that produced the last tokens, if it can continue.
    pub(crate) suspended: Option<Suspended>,
    /// The draft model's session, for speculative decoding (`set_draft`).
    pub(crate) draft: Option<Box<Session>>,
    /// The thread that computes a constraint's next mask during the forward pass (started by
    /// the first constrained step that leaves a core free).
    pub(crate) mask_thread: Option<crate::constraint::MaskThread>,
}

impl Session {
    pub fn new(model: Arc<Model>, params: SessionParams) -> Result<Session> {
        Self::with_pool(model, params, None)
    }

    /// A session of the same model that runs on `other`'s worker threads instead of starting its
    /// own (`params.n_threads` is ignored). Only one of them may evaluate at a time: for a server
    /// whose one inference thread steps many sequences, whose idle helpers would otherwise spin
    /// beside the pool that works.
    pub fn new_beside(other: &Session, params: SessionParams) -> Result<Session> {
        Self::with_pool(Arc::clone(&other.model), params, Some(other.backend.shared_pool()))
    }

    fn with_pool(model: Arc<Model>, params: SessionParams, pool: Option<Arc<Pool>>) -> Result<Session> {
        let c = model.config();
        let n_ctx = if params.n_ctx == 0 { c.context_length.min(4096) } else { params.n_ctx };
        if n_ctx > c.context_length.max(1) * 8 || n_ctx > 1 << 20 {
            return Err(RuntimeError::InvalidArgument {
                name: "n_ctx",
                what: format!("{n_ctx} exceeds the limit for this model"),
            });
        }
        let n_batch = params.n_batch.clamp(1, 512).min(n_ctx);
        let threads = if params.n_threads == 0 { autark_kernels::pool::cores() } else { params.n_threads };
        if threads > MAX_THREADS {
            return Err(RuntimeError::InvalidArgument { name: "n_threads", what: format!("{threads}") });
        }
        params.cache_type_k.check(c, "cache_type_k")?;
        params.cache_type_v.check(c, "cache_type_v")?;
        let cache = [params.cache_type_k, params.cache_type_v];
        // Every byte the session will allocate, checked before the first allocation.
        let needed = Self::required_bytes(c, n_ctx, n_batch, cache)
            .ok_or(RuntimeError::InvalidArgument { name: "n_ctx", what: "the session's size overflows".into() })?;
        let budget = if params.max_memory_bytes > 0 { Some(params.max_memory_bytes) } else { available_memory() };
        if let Some(budget) = budget.filter(|&b| needed > b) {
            return Err(RuntimeError::MemoryBudget { needed, budget });
        }
        let on_gpu = params.device == Device::Cuda;
        if on_gpu && !matches!(cache, [CacheType::F32, CacheType::F32] | [CacheType::F16, CacheType::F16]) {
            return Err(RuntimeError::InvalidArgument {
                name: "cache_type_k",
                what: "the CUDA backend keeps an f32 or an f16 KV cache, the same type for keys and values \
                       (q8_0 and mixed caches are CPU-only for now)"
                    .into(),
            });
        }
        #[cfg(feature = "cuda")]
        let cuda = match on_gpu {
            true => Some(Box::new(crate::cuda::Cuda::new(
                Arc::clone(&model),
                n_ctx,
                n_batch,
                (params.max_memory_bytes > 0).then_some(params.max_memory_bytes),
                if cache[0] == CacheType::F16 {
                    autark_cuda::kernels::KvType::F16
                } else {
                    autark_cuda::kernels::KvType::F32
                },
            )?)),
            false => None,
        };
        #[cfg(not(feature = "cuda"))]
        if on_gpu {
            return Err(RuntimeError::Device(
                "this build has no CUDA support (build with --features cuda; docs/CUDA.md)".into(),
            ));
        }
        let pool = match pool {
            Some(p) => p,
            None => Arc::new(Pool::new(threads).map_err(|e| RuntimeError::ThreadPool(e.to_string()))?),
        };
        Ok(Session {
            backend: Cpu::new(Arc::clone(&model), pool, n_ctx, n_batch, cache)?,
            #[cfg(feature = "cuda")]
            cuda,
            n_ctx,
            n_batch,
            tokens: Vec::with_capacity(n_ctx),
            logits: vec![0.0; c.vocab_size],
            logits_stale: false,
            together: Vec::new(),
            model,
            cancel: Arc::new(AtomicBool::new(false)),
            stats: None,
            cache,
            suspended: None,
            draft: None,
            mask_thread: None,
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

    /// Bytes a session of `n_ctx` tokens, `n_batch`-token batches and KV cache types `cache`
    /// (keys, values) allocates (KV cache, scratch, RoPE tables, activation buffers), or `None`
    /// if that overflows.
    pub fn required_bytes(c: &ModelConfig, n_ctx: usize, n_batch: usize, cache: [CacheType; 2]) -> Option<usize> {
        Cpu::required_bytes(c, n_ctx, n_batch, cache)
    }

    /// The cached key and value (all KV heads, as f32) of context position `pos` in layer
    /// `layer`, for inspection; `None` outside the context or where a ring has dropped it.
    pub fn cached_kv(&self, layer: usize, pos: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        if self.on_gpu() {
            return None;
        }
        let kv = self.backend.kv();
        kv.holds(layer, pos, self.tokens.len()).then(|| kv.row(layer, pos))
    }

    /// The KV cache's types (keys, values).
    pub fn cache_types(&self) -> [CacheType; 2] {
        self.cache
    }

    pub fn n_batch(&self) -> usize {
        self.n_batch
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
        self.backend.pool().threads()
    }

    /// Logits of the last evaluated token.
    pub fn logits(&self) -> &[f32] {
        debug_assert!(!self.logits_stale, "logits read while they are on the device (sync_logits)");
        &self.logits
    }

    /// Forgets the context; buffers are kept.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.suspended = None;
    }

    /// Forgets the context and gives the KV cache's memory back to the system (see
    /// `KvCache::release`): for a server whose idle slot should not keep the pages of its last
    /// long request. The next tokens fault their pages in again.
    pub fn release_memory(&mut self) -> Result<()> {
        self.reset();
        self.backend.kv_mut().release()
    }

    /// Drops the context after its first `n` tokens (the cache beyond is overwritten later).
    /// On a model with sliding-window ring caches, a cut more than `n_batch` tokens back from the
    /// end would need positions the rings have overwritten: the context is then emptied instead
    /// (check `tokens()`).
    pub fn truncate(&mut self, n: usize) {
        let rewind = self.tokens.len().saturating_sub(n);
        self.tokens.truncate(if rewind > self.backend.kv().max_rewind() { 0 } else { n });
        self.suspended = None;
    }

    /// Context shift: keeps the first `keep` tokens, drops the oldest half of the rest (at least
    /// one token) and moves the later ones back, their cached keys re-rotated (RoPE by the
    /// distance moved) instead of re-evaluated, as llama.cpp does. Returns how many tokens were
    /// dropped. Models whose sliding-window layers keep ring caches cannot shift.
    pub fn shift_context(&mut self, keep: usize) -> Result<usize> {
        let n = self.tokens.len();
        if self.backend.kv().has_rings() {
            return Err(RuntimeError::InvalidArgument {
                name: "context_shift",
                what: "this model's sliding-window layers keep ring caches, which cannot shift".into(),
            });
        }
        let keep = keep.min(n.saturating_sub(1));
        let drop = ((n - keep) / 2).max(1);
        if n == 0 || keep + drop > n {
            return Ok(0);
        }
        // On a GPU the device's cache goes through the CPU backend's: the same shift (the keys
        // re-rotated with the CPU's RoPE tables), copied back, and the host pages released.
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.cuda.as_deref() {
            gpu.download_cache(self.backend.kv_mut(), n)?;
        }
        self.backend.shift(n, keep, drop);
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.cuda.as_deref_mut() {
            gpu.upload_cache(self.backend.kv(), n - drop)?;
            self.backend.kv_mut().release()?;
        }
        self.tokens.drain(keep..keep + drop);
        Ok(drop)
    }

    /// The cache of positions `0..n` as a saved state holds it (`KvCache::write`), from the
    /// device on a GPU session (whose cache has the CPU cache's layout: no rings, checked).
    pub(crate) fn write_cache(
        &self,
        n: usize,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.cuda.as_deref() {
            return gpu.write_cache(n, sink);
        }
        self.backend.kv().write(n, sink)
    }

    /// After a state was read into the CPU backend's cache: on a GPU session, its positions
    /// `0..n` go to the device and the host pages are released.
    pub(crate) fn cache_to_device(&mut self, n: usize) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.cuda.as_deref_mut() {
            gpu.upload_cache(self.backend.kv(), n)?;
            self.backend.kv_mut().release()?;
        }
        let _ = n;
        Ok(())
    }

    /// A GPU session's cache can be saved, loaded and shifted through the CPU cache's layout
    /// only when that has no rings (the device keeps every position of every layer).
    pub(crate) fn require_flat_cache(&self, what: &str) -> Result<()> {
        if self.on_gpu() && self.backend.kv().has_rings() {
            return Err(RuntimeError::Device(format!(
                "{what} is not supported on the CUDA backend for models with sliding-window ring caches yet"
            )));
        }
        Ok(())
    }

    /// Bytes this session allocated (KV cache, scratch, tables): `required_bytes` of its sizes.
    pub fn memory_bytes(&self) -> usize {
        Self::required_bytes(self.model.config(), self.n_ctx, self.n_batch, self.cache).unwrap_or(usize::MAX)
    }

    /// KV cache bytes that `n_tokens` positions of this session's context take (what the pages
    /// written by a request of that length hold): for memory budgets over many sessions.
    pub fn kv_bytes_for(&self, n_tokens: usize) -> usize {
        let n = n_tokens.min(self.n_ctx);
        KvCache::bytes(self.model.config(), n, self.n_batch, self.cache).unwrap_or(usize::MAX)
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

    /// `eval`, then the greedy pick from the last token's logits: their first maximum, as
    /// `autark_kernels::ops::argmax` (so `Sampler::sample` with greedy parameters). On a GPU
    /// session the argmax runs on the device and only its index comes back; the logits stay
    /// there until `sync_logits`, so `logits()` is stale in between — which is why only the
    /// generation loop, which syncs when it stops, calls this.
    pub(crate) fn eval_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.cuda.as_deref_mut() {
            let before = self.logits_stale;
            gpu.set_argmax(true);
            let r = self.eval(tokens);
            let gpu = self.cuda.as_deref_mut().expect("still on the GPU");
            let picked = gpu.take_argmax();
            gpu.set_argmax(false);
            // Every pass that ended here was an argmax pass (even if a later batch failed).
            self.logits_stale = before || picked.is_some();
            r?;
            return picked.ok_or_else(|| RuntimeError::Device("the argmax pass returned nothing".into()));
        }
        self.eval(tokens)?;
        Ok(autark_kernels::ops::argmax(&self.logits) as u32)
    }

    /// Brings the logits left on the device by `eval_argmax` back into `logits()`.
    pub(crate) fn sync_logits(&mut self) -> Result<()> {
        #[cfg(feature = "cuda")]
        if self.logits_stale {
            if let Some(gpu) = self.cuda.as_deref() {
                gpu.read_logits(&mut self.logits)?;
            }
        }
        self.logits_stale = false;
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

    /// Appends `tokens` to each session's context (`work[i] = (session, tokens)`) in shared
    /// forward passes: a pass holds the next batch of every session that has tokens left, so the
    /// weights are read once per pass for all of them (a server's continuous batching: one
    /// generated token per running sequence, beside prompt chunks). Afterwards each session's
    /// context, cache and `logits()` are exactly what `eval` of its tokens alone gives: a batch's
    /// rows never mix, and each row attends to its own session's cache.
    ///
    /// The sessions must be of one model (the same `Arc`). The first session's scratch and
    /// worker threads carry every pass, so a pass holds at most its `n_batch` tokens (a session
    /// contributes at most its own `n_batch`), and no session's `n_ctx` may exceed the first's.
    /// Activation statistics are not collected here. On an error, sessions may have evaluated part
    /// of their tokens (as with `eval`).
    pub fn eval_together(work: &mut [(&mut Session, &[u32])]) -> Result<()> {
        let Some(((lead, lead_tokens), rest)) = work.split_first_mut() else { return Ok(()) };
        lead.require_cpu("evaluating several sessions together")?;
        for (s, _) in rest.iter() {
            s.require_cpu("evaluating several sessions together")?;
        }
        if !lead_tokens.is_empty() {
            lead.check_tokens(lead_tokens)?;
        }
        for (s, tokens) in rest.iter() {
            if !Arc::ptr_eq(&s.model, &lead.model) || s.n_ctx > lead.n_ctx {
                return Err(RuntimeError::InvalidArgument {
                    name: "sessions",
                    what: "eval_together needs sessions of one model, none with a longer context than the first".into(),
                });
            }
            if !tokens.is_empty() {
                s.check_tokens(tokens)?;
            }
        }
        let model = Arc::clone(&lead.model);
        let vocab = model.config().vocab_size;
        let mut fed = vec![0; rest.len() + 1];
        let mut batch = Vec::with_capacity(lead.n_batch);
        let mut logits = std::mem::take(&mut lead.together);
        loop {
            // The next pass: (index into `work`, tokens) of each session with tokens left.
            batch.clear();
            let mut members: Vec<(usize, usize)> = Vec::new();
            for i in 0..=rest.len() {
                let (s, tokens): (&Session, &[u32]) =
                    if i == 0 { (lead, lead_tokens) } else { (rest[i - 1].0, rest[i - 1].1) };
                let take = (tokens.len() - fed[i]).min(s.n_batch).min(lead.n_batch - batch.len());
                if take > 0 {
                    batch.extend_from_slice(&tokens[fed[i]..fed[i] + take]);
                    members.push((i, take));
                }
            }
            if members.is_empty() {
                lead.together = logits;
                return Ok(());
            }
            let mut lent = 0;
            let segs: Vec<Seg> = members
                .iter()
                .map(|&(i, n)| {
                    let pos0 = if i == 0 { lead.tokens.len() } else { rest[i - 1].0.tokens.len() };
                    let cache = if i == 0 {
                        0
                    } else {
                        lent += 1;
                        lent
                    };
                    Seg { pos0, n, cache }
                })
                .collect();
            for &(i, _) in members.iter().filter(|m| m.0 > 0) {
                lead.backend.borrow_cache(&mut rest[i - 1].0.backend);
            }
            logits.resize(members.len() * vocab, 0.0);
            let r = lead.backend.run(&mut |b| forward(&model, b, &batch, &segs, None, false, &mut logits));
            let borrowed = rest.iter_mut().enumerate().filter(|(j, _)| members.iter().any(|m| m.0 == j + 1));
            lead.backend.return_caches(borrowed.map(|(_, w)| &mut w.0.backend));
            r?;
            for (&(i, n), row) in members.iter().zip(logits.chunks_exact(vocab)) {
                let (s, tokens) =
                    if i == 0 { (&mut **lead, &**lead_tokens) } else { (&mut *rest[i - 1].0, rest[i - 1].1) };
                s.logits.copy_from_slice(row);
                s.tokens.extend_from_slice(&tokens[fed[i]..fed[i] + n]);
                s.suspended = None;
                fed[i] += n;
            }
        }
    }

    /// One batch of tokens at positions `self.tokens.len()..`; `all_logits` receives every
    /// token's logits, otherwise only the last token's go to `self.logits`.
    fn forward(&mut self, batch: &[u32], mut all_logits: Option<&mut [f32]>) -> Result<()> {
        let on_gpu = self.on_gpu();
        let (model, pos0, all) = (&*self.model, self.tokens.len(), all_logits.is_some());
        let (stats, logits) = (&mut self.stats, &mut self.logits);
        let segs = [Seg { pos0, n: batch.len(), cache: 0 }];
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.cuda.as_deref_mut() {
            gpu.begin_pass(batch.len(), stats.is_some());
            gpu.run(&mut |b| {
                let out = all_logits.as_deref_mut().unwrap_or(logits);
                forward(model, b, batch, &segs, stats.as_deref_mut(), all, out)
            })?;
        }
        if !on_gpu {
            self.backend.run(&mut |b| {
                let out = all_logits.as_deref_mut().unwrap_or(logits);
                forward(model, b, batch, &segs, stats.as_deref_mut(), all, out)
            })?;
        }
        if let Some(out) = all_logits {
            let vocab = self.logits.len();
            self.logits.copy_from_slice(&out[out.len() - vocab..]);
        }
        self.tokens.extend_from_slice(batch);
        self.suspended = None;
        self.logits_stale = false;
        Ok(())
    }

    /// Whether the forward pass runs on a GPU (`Device::Cuda`).
    pub fn on_gpu(&self) -> bool {
        #[cfg(feature = "cuda")]
        return self.cuda.is_some();
        #[cfg(not(feature = "cuda"))]
        false
    }

    /// The device this session computes on, in one line (`cpu`, or the GPU and its kernels).
    pub fn device(&self) -> String {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.cuda {
            return g.device();
        }
        "cpu".into()
    }

    /// Refuses `what` (a CPU-only feature) on a GPU session.
    pub(crate) fn require_cpu(&self, what: &str) -> Result<()> {
        if self.on_gpu() {
            return Err(RuntimeError::Device(format!(
                "{what} is not supported on the CUDA backend yet (docs/CUDA.md)"
            )));
        }
        Ok(())
    }

    pub(crate) fn backend_mut(&mut self) -> &mut Cpu {
        &mut self.backend
    }

    pub(crate) fn backend(&self) -> &Cpu {
        &self.backend
    }

    /// Replaces the last token's logits (speculative decoding, after dropping rejected drafts).
    pub(crate) fn set_logits(&mut self, logits: &[f32]) {
        self.logits.copy_from_slice(logits);
        self.logits_stale = false;
    }

    /// Replaces the context with `tokens` and `logits` (a loaded state; the cache is filled by
    /// the caller).
    pub(crate) fn restore(&mut self, tokens: &[u32], logits: &[f32]) {
        self.tokens.clear();
        self.tokens.extend_from_slice(tokens);
        self.logits.copy_from_slice(logits);
        self.logits_stale = false;
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
