//! Device memory and the typed launches of `kernels/autark.cu` that the CUDA backend
//! (`autark_runtime`'s `cuda.rs`) calls. Every pointer a kernel gets comes from a `Mem` of this
//! crate with its extent checked here, so the launches are safe to call; what the kernels trust
//! is stated at each one (positions below `n_ctx`, row indices below the buffer's rows).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

use crate::check::ACT_BLOCK_BYTES;
use crate::emu;
use crate::gpu::{Engine, Gpu};
use crate::kernels::{self, Gemv, KvType, Launch};
use crate::CudaError;
use autark_kernels::QK;

fn drv(call: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver { call, error: e.to_string() }
}

/// Device memory, freed when dropped (host memory on the emulated device).
pub struct Mem {
    buf: Storage,
    ptr: u64,
    len: usize,
}

enum Storage {
    Cuda(CudaSlice<u8>),
    /// u64s, so that every f32, i32 and block a kernel reads is aligned.
    Host(Vec<u64>),
    /// A range of host memory the device reads in place (`HostMap`), kept registered while
    /// this lives.
    Mapped(Arc<Registered>),
}

/// Host memory registered with the device for reading in place: on an integrated GPU (Jetson),
/// the model file's mapping, so the weights are not held twice in the same DRAM.
pub struct HostMap(Arc<Registered>);

/// Bytes the device reads, their owner (which keeps them alive and unmoved), and their address
/// on the device.
pub(crate) struct Registered {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    dev: u64,
    /// Registered with the driver (unregistered when dropped); false on the emulated device.
    cuda: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.cuda {
            let host = (*self.owner).as_ref().as_ptr();
            // SAFETY: `host` was registered by `Gpu::map_host` and is unregistered once; no
            // `Mem` of it is left (each holds this value).
            let _ = unsafe { cudarc::driver::sys::cuMemHostUnregister(host as *mut _) };
        }
    }
}

