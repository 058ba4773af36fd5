//! The kernels on a real GPU, through the driver API (cudarc, loaded at run time): NVRTC
//! compiles `kernels/autark.cu` to PTX for a compute capability, the driver loads it (JIT to the
//! device's machine code), and `run` / `time_gemv` launch the same kernels with the same
//! geometry as the CPU emulation (`kernels.rs`).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use cudarc::nvrtc::{self, Ptx};

use crate::check::{Case, ACT_BLOCK_BYTES};
use crate::kernels::{self, Gemv};
use crate::{probe, CudaError, DeviceInfo};

/// Is NVRTC (libnvrtc.so) on this machine?
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the library by its usual names; nothing is called.
    unsafe { nvrtc::sys::is_culib_present() }
}

/// NVRTC's version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; both pointers are to live i32s.
    unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaError::Compile { arch: String::new(), log: format!("nvrtcVersion: {e:?}") })?;
    Ok((major, minor))
}

/// The kernels as PTX for `arch` (`compute_87`, …). Needs NVRTC only, no driver or device.
pub fn compile(arch: &str) -> Result<String, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let opts = nvrtc::CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some("autark.cu".into()),
        ..Default::default()
    };
    let ptx = nvrtc::compile_ptx_with_opts(kernels::SOURCE, opts).map_err(|e| CudaError::Compile {
        arch: arch.into(),
        log: match e {
            nvrtc::CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => format!("{other:?}"),
        },
    })?;
    Ok(ptx.to_src())
}

/// Where compiled kernels are kept: `AUTARK_CUDA_CACHE`, else `$XDG_CACHE_HOME/autark/cuda`,
/// else `~/.cache/autark/cuda`; `None` when none of them is set.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("AUTARK_CUDA_CACHE") {
        return Some(d.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?;
    Some(base.join("autark").join("cuda"))
}

/// The kernels as a cubin — the device's machine code, nothing left for the driver to compile
/// — for `arch` (`sm_87`, …). Needs NVRTC only, no driver or device.
pub fn compile_cubin(arch: &str) -> Result<Vec<u8>, CudaError> {
    use std::ffi::CString;
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let fail = |log: String| CudaError::Compile { arch: arch.into(), log };
    let src = CString::new(kernels::SOURCE).expect("the source has no NUL");
    let name = CString::new("autark.cu").expect("no NUL");
    let prog = nvrtc::result::create_program(&src, Some(&name)).map_err(|e| fail(format!("{e:?}")))?;
    let opts = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string()];
    // SAFETY: `prog` is a live program (created above, destroyed below, once); the options are
    // NUL-free strings; the cubin buffer has the size NVRTC reported for it.
    let out = unsafe {
        match nvrtc::result::compile_program(prog, &opts) {
            Err(e) => {
                let log = nvrtc::result::get_program_log(prog)
                    .map(|l| l.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect::<Vec<u8>>())
                    .unwrap_or_default();
                Err(fail(format!("{e:?}: {}", String::from_utf8_lossy(&log))))
            }
            // (In a closure: an error still reaches the `destroy_program` below.)
            Ok(()) => (|| {
                let mut size = 0usize;
                nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size).result().map_err(|e| fail(format!("{e:?}")))?;
                let mut cubin = vec![0u8; size];
                nvrtc::sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
                    .result()
                    .map_err(|e| fail(format!("{e:?}")))?;
                Ok(cubin)
            })(),
        }
    };
    // SAFETY: destroys the program created above, once.
    let _ = unsafe { nvrtc::result::destroy_program(prog) };
    out
}

/// The compiled kernels for `arch` through the on-disk cache: a cubin for `sm_XY`, PTX for
/// `compute_XY`, kept under `dir` in a file named by the SHA-256 of the kernels' source, the
/// architecture and NVRTC's version, so a changed source or compiler never reuses it. Returns
/// the bytes and whether they came from the cache. A cache that cannot be read or written is
/// skipped (the kernels are compiled as without one).
pub fn compile_cached(arch: &str, dir: Option<&std::path::Path>) -> Result<(Vec<u8>, bool), CudaError> {
    use sha2::{Digest, Sha256};
    let (major, minor) = nvrtc_version()?;
    let mut h = Sha256::new();
    h.update(kernels::SOURCE.as_bytes());
    h.update(format!("\0{arch}\0nvrtc {major}.{minor}").as_bytes());
    let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let cubin = arch.starts_with("sm_");
    let ext = if cubin { "cubin" } else { "ptx" };
    let path = dir.map(|d| d.join(format!("{arch}-{}.{ext}", &key[..32])));
    if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
        return Ok((bytes, true));
    }
    let bytes = if cubin { compile_cubin(arch)? } else { compile(arch)?.into_bytes() };
    if let (Some(dir), Some(path)) = (dir, &path) {
        // Written beside and renamed into place: a reader never sees half a file.
        let tmp = dir.join(format!(".{}.{}", key, std::process::id()));
        let _ = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
    }
    Ok((bytes, false))
}

