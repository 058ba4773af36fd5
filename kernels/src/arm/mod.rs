//! AArch64 kernels: NEON (always present on AArch64) and NEON with the dot-product extension
//! (`sdot`, Armv8.2+). Only the 8-bit product-sum differs between the two (`dot_i8x16`); the
//! rest is shared.

use crate::table::{Isa, Kernels};

mod neon;

pub(crate) fn has_neon() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

pub(crate) fn has_dotprod() -> bool {
    has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Upgrades the slots of `k`; `want` forces one ISA (or the best below it the CPU has).
pub fn plug(k: &mut Kernels, want: Option<Isa>) {
    let allow = |isa: Isa| want.is_none_or(|w| w >= isa && w >= Isa::Neon);
    if allow(Isa::Neon) && has_neon() {
        neon::plain::plug(k);
    }
    if allow(Isa::NeonDot) && has_dotprod() {
        neon::dotprod::plug(k);
    }
}

/// The AArch64 ISAs this CPU can run.
pub fn available() -> Vec<Isa> {
    let mut v = Vec::new();
    if has_neon() {
        v.push(Isa::Neon);
    }
    if has_dotprod() {
        v.push(Isa::NeonDot);
    }
    v
}