impl HostMap {
    pub fn len(&self) -> usize {
        (*self.0.owner).as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `offset..offset + len` of the mapped memory as device memory (read only: the
    /// kernels only read weights). Panics outside the range (a caller's bug).
    pub fn mem(&self, offset: usize, len: usize) -> Mem {
        assert!(offset.checked_add(len).is_some_and(|e| e <= self.len()), "outside the mapped range");
        Mem { buf: Storage::Mapped(Arc::clone(&self.0)), ptr: self.0.dev + offset as u64, len }
    }
}

impl Mem {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address `offset` bytes in, for `bytes` bytes (panics outside the allocation:
    /// a bug of the caller, never input).
    fn at(&self, offset: usize, bytes: usize) -> u64 {
        assert!(
            offset.checked_add(bytes).is_some_and(|end| end <= self.len),
            "device access {offset}+{bytes} outside {} bytes",
            self.len
        );
        self.ptr + offset as u64
    }

    /// `n` f32 from float index `first`.
    fn f32s(&self, first: usize, n: usize) -> u64 {
        self.at(first * 4, n * 4)
    }
}

enum Arg {
    P(u64),
    I(i32),
    F(f32),
}

fn int(v: usize) -> Arg {
    Arg::I(i32::try_from(v).expect("kernel sizes fit in i32"))
}

impl Gpu {
    /// `bytes` of zeroed device memory.
    pub fn alloc(&self, bytes: usize) -> Result<Mem, CudaError> {
        let len = bytes.max(1);
        match &self.engine {
            Engine::Cuda { stream, .. } => {
                let buf = stream.alloc_zeros::<u8>(len).map_err(drv("cuMemAlloc"))?;
                let ptr = buf.device_ptr(stream).0;
                Ok(Mem { buf: Storage::Cuda(buf), ptr, len })
            }
            Engine::Emu(_) => {
                let v = vec![0u64; len.div_ceil(8)];
                let ptr = v.as_ptr() as u64;
                Ok(Mem { buf: Storage::Host(v), ptr, len })
            }
        }
    }

    /// A copy of `bytes` in device memory.
    pub fn upload(&self, bytes: &[u8]) -> Result<Mem, CudaError> {
        let mut m = self.alloc(bytes.len())?;
        self.write(&mut m, bytes)?;
        Ok(m)
    }

    pub fn upload_f32(&self, v: &[f32]) -> Result<Mem, CudaError> {
        self.upload(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
    }

    /// `v` into `dst` from index 0 (row lists, positions).
    pub fn write_i32(&self, dst: &mut Mem, v: &[i32]) -> Result<(), CudaError> {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.write(dst, &bytes)
    }

    /// `bytes` into `dst` from byte 0 (in stream order).
    fn write(&self, dst: &mut Mem, bytes: &[u8]) -> Result<(), CudaError> {
        self.write_at(dst, 0, bytes)
    }

    /// `bytes` into `dst` from byte `offset` (in stream order; the host's bytes are copied
    /// before this returns).
    pub fn write_at(&self, dst: &mut Mem, offset: usize, bytes: &[u8]) -> Result<(), CudaError> {
        let to = dst.at(offset, bytes.len());
        if bytes.is_empty() {
            return Ok(());
        }
        match (&self.engine, &mut dst.buf) {
            (Engine::Cuda { stream, .. }, Storage::Cuda(buf)) => {
                let mut view = buf.slice_mut(offset..offset + bytes.len());
                stream.memcpy_htod(bytes, &mut view).map_err(drv("cuMemcpyHtoD"))
            }
            (Engine::Emu(dev), Storage::Host(_)) => {
                // Through the device's queue: a graph being captured records it (as the driver
                // does with an asynchronous copy), with the bytes kept alive by the op.
                dev.submit(emu::Op::Write { dst: to, bytes: bytes.to_vec() })
            }
            _ => unreachable!("memory of another engine"),
        }
    }

    /// `out.len()` bytes of `src` from byte `offset` (waits for the work before it).
    pub fn read(&self, src: &Mem, offset: usize, out: &mut [u8]) -> Result<(), CudaError> {
        src.at(offset, out.len());
        match (&self.engine, &src.buf) {
            (Engine::Cuda { stream, .. }, Storage::Cuda(buf)) => {
                let view = buf.slice(offset..offset + out.len());
                stream.memcpy_dtoh(&view, out).map_err(drv("cuMemcpyDtoH"))?;
                stream.synchronize().map_err(drv("cuStreamSynchronize"))
            }
            (Engine::Emu(_), Storage::Host(words)) => {
                // The emulated device ran every operation before returning.
                for (i, o) in out.iter_mut().enumerate() {
                    let b = offset + i;
                    *o = words[b / 8].to_ne_bytes()[b % 8];
                }
                Ok(())
            }
            (_, Storage::Mapped(r)) => {
                out.copy_from_slice(&(*r.owner).as_ref()[offset..offset + out.len()]);
                Ok(())
            }
            _ => unreachable!("memory of another engine"),
        }
    }

    /// Registers `owner`'s bytes with the device so that kernels read them in place, without a
    /// copy (`HostMap::mem`): what an integrated GPU, which shares the host's DRAM, wants for
    /// the weights. A discrete GPU reads them over PCIe this way (for tests only).
    pub fn map_host(&self, owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Result<HostMap, CudaError> {
        let bytes = (*owner).as_ref();
        let (host, len) = (bytes.as_ptr(), bytes.len());
        let (dev, cuda) = match &self.engine {
            Engine::Emu(_) => (host as u64, false),
            Engine::Cuda { ctx, .. } => {
                use cudarc::driver::sys;
                ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
                let flags = sys::CU_MEMHOSTREGISTER_DEVICEMAP | sys::CU_MEMHOSTREGISTER_READ_ONLY;
                // SAFETY: `host..host + len` is memory `owner` keeps alive and unmoved for as
                // long as the registration (both held by `Registered`); the device only reads it.
                unsafe { sys::cuMemHostRegister_v2(host as *mut _, len.max(1), flags) }
                    .result()
                    .map_err(drv("cuMemHostRegister"))?;
                let mut dev = 0;
                // SAFETY: `host` was registered just above; `dev` is a live out-parameter.
                let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host as *mut _, 0) }.result();
                if let Err(e) = r {
                    // SAFETY: registered above, unregistered once.
                    let _ = unsafe { sys::cuMemHostUnregister(host as *mut _) };
                    return Err(drv("cuMemHostGetDevicePointer")(e));
                }
                (dev, true)
            }
        };
        Ok(HostMap(Arc::new(Registered { owner, dev, cuda })))
    }

    /// `out.len()` floats of `src` from float index `first` (waits for the work before it).
    pub fn read_f32(&self, src: &Mem, first: usize, out: &mut [f32]) -> Result<(), CudaError> {
        let mut bytes = vec![0u8; out.len() * 4];
        self.read(src, first * 4, &mut bytes)?;
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
        Ok(())
    }

    fn launch(&self, name: &str, l: Launch, args: &[Arg]) -> Result<(), CudaError> {
        let stream = match &self.engine {
            Engine::Cuda { stream, .. } => stream,
            Engine::Emu(dev) => {
                let args = args
                    .iter()
                    .map(|a| match *a {
                        Arg::P(p) => p,
                        Arg::I(i) => i as u32 as u64,
                        Arg::F(x) => x.to_bits() as u64,
                    })
                    .collect();
                let name = std::ffi::CString::new(name).expect("kernel names have no NUL");
                let mut geo = [0u32; 6];
                geo[..3].copy_from_slice(&l.grid);
                geo[3..].copy_from_slice(&l.block);
                return dev.submit(emu::Op::Launch { name, geo, args });
            }
        };
        let f = self.function(name)?;
        let mut b = stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(p) => b.arg(p),
                Arg::I(i) => b.arg(i),
                Arg::F(x) => b.arg(x),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
            block_dim: (l.block[0], l.block[1], l.block[2]),
            shared_mem_bytes: 0,
        };
        // SAFETY: each caller below passes the arguments of the kernel's signature in
        // autark.cu, in order, pointers from `Mem::at` whose extents cover what the kernel
        // touches for that launch's geometry (checked there).
        unsafe { b.launch(cfg) }.map_err(drv("cuLaunchKernel"))?;
        Ok(())
    }

    /// Activations `x` (n_blocks · 32 floats) to 8-bit blocks in `act`.
    pub fn quantize(&self, x: &Mem, act: &Mem, n_blocks: usize) -> Result<(), CudaError> {
        let args = [Arg::P(x.f32s(0, n_blocks * 32)), Arg::P(act.at(0, n_blocks * ACT_BLOCK_BYTES)), int(n_blocks)];
        self.launch("quantize_act", kernels::quantize_act(n_blocks), &args)
    }

    /// `y[t·rows + r]` = weight row r · activation row t, for `tokens` rows of `cols` values:
    /// `input` holds their 8-bit blocks (`quantize`), or the f32 rows themselves for f16 and
    /// f32 weights (`Quant::is_float`).
    #[allow(clippy::too_many_arguments)]
    pub fn matvec(
        &self,
        gemv: Gemv,
        w: &Mem,
        input: &Mem,
        y: &Mem,
        rows: usize,
        tokens: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        // A partial block would be a caller's bug (`at` asserts the extent the same way).
        let w_bytes = gemv.matrix_bytes(rows, cols).expect("rows of whole blocks");
        let input = if gemv.quant.is_float() {
            input.f32s(0, tokens * cols)
        } else {
            input.at(0, tokens * (cols / QK) * ACT_BLOCK_BYTES)
        };
        let args = [
            Arg::P(w.at(0, w_bytes)),
            Arg::P(input),
            Arg::P(y.f32s(0, rows * tokens)),
            int(gemv.rows_arg(rows)),
            int(gemv.cols_arg(cols)),
            int(tokens),
        ];
        self.launch(gemv.kernel(tokens), gemv.launch(rows, tokens), &args)
    }

    /// Rows `0..rows` of `dst` = RMSNorm of rows `first..first + rows` of `src` (each `width`)
    /// times `w`; `dst` may be `src` with `first` 0.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm(
        &self,
        dst: &Mem,
        src: &Mem,
        first: usize,
        w: &Mem,
        rows: usize,
        width: usize,
        eps: f32,
    ) -> Result<(), CudaError> {
        let args = [
            Arg::P(dst.f32s(0, rows * width)),
            Arg::P(src.f32s(first * width, rows * width)),
            Arg::P(w.f32s(0, width)),
            int(width),
            Arg::F(eps),
        ];
        self.launch("rmsnorm_f32", kernels::per_row(rows, kernels::F32_THREADS), &args)
    }

    /// `buf[i] += b[i mod width]` over `total` values.
    pub fn add_bias(&self, buf: &Mem, b: &Mem, width: usize, total: usize) -> Result<(), CudaError> {
        let args = [Arg::P(buf.f32s(0, total)), Arg::P(b.f32s(0, width)), int(width), int(total)];
        self.launch("add_bias_f32", kernels::elementwise(total), &args)
    }

    /// `dst[i] += src[i]` over `total` values.
    pub fn add(&self, dst: &Mem, src: &Mem, total: usize) -> Result<(), CudaError> {
        let args = [Arg::P(dst.f32s(0, total)), Arg::P(src.f32s(0, total)), int(total)];
        self.launch("add_f32", kernels::elementwise(total), &args)
    }

    /// `gate = act(gate) · up`; `gelu`: GELU's tanh approximation, else SiLU.
    pub fn glu(&self, gate: &Mem, up: &Mem, total: usize, gelu: bool) -> Result<(), CudaError> {
        let args = [Arg::P(gate.f32s(0, total)), Arg::P(up.f32s(0, total)), int(total), Arg::I(gelu as i32)];
        self.launch("glu_f32", kernels::elementwise(total), &args)
    }

    /// RoPE on `rows` rows of `q` (n_q heads) and `k` (n_k heads) at positions `pos` (i32 per
    /// row, each below the tables' `n_ctx` rows of hd/2 values).
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        q: &Mem,
        k: &Mem,
        tables: (&Mem, &Mem),
        pos: &Mem,
        rows: usize,
        heads: (usize, usize),
        hd: usize,
        interleaved: bool,
    ) -> Result<(), CudaError> {
        let (n_q, n_k) = heads;
        let args = [
            Arg::P(q.f32s(0, rows * n_q * hd)),
            Arg::P(k.f32s(0, rows * n_k * hd)),
            Arg::P(tables.0.at(0, tables.0.len())),
            Arg::P(tables.1.at(0, tables.1.len())),
            Arg::P(pos.at(0, rows * 4)),
            int(n_q),
            int(n_k),
            int(hd),
            Arg::I(interleaved as i32),
        ];
        self.launch("rope_f32", kernels::per_row(rows, 128), &args)
    }

