//! The CUDA backend (docs/CUDA.md): the `Backend` operations as the kernels of `autark-cuda`,
//! with the activation buffers, the RoPE tables, the KV cache (f32 or f16, one sequence) and the
//! weights in device memory. Weights are uploaded once when the session is made, straight from
//! the file mapping (no host copy of the weights); matrices keep the file's bytes and layout.
//! On an integrated GPU the matrices are instead read in place from the mapping (`map_weights`).
//! The embedding rows of a batch are dequantized on the host (a few rows) into page-locked
//! staging and copied up; the output head runs on the device and only the logits come back —
//! or, when decoding greedily (`set_argmax`), only the index of their maximum.
//! One-token passes are captured into a CUDA graph once and replayed (`Mode`).
//!
//! What it runs: matrices of every stored type (q4_0, q4_1 and q8_0 row-major or `rows16`;
//! q5_0, q5_1, q4_k, q5_k, q6_k, f16 and f32 row-major; `rows16` q5 and K-quant matrices are
//! rebuilt row-major on upload), f32 norms and biases, SiLU or GELU
//! FFNs, both RoPE layouts, sliding windows as a mask. A matrix without a kernel is refused
//! when the session is made, with the tensor named.

use std::sync::Arc;

use autark_cuda::gpu::Gpu;
use autark_cuda::kernels::{attention_scratch, Gemv, KvType};
use autark_cuda::ops::{AttentionShape, Graph, HostMap, Mem, Pinned};
use autark_cuda::CudaError;
use autark_format::{FfnActivation, ModelConfig, RopeLayout};
use autark_kernels::TensorLayout;

use crate::backend::{Backend, Buf, Seg};
use crate::error::{Result, RuntimeError};
use crate::forward::rope_tables;
use crate::kv::KvCache;
use crate::model::{Model, T};

/// The weights' staging buffer for copies to the device: `AUTARK_CUDA_STAGING` bytes (at least
/// 64), else 16 MiB — two halves, one filled while the other's copy runs.
fn staging_bytes() -> Result<usize> {
    match std::env::var("AUTARK_CUDA_STAGING") {
        Err(_) => Ok(16 << 20),
        Ok(v) => v.parse::<usize>().ok().filter(|&b| b >= 64).ok_or_else(|| RuntimeError::InvalidArgument {
            name: "AUTARK_CUDA_STAGING",
            what: format!("{v:?}: expected a number of bytes, at least 64"),
        }),
    }
}

impl From<CudaError> for RuntimeError {
    fn from(e: CudaError) -> Self {
        RuntimeError::Device(e.to_string())
    }
}

/// A tensor in device memory: a matrix with the GEMV kernel for its type and layout, or a vector.
struct DevTensor {
    mem: Mem,
    gemv: Option<Gemv>,
    rows: usize,
    cols: usize,
}

/// How a pass runs. A one-token pass launches the same kernels with the same arguments every
/// time (positions and the embedding row are read from device memory, uploaded from the pinned
/// staging), so the first is captured into a graph and later ones replay it: one launch instead
/// of ~20 per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every operation launches its kernels.
    Direct,
    /// Launches are recorded into a graph (run when `output` ends the capture).
    Capture,
    /// The graph is replayed by `output`: operations only write the staging on the host.
    Replay,
}

/// The model file's bytes, owned through the model (what `Gpu::map_host` registers).
struct FileBytes(Arc<Model>);

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.file().bytes()
    }
}

