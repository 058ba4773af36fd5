//! The KV cache: keys and values of every position a session holds, per layer, in f32 rows of
//! `n_kv_heads × head_dim`. A layer that attends through a sliding window shorter than the
//! context keeps a ring instead: position `p` lives in slot `p mod slots`.

use std::ops::Range;

use autark_format::ModelConfig;

pub(crate) struct KvCache {
    keys: Vec<f32>,
    values: Vec<f32>,
    /// Positions each layer holds (`slots_of`).
    slots: Vec<usize>,
    /// Offset of each layer in `keys` / `values`, in floats.
    offset: Vec<usize>,
    kv_dim: usize,
    n_ctx: usize,
    window: Option<usize>,
}

/// One layer's cache, read by attention.
pub(crate) struct LayerCache<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    slots: usize,
}

impl LayerCache<'_> {
    /// The slots of positions `first..first + len`, in order, as (first slot, indices into the
    /// run): one run, or two where the ring wraps (it wraps once at most).
    pub fn runs(&self, first: usize, len: usize) -> [(usize, Range<usize>); 2] {
        let start = first % self.slots;
        let run = len.min(self.slots - start);
        [(start, 0..run), (0, run..len)]
    }
}

impl KvCache {
    /// Cache positions of layer `l`: the context, or on a sliding-window layer whose window is
    /// shorter than it, a ring of `window + n_batch − 1` (the oldest position a batch's first
    /// query still sees, up to its last token).
    pub fn slots_of(c: &ModelConfig, l: usize, n_ctx: usize, n_batch: usize) -> usize {
        match c.sliding_window {
            Some(w) if c.is_sliding(l) => w.saturating_add(n_batch.max(1) - 1).min(n_ctx),
            _ => n_ctx,
        }
    }

    /// Floats the cache holds (keys and values), or `None` if that overflows.
    pub fn floats(c: &ModelConfig, n_ctx: usize, n_batch: usize) -> Option<usize> {
        let slots = (0..c.n_layers).try_fold(0usize, |acc, l| acc.checked_add(Self::slots_of(c, l, n_ctx, n_batch)))?;
        slots.checked_mul(c.n_kv_heads.checked_mul(c.head_dim)?)?.checked_mul(2)
    }

    /// Sizes must have passed `floats` (no overflow).
    pub fn new(c: &ModelConfig, n_ctx: usize, n_batch: usize) -> KvCache {
        let kv_dim = c.n_kv_heads * c.head_dim;
        let slots: Vec<usize> = (0..c.n_layers).map(|l| Self::slots_of(c, l, n_ctx, n_batch)).collect();
        let offset: Vec<usize> = slots.iter().scan(0, |o, s| Some(std::mem::replace(o, *o + s * kv_dim))).collect();
        let len = slots.iter().sum::<usize>() * kv_dim;
        KvCache { keys: vec![0.0; len], values: vec![0.0; len], slots, offset, kv_dim, n_ctx, window: c.sliding_window }
    }

    /// Stores the keys and values of positions `pos0..` (rows of `k` and `v`) in layer `l`.
    pub fn store(&mut self, l: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let (off, slots, d) = (self.offset[l], self.slots[l], self.kv_dim);
        for (t, (k, v)) in k.chunks_exact(d).zip(v.chunks_exact(d)).enumerate() {
            let at = off + (pos0 + t) % slots * d;
            self.keys[at..at + d].copy_from_slice(k);
            self.values[at..at + d].copy_from_slice(v);
        }
    }

    pub fn layer(&self, l: usize) -> LayerCache<'_> {
        let (off, slots) = (self.offset[l], self.slots[l]);
        let span = off..off + slots * self.kv_dim;
        LayerCache { keys: &self.keys[span.clone()], values: &self.values[span], slots }
    }

    /// How far back the context can be cut and continued: unlimited with full caches; with ring
    /// caches, as long as every position a new token sees is still in its ring.
    pub fn max_rewind(&self) -> usize {
        let window = self.window.unwrap_or(usize::MAX);
        self.slots
            .iter()
            .filter(|&&s| s < self.n_ctx)
            .map(|&s| (s + 1).saturating_sub(window))
            .min()
            .unwrap_or(usize::MAX)
    }
}