    /// Rows of `k` and `v` into the layer caches' rows `pos[t]` (each below `n_ctx`); the
    /// caches are `n_ctx × kv_dim` floats from float index `layer_first`.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_store(
        &self,
        caches: (&Mem, &Mem),
        kv: KvType,
        layer_first: usize,
        n_ctx: usize,
        k: &Mem,
        v: &Mem,
        pos: &Mem,
        rows: usize,
        kv_dim: usize,
    ) -> Result<(), CudaError> {
        let es = kv.bytes();
        let args = [
            Arg::P(caches.0.at(layer_first * es, n_ctx * kv_dim * es)),
            Arg::P(caches.1.at(layer_first * es, n_ctx * kv_dim * es)),
            Arg::P(k.f32s(0, rows * kv_dim)),
            Arg::P(v.f32s(0, rows * kv_dim)),
            Arg::P(pos.at(0, rows * 4)),
            int(kv_dim),
        ];
        self.launch(kv.kernels().0, kernels::per_row(rows, 128), &args)
    }

    /// Attention of `rows` query rows against one layer's caches (see `attention_f32`);
    /// `scores` holds `kernels::attention_scratch` floats per (row, head). Contexts longer than
    /// `SPLIT_ATTENTION_MIN_CTX` run split over the sequence.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        out: &Mem,
        q: &Mem,
        caches: (&Mem, &Mem),
        kv: KvType,
        layer_first: usize,
        scores: &Mem,
        pos: &Mem,
        rows: usize,
        shape: AttentionShape,
    ) -> Result<(), CudaError> {
        let AttentionShape { n_heads, n_kv_heads, hd, n_ctx, window, scale } = shape;
        let kv_dim = n_kv_heads * hd;
        let es = kv.bytes();
        let (kc, vc) =
            (caches.0.at(layer_first * es, n_ctx * kv_dim * es), caches.1.at(layer_first * es, n_ctx * kv_dim * es));
        let (_, single, split) = kv.kernels();
        if n_ctx > kernels::SPLIT_ATTENTION_MIN_CTX && split_attention() {
            let chunks = kernels::attention_chunks(n_ctx, kernels::ATT_CHUNK);
            let part = scores.f32s(0, rows * n_heads * chunks * (hd + 2));
            let args = [
                Arg::P(part),
                Arg::P(q.f32s(0, rows * n_heads * hd)),
                Arg::P(kc),
                Arg::P(vc),
                Arg::P(pos.at(0, rows * 4)),
                int(n_heads),
                int(n_heads / n_kv_heads),
                int(hd),
                int(kv_dim),
                int(kernels::ATT_CHUNK),
                int(chunks),
                int(window.min(n_ctx)),
                Arg::F(scale),
            ];
            self.launch(split, kernels::attention_split(rows, n_heads, chunks), &args)?;
            let args = [Arg::P(out.f32s(0, rows * n_heads * hd)), Arg::P(part), int(n_heads), int(hd), int(chunks)];
            return self.launch("attention_merge_f32", kernels::attention(rows, n_heads), &args);
        }
        let args = [
            Arg::P(out.f32s(0, rows * n_heads * hd)),
            Arg::P(q.f32s(0, rows * n_heads * hd)),
            Arg::P(kc),
            Arg::P(vc),
            Arg::P(scores.f32s(0, rows * n_heads * n_ctx)),
            Arg::P(pos.at(0, rows * 4)),
            int(n_heads),
            int(n_heads / n_kv_heads),
            int(hd),
            int(kv_dim),
            int(n_ctx),
            int(window.min(n_ctx)),
            Arg::F(scale),
        ];
        self.launch(single, kernels::attention(rows, n_heads), &args)
    }

    /// Row i of `buf` = row `rows[i]` for the `n` indices in `rows` (ascending, `rows[i] ≥ i`,
    /// each below the buffer's rows).
    pub fn select_rows(&self, buf: &Mem, rows: &Mem, n: usize, width: usize) -> Result<(), CudaError> {
        let args = [Arg::P(buf.at(0, buf.len())), Arg::P(rows.at(0, n * 4)), int(n), int(width)];
        self.launch("select_rows_f32", kernels::single_block(), &args)
    }

    /// `out` (an i32) = the index of the first maximum of floats `first..first + n` of `x`, as
    /// `autark_kernels::ops::argmax` (NaN and −∞ never count; 0 when nothing does).
    pub fn argmax(&self, x: &Mem, first: usize, n: usize, out: &Mem) -> Result<(), CudaError> {
        let args = [Arg::P(x.f32s(first, n)), int(n), Arg::P(out.at(0, 4))];
        self.launch("argmax_f32", kernels::single_block(), &args)
    }

    /// The i32 at the start of `src` (waits for the work before it).
    pub fn read_i32(&self, src: &Mem) -> Result<i32, CudaError> {
        let mut b = [0u8; 4];
        self.read(src, 0, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }
}