pub(crate) struct Cuda {
    model: Arc<Model>,
    /// The matrices are read from the file mapping in place (`map_weights`).
    weights_mapped: bool,
    gpu: Gpu,
    /// By tensor index: the tensors the device reads (matrices, norms, biases; not the
    /// embedding unless it is also the output head).
    weights: Vec<Option<DevTensor>>,
    bufs: Vec<Mem>,
    width: [usize; 9],
    /// 8-bit activation blocks of the widest input (n_batch rows).
    act: Mem,
    scores: Mem,
    rope: [(Mem, Mem); 2],
    has_local_rope: bool,
    kcache: Mem,
    vcache: Mem,
    /// The KV cache's element type (f32, or f16 as the CPU's f16 cache).
    kv: KvType,
    /// Positions of a batch's rows (uploaded by the pass's first `rope`); row indices for
    /// `select_rows`.
    pos: Mem,
    pos_set: bool,
    /// Page-locked staging of a pass's uploads: the embedding rows (n_batch × d_model floats),
    /// then the positions (n_batch i32).
    staging: Pinned,
    /// How this pass runs (`begin_pass`), and the graph of a one-token pass once captured.
    mode: Mode,
    graph: Option<Graph>,
    /// Whether one-token passes are captured and replayed (`AUTARK_CUDA_GRAPHS=0` turns it off;
    /// a failed capture too).
    graphs: bool,
    rows: Mem,
    /// The output head's rows for a batch (n_batch × vocab).
    logits: Mem,
    /// Rows of `logits` the last pass wrote (its last row is the last token's).
    logits_rows: usize,
    /// Greedy decoding on the device (`set_argmax`): a pass ends with `argmax_f32` over its last
    /// row into `argmax` (one i32), and only that index comes back (`take_argmax`); the logits
    /// stay in device memory until `read_logits`.
    want_argmax: bool,
    argmax: Mem,
    picked: Option<u32>,
    host: Vec<f32>,
    embd_row: Vec<f32>,
    n_ctx: usize,
    n_batch: usize,
    /// The first failure of an operation that returns nothing, reported by the next one that
    /// returns a result (`matmul`, `output`, `run`).
    err: Option<RuntimeError>,
}

impl Cuda {
    /// Device memory a session of `n_ctx` positions and `n_batch`-token batches takes besides
    /// the weights.
    pub fn required_bytes(c: &ModelConfig, n_ctx: usize, n_batch: usize, kv: KvType) -> Option<usize> {
        let per_token: usize = Buf::widths(c).iter().sum();
        let widest = Buf::widths(c).into_iter().max()?;
        let floats = n_batch
            .checked_mul(per_token)?
            .checked_add(n_batch.checked_mul(c.n_heads)?.checked_mul(attention_scratch(n_ctx, c.head_dim))?)?
            .checked_add(n_ctx.checked_mul(c.head_dim)?.checked_mul(2)?)?
            .checked_add(n_batch.checked_mul(c.vocab_size)?)?;
        let kv_bytes = 2usize
            .checked_mul(c.n_layers)?
            .checked_mul(n_ctx)?
            .checked_mul(c.n_kv_heads * c.head_dim)?
            .checked_mul(kv.bytes())?;
        floats
            .checked_mul(4)?
            .checked_add(kv_bytes)?
            .checked_add(n_batch.checked_mul(widest / 32 + 1)?.checked_mul(40)?)
    }

