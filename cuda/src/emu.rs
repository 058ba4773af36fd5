//! The emulated device: `cuda/emu/device.cpp` — the kernels of `autark.cu` compiled by the host
//! C++ compiler with `cuda_emu.h` into a shared library — loaded in place of the driver when
//! `AUTARK_CUDA_EMU` names it. Device memory is then host memory, a launch runs the kernel's
//! CUDA threads as host threads, a copy is a `memcpy`, and a captured graph is the list of its
//! launches and copies, replayed in order. So the whole CUDA backend (buffers, launches, graphs)
//! decodes a model on a machine without a GPU (`cli/tests/cuda_emu.rs`); nothing about speed.

use std::ffi::{c_char, c_int, CString};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::{CudaError, DeviceInfo};

/// `autark_emu_launch(name, geo, args)` of device.cpp.
type LaunchFn = unsafe extern "C" fn(*const c_char, *const u32, *const u64) -> c_int;
type ArchFn = unsafe extern "C" fn() -> c_int;

/// One operation on the emulated device, run now or recorded into a graph.
pub(crate) enum Op {
    Launch {
        name: CString,
        geo: [u32; 6],
        args: Vec<u64>,
    },
    /// `bytes` from host address `src` to `dst` (both inside live allocations: checked by the
    /// caller when the copy was made; a graph is replayed only while they live).
    Copy {
        src: u64,
        dst: u64,
        bytes: usize,
    },
    /// `bytes` to host address `dst` (inside a live allocation, checked by the caller).
    Write {
        dst: u64,
        bytes: Vec<u8>,
    },
}

/// The loaded library.
pub(crate) struct Device {
    launch: LaunchFn,
    pub arch: i32,
    /// While a graph is captured, the operations go here instead of running.
    capture: Mutex<Option<Vec<Op>>>,
    /// The kernels share the emulation's globals (block barrier, shuffle slots): one launch at
    /// a time, whatever thread asks.
    running: Mutex<()>,
    _lib: libloading::Library,
}

/// The library `AUTARK_CUDA_EMU` names, if set (and not empty).
pub(crate) fn path() -> Option<std::path::PathBuf> {
    std::env::var_os("AUTARK_CUDA_EMU").filter(|v| !v.is_empty()).map(Into::into)
}

fn err(what: String) -> CudaError {
    CudaError::Driver { call: "AUTARK_CUDA_EMU", error: what }
}

impl Device {
    pub fn load(path: &Path) -> Result<Arc<Device>, CudaError> {
        // SAFETY: loading runs the library's initialisers: the caller named a build of
        // cuda/emu/device.cpp (AUTARK_CUDA_EMU), whose only initialisers are the C++ runtime's.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| err(format!("{}: {e}", path.display())))?;
        // SAFETY: the symbols' types are those device.cpp defines (`extern "C"`).
        let (launch, arch) = unsafe {
            let launch = *lib.get::<LaunchFn>(b"autark_emu_launch\0").map_err(|e| err(e.to_string()))?;
            let arch = *lib.get::<ArchFn>(b"autark_emu_arch\0").map_err(|e| err(e.to_string()))?;
            (launch, arch)
        };
        // SAFETY: takes no arguments, returns a constant.
        let arch = unsafe { arch() };
        Ok(Arc::new(Device { launch, arch, capture: Mutex::new(None), running: Mutex::new(()), _lib: lib }))
    }

    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: "autark.cu emulated on the CPU".into(),
            driver_version: 0,
            compute: (self.arch / 100, self.arch % 100 / 10),
            total_memory: 16 << 30,
            integrated: true,
            devices: 1,
        }
    }

    /// Runs `op`, or records it while a graph is captured.
    pub fn submit(&self, op: Op) -> Result<(), CudaError> {
        let mut capture = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        match capture.as_mut() {
            Some(ops) => {
                ops.push(op);
                Ok(())
            }
            None => {
                drop(capture);
                self.run(&op)
            }
        }
    }

    pub fn run(&self, op: &Op) -> Result<(), CudaError> {
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match op {
            Op::Launch { name, geo, args } => {
                // SAFETY: `args` are the kernel's arguments in its order, pointers inside host
                // allocations of this device whose extents `ops.rs` checked for this geometry.
                let rc = unsafe { (self.launch)(name.as_ptr(), geo.as_ptr(), args.as_ptr()) };
                if rc != 0 {
                    return Err(err(format!("no kernel {}", name.to_string_lossy())));
                }
            }
            // SAFETY: both ranges lie inside live allocations (checked when the copy was made);
            // they do not overlap (pinned staging to device memory).
            Op::Copy { src, dst, bytes } => unsafe {
                std::ptr::copy_nonoverlapping(*src as *const u8, *dst as *mut u8, *bytes)
            },
            // SAFETY: `dst` .. + bytes.len() lies inside a live allocation (checked by the caller).
            Op::Write { dst, bytes } => unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), *dst as *mut u8, bytes.len())
            },
        }
        Ok(())
    }

    pub fn begin_capture(&self) -> Result<(), CudaError> {
        let mut capture = self.capture.lock().unwrap_or_else(|e| e.into_inner());
        if capture.is_some() {
            return Err(err("a capture is already running".into()));
        }
        *capture = Some(Vec::new());
        Ok(())
    }

    pub fn end_capture(&self) -> Result<Vec<Op>, CudaError> {
        self.capture.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| err("no capture running".into()))
    }
}
