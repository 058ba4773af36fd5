//! Import of synthetic models written by the test itself: a sharded bf16 Hugging Face folder
//! (written with the `safetensors` crate), and hostile GGUF / safetensors / HF inputs, through
//! the library and through the `autark` binary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use autark_format::AutarkFile;
use autark_kernels::DType;
use autark_quantize::Recipe;

fn tmp(tag: &str) -> tempfile::TempDir {
    tmp_dir(&format!("import-{tag}"))
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autark"))
}

mod common;
use common::*;

/// The synthetic Llama model as a Hugging Face folder `name` under `dir`.
fn llama_folder(dir: &std::path::Path, name: &str) -> PathBuf {
    let model = dir.join(name);
    std::fs::create_dir(&model).unwrap();
    write_hf(&model, "LlamaForCausalLM");
    model
}

#[test]
fn sharded_bf16_folder_imports_with_source_shapes() {
    let dir = tmp("hf");
    let model = llama_folder(dir.path(), "model");
    let out = dir.path().join("m.autark");
    let summary = autark_quantize::quantize(&model, &out, &Recipe::new(DType::Q8_0).unwrap(), &mut |_| {}).unwrap();
    assert_eq!(summary.tensors.len(), hf_tensors().len());
    let f = AutarkFile::open(&out).unwrap();
    assert!(f.verify().is_empty());
    let by_name: HashMap<String, Vec<usize>> =
        hf_tensors().into_iter().map(|(n, s)| (autark_quantize::hf::map_name(&n).unwrap(), s)).collect();
    for t in f.tensors() {
        assert_eq!(&t.shape, &by_name[&t.name], "{}", t.name);
        let want = if t.shape.len() == 1 { DType::F32 } else { DType::Q8_0 };
        assert_eq!(t.dtype, want, "{}", t.name);
    }
    // Llama q/k rows are reordered into GGUF's interleaved RoPE layout at import.
    assert_eq!(f.metadata().config.rope_layout, autark_format::RopeLayout::Interleaved);
    assert!(!f.metadata().config.tied_embeddings);
    // bf16 → q8_0: the error is q8_0's alone (bf16 values are exact in f32).
    for r in &summary.tensors {
        assert!(r.rel_rms_error < 0.01, "{}: {}", r.name, r.rel_rms_error);
    }
    // The binary's --json view agrees.
    let o = Command::new(bin()).args(["inspect", "--json"]).arg(&out).output().unwrap();
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for t in j["tensors"].as_array().unwrap() {
        let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, by_name[t["name"].as_str().unwrap()]);
    }
    // f32 import keeps bf16 values exactly.
    let out32 = dir.path().join("m32.autark");
    autark_quantize::quantize(&model, &out32, &Recipe::new(DType::F32).unwrap(), &mut |_| {}).unwrap();
    let f = AutarkFile::open(&out32).unwrap();
    let t = f.tensor("blk.1.ffn_down.weight").unwrap();
    let vals = autark_kernels::ops::cast_f32(f.data(t)).unwrap();
    assert!(vals.iter().all(|v| half::bf16::from_f32(*v).to_f32() == *v));
}

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn assert_clean_failure(o: &std::process::Output, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what}: status {:?}, stderr {stderr}", o.status);
    assert!(stderr.contains("autark: error:"), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

#[test]
fn hostile_inputs_give_typed_errors_and_keep_output() {
    let dir = tmp("bad");
    let out = dir.path().join("out.autark");
    std::fs::write(&out, b"keep me").unwrap();
    let mut cases: Vec<(&str, PathBuf)> = Vec::new();

    // GGUF: header claims 2^40 tensors; a string length past the end; wrong version; truncated.
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&3u32.to_le_bytes());
    g.extend_from_slice(&(1u64 << 40).to_le_bytes());
    g.extend_from_slice(&0u64.to_le_bytes());
    std::fs::write(dir.path().join("huge-count.gguf"), &g).unwrap();
    cases.push(("huge tensor count", dir.path().join("huge-count.gguf")));
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&3u32.to_le_bytes());
    g.extend_from_slice(&0u64.to_le_bytes());
    g.extend_from_slice(&1u64.to_le_bytes());
    g.extend_from_slice(&u64::MAX.to_le_bytes()); // key length
    std::fs::write(dir.path().join("huge-string.gguf"), &g).unwrap();
    cases.push(("huge string", dir.path().join("huge-string.gguf")));
    let mut g = b"GGUF".to_vec();
    g.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(dir.path().join("v1.gguf"), &g).unwrap();
    cases.push(("GGUF v1", dir.path().join("v1.gguf")));
    std::fs::write(dir.path().join("short.gguf"), b"GGUF\x03\x00").unwrap();
    cases.push(("truncated GGUF", dir.path().join("short.gguf")));
    std::fs::write(dir.path().join("random.bin"), [0x5au8; 100]).unwrap();
    cases.push(("not a model", dir.path().join("random.bin")));
    cases.push(("missing file", dir.path().join("does-not-exist.gguf")));

    // HF: unknown architecture; safetensors header length past the end.
    let hf = dir.path().join("gpt");
    std::fs::create_dir(&hf).unwrap();
    write_hf(&hf, "GPTNeoXForCausalLM");
    cases.push(("unknown architecture", hf.clone()));
    let hf2 = dir.path().join("badst");
    std::fs::create_dir(&hf2).unwrap();
    write_hf(&hf2, "LlamaForCausalLM");
    let shard = hf2.join("model-00001-of-00002.safetensors");
    let mut b = std::fs::read(&shard).unwrap();
    b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&shard, &b).unwrap();
    cases.push(("safetensors header past end", hf2.clone()));
    // HF: a tensor with the wrong shape (offsets consistent).
    let hf3 = dir.path().join("badshape");
    std::fs::create_dir(&hf3).unwrap();
    write_hf(&hf3, "LlamaForCausalLM");
    let cfg = hf3.join("config.json");
    let c = std::fs::read_to_string(&cfg).unwrap().replace("\"intermediate_size\":96", "\"intermediate_size\":128");
    std::fs::write(&cfg, c).unwrap();
    cases.push(("shape mismatch", hf3.clone()));

    for (what, input) in &cases {
        let o = run(&["quantize".as_ref(), input.as_os_str(), "-o".as_ref(), out.as_os_str()]);
        assert_clean_failure(&o, what);
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me", "{what}: output overwritten");
    }
    // Overlapping safetensors offsets.
    let hf4 = dir.path().join("overlap");
    std::fs::create_dir(&hf4).unwrap();
    write_hf(&hf4, "LlamaForCausalLM");
    let shard = hf4.join("model-00002-of-00002.safetensors");
    let b = std::fs::read(&shard).unwrap();
    let hlen = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&b[8..8 + hlen]).unwrap();
    let (first, second) = {
        let mut names: Vec<_> = header.keys().filter(|k| *k != "__metadata__").cloned().collect();
        names.sort_by_key(|n| header[n]["data_offsets"][0].as_u64().unwrap());
        (names[0].clone(), names[1].clone())
    };
    let offs = header[&first]["data_offsets"].clone();
    let shape = header[&first]["shape"].clone();
    header.get_mut(&second).unwrap()["data_offsets"] = offs;
    header.get_mut(&second).unwrap()["shape"] = shape;
    let mut hb = serde_json::to_vec(&header).unwrap();
    while hb.len() < hlen {
        hb.push(b' ');
    }
    assert_eq!(hb.len(), hlen, "rewritten header must keep its length");
    let mut nb = b.clone();
    nb[8..8 + hlen].copy_from_slice(&hb);
    std::fs::write(&shard, nb).unwrap();
    let o = run(&["quantize".as_ref(), hf4.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    assert_clean_failure(&o, "overlapping safetensors");
    assert!(String::from_utf8_lossy(&o.stderr).contains("overlap"));
    // Output equal to input is refused.
    let o = run(&["quantize".as_ref(), hf.as_os_str(), "-o".as_ref(), hf.join("config.json").as_os_str()]);
    assert_clean_failure(&o, "output is input");
    // Corrupted .autark files for inspect / run / verify.
    let good = dir.path().join("good.autark");
    let model = llama_folder(dir.path(), "okmodel");
    autark_quantize::quantize(&model, &good, &Recipe::new(DType::Q4_0).unwrap(), &mut |_| {}).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (what, cut) in [("truncated", bytes.len() / 2), ("header only", 128), ("empty", 0)] {
        let p = dir.path().join(format!("{what}.autark"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        for cmd in ["inspect", "verify", "run"] {
            let mut args: Vec<&std::ffi::OsStr> = vec![cmd.as_ref(), p.as_os_str()];
            if cmd == "run" {
                args.push(std::ffi::OsStr::new("-p"));
                args.push(std::ffi::OsStr::new("w3"));
            }
            assert_clean_failure(&run(&args), &format!("{cmd} {what}"));
        }
    }
    let p = dir.path().join("flipped.autark");
    let mut b = bytes.clone();
    let n = b.len();
    b[n - 3] ^= 0x40;
    std::fs::write(&p, &b).unwrap();
    let o = run(&["verify".as_ref(), p.as_os_str()]);
    assert_eq!(o.status.code(), Some(3));
    // A prompt longer than the context is a typed error.
    let long = "w3 ".repeat(100);
    let o = run(&[
        "run".as_ref(),
        good.as_os_str(),
        "-p".as_ref(),
        long.as_ref(),
        "-c".as_ref(),
        "16".as_ref(),
        "-n".as_ref(),
        "2".as_ref(),
    ]);
    assert_clean_failure(&o, "context overflow");
    assert!(String::from_utf8_lossy(&o.stderr).contains("context overflow"));
}

/// Whether libcuda is installed here (as scripts/check-cuda.sh decides it).
fn cuda_driver_present() -> bool {
    std::path::Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.1").exists()
        || std::process::Command::new("ldconfig")
            .arg("-p")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"))
}

/// `--device cuda` in a build without the `cuda` feature: exit 1 and one line saying how to get
/// one, before the model is even opened. In the `cuda` build (scripts/test.sh's own, whose
/// ThreadSanitizer step runs this file again in the default build) on a machine without a
/// driver: exit 1 and the one-line no-driver error; where a driver is present, nothing to check.
#[test]
fn device_cuda_without_the_feature_says_how_to_build_it() {
    let want: &[&str] = if cfg!(feature = "cuda") {
        &["no CUDA driver found (libcuda.so)"]
    } else {
        &["built without CUDA support", "--features cuda"]
    };
    for cmd in ["run", "bench", "perplexity"] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_autark"));
        c.args([cmd, "no-such-model.autark", "--device", "cuda"]);
        match cmd {
            "run" => c.args(["-p", "Hi"]),
            "perplexity" => c.args(["-f", "no-such-text.txt"]),
            _ => &mut c,
        };
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if cfg!(feature = "cuda") && cuda_driver_present() {
            println!("SKIP {cmd} --device cuda: a CUDA driver is present here ({})", err.trim_end());
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(want.iter().all(|w| err.contains(w)), "{cmd}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{cmd}: {err}");
    }
}

#[test]
fn the_quantized_file_does_not_depend_on_the_thread_count() {
    // Rows shared out over 1, 2 and 3 threads (3 does not divide the row counts): the same
    // tensor bytes, the same error report and the same conformance record (the scalar probe,
    // its pool's helpers running the scalar kernels too).
    let dir = tmp("threads");
    let model = llama_folder(dir.path(), "model");
    let mut files = Vec::new();
    for (threads, dtype) in [1, 2, 3].into_iter().flat_map(|t| [(t, DType::Q4_0), (t, DType::Q5_1)]) {
        let out = dir.path().join(format!("m-{threads}-{}.autark", dtype.name()));
        let mut recipe = Recipe::new(dtype).unwrap();
        recipe.threads = threads;
        let summary = autark_quantize::quantize(&model, &out, &recipe, &mut |_| {}).unwrap();
        let report: Vec<(String, u64, u64)> = summary
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.rms_error.to_bits(), t.rel_rms_error.to_bits()))
            .collect();
        files.push((threads, dtype, report, AutarkFile::open(&out).unwrap()));
    }
    for (threads, dtype, report, f) in &files[2..] {
        let (_, _, want_report, want) = files.iter().find(|(t, d, ..)| *t == 1 && d == dtype).unwrap();
        assert_eq!(report, want_report, "{threads} threads, {dtype:?}");
        assert!(report.iter().any(|(_, rms, _)| *rms != 0), "nothing was re-quantized");
        assert_eq!(f.metadata().conformance, want.metadata().conformance, "{threads} threads, {dtype:?}");
        assert_eq!(f.metadata().conformance.as_ref().unwrap().kernels, "scalar");
        for t in f.tensors() {
            assert_eq!(f.data(t), want.data(want.tensor(&t.name).unwrap()), "{} on {threads} threads", t.name);
        }
    }
}