    /// Uploads the model and allocates the buffers on the first GPU. `budget` (the session's
    /// `max_memory_bytes`, if set) and the device's memory bound what may be allocated there.
    pub fn new(model: Arc<Model>, n_ctx: usize, n_batch: usize, budget: Option<usize>, kv: KvType) -> Result<Cuda> {
        let gpu = Gpu::new()?;
        let c = model.config().clone();
        let weight_bytes: usize = model
            .layers
            .iter()
            .flat_map(|l| autark_format::Role::LAYER.into_iter().filter_map(|r| l.get(r)))
            .chain([model.output, model.output_norm])
            .map(|i| model.file().tensors()[i].nbytes as usize)
            .sum();
        let needed = Self::required_bytes(&c, n_ctx, n_batch, kv)
            .and_then(|b| b.checked_add(weight_bytes))
            .ok_or(RuntimeError::InvalidArgument { name: "n_ctx", what: "the session's size overflows".into() })?;
        let budget = budget.map_or(gpu.info.total_memory, |b| b.min(gpu.info.total_memory));
        if needed > budget {
            return Err(RuntimeError::MemoryBudget { needed, budget });
        }
        let width = Buf::widths(&c);
        let map = Self::map_weights(&gpu, &model)?;
        let file_start = model.file().bytes().as_ptr() as usize;
        // Copies go through one bounded page-locked staging buffer (allocated at the first
        // copy, freed when the weights are up): host memory does not double, whatever the model.
        let staging_bytes = staging_bytes()?;
        let mut staging: Option<Pinned> = None;
        let mut copy = |bytes: &[u8]| -> Result<Mem> {
            let st = match &mut staging {
                Some(st) => st,
                None => staging.insert(gpu.alloc_pinned(staging_bytes)?),
            };
            Ok(gpu.upload_staged(bytes, st)?)
        };
        // A matrix keeps its bytes and layout, with the GEMV kernel that reads them (copied to
        // the device, or read in place from the mapping); a vector (norm, bias) is f32.
        let mut upload = |i: T, matrix: bool| -> Result<DevTensor> {
            if !matrix {
                let v = model.vector(i);
                return Ok(DevTensor { mem: gpu.upload_f32(v)?, gemv: None, rows: 1, cols: v.len() });
            }
            let w = model.weight(i);
            let no_kernel = || {
                RuntimeError::Device(format!(
                    "the CUDA backend has no kernel for {} ({}, {})",
                    model.file().tensors()[i].name,
                    w.dtype.name(),
                    w.layout.name()
                ))
            };
            let (gemv, mem) = match Gemv::of(w.dtype, w.layout) {
                Some(gemv) => match &map {
                    Some(map) => (gemv, map.mem(w.data.as_ptr() as usize - file_start, w.data.len())),
                    None => (gemv, copy(w.data)?),
                },
                // `rows16` of a type whose GEMV reads rows only (q5_*, the K-quants): the row-major
                // bytes, rebuilt one tensor at a time and copied to the device.
                None if w.layout == TensorLayout::Rows16 => {
                    let gemv = Gemv::of(w.dtype, TensorLayout::RowMajor).ok_or_else(no_kernel)?;
                    let mut rows = Vec::new();
                    autark_kernels::interleave::deinterleave(w.dtype, w.rows, w.cols, w.data, &mut rows)?;
                    (gemv, copy(&rows)?)
                }
                None => return Err(no_kernel()),
            };
            Ok(DevTensor { mem, gemv: Some(gemv), rows: w.rows, cols: w.cols })
        };
        let mut weights: Vec<Option<DevTensor>> = (0..model.file().tensors().len()).map(|_| None).collect();
        for layer in &model.layers {
            for (role, i) in autark_format::Role::LAYER.into_iter().filter_map(|r| Some((r, layer.get(r)?))) {
                weights[i] = Some(upload(i, role.is_matrix())?);
            }
        }
        weights[model.output] = Some(upload(model.output, true)?);
        weights[model.output_norm] = Some(upload(model.output_norm, false)?);
        drop(staging);

        let table = |theta: f32, scaled: bool| -> Result<(Mem, Mem)> {
            let (cos, sin) = rope_tables(&c, theta, scaled, n_ctx);
            Ok((gpu.upload_f32(&cos)?, gpu.upload_f32(&sin)?))
        };
        let global = table(c.rope_theta, true)?;
        let local = match c.rope_theta_local {
            Some(theta) => table(theta, false)?,
            None => (gpu.alloc(4)?, gpu.alloc(4)?),
        };
        let widest = width.into_iter().max().unwrap_or(0);
        let kv_values = c.n_layers * n_ctx * c.n_kv_heads * c.head_dim;
        let bufs = width.iter().map(|w| gpu.alloc(n_batch * w * 4)).collect::<Result<Vec<_>, _>>()?;
        Ok(Cuda {
            weights_mapped: map.is_some(),
            act: gpu.alloc(n_batch * widest.div_ceil(32) * autark_cuda::check::ACT_BLOCK_BYTES)?,
            scores: gpu.alloc(n_batch * c.n_heads * attention_scratch(n_ctx, c.head_dim) * 4)?,
            rope: [global, local],
            has_local_rope: c.rope_theta_local.is_some(),
            kcache: gpu.alloc(kv_values * kv.bytes())?,
            vcache: gpu.alloc(kv_values * kv.bytes())?,
            kv,
            pos: gpu.alloc(n_batch * 4)?,
            pos_set: false,
            staging: gpu.alloc_pinned(n_batch * (c.d_model + 1) * 4)?,
            mode: Mode::Direct,
            graph: None,
            graphs: std::env::var("AUTARK_CUDA_GRAPHS").map_or(true, |v| v != "0"),
            rows: gpu.alloc(n_batch * 4)?,
            logits: gpu.alloc(n_batch * c.vocab_size * 4)?,
            logits_rows: 0,
            want_argmax: false,
            argmax: gpu.alloc(4)?,
            picked: None,
            host: Vec::new(),
            embd_row: vec![0.0; c.d_model],
            bufs,
            width,
            weights,
            gpu,
            model,
            n_ctx,
            n_batch,
            err: None,
        })
    }

