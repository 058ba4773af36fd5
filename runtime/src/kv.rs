//! The KV cache: keys and values of every position a session holds, per layer, in rows of
//! `n_kv_heads × head_dim` values stored as f32, f16 or q8_0 (`CacheType`, chosen for keys and
//! values separately). A layer that attends through a sliding window shorter than the context
//! keeps a ring instead: position `p` lives in slot `p mod slots`.

use std::ops::Range;

use autark_format::pages::Zeroed;
use autark_format::ModelConfig;
use autark_kernels::blocks::{block_bytes, cast_blocks};
use autark_kernels::ops::{store_f16, store_q8_0};
use autark_kernels::types::f16_to_f32;
use autark_kernels::{kernels, BlockQ8_0, QK};

use crate::error::{Result, RuntimeError};

/// How a KV cache stores its keys or its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheType {
    /// 4 bytes a value, exact.
    F32,
    /// IEEE half: 2 bytes a value.
    F16,
    /// ggml's q8_0 blocks (32 values in 34 bytes); each head's values start a block, so the
    /// model's head_dim must be a multiple of 32.
    Q8_0,
}

impl CacheType {
    pub const ALL: [CacheType; 3] = [CacheType::F32, CacheType::F16, CacheType::Q8_0];

    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
        }
    }

    pub fn parse(name: &str) -> Option<CacheType> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// "f32, f16, q8_0", for messages.
    pub fn names() -> String {
        Self::ALL.map(CacheType::name).join(", ")
    }

    /// The stable code of the type in C (`AUTARK_CACHE_*`) and in state files.
    pub fn code(self) -> u32 {
        match self {
            CacheType::F32 => 0,
            CacheType::F16 => 1,
            CacheType::Q8_0 => 2,
        }
    }

    pub fn from_code(code: u32) -> Option<CacheType> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Bytes of `n` values.
    pub fn bytes(self, n: usize) -> Option<usize> {
        match self {
            CacheType::F32 => n.checked_mul(4),
            CacheType::F16 => n.checked_mul(2),
            CacheType::Q8_0 => (n / QK).checked_mul(std::mem::size_of::<BlockQ8_0>()),
        }
    }

    /// Checks that a model's heads fit this type.
    pub fn check(self, c: &ModelConfig, name: &'static str) -> Result<()> {
        if self == CacheType::Q8_0 && !c.head_dim.is_multiple_of(QK) {
            return Err(RuntimeError::InvalidArgument {
                name,
                what: format!("q8_0 needs a head size that is a multiple of {QK}; this model's is {}", c.head_dim),
            });
        }
        Ok(())
    }
}

fn cache_memory(t: CacheType, values: usize, source: std::io::Error) -> RuntimeError {
    RuntimeError::CacheMemory { bytes: t.bytes(values).unwrap_or(usize::MAX), source }
}

/// One side (keys or values) of the whole cache, in its type.
enum Rows {
    F32(Zeroed<f32>),
    F16(Zeroed<u16>),
    Q8_0(Zeroed<BlockQ8_0>),
}

/// A borrowed run of rows.
#[derive(Clone, Copy)]
pub(crate) enum RowsRef<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    Q8_0(&'a [BlockQ8_0]),
}

impl Rows {
    /// Zero rows in an anonymous mapping of their own, committed page by page as positions are
    /// written (`autark_format::pages`).
    fn new(t: CacheType, values: usize) -> std::io::Result<Rows> {
        Ok(match t {
            CacheType::F32 => Rows::F32(Zeroed::new(values)?),
            CacheType::F16 => Rows::F16(Zeroed::new(values)?),
            CacheType::Q8_0 => Rows::Q8_0(Zeroed::new(values / QK)?),
        })
    }

    /// Values held.
    fn len(&self) -> usize {
        match self {
            Rows::F32(r) => r.len(),
            Rows::F16(r) => r.len(),
            Rows::Q8_0(r) => r.len() * QK,
        }
    }

    fn kind(&self) -> CacheType {
        match self {
            Rows::F32(_) => CacheType::F32,
            Rows::F16(_) => CacheType::F16,
            Rows::Q8_0(_) => CacheType::Q8_0,
        }
    }

    /// Stores `src` at value `at` (a multiple of 32 for q8_0).
    fn store(&mut self, at: usize, src: &[f32]) {
        match self {
            Rows::F32(r) => r[at..at + src.len()].copy_from_slice(src),
            Rows::F16(r) => store_f16(src, &mut r[at..at + src.len()]),
            Rows::Q8_0(r) => store_q8_0(src, &mut r[at / QK..(at + src.len()) / QK]),
        }
    }