fn drv(call: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver { call, error: e.to_string() }
}

/// Device 0 with the kernels loaded.
pub struct Gpu {
    pub info: DeviceInfo,
    /// What was loaded: `compute_90 (NVRTC 13.0)`, or a PTX file's name.
    pub kernels: String,
    pub(crate) engine: Engine,
}

/// What runs the launches: the driver, or the emulated device (`emu.rs`).
pub(crate) enum Engine {
    Cuda {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        /// Every kernel of the module by name (`kernels::names`), looked up at load.
        functions: std::collections::HashMap<&'static str, CudaFunction>,
    },
    Emu(Arc<crate::emu::Device>),
}

impl Gpu {
    /// Compiles the kernels with NVRTC for the device's own compute capability, or loads the
    /// PTX file named by `AUTARK_CUDA_PTX` (built for another compute capability, e.g. by
    /// `autark-gpu-check ptx`: how `gpu-check.sh` runs a whole model through Jetson's code paths
    /// on a newer GPU). With `AUTARK_CUDA_EMU` naming a build of `cuda/emu/device.cpp`, the
    /// kernels run on the CPU instead (`emu.rs`: for tests, not for speed).
    pub fn new() -> Result<Gpu, CudaError> {
        if let Some(lib) = crate::emu::path() {
            let dev = crate::emu::Device::load(&lib)?;
            let kernels = format!("emulated, __CUDA_ARCH__ {} ({})", dev.arch, lib.display());
            return Ok(Gpu { info: dev.info(), kernels, engine: Engine::Emu(dev) });
        }
        if let Some(file) = std::env::var_os("AUTARK_CUDA_PTX") {
            let ptx = std::fs::read_to_string(&file).map_err(|e| CudaError::Compile {
                arch: "AUTARK_CUDA_PTX".into(),
                log: format!("{}: {e}", file.to_string_lossy()),
            })?;
            return Gpu::with_ptx(ptx, file.to_string_lossy().into_owned());
        }
        let info = probe()?;
        let (major, minor) = nvrtc_version()?;
        let dir = cache_dir();
        // A cubin for the device's own sm_XY first; PTX (which the driver compiles) when NVRTC
        // cannot target it or the driver refuses NVRTC's cubin (a driver older than NVRTC).
        let sm = format!("sm_{}{}", info.compute.0, info.compute.1);
        if let Ok((cubin, cached)) = compile_cached(&sm, dir.as_deref()) {
            let how = if cached { ", cached" } else { "" };
            let label = format!("{sm} cubin (NVRTC {major}.{minor}{how})");
            if let Ok(gpu) = Gpu::load(info.clone(), Ptx::from_binary(cubin), label) {
                return Ok(gpu);
            }
        }
        let arch = format!("compute_{}{}", info.compute.0, info.compute.1);
        let (ptx, cached) = compile_cached(&arch, dir.as_deref())?;
        let how = if cached { ", cached" } else { "" };
        let ptx = String::from_utf8(ptx).map_err(|e| CudaError::Compile { arch: arch.clone(), log: e.to_string() })?;
        Gpu::load(info, Ptx::from_src(ptx), format!("{arch} (NVRTC {major}.{minor}{how})"))
    }

    /// Loads PTX built elsewhere (for another compute capability: the driver JIT-compiles it
    /// for this device, so the Jetson code paths run on any newer GPU).
    pub fn with_ptx(ptx: String, label: String) -> Result<Gpu, CudaError> {
        Gpu::load(probe()?, Ptx::from_src(ptx), label)
    }

    fn load(info: DeviceInfo, module: Ptx, kernels: String) -> Result<Gpu, CudaError> {
        let ctx = CudaContext::new(0).map_err(drv("cuCtxCreate"))?;
        // A stream of its own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().map_err(drv("cuStreamCreate"))?;
        let module = ctx.load_module(module).map_err(|e| CudaError::Rejected {
            what: kernels.clone(),
            driver: info.driver_version,
            error: e.to_string(),
        })?;
        let functions = crate::kernels::names()
            .into_iter()
            .map(|n| module.load_function(n).map(|f| (n, f)))
            .collect::<Result<_, _>>()
            .map_err(drv("cuModuleGetFunction"))?;
        Ok(Gpu { info, kernels, engine: Engine::Cuda { ctx, stream, functions } })
    }