/// Whether long contexts run the split attention (`AUTARK_CUDA_SPLIT_ATTENTION=0` turns it off,
/// to measure what it gains; read once).
fn split_attention() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("AUTARK_CUDA_SPLIT_ATTENTION").map_or(true, |v| v != "0"))
}

/// The shape of one attention launch.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub hd: usize,
    pub n_ctx: usize,
    /// Positions a query sees, itself included (`usize::MAX`: all).
    pub window: usize,
    pub scale: f32,
}

/// Page-locked host memory: the source of host-to-device copies that are asynchronous, and that
/// a captured graph replays (a graph's copy node reads this memory each time it runs).
pub struct Pinned {
    ptr: *mut u8,
    len: usize,
    /// The emulated device's staging (plain host memory), or `None`: cuMemHostAlloc's.
    host: Option<Vec<u64>>,
}

// SAFETY: the allocation is owned by this value alone (no other pointer to it leaves this
// module), so moving it to another thread moves the only access.
unsafe impl Send for Pinned {}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.host.is_none() {
            // SAFETY: `ptr` came from cuMemHostAlloc and is freed once; copies from it were
            // enqueued on the stream, which the owner synchronises before dropping (`Gpu` drops
            // after its buffers; a failed free is only a leak).
            let _ = unsafe { cudarc::driver::result::free_host(self.ptr.cast()) };
        }
    }
}