    /// Values `at..at + out.len()` as f32.
    fn load(&self, at: usize, out: &mut [f32]) {
        let n = out.len();
        match self {
            Rows::F32(r) => out.copy_from_slice(&r[at..at + n]),
            Rows::F16(r) => out.iter_mut().zip(&r[at..at + n]).for_each(|(o, &h)| *o = f16_to_f32(h)),
            Rows::Q8_0(r) => {
                for (o, b) in out.chunks_exact_mut(QK).zip(&r[at / QK..(at + n) / QK]) {
                    let d = f16_to_f32(b.d);
                    o.iter_mut().zip(b.qs).for_each(|(o, q)| *o = d * q as f32);
                }
            }
        }
    }

    /// Moves values `src` to start at `dst` (multiples of 32 for q8_0).
    fn copy_within(&mut self, src: Range<usize>, dst: usize) {
        match self {
            Rows::F32(r) => r.copy_within(src, dst),
            Rows::F16(r) => r.copy_within(src, dst),
            Rows::Q8_0(r) => r.copy_within(src.start / QK..src.end / QK, dst / QK),
        }
    }

    /// The values `span` (multiples of 32 for q8_0).
    fn slice(&self, span: Range<usize>) -> RowsRef<'_> {
        match self {
            Rows::F32(r) => RowsRef::F32(&r[span]),
            Rows::F16(r) => RowsRef::F16(&r[span]),
            Rows::Q8_0(r) => RowsRef::Q8_0(&r[span.start / QK..span.end / QK]),
        }
    }

    /// Appends the little-endian bytes of values `span` to `out`.
    fn write_bytes(&self, span: Range<usize>, out: &mut Vec<u8>) {
        match self {
            Rows::F32(r) => r[span].iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Rows::F16(r) => r[span].iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Rows::Q8_0(r) => out.extend_from_slice(block_bytes(&r[span.start / QK..span.end / QK])),
        }
    }

    /// Reads values `span` back from `bytes` (exactly their length).
    fn read_bytes(&mut self, span: Range<usize>, bytes: &[u8]) -> Result<()> {
        let check = span.clone();
        match self {
            Rows::F32(r) => r[span].iter_mut().zip(bytes.chunks_exact(4)).for_each(|(v, b)| {
                *v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }),
            Rows::F16(r) => r[span].iter_mut().zip(bytes.chunks_exact(2)).for_each(|(v, b)| {
                *v = u16::from_le_bytes(b.try_into().expect("2 bytes"));
            }),
            Rows::Q8_0(r) => r[span.start / QK..span.end / QK].copy_from_slice(cast_blocks::<BlockQ8_0>(bytes)?),
        }
        // A cache the forward pass computed is finite: Inf or NaN can only come from a damaged
        // or forged file, and would turn every later activation non-finite.
        let half_finite = |h: &u16| h & 0x7c00 != 0x7c00;
        let finite = match self {
            Rows::F32(r) => r[check].iter().all(|v| v.is_finite()),
            Rows::F16(r) => r[check].iter().all(half_finite),
            Rows::Q8_0(r) => r[check.start / QK..check.end / QK].iter().all(|b| half_finite(&b.d)),
        };
        if !finite {
            return Err(RuntimeError::CorruptState("a value of the KV cache is not finite".into()));
        }
        Ok(())
    }
}

impl RowsRef<'_> {
    /// `out[j] = q · row j` for rows `stride` values apart, starting at value `at`.
    fn dots(self, q: &[f32], at: usize, stride: usize, out: &mut [f32]) {
        let (k, n, hd) = (kernels(), out.len(), q.len());
        if n == 0 {
            return;
        }
        let span = at..at + (n - 1) * stride + hd;
        match self {
            RowsRef::F32(r) => (k.dots_f32)(q, &r[span], stride, out),
            RowsRef::F16(r) => (k.dots_f16)(q, &r[span], stride, out),
            RowsRef::Q8_0(r) => (k.dots_q8_0)(q, &r[span.start / QK..span.end / QK], stride / QK, out),
        }
    }

    /// `out += Σ_j w[j] · row j` for rows `stride` values apart, starting at value `at`.
    fn wsum(self, out: &mut [f32], w: &[f32], at: usize, stride: usize) {
        let (k, n, hd) = (kernels(), w.len(), out.len());
        if n == 0 {
            return;
        }
        let span = at..at + (n - 1) * stride + hd;
        match self {
            RowsRef::F32(r) => (k.wsum_f32)(out, w, &r[span], stride),
            RowsRef::F16(r) => (k.wsum_f16)(out, w, &r[span], stride),
            RowsRef::Q8_0(r) => (k.wsum_q8_0)(out, w, &r[span.start / QK..span.end / QK], stride / QK),
        }
    }
}

