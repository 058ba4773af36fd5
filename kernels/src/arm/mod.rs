//! AArch64 kernels: NEON (always present on AArch64) and NEON with the dot-product extension
//! (`sdot`, Armv8.2+). Only the 8-bit product-sum differs between the two (`dot_i8x16`); the
//! rest is shared.

use crate::table::{Isa, PlugFn};

mod neon;

/// This module's ISAs, lowest first, each with its `plug`.
pub(crate) const PLUGS: [(Isa, PlugFn); 2] = [(Isa::Neon, neon::plain::plug), (Isa::NeonDot, neon::dotprod::plug)];

/// Whether this CPU runs `isa`.
pub(crate) fn has(isa: Isa) -> bool {
    match isa {
        Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
        Isa::NeonDot => has(Isa::Neon) && std::arch::is_aarch64_feature_detected!("dotprod"),
        _ => false,
    }
}
