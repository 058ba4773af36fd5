//! `--device`: where the forward pass runs. The CPU always; CUDA only in a build with the `cuda`
//! feature (docs/CUDA.md), which checks the driver and the device before the model is loaded and
//! says in one line what is missing.

use super::{CliError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

/// Fails, with the reason, unless the forward pass can run on `device` in this build on this
/// machine.
pub fn require(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda => cuda(),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<()> {
    Err(CliError::Device(
        "this autark was built without CUDA support (build it with `cargo build --release -p autark-cli --features cuda`; docs/CUDA.md)"
            .into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<()> {
    autark_cuda::probe().map(drop).map_err(|e| CliError::Device(e.to_string()))
}

impl Device {
    /// The runtime's name for it.
    pub fn runtime(self) -> autark_runtime::Device {
        match self {
            Device::Cpu => autark_runtime::Device::Cpu,
            Device::Cuda => autark_runtime::Device::Cuda,
        }
    }
}
