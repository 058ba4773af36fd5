//! Benchmarks only: see `benches/kernels.rs`. This library holds the ggml peer: current ggml's
//! CPU dot products, built by `scripts/ggml-peer.sh` and loaded at run time when present.

pub mod ggml_peer {
    use std::ffi::{c_int, c_void, CString};
    use std::path::Path;

    type VecDot = unsafe extern "C" fn(c_int, *mut f32, usize, *const c_void, usize, *const c_void, usize, c_int);
    type Quantize = unsafe extern "C" fn(*const f32, *mut c_void, i64);

    /// A weight type's ggml dot product and the activation format it takes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        /// `ggml_vec_dot_q4_0_q8_0` (activations `block_q8_0`: f16 d, 32 × i8; 34 bytes).
        Q4_0,
        /// `ggml_vec_dot_q4_1_q8_1` (activations `block_q8_1`: f16 d, f16 s, 32 × i8; 36 bytes).
        Q4_1,
        /// `ggml_vec_dot_q8_0_q8_0`.
        Q8_0,
    }

    impl Kind {
        fn act_block(self) -> usize {
            if self == Kind::Q4_1 {
                36
            } else {
                34
            }
        }
        fn weight_block(self) -> usize {
            match self {
                Kind::Q4_0 => 18,
                Kind::Q4_1 => 20,
                Kind::Q8_0 => 34,
            }
        }
    }

    /// The loaded library (never unloaded: the process ends with the benchmark).
    pub struct Peer {
        q4_0: VecDot,
        q4_1: VecDot,
        q8_0: VecDot,
        quantize_q8_0: Quantize,
        quantize_q8_1: Quantize,
    }

    impl Peer {
        /// Loads `path`; `None` (with the reason on stderr) if it is missing or lacks a symbol.
        pub fn load(path: &Path) -> Option<Peer> {
            let c = CString::new(path.to_str()?).ok()?;
            // SAFETY: dlopen with a NUL-terminated path; a null result is handled.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if h.is_null() {
                eprintln!("ggml peer: cannot load {} (run scripts/ggml-peer.sh)", path.display());
                return None;
            }
            let sym = |name: &str| -> Option<*mut c_void> {
                let n = CString::new(name).ok()?;
                // SAFETY: `h` is a live handle and `n` NUL-terminated; null is handled below.
                let p = unsafe { libc::dlsym(h, n.as_ptr()) };
                (!p.is_null()).then_some(p).or_else(|| {
                    eprintln!("ggml peer: {} lacks {name}", path.display());
                    None
                })
            };
            // SAFETY: each symbol is the ggml function of that name, whose C signature
            // (ggml-cpu/quants.h) the type aliases above spell out; the handle is never closed.
            unsafe {
                Some(Peer {
                    q4_0: std::mem::transmute::<*mut c_void, VecDot>(sym("ggml_vec_dot_q4_0_q8_0")?),
                    q4_1: std::mem::transmute::<*mut c_void, VecDot>(sym("ggml_vec_dot_q4_1_q8_1")?),
                    q8_0: std::mem::transmute::<*mut c_void, VecDot>(sym("ggml_vec_dot_q8_0_q8_0")?),
                    quantize_q8_0: std::mem::transmute::<*mut c_void, Quantize>(sym("quantize_row_q8_0")?),
                    quantize_q8_1: std::mem::transmute::<*mut c_void, Quantize>(sym("quantize_row_q8_1")?),
                })
            }
        }

        /// The default build location of `scripts/ggml-peer.sh`, or `AUTARK_GGML_PEER`.
        pub fn find() -> Option<Peer> {
            let p = std::env::var_os("AUTARK_GGML_PEER")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ggml-peer/libggml-peer.so"));
            if !p.exists() {
                eprintln!("ggml peer: {} not built (scripts/ggml-peer.sh); no ggml rows", p.display());
                return None;
            }
            Peer::load(&p)
        }

        /// Activations `x` (a multiple of 32 values) in the format `kind`'s dot product takes.
        pub fn quantize(&self, kind: Kind, x: &[f32]) -> Vec<u8> {
            assert!(x.len().is_multiple_of(32));
            let mut out = vec![0u8; x.len() / 32 * kind.act_block()];
            let f = if kind == Kind::Q4_1 { self.quantize_q8_1 } else { self.quantize_q8_0 };
            // SAFETY: `out` holds x.len() / 32 blocks of the format written; ggml reads
            // x.len() values and writes exactly those blocks.
            unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
            out
        }

        /// One row (GGUF block bytes, `n` values) · activations from `quantize`.
        pub fn dot(&self, kind: Kind, n: usize, row: &[u8], act: &[u8]) -> f32 {
            assert!(
                n.is_multiple_of(32)
                    && row.len() == n / 32 * kind.weight_block()
                    && act.len() == n / 32 * kind.act_block()
            );
            let f = match kind {
                Kind::Q4_0 => self.q4_0,
                Kind::Q4_1 => self.q4_1,
                Kind::Q8_0 => self.q8_0,
            };
            let mut s = 0f32;
            // SAFETY: lengths asserted above; nrc = 1 reads one row and one activation row and
            // writes one float.
            unsafe { f(n as c_int, &mut s, 0, row.as_ptr().cast(), 0, act.as_ptr().cast(), 0, 1) };
            s
        }
    }
}