impl Pinned {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of `len` bytes owned by `self`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// `v` at byte `offset`.
    pub fn write_f32(&mut self, offset: usize, v: &[f32]) {
        for (d, x) in self.bytes_mut()[offset..offset + 4 * v.len()].chunks_exact_mut(4).zip(v) {
            d.copy_from_slice(&x.to_le_bytes());
        }
    }

    /// `v` at byte `offset`.
    pub fn write_i32(&mut self, offset: usize, v: &[i32]) {
        for (d, x) in self.bytes_mut()[offset..offset + 4 * v.len()].chunks_exact_mut(4).zip(v) {
            d.copy_from_slice(&x.to_le_bytes());
        }
    }
}

/// A captured sequence of launches and copies, replayed with one call.
pub struct Graph(GraphKind);

enum GraphKind {
    Cuda(cudarc::driver::CudaGraph),
    /// The emulated device's recorded operations (their pointers into the session's buffers
    /// and staging, which outlive the graph).
    Emu(Arc<emu::Device>, Vec<emu::Op>),
}

// SAFETY: the graph's handles are used by one thread at a time (its owner's), on the stream it
// was captured on, which is itself `Send`; the emulated ops hold addresses of allocations the
// same owner holds.
unsafe impl Send for Graph {}

impl Graph {
    pub fn launch(&self) -> Result<(), CudaError> {
        match &self.0 {
            GraphKind::Cuda(g) => g.launch().map_err(drv("cuGraphLaunch")),
            GraphKind::Emu(dev, ops) => ops.iter().try_for_each(|op| dev.run(op)),
        }
    }
}

