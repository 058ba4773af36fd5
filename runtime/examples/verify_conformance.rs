//! Runs a model file's conformance probe with this machine's kernels (or `AUTARK_ISA=…`) and
//! compares it with the file's record, as `autark verify --conformance` does, from the runtime
//! crate alone: what an embedder without the CLI runs on a new device (scripts/conformance-arm.sh
//! runs the CLI's command under qemu-aarch64 instead).
//!
//! Usage: verify_conformance MODEL.autark [THREADS]   (exit 0 identical, 5 differs, 1 error)

use std::process::ExitCode;
use std::sync::Arc;

use autark_runtime::conformance::{verify, Verdict};
use autark_runtime::Model;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: verify_conformance MODEL.autark [THREADS]");
        return ExitCode::from(2);
    };
    let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(1);
    let model = match Model::load(std::path::Path::new(path)) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(1);
        }
    };
    let isa = autark_kernels::kernels().isa.name();
    match verify(&model, threads) {
        Ok(Verdict::Identical { steps }) => {
            println!("{path}: conformance: {steps} steps bit-identical with the record ({isa} kernels)");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Differs(d)) => {
            println!("{path}: conformance: DIFFERS at {d} ({isa} kernels)");
            ExitCode::from(5)
        }
        Ok(v) => {
            eprintln!("{path}: no comparable record: {v:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::from(1)
        }
    }
}
