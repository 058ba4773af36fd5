//! CPU detection, once, into a table of function pointers that starts scalar and is upgraded
//! by `x86::plug` (and later `arm::plug`). `AUTARK_ISA=scalar|avx2|avx512|neon|neon-dotprod` caps the choice
//! for tests and benchmarks. Hot loops read the table; they never test CPU features.

use std::sync::OnceLock;

pub use crate::table::{ByteDotsFn, GemmFn, Isa, Kernels};

impl Kernels {
    /// The best table for this CPU; `want` forces one ISA (falling back to the best below it
    /// that the CPU has).
    pub fn best(want: Option<Isa>) -> Kernels {
        #[allow(unused_mut)]
        let mut k = Kernels::scalar();
        #[cfg(target_arch = "x86_64")]
        crate::x86::plug(&mut k, want);
        #[cfg(target_arch = "aarch64")]
        crate::arm::plug(&mut k, want);
        let _ = want;
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
    let mut v = vec![Isa::Scalar];
    #[cfg(target_arch = "x86_64")]
    v.extend(crate::x86::available());
    #[cfg(target_arch = "aarch64")]
    v.extend(crate::arm::available());
    v
}