impl Gpu {
    /// `bytes` of page-locked host memory.
    pub fn alloc_pinned(&self, bytes: usize) -> Result<Pinned, CudaError> {
        let len = bytes.max(1);
        let mut p = match &self.engine {
            Engine::Cuda { .. } => {
                // SAFETY: a plain allocation; the pointer is owned by the returned `Pinned`.
                let ptr =
                    unsafe { cudarc::driver::result::malloc_host(len, cudarc::driver::sys::CU_MEMHOSTALLOC_PORTABLE) }
                        .map_err(drv("cuMemHostAlloc"))?;
                Pinned { ptr: ptr.cast(), len, host: None }
            }
            Engine::Emu(_) => {
                let mut v = vec![0u64; len.div_ceil(8)];
                Pinned { ptr: v.as_mut_ptr().cast(), len, host: Some(v) }
            }
        };
        // Zeroed, so that no uninitialised byte is ever read.
        p.bytes_mut().fill(0);
        Ok(p)
    }

    /// A copy of `bytes` in device memory, through the page-locked `staging`: chunks of half
    /// its size, each written into one half while the copy of the previous chunk (from the
    /// other half) runs, so an upload holds no host memory beyond the source and `staging`
    /// however large the tensor, and reads the source once. Returns once the copy is done.
    pub fn upload_staged(&self, bytes: &[u8], staging: &mut Pinned) -> Result<Mem, CudaError> {
        let m = self.alloc(bytes.len())?;
        let half = staging.len / 2;
        assert!(half > 0, "a staging buffer of at least 2 bytes");
        for (i, chunk) in bytes.chunks(half).enumerate() {
            let at = (i % 2) * half;
            // This half's last copy (chunk i − 2) finished at the previous chunk's wait.
            staging.bytes_mut()[at..at + chunk.len()].copy_from_slice(chunk);
            // Chunk i − 1's copy, from the other half, is done after this; then chunk i's starts.
            self.synchronize()?;
            self.copy_pinned(staging, at, &m, i * half, chunk.len())?;
        }
        self.synchronize()?;
        Ok(m)
    }

