//! CPU detection, once, into a table of function pointers that starts scalar and is upgraded
//! by the `plug` of each ISA of `x86::PLUGS` (or `arm::PLUGS`) that the CPU has.
//! `AUTARK_ISA=scalar|avx2|avx512|neon|neon-dotprod` caps the choice for tests and benchmarks. Hot loops read the table; they never test CPU features.

use std::cell::Cell;
use std::sync::OnceLock;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
use crate::table::PlugFn;
pub use crate::table::{ByteDotsFn, ByteRowsFn, GemmFn, Isa, Kernels};

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

thread_local! {
    /// The table `kernels()` gives on this thread while `with_isa` runs, if any.
    static OVERRIDE: Cell<Option<&'static Kernels>> = const { Cell::new(None) };
}

/// Runs `f` with the table of `isa` (or the best below it this CPU has) on the calling thread:
/// `kernels()` called from this thread gives it until `f` returns (or panics), and so does it
/// in the tasks of the pool loops this thread starts meanwhile (`crate::pool`), on whichever
/// helper runs them; other threads keep the process-wide table. The quantizer's conformance
/// probe runs the scalar kernels this way, on every core.
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    static TABLES: OnceLock<Vec<Kernels>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| Isa::ALL.iter().map(|&i| Kernels::best(Some(i))).collect());
    let k = &tables[Isa::ALL.iter().position(|&i| i == isa).expect("every ISA is in Isa::ALL")];
    with_table(Some(k), f)
}

/// The table `with_isa` set on this thread, if any.
pub(crate) fn overridden() -> Option<&'static Kernels> {
    OVERRIDE.with(Cell::get)
}

/// Runs `f` with `table` as this thread's override (`None`: the process-wide table).
pub(crate) fn with_table<R>(table: Option<&'static Kernels>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<&'static Kernels>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(table)));
    f()
}

/// The table for this thread: `with_isa`'s, else the process-wide one, built on first use from
/// the CPU and `AUTARK_ISA`.
pub fn kernels() -> &'static Kernels {
    if let Some(k) = OVERRIDE.with(Cell::get) {
        return k;
    }
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
