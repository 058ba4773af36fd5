//! Hugging Face inputs: the input's first byte picks the file it becomes — even: a
//! `model.safetensors` for `hf::read_safetensors_header`; odd: a `config.json` for
//! `hf::parse_config` (and `hf::read_json`). Errors are fine; panics and hangs are not.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static DIR: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let dir = DIR.get_or_init(|| common::scratch_dir("safetensors"));
    if sel & 1 == 0 {
        let path = dir.join("model.safetensors");
        std::fs::write(&path, rest).expect("write scratch file");
        if let Ok(ts) = autark_quantize::hf::read_safetensors_header(&path) {
            let len = rest.len() as u64;
            for t in &ts {
                assert!(t.offset.checked_add(t.nbytes).is_some_and(|e| e <= len), "{} outside the file", t.name);
                let _ = autark_quantize::hf::map_name(&t.name);
                if t.nbytes <= 1 << 20 {
                    let _ = autark_quantize::hf::read_tensor(t);
                }
            }
        }
    } else {
        let path = dir.join("config.json");
        std::fs::write(&path, rest).expect("write scratch file");
        if let Ok((_arch, cfg)) = autark_quantize::hf::parse_config(&path) {
            // As `Source::open` does: plan tensors only from a configuration that validates.
            if cfg.validate().is_ok() {
                let _ = autark_format::expected_tensors(&cfg);
            }
        }
        let _ = autark_quantize::hf::read_json(&path);
    }
});