    /// Waits until the stream's work is done.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        match &self.engine {
            Engine::Cuda { stream, .. } => stream.synchronize().map_err(drv("cuStreamSynchronize")),
            // The emulated device runs every operation before `submit` returns.
            Engine::Emu(_) => Ok(()),
        }
    }

    /// Enqueues a copy of `bytes` bytes from `src` at `src_offset` to `dst` at `dst_offset`.
    /// `src` must not be written again until the stream has passed the copy (the caller writes
    /// it between passes, after the pass's result was read).
    pub fn copy_pinned(
        &self,
        src: &Pinned,
        src_offset: usize,
        dst: &Mem,
        dst_offset: usize,
        bytes: usize,
    ) -> Result<(), CudaError> {
        assert!(src_offset.checked_add(bytes).is_some_and(|e| e <= src.len), "pinned read outside the allocation");
        let to = dst.at(dst_offset, bytes);
        let stream = match &self.engine {
            Engine::Cuda { stream, .. } => stream,
            Engine::Emu(dev) => {
                let from = src.ptr as u64 + src_offset as u64;
                return dev.submit(emu::Op::Copy { src: from, dst: to, bytes });
            }
        };
        // SAFETY: both ranges are checked to lie inside their allocations; the host side is
        // page-locked, so the asynchronous copy reads it directly.
        unsafe {
            cudarc::driver::sys::cuMemcpyHtoDAsync_v2(to, src.ptr.add(src_offset).cast(), bytes, stream.cu_stream())
        }
        .result()
        .map_err(drv("cuMemcpyHtoDAsync"))
    }

    /// Starts recording the stream's work into a graph instead of running it.
    pub fn begin_capture(&self) -> Result<(), CudaError> {
        match &self.engine {
            Engine::Cuda { stream, .. } => stream
                .begin_capture(cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(drv("cuStreamBeginCapture")),
            Engine::Emu(dev) => dev.begin_capture(),
        }
    }

    /// Stops recording; the graph of what was recorded.
    pub fn end_capture(&self) -> Result<Graph, CudaError> {
        let g = match &self.engine {
            Engine::Cuda { stream, .. } => stream
                .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
                .map_err(drv("cuStreamEndCapture"))?
                .map(GraphKind::Cuda),
            Engine::Emu(dev) => Some(GraphKind::Emu(Arc::clone(dev), dev.end_capture()?)).filter(|g| match g {
                GraphKind::Emu(_, ops) => !ops.is_empty(),
                GraphKind::Cuda(_) => true,
            }),
        };
        g.map(Graph).ok_or(CudaError::Driver { call: "cuStreamEndCapture", error: "nothing was captured".into() })
    }
}
