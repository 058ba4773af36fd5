//! The CUDA side of autark (docs/CUDA.md): finding the driver and the device. The driver and
//! NVRTC are loaded at run time (cudarc's `dynamic-loading`), so a binary built with CUDA support
//! starts on a machine without them and reports what is missing in one line.
//!
//! `unsafe` here is the driver's FFI only.

use std::fmt;

pub mod check;
mod emu;
pub mod gpu;
pub mod kernels;
pub mod ops;

use cudarc::driver::result as cu;
use cudarc::driver::sys;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver found (libcuda.so)")]
    NoDriver,
    #[error("no CUDA device")]
    NoDevice,
    #[error("CUDA driver: {call} failed: {error}")]
    Driver { call: &'static str, error: String },
    #[error("no NVRTC found (libnvrtc.so): the kernels are compiled on the device at run time")]
    NoNvrtc,
    #[error("NVRTC could not compile the kernels for {arch}: {log}")]
    Compile { arch: String, log: String },
    #[error("{what} rejected by driver CUDA {}.{}: {error}", driver / 1000, driver % 1000 / 10)]
    Rejected { what: String, driver: i32, error: String },
}

fn driver(call: &'static str) -> impl FnOnce(cu::DriverError) -> CudaError {
    move |e| CudaError::Driver { call, error: e.to_string() }
}

/// The first CUDA device and its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    /// The driver's CUDA version, e.g. 12020 for 12.2.
    pub driver_version: i32,
    /// Compute capability (major, minor): (8, 7) for Jetson Orin, (5, 3) for Jetson Nano.
    pub compute: (i32, i32),
    pub total_memory: usize,
    /// The GPU shares the host's memory (Jetson).
    pub integrated: bool,
    pub devices: i32,
}

impl DeviceInfo {
    /// `__dp4a` (4-way int8 dot product) exists from compute capability 6.1 on.
    pub fn has_dp4a(&self) -> bool {
        self.compute >= (6, 1)
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (compute {}.{}, {:.1} GiB{}, driver CUDA {}.{})",
            self.name,
            self.compute.0,
            self.compute.1,
            self.total_memory as f64 / (1u64 << 30) as f64,
            if self.integrated { ", integrated" } else { "" },
            self.driver_version / 1000,
            self.driver_version % 1000 / 10
        )
    }
}

/// Is the driver library (libcuda.so / nvcuda.dll) on this machine?
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library by its usual names (libloading); nothing is called.
    unsafe { sys::is_culib_present() }
}

/// Loads the driver, initialises it and describes device 0. cudarc panics when the library is
/// missing, so its presence is checked first.
/// With `AUTARK_CUDA_EMU` set, the emulated device's description instead (docs/CUDA.md).
pub fn probe() -> Result<DeviceInfo, CudaError> {
    if let Some(lib) = emu::path() {
        return Ok(emu::Device::load(&lib)?.info());
    }
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    cu::init().map_err(driver("cuInit"))?;
    let devices = cu::device::get_count().map_err(driver("cuDeviceGetCount"))?;
    if devices < 1 {
        return Err(CudaError::NoDevice);
    }
    let dev = cu::device::get(0).map_err(driver("cuDeviceGet"))?;
    let attr = |a, call| {
        // SAFETY: `dev` came from `cuDeviceGet` of an initialised driver.
        unsafe { cu::device::get_attribute(dev, a) }.map_err(driver(call))
    };
    use sys::CUdevice_attribute as A;
    let major = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "cuDeviceGetAttribute(major)")?;
    let minor = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "cuDeviceGetAttribute(minor)")?;
    let integrated = attr(A::CU_DEVICE_ATTRIBUTE_INTEGRATED, "cuDeviceGetAttribute(integrated)")? != 0;
    // SAFETY: as above.
    let total_memory = unsafe { cu::device::total_mem(dev) }.map_err(driver("cuDeviceTotalMem"))?;
    let mut version = 0;
    // SAFETY: the driver is loaded and initialised; the pointer is to a live i32.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result().map_err(driver("cuDriverGetVersion"))?;
    Ok(DeviceInfo {
        name: cu::device::get_name(dev).map_err(driver("cuDeviceGetName"))?,
        driver_version: version,
        compute: (major, minor),
        total_memory,
        integrated,
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_a_typed_error_not_a_panic() {
        if driver_present() {
            eprintln!("SKIP: a CUDA driver is present here; probe() found {:?}", probe());
            return;
        }
        let e = probe().unwrap_err();
        assert!(matches!(e, CudaError::NoDriver), "{e:?}");
        assert_eq!(e.to_string(), "no CUDA driver found (libcuda.so)");
    }

    #[test]
    fn device_info_reads_as_one_line() {
        let orin = DeviceInfo {
            name: "Orin".into(),
            driver_version: 12020,
            compute: (8, 7),
            total_memory: 8 << 30,
            integrated: true,
            devices: 1,
        };
        assert_eq!(orin.to_string(), "Orin (compute 8.7, 8.0 GiB, integrated, driver CUDA 12.2)");
        assert!(orin.has_dp4a());
        assert!(!DeviceInfo { compute: (5, 3), ..orin }.has_dp4a());
    }
}