    pub(crate) fn function(&self, name: &str) -> Result<&CudaFunction, CudaError> {
        let found = match &self.engine {
            Engine::Cuda { functions, .. } => functions.get(name),
            Engine::Emu(_) => None,
        };
        found.ok_or(CudaError::Driver { call: "cuModuleGetFunction", error: format!("no kernel {name}") })
    }

    /// Quantizes the case's activations and runs its GEMV, through the same launches the CUDA
    /// backend makes (`ops.rs`); the activation blocks' bytes and y.
    pub fn run(&self, case: &Case) -> Result<(Vec<u8>, Vec<f32>), CudaError> {
        let w = self.upload(&case.w)?;
        let x = self.upload_f32(&case.x)?;
        let n_act = case.n_act_blocks();
        let act = self.alloc(n_act.max(1) * ACT_BLOCK_BYTES)?;
        let y = self.alloc(case.rows * case.tokens * 4)?;
        let input = if case.gemv.quant.is_float() {
            &x
        } else {
            self.quantize(&x, &act, n_act)?;
            &act
        };
        self.matvec(case.gemv, &w, input, &y, case.rows, case.tokens, case.cols)?;
        let mut act_bytes = vec![0u8; n_act * ACT_BLOCK_BYTES];
        self.read(&act, 0, &mut act_bytes)?;
        let mut out = vec![0f32; case.rows * case.tokens];
        self.read_f32(&y, 0, &mut out)?;
        Ok((act_bytes, out))
    }

    /// Seconds per call of `gemv` on a random `rows × cols` matrix and `tokens` activation rows
    /// (the median of `reps` timed batches of 20 calls, after a warm-up), by CUDA events.
    pub fn time_gemv(
        &self,
        gemv: Gemv,
        rows: usize,
        cols: usize,
        tokens: usize,
        reps: usize,
    ) -> Result<f64, CudaError> {
        let Engine::Cuda { ctx, stream: s, .. } = &self.engine else {
            return Err(CudaError::Driver { call: "time_gemv", error: "not timed on the emulated device".into() });
        };
        let mut rng = autark_kernels::rng::Rng::new(7);
        // Random bytes: the values do not matter to the time, only the bytes read (f16 bytes
        // that are NaN or infinite cost the same as any other).
        let n = gemv.matrix_bytes(rows, cols).expect("whole blocks");
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let w = self.upload(&bytes)?;
        let act = self.alloc((tokens * cols / autark_kernels::QK * ACT_BLOCK_BYTES).max(tokens * cols * 4))?;
        let y = self.alloc(rows * tokens * 4)?;
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = ctx.new_event(flags).map_err(drv("cuEventCreate"))?;
        let end = ctx.new_event(flags).map_err(drv("cuEventCreate"))?;
        for _ in 0..5 {
            self.matvec(gemv, &w, &act, &y, rows, tokens, cols)?;
        }
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            start.record(s).map_err(drv("cuEventRecord"))?;
            for _ in 0..20 {
                self.matvec(gemv, &w, &act, &y, rows, tokens, cols)?;
            }
            end.record(s).map_err(drv("cuEventRecord"))?;
            times.push(start.elapsed_ms(&end).map_err(drv("cuEventElapsedTime"))? as f64 / 20e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs NVRTC (scripts/check-cuda-kernels.sh runs this with PyPI's on the library path).
    #[test]
    fn compiled_kernels_are_cached_on_disk_by_source_arch_and_compiler() {
        if !nvrtc_present() {
            eprintln!("SKIP: no NVRTC (libnvrtc.so) here; scripts/check-cuda-kernels.sh runs this with one");
            return;
        }
        let dir = std::env::temp_dir().join(format!("autark-cuda-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let (first, hit) = compile_cached("compute_61", Some(&dir)).unwrap();
        let first = text(first);
        assert!(!hit && first.contains(".target sm_61"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "one file, no temporary left");
        let (again, hit) = compile_cached("compute_61", Some(&dir)).unwrap();
        assert!(hit && text(again) == first);
        let (other, hit) = compile_cached("compute_87", Some(&dir)).unwrap();
        assert!(!hit && text(other).contains(".target sm_87"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        // A cubin: the device's machine code (an ELF image), cached under its own name.
        let (cubin, hit) = compile_cached("sm_87", Some(&dir)).unwrap();
        assert!(!hit && cubin.starts_with(b"\x7fELF"), "{:?}", &cubin[..cubin.len().min(8)]);
        let (again, hit) = compile_cached("sm_87", Some(&dir)).unwrap();
        assert!(hit && again == cubin);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