    /// The device this backend runs on, in one line.
    pub fn device(&self) -> String {
        let weights = if self.weights_mapped { "read in place from the file mapping" } else { "in device memory" };
        format!("{}, kernels {}, weights {weights}", self.gpu.info, self.gpu.kernels)
    }

    /// Bytes of one layer's keys (or values) for positions `0..n`, and where layer `l` starts.
    fn cache_span(&self, l: usize, n: usize) -> (usize, usize) {
        let c = self.model.config();
        let (kv_dim, es) = (c.n_kv_heads * c.head_dim, self.kv.bytes());
        (l * self.n_ctx * kv_dim * es, n * kv_dim * es)
    }

    /// The cache of positions `0..n` as a saved state holds it (`KvCache::write`'s bytes for a
    /// cache without rings and of the same type): layer by layer, keys then values.
    pub fn write_cache(&self, n: usize, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for l in 0..self.model.config().n_layers {
            let (at, len) = self.cache_span(l, n);
            for m in [&self.kcache, &self.vcache] {
                buf.resize(len, 0);
                self.gpu.read(m, at, &mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
                sink(&buf)?;
            }
        }
        Ok(())
    }

    /// Positions `0..n` of the device's cache into `kv` (the CPU backend's, without rings, of
    /// the same type).
    pub fn download_cache(&self, kv: &mut KvCache, n: usize) -> Result<()> {
        let mut parts = Vec::new();
        self.write_cache(n, &mut |b| {
            parts.push(b.to_vec());
            Ok(())
        })
        .map_err(|e| RuntimeError::Device(e.to_string()))?;
        let mut parts = parts.into_iter();
        kv.read(n, &mut |buf, len| {
            *buf = parts.next().filter(|p| p.len() == len).ok_or(RuntimeError::Device("cache sizes differ".into()))?;
            Ok(())
        })
    }

    /// Positions `0..n` of `kv` (the CPU backend's cache, without rings, of the same type) into
    /// the device's cache.
    pub fn upload_cache(&mut self, kv: &KvCache, n: usize) -> Result<()> {
        let mut parts = Vec::new();
        kv.write(n, &mut |b| {
            parts.push(b.to_vec());
            Ok(())
        })
        .map_err(|e| RuntimeError::Device(e.to_string()))?;
        for (i, part) in parts.iter().enumerate() {
            let (at, len) = self.cache_span(i / 2, n);
            if part.len() != len {
                return Err(RuntimeError::Device("cache sizes differ".into()));
            }
            let m = if i % 2 == 0 { &mut self.kcache } else { &mut self.vcache };
            self.gpu.write_at(m, at, part)?;
        }
        Ok(())
    }

    /// Where the matrices are read from: `AUTARK_CUDA_WEIGHTS=device` copies them into device
    /// memory, `mapped` has the device read the file mapping in place; by default an integrated
    /// GPU (Jetson), which shares the host's DRAM, reads the mapping — a copy would hold every
    /// weight twice there — and falls back to copies if the driver cannot register it; a
    /// discrete GPU copies.
    fn map_weights(gpu: &Gpu, model: &Arc<Model>) -> Result<Option<HostMap>> {
        let explicit = std::env::var("AUTARK_CUDA_WEIGHTS").ok();
        let mapped = match explicit.as_deref() {
            Some("mapped") => true,
            Some("device") => false,
            Some(other) => {
                return Err(RuntimeError::InvalidArgument {
                    name: "AUTARK_CUDA_WEIGHTS",
                    what: format!("{other:?}: expected \"device\" or \"mapped\""),
                })
            }
            None => gpu.info.integrated,
        };
        if !mapped {
            return Ok(None);
        }
        match gpu.map_host(Arc::new(FileBytes(Arc::clone(model)))) {
            Ok(map) => Ok(Some(map)),
            Err(e) if explicit.is_some() => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// Whether passes end with the argmax on the device instead of copying the logits back.
    pub fn set_argmax(&mut self, on: bool) {
        self.want_argmax = on;
        self.picked = None;
    }

    /// The last pass's argmax, when `set_argmax` asked for it.
    pub fn take_argmax(&mut self) -> Option<u32> {
        self.picked.take()
    }

    /// The last pass's last row of logits (left on the device by an argmax pass).
    pub fn read_logits(&self, out: &mut [f32]) -> Result<()> {
        let row = self.logits_rows.saturating_sub(1) * out.len();
        Ok(self.gpu.read_f32(&self.logits, row, out)?)
    }

    fn keep(&mut self, r: std::result::Result<(), CudaError>) {
        if let Err(e) = r {
            self.err.get_or_insert(e.into());
        }
    }

    fn take_err(&mut self) -> Result<()> {
        self.err.take().map_or(Ok(()), Err)
    }

    fn tensor(&self, i: T) -> &DevTensor {
        self.weights[i].as_ref().expect("uploaded at creation")
    }

    /// Starts a pass of `n` tokens: replays (or captures) the graph of one-token passes unless
    /// an observer reads buffers in the middle.
    pub fn begin_pass(&mut self, n: usize, observing: bool) {
        self.pos_set = false;
        self.mode = match (self.graphs && n == 1 && !observing, self.graph.is_some()) {
            (false, _) => Mode::Direct,
            (true, true) => Mode::Replay,
            (true, false) => Mode::Capture,
        };
        if self.mode == Mode::Capture && self.gpu.begin_capture().is_err() {
            // No graphs here (a driver without capture on this stream): launch directly.
            self.graphs = false;
            self.mode = Mode::Direct;
        }
    }

    /// Whether operations launch (or record) their kernels in this pass.
    fn launching(&self) -> bool {
        self.mode != Mode::Replay
    }

    fn set_positions(&mut self, segs: &[Seg]) -> std::result::Result<(), CudaError> {
        if self.pos_set {
            return Ok(());
        }
        assert!(segs.iter().all(|s| s.cache == 0), "the CUDA backend holds one sequence");
        let pos: Vec<i32> = segs.iter().flat_map(|s| s.pos0..s.pos0 + s.n).map(|p| p as i32).collect();
        assert!(pos.len() <= self.n_batch && pos.iter().all(|&p| (p as usize) < self.n_ctx));
        let at = self.n_batch * self.model.config().d_model * 4;
        self.staging.write_i32(at, &pos);
        self.pos_set = true;
        if self.launching() {
            self.gpu.copy_pinned(&self.staging, at, &self.pos, 0, pos.len() * 4)?;
        }
        Ok(())
    }

    /// `out = w · input` for rows `0..n`: quantized once (if a quantized matrix reads it), one
    /// GEMV per weight; f16 and f32 matrices read the f32 rows.
    fn gemvs(&self, input: Buf, n: usize, outs: &[(T, &Mem)]) -> std::result::Result<(), CudaError> {
        let cols = self.width[input as usize];
        let x = &self.bufs[input as usize];
        let gemv = |w: T| self.tensor(w).gemv.expect("a matrix");
        if outs.iter().any(|&(w, _)| !gemv(w).quant.is_float()) {
            self.gpu.quantize(x, &self.act, n * cols / 32)?;
        }
        for &(w, out) in outs {
            let t = self.tensor(w);
            debug_assert_eq!(t.cols, cols);
            let input = if gemv(w).quant.is_float() { x } else { &self.act };
            self.gpu.matvec(gemv(w), &t.mem, input, out, t.rows, n, cols)?;
        }
        Ok(())
    }
}

impl Backend for Cuda {
    fn run(&mut self, f: &mut dyn FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let r = f(self).and(self.take_err());
        if self.mode == Mode::Capture && self.graph.is_none() {
            // The capture failed before `output` ended it: end it (nothing of the pass ran), give
            // up graphs for this session and run the pass directly.
            let _ = self.gpu.end_capture();
            self.graphs = false;
            self.mode = Mode::Direct;
            self.pos_set = false;
            self.err = None;
            return f(self).and(self.take_err());
        }
        r
    }

    fn embed(&mut self, w: T, tokens: &[u32], scale: Option<f32>) -> Result<()> {
        let embd = self.model.weight(w);
        let mut row = std::mem::take(&mut self.embd_row);
        for (t, &tok) in tokens.iter().enumerate() {
            if let Err(e) = embd.row_f32(tok as usize, &mut row) {
                self.embd_row = row;
                return Err(e.into());
            }
            if let Some(s) = scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
            self.staging.write_f32(t * embd.cols * 4, &row);
        }
        self.embd_row = row;
        if self.launching() {
            let bytes = tokens.len() * embd.cols * 4;
            self.gpu.copy_pinned(&self.staging, 0, &self.bufs[Buf::X as usize], 0, bytes)?;
        }
        Ok(())
    }

    fn rmsnorm(&mut self, dst: Buf, src: Buf, w: T, first: usize, n: usize) {
        if !self.launching() {
            return;
        }
        let eps = self.model.config().norm_eps;
        let d = self.width[src as usize];
        let r =
            self.gpu.rmsnorm(&self.bufs[dst as usize], &self.bufs[src as usize], first, &self.tensor(w).mem, n, d, eps);
        self.keep(r);
    }

    fn head_norm(&mut self, buf: Buf, w: T, n: usize) {
        if !self.launching() {
            return;
        }
        let c = self.model.config();
        let (eps, hd) = (c.norm_eps, c.head_dim);
        let rows = n * self.width[buf as usize] / hd;
        let b = &self.bufs[buf as usize];
        let r = self.gpu.rmsnorm(b, b, 0, &self.tensor(w).mem, rows, hd, eps);
        self.keep(r);
    }

    fn matmul(&mut self, input: Buf, n: usize, outs: &[(T, Buf)]) -> Result<()> {
        if !self.launching() {
            return Ok(());
        }
        let outs: Vec<(T, &Mem)> = outs.iter().map(|&(w, b)| (w, &self.bufs[b as usize])).collect();
        self.gemvs(input, n, &outs)?;
        self.take_err()
    }

    fn add_bias(&mut self, buf: Buf, b: T, n: usize) {
        if !self.launching() {
            return;
        }
        let width = self.width[buf as usize];
        let r = self.gpu.add_bias(&self.bufs[buf as usize], &self.tensor(b).mem, width, n * width);
        self.keep(r);
    }

    fn rope(&mut self, local: bool, segs: &[Seg]) {
        let c = self.model.config();
        let (hd, heads, interleaved) =
            (c.head_dim, (c.n_heads, c.n_kv_heads), c.rope_layout == RopeLayout::Interleaved);
        let n: usize = segs.iter().map(|s| s.n).sum();
        let r = self.set_positions(segs).and_then(|()| {
            if !self.launching() {
                return Ok(());
            }
            let (cos, sin) = &self.rope[(local && self.has_local_rope) as usize];
            let (q, k) = (&self.bufs[Buf::Q as usize], &self.bufs[Buf::K as usize]);
            self.gpu.rope(q, k, (cos, sin), &self.pos, n, heads, hd, interleaved)
        });
        self.keep(r);
    }

    fn attention(&mut self, l: usize, segs: &[Seg], window: usize, scale: f32) {
        if !self.launching() {
            return;
        }
        let c = self.model.config();
        let kv_dim = c.n_kv_heads * c.head_dim;
        let shape = AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            hd: c.head_dim,
            n_ctx: self.n_ctx,
            window,
            scale,
        };
        let n: usize = segs.iter().map(|s| s.n).sum();
        let first = l * self.n_ctx * kv_dim;
        // `rope` set the positions of these rows.
        let r = self
            .gpu
            .kv_store(
                (&self.kcache, &self.vcache),
                self.kv,
                first,
                self.n_ctx,
                &self.bufs[Buf::K as usize],
                &self.bufs[Buf::V as usize],
                &self.pos,
                n,
                kv_dim,
            )
            .and_then(|()| {
                self.gpu.attention(
                    &self.bufs[Buf::AttOut as usize],
                    &self.bufs[Buf::Q as usize],
                    (&self.kcache, &self.vcache),
                    self.kv,
                    first,
                    &self.scores,
                    &self.pos,
                    n,
                    shape,
                )
            });
        self.keep(r);
    }

    fn select_rows(&mut self, buf: Buf, rows: &[usize]) {
        if !self.launching() {
            return;
        }
        let idx: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let width = self.width[buf as usize];
        let r = self
            .gpu
            .write_i32(&mut self.rows, &idx)
            .and_then(|()| self.gpu.select_rows(&self.bufs[buf as usize], &self.rows, idx.len(), width));
        self.keep(r);
    }

    fn add(&mut self, dst: Buf, src: Buf, n: usize) {
        if !self.launching() {
            return;
        }
        let total = n * self.width[dst as usize];
        let r = self.gpu.add(&self.bufs[dst as usize], &self.bufs[src as usize], total);
        self.keep(r);
    }

    fn glu(&mut self, act: FfnActivation, n: usize) {
        if !self.launching() {
            return;
        }
        let total = n * self.width[Buf::Gate as usize];
        let gelu = matches!(act, FfnActivation::GeluTanh);
        let r = self.gpu.glu(&self.bufs[Buf::Gate as usize], &self.bufs[Buf::Up as usize], total, gelu);
        self.keep(r);
    }

    fn output(&mut self, w: T, input: Buf, n: usize, out: &mut [f32]) -> Result<()> {
        self.take_err()?;
        match self.mode {
            Mode::Direct => self.gemvs(input, n, &[(w, &self.logits)])?,
            Mode::Capture => {
                self.gemvs(input, n, &[(w, &self.logits)])?;
                let graph = self.gpu.end_capture()?;
                graph.launch()?;
                self.graph = Some(graph);
            }
            Mode::Replay => self.graph.as_ref().expect("captured").launch()?,
        }
        self.logits_rows = n;
        if self.want_argmax {
            // After the graph (not in it), so one-token passes share one graph either way.
            let vocab = self.model.config().vocab_size;
            self.gpu.argmax(&self.logits, n.saturating_sub(1) * vocab, vocab, &self.argmax)?;
            let i = self.gpu.read_i32(&self.argmax)?;
            self.picked = Some(u32::try_from(i).map_err(|_| RuntimeError::Device(format!("argmax gave {i}")))?);
            return Ok(());
        }
        Ok(self.gpu.read_f32(&self.logits, 0, out)?)
    }

    fn read(&mut self, buf: Buf, n: usize) -> &[f32] {
        debug_assert_eq!(self.mode, Mode::Direct, "observed passes are not captured");
        let len = n * self.width[buf as usize];
        self.host.resize(len, 0.0);
        let r = self.gpu.read_f32(&self.bufs[buf as usize], 0, &mut self.host);
        self.keep(r);
        &self.host
    }
}
