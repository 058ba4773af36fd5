//! CPU detection, once, into a table of function pointers that starts scalar and is upgraded
//! by the `plug` of each ISA of `x86::PLUGS` (or `arm::PLUGS`) that the CPU has.
//! `AUTARK_ISA=scalar|avx2|avx512|neon|neon-dotprod` caps the choice for tests and benchmarks. Hot loops read the table; they never test CPU features.

use std::sync::OnceLock;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
use crate::table::PlugFn;
pub use crate::table::{ByteDotsFn, GemmFn, Isa, Kernels};

#[cfg(target_arch = "aarch64")]
use crate::arm::{has, PLUGS};
#[cfg(target_arch = "x86_64")]
use crate::x86::{has, PLUGS};

/// Other architectures: the scalar table only.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const PLUGS: [(Isa, PlugFn); 0] = [];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn has(_: Isa) -> bool {
    false
}

impl Kernels {
    /// The best table for this CPU; `want` forces one ISA (falling back to the best below it
    /// that the CPU has; an ISA of another architecture gives the scalar table).
    pub fn best(want: Option<Isa>) -> Kernels {
        let mut k = Kernels::scalar();
        let top = PLUGS.last().map_or(Isa::Scalar, |p| p.0);
        for (isa, plug) in PLUGS {
            if want.is_none_or(|w| w >= isa && w <= top) && has(isa) {
                plug(&mut k);
            }
        }
        k
    }
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The process-wide table, built on first use from the CPU and `AUTARK_ISA`.
pub fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(|| {
        let want = match std::env::var("AUTARK_ISA") {
            Ok(s) if !s.is_empty() => match Isa::parse(&s) {
                Ok(isa) => Some(isa),
                Err(e) => {
                    eprintln!("autark: {e}; using the best available");
                    None
                }
            },
            _ => None,
        };
        let k = Kernels::best(want);
        if std::env::var_os("AUTARK_LOG").is_some() {
            eprintln!("autark: kernels activated: {}", k.isa.name());
        }
        k
    })
}

/// The ISAs this machine can run, best last (for tests and benchmarks).
pub fn available_isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|&isa| isa == Isa::Scalar || has(isa)).collect()
}
