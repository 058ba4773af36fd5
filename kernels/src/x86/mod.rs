//! x86-64 kernels. Two tables over one set of kernel bodies:
//! - `avx2`: AVX2 + FMA + F16C; signed 8-bit products through `vpmaddubsw` + `vpmaddwd`.
//! - `avx512`: the same bodies compiled with AVX-512 F/BW/VL + VNNI, where the product-sum is
//!   one `vpdpbusd` (`dot_u8i8` below), the choice that matters for quantized dot products.
//!
//! The bodies are `#[target_feature]` functions; the table slots are safe wrappers that are
//! only installed after `is_x86_feature_detected!` confirmed every feature the body needs.

use crate::dispatch::{Isa, Kernels};

#[macro_use]
mod bytes;
mod kernels;
mod zmm;

fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

fn has_avx512() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Upgrades the slots of `k` to the best ISA this CPU has; `want` forces one (falling back to
/// the best below it that the CPU has).
pub fn plug(k: &mut Kernels, want: Option<Isa>) {
    let allow = |isa: Isa| want.is_none_or(|w| w >= isa && w <= Isa::Avx512);
    if allow(Isa::Avx2) && has_avx2() {
        kernels::avx2::plug(k);
    }
    if allow(Isa::Avx512) && has_avx512() {
        kernels::avx512::plug(k);
        zmm::plug(k);
    }
}

/// The x86 ISAs this CPU can run.
pub fn available() -> Vec<Isa> {
    let mut v = Vec::new();
    if has_avx2() {
        v.push(Isa::Avx2);
    }
    if has_avx512() {
        v.push(Isa::Avx512);
    }
    v
}
