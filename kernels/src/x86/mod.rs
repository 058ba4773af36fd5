//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI).

use crate::dispatch::{Isa, Kernels};

/// Upgrades the slots of `k` to the best ISA this CPU has, up to `limit`.
pub fn plug(k: &mut Kernels, want: Option<Isa>) {
    let _ = (k, want);
}

/// The x86 ISAs this CPU can run.
pub fn available() -> Vec<Isa> {
    Vec::new()
}