pub(crate) struct KvCache {
    keys: Rows,
    values: Rows,
    /// Positions each layer holds (`slots_of`).
    slots: Vec<usize>,
    /// Offset of each layer in `keys` / `values`, in values.
    offset: Vec<usize>,
    kv_dim: usize,
    head_dim: usize,
    n_ctx: usize,
    window: Option<usize>,
}

/// One layer's cache, read by attention.
pub(crate) struct LayerCache<'a> {
    keys: RowsRef<'a>,
    values: RowsRef<'a>,
    slots: usize,
    kv_dim: usize,
}

impl LayerCache<'_> {
    /// The slots of positions `first..first + len`, in order, as (first slot, indices into the
    /// run): one run, or two where the ring wraps (it wraps once at most).
    pub fn runs(&self, first: usize, len: usize) -> [(usize, Range<usize>); 2] {
        let start = first % self.slots;
        let run = len.min(self.slots - start);
        [(start, 0..run), (0, run..len)]
    }

    /// `out[j] = q · key of KV head `kvh` in slots `slot..slot + out.len()`.
    pub fn scores(&self, q: &[f32], kvh: usize, slot: usize, out: &mut [f32]) {
        self.keys.dots(q, slot * self.kv_dim + kvh * q.len(), self.kv_dim, out);
    }

    /// `out += Σ_j w[j] · value of KV head `kvh` in slot `slot + j`.
    pub fn weighted_sum(&self, out: &mut [f32], w: &[f32], kvh: usize, slot: usize) {
        self.values.wsum(out, w, slot * self.kv_dim + kvh * out.len(), self.kv_dim);
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

    /// Bytes the cache holds (keys and values), or `None` if that overflows.
    pub fn bytes(c: &ModelConfig, n_ctx: usize, n_batch: usize, types: [CacheType; 2]) -> Option<usize> {
        let slots = (0..c.n_layers).try_fold(0usize, |acc, l| acc.checked_add(Self::slots_of(c, l, n_ctx, n_batch)))?;
        let values = slots.checked_mul(c.n_kv_heads.checked_mul(c.head_dim)?)?;
        types[0].bytes(values)?.checked_add(types[1].bytes(values)?)
    }

    /// A cache of no positions: the placeholder of a session whose cache is lent for a
    /// multi-sequence pass.
    pub fn empty() -> KvCache {
        KvCache {
            keys: Rows::F32(Zeroed::empty()),
            values: Rows::F32(Zeroed::empty()),
            slots: Vec::new(),
            offset: Vec::new(),
            kv_dim: 0,
            head_dim: 0,
            n_ctx: 0,
            window: None,
        }
    }

    /// Sizes must have passed `bytes` (no overflow) and the types `CacheType::check`. Fails only
    /// when the system refuses the mappings.
    pub fn new(c: &ModelConfig, n_ctx: usize, n_batch: usize, types: [CacheType; 2]) -> Result<KvCache> {
        let kv_dim = c.n_kv_heads * c.head_dim;
        let slots: Vec<usize> = (0..c.n_layers).map(|l| Self::slots_of(c, l, n_ctx, n_batch)).collect();
        let offset: Vec<usize> = slots.iter().scan(0, |o, s| Some(std::mem::replace(o, *o + s * kv_dim))).collect();
        let len = slots.iter().sum::<usize>() * kv_dim;
        Ok(KvCache {
            keys: Rows::new(types[0], len).map_err(|e| cache_memory(types[0], len, e))?,
            values: Rows::new(types[1], len).map_err(|e| cache_memory(types[1], len, e))?,
            slots,
            offset,
            kv_dim,
            head_dim: c.head_dim,
            n_ctx,
            window: c.sliding_window,
        })
    }

    /// Gives the cache's pages back to the system: keys and values are mapped anew (the new
    /// mappings commit nothing until written, so holding them beside the old ones for a moment
    /// costs no memory) and the old mappings are dropped. The positions' contents are forgotten.
    /// On an error the cache is unchanged.
    pub fn release(&mut self) -> Result<()> {
        let [k, v] = self.types();
        let n = self.keys.len();
        let keys = Rows::new(k, n).map_err(|e| cache_memory(k, n, e))?;
        let values = Rows::new(v, n).map_err(|e| cache_memory(v, n, e))?;
        (self.keys, self.values) = (keys, values);
        Ok(())
    }

    /// The types of keys and values.
    pub fn types(&self) -> [CacheType; 2] {
        [self.keys.kind(), self.values.kind()]
    }

    /// Stores the keys and values of positions `pos0..` (rows of `k` and `v`) in layer `l`.
    pub fn store(&mut self, l: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let (off, slots, d) = (self.offset[l], self.slots[l], self.kv_dim);
        for (t, (k, v)) in k.chunks_exact(d).zip(v.chunks_exact(d)).enumerate() {
            let at = off + (pos0 + t) % slots * d;
            self.keys.store(at, k);
            self.values.store(at, v);
        }
    }

    pub fn layer(&self, l: usize) -> LayerCache<'_> {
        let (off, slots) = (self.offset[l], self.slots[l]);
        let span = off..off + slots * self.kv_dim;
        LayerCache { keys: self.keys.slice(span.clone()), values: self.values.slice(span), slots, kv_dim: self.kv_dim }
    }

    /// Whether layer `l` still holds position `pos` of a context of `n_tokens`.
    pub fn holds(&self, l: usize, pos: usize, n_tokens: usize) -> bool {
        l < self.slots.len() && pos < n_tokens && n_tokens - pos <= self.slots[l]
    }

    /// The key and value of position `pos` in layer `l`, as f32 (whatever position last used its
    /// slot on a ring layer).
    pub fn row(&self, l: usize, pos: usize) -> (Vec<f32>, Vec<f32>) {
        let at = self.offset[l] + pos % self.slots[l] * self.kv_dim;
        let (mut k, mut v) = (vec![0.0; self.kv_dim], vec![0.0; self.kv_dim]);
        self.keys.load(at, &mut k);
        self.values.load(at, &mut v);
        (k, v)
    }

    /// Whether any layer keeps a ring (a sliding window shorter than the context).
    pub fn has_rings(&self) -> bool {
        self.slots.iter().any(|&s| s < self.n_ctx)
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

    /// Slots of layer `l` that hold some of the first `n_tokens` positions: `0..min(n, slots)`.
    fn used(&self, l: usize, n_tokens: usize) -> Range<usize> {
        let (off, d) = (self.offset[l], self.kv_dim);
        off..off + n_tokens.min(self.slots[l]) * d
    }

    /// Bytes `write` produces for `n_tokens` positions.
    pub fn state_bytes(&self, n_tokens: usize) -> usize {
        let values: usize = (0..self.slots.len()).map(|l| self.used(l, n_tokens).len()).sum();
        let [k, v] = self.types();
        k.bytes(values).unwrap_or(0) + v.bytes(values).unwrap_or(0)
    }

    /// Writes the cache of the first `n_tokens` positions to `sink`, layer by layer (keys, then
    /// values), in the cache's own types: docs/FORMAT.md, "Session state".
    pub fn write(&self, n_tokens: usize, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for l in 0..self.slots.len() {
            for rows in [&self.keys, &self.values] {
                buf.clear();
                rows.write_bytes(self.used(l, n_tokens), &mut buf);
                sink(&buf)?;
            }
        }
        Ok(())
    }

    /// Reads back what `write` wrote for `n_tokens` positions: `fill(buf, n)` puts the next `n`
    /// bytes in `buf`.
    pub fn read(&mut self, n_tokens: usize, fill: &mut dyn FnMut(&mut Vec<u8>, usize) -> Result<()>) -> Result<()> {
        let mut buf = Vec::new();
        for l in 0..self.slots.len() {
            let span = self.used(l, n_tokens);
            for rows in [&mut self.keys, &mut self.values] {
                let len = rows.kind().bytes(span.len()).unwrap_or(0);
                fill(&mut buf, len)?;
                rows.read_bytes(span.clone(), &buf)?;
            }
        }
        Ok(())
    }

    /// Context shift: position `p ≥ keep + drop` moves to `p − drop` (for the first `n_tokens`
    /// positions), its key rotated back by `drop` positions (`rotate(layer, head)` applies
    /// that layer's RoPE by −drop). Only caches without rings shift (`has_rings`).
    pub fn shift(&mut self, n_tokens: usize, keep: usize, drop: usize, rotate: &dyn Fn(usize, &mut [f32])) {
        let (d, hd) = (self.kv_dim, self.head_dim);
        let mut row = vec![0.0f32; d];
        for l in 0..self.slots.len() {
            let off = self.offset[l];
            for p in keep + drop..n_tokens {
                let (from, to) = (off + p * d, off + (p - drop) * d);
                self.keys.load(from, &mut row);
                row.chunks_exact_mut(hd).for_each(|h| rotate(l, h));
                self.keys.store(to, &row);
            }
            // Values move as they are (no rotation: their bytes are kept).
            let (from, to) = (off + (keep + drop) * d, off + keep * d);
            self.values.copy_within(from..off + n_tokens.max(keep + drop) * d, to);
        }
    }
}
