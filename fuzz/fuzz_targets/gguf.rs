//! The GGUF reader: `Source::open` (GGUF branch: metadata, tokenizer import, tensor table) and
//! `gguf::Gguf::open`, on arbitrary files. Errors are fine; panics, hangs and huge allocations
//! are not.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Total tensor bytes read per input (keeps every execution small).
const READ_BUDGET: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| common::scratch_dir("gguf"));
    let path = dir.join("input.gguf");
    // Most inputs get the magic prepended so the fuzzer spends its time past it; inputs that
    // already start with it (the seeds) are used as they are.
    let bytes: Vec<u8> = if data.starts_with(b"GGUF") {
        data.to_vec()
    } else {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(data);
        v
    };
    std::fs::write(&path, &bytes).expect("write scratch file");

    if let Ok(g) = autark_quantize::gguf::Gguf::open(&path) {
        let mut budget = READ_BUDGET;
        for t in &g.tensors {
            let _ = t.dtype();
            if t.nbytes <= budget {
                budget -= t.nbytes;
                let _ = g.read(t);
            }
        }
        let _ = autark_quantize::tokenizer::from_gguf(&g);
    }
    if let Ok(src) = autark_quantize::Source::open(&path) {
        let _ = src.expected_tensors();
        let mut budget = READ_BUDGET;
        for t in &src.tensors {
            let n = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX);
            if n.saturating_mul(4) <= budget {
                budget -= n * 4;
                let _ = src.read(t);
            }
        }
    }
});
