//! The whole CUDA backend on the CPU: `cuda/emu/device.cpp` (autark.cu's kernels under the
//! emulation header) built as a shared library and loaded through `AUTARK_CUDA_EMU`, so that
//! `autark run --device cuda` decodes synthetic models through every kernel, buffer, copy and
//! captured graph of `runtime/src/cuda.rs` — and must give the CPU backend's greedy text and,
//! for several weight types and layouts, its logits at every position (prefill, one token at a
//! time through a graph, without graphs), on the `__dp4a` path (610) and the Jetson Nano one
//! (530). Needs the `cuda` feature (`cargo test -p autark-cli --features
//! cuda`; `scripts/test.sh` builds it) and a C++20 compiler (`CXX`, else `g++`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// Weights uniform in ±SCALE/2: large enough that attention moves the logits.
const SCALE: f32 = 1.0;
/// Environment variables of a run.
type Env<'a> = &'a [(&'a str, &'a OsStr)];

/// Allowed max |Δlogit| relative to the largest logit.
const TOL: f32 = 1e-4;

fn emu_library(dir: &Path, arch: u32) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cuda/emu/device.cpp");
    let lib = dir.join(format!("libautark-emu-{arch}.so"));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let out = Command::new(&cxx)
        .args(["-std=c++20", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-DEMU_ARCH={arch}"))
        .arg("-o")
        .arg(&lib)
        .arg(&src)
        .arg("-lpthread")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler {cxx:?} (install g++): {e}"));
    assert!(out.status.success(), "{cxx} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    lib
}

/// `autark run` greedily on the fixed prompt; the generated text, or the error output.
fn run(model: &Path, device: &str, env: Env) -> Result<String, String> {
    // A context above autark_cuda::kernels::SPLIT_ATTENTION_MIN_CTX (512): the CUDA backend's
    // attention runs split over the sequence here (`autark logits` below: the single kernel).
    run_args(model, device, env, &["-p", "w3 w1 w4 w1 w5", "-n", "8", "-c", "600"])
}

/// `autark logits` of a fixed token sequence, in batches of `batch` (1: one-token passes, which
/// the CUDA backend captures into a graph and replays).
fn logits(
    model: &Path,
    out: &Path,
    device: &str,
    batch: usize,
    env: &[(&str, &OsStr)],
    extra: &[&str],
) -> Result<Vec<f32>, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autark"));
    cmd.arg("logits").arg(model).args(["--tokens", "3,1,4,1,5,9,2,6", "-t", "1", "--device", device]).args(extra);
    cmd.args(["--batch", &batch.to_string(), "-o"]).arg(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let st = cmd.output().expect("run autark");
    if !st.status.success() {
        return Err(String::from_utf8_lossy(&st.stderr).into_owned());
    }
    let bytes = std::fs::read(out).unwrap();
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
}

#[test]
fn a_synthetic_model_decoded_through_the_emulated_cuda_kernels_gives_the_cpu_text() {
    if !cfg!(feature = "cuda") {
        eprintln!(
            "SKIP: autark-cli built without the `cuda` feature (cargo test -p autark-cli --features cuda runs this)"
        );
        return;
    }
    let dir = common::tmp_dir("cuda-emu");
    let hf = dir.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_weights(&hf, "LlamaForCausalLM", common::HD, 7, SCALE);
    let bin = env!("CARGO_BIN_EXE_autark");
    let quantize = |name: &str, args: &[&str]| -> PathBuf {
        let out = dir.path().join(format!("{name}.autark"));
        let st = Command::new(bin).arg("quantize").arg(&hf).arg("-o").arg(&out).args(args).output().unwrap();
        assert!(st.status.success(), "quantize {args:?}: {}", String::from_utf8_lossy(&st.stderr));
        out
    };
    let lib610 = emu_library(dir.path(), 610);
    let lib530 = emu_library(dir.path(), 530);
    // (weights, the emulated architecture)
    let runs: Vec<(&str, Vec<&str>, &Path)> = vec![
        ("q8_0 rows16", vec!["-t", "q8_0"], &lib610),
        ("q4_0 rows16, compute 5.3", vec!["-t", "q4_0"], &lib530),
        ("q4_1 row-major, weights copied", vec!["-t", "q4_1", "--layout", "rows"], &lib610),
        ("q5_1 rows16, deinterleaved on upload", vec!["-t", "q5_1"], &lib610),
        ("f16", vec!["-t", "f16"], &lib530),
    ];
    let mut failures = Vec::new();
    let out = dir.path().join("logits.bin");
    for (i, (what, args, lib)) in runs.iter().enumerate() {
        let model = quantize(&format!("m{i}"), args);
        // The emulated device counts as integrated, so its matrices are read in place from the
        // file mapping by default; one model copies them to "device memory" instead.
        let mut emu: Vec<(&str, &OsStr)> = vec![("AUTARK_CUDA_EMU", lib.as_os_str())];
        if i == 2 {
            emu.push(("AUTARK_CUDA_WEIGHTS", OsStr::new("device")));
            // Copied through a small staging buffer: every matrix in several chunks of 500
            // bytes (no multiple of a block), alternating between the buffer's halves.
            emu.push(("AUTARK_CUDA_STAGING", OsStr::new("1000")));
        }
        // Generation through `autark run` on both architectures (the logits below cover the
        // other types, at less emulation time).
        if i < 2 {
            let cpu = run(&model, "cpu", &[]).unwrap_or_else(|e| panic!("{what}: the CPU run failed: {e}"));
            assert!(!cpu.trim().is_empty(), "{what}: the CPU generated nothing");
            match run(&model, "cuda", &emu) {
                Ok(gpu) if gpu == cpu => eprintln!("{what}: {:?} on both", cpu.trim()),
                Ok(gpu) => failures.push(format!("{what}: emulated CUDA gave {gpu:?}, the CPU {cpu:?}")),
                Err(e) => failures.push(format!("{what}: emulated CUDA failed: {e}")),
            }
        }
        // Every position's logits: a prefill batch, one-token passes through a captured graph,
        // and (once) one-token passes without graphs.
        let want32 = logits(&model, &out, "cpu", 64, &[], &[]).unwrap();
        let f16_cache = ["--cache-type-k", "f16", "--cache-type-v", "f16"];
        let no_graphs = [emu[0], ("AUTARK_CUDA_GRAPHS", OsStr::new("0"))];
        let emu = &emu[..];
        let mut ways: Vec<(&str, usize, Env, &[&str])> =
            vec![("a batch of 8", 64, emu, &[]), ("one token at a time", 1, emu, &[])];
        if i == 0 {
            ways.push(("one token at a time without graphs", 1, &no_graphs[..], &[]));
        }
        if i == 1 {
            ways.push(("an f16 KV cache, one token at a time", 1, emu, &f16_cache[..]));
        }
        for (how, batch, env, extra) in ways {
            // Against the CPU with the same cache type.
            let want =
                if extra.is_empty() { want32.clone() } else { logits(&model, &out, "cpu", 64, &[], extra).unwrap() };
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            match logits(&model, &out, "cuda", batch, env, extra) {
                Ok(got) => {
                    let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    eprintln!("{what}, {how}: max |Δlogit| {diff:.2e} of max |logit| {scale:.2}");
                    // The GPU adds in other orders: ~1e-7 of the scale here; a wrong index,
                    // sign or position moves logits by far more.
                    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) || diff > TOL * scale {
                        failures.push(format!("{what}, {how}: logits differ by {diff:.3e} (max |logit| {scale:.2})"));
                    }
                }
                Err(e) => failures.push(format!("{what}, {how}: emulated CUDA logits failed: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `autark run MODEL ARGS…` greedily on `device`; the text, or the error output.
fn run_args(model: &Path, device: &str, env: Env, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autark"));
    cmd.arg("run").arg(model).args(["--temp", "0", "-t", "1", "--device", device]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run autark");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Context shift and saved states on the CUDA backend (through the CPU cache's layout): the same
/// text as on the CPU, and a state saved on either device continues on the other.
#[test]
fn context_shift_and_saved_states_on_the_emulated_cuda_device_match_the_cpu() {
    if !cfg!(feature = "cuda") {
        eprintln!(
            "SKIP: autark-cli built without the `cuda` feature (cargo test -p autark-cli --features cuda runs this)"
        );
        return;
    }
    let dir = common::tmp_dir("cuda-emu-state");
    let hf = dir.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_weights(&hf, "LlamaForCausalLM", common::HD, 7, SCALE);
    let model = dir.path().join("m.autark");
    let st = Command::new(env!("CARGO_BIN_EXE_autark"))
        .arg("quantize")
        .arg(&hf)
        .arg("-o")
        .arg(&model)
        .args(["-t", "q8_0"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let lib = emu_library(dir.path(), 610);
    let emu: Vec<(&str, &OsStr)> = vec![("AUTARK_CUDA_EMU", lib.as_os_str())];
    // A 20-position context filled twice over: shifts keep 2 tokens and drop half the rest.
    let shift = ["-p", "w3 w1 w4 w1 w5", "-n", "30", "-c", "20", "--context-shift", "--keep", "2"];
    let cpu = run_args(&model, "cpu", &[], &shift).unwrap();
    let gpu = run_args(&model, "cuda", &emu, &shift).unwrap_or_else(|e| panic!("emulated CUDA: {e}"));
    assert_eq!(gpu, cpu, "context shift: the emulated GPU's text differs from the CPU's");
    assert!(cpu.split_whitespace().count() >= 30, "{cpu:?}");
    // Saved on one device, continued on the other: the CPU's continuation either way.
    let state = |d: &str| dir.path().join(format!("{d}.state"));
    let first = ["-p", "w3 w1 w4 w1 w5", "-n", "5", "--save-state"];
    run_args(&model, "cpu", &[], &[&first[..], &[state("cpu").to_str().unwrap()]].concat()).unwrap();
    run_args(&model, "cuda", &emu, &[&first[..], &[state("gpu").to_str().unwrap()]].concat())
        .unwrap_or_else(|e| panic!("emulated CUDA save: {e}"));
    let cont =
        |d: &str, s: &str, env: Env| run_args(&model, d, env, &["-n", "6", "--load-state", state(s).to_str().unwrap()]);
    let want = cont("cpu", "cpu", &[]).unwrap();
    for (d, s, env) in [("cuda", "cpu", &emu[..]), ("cpu", "gpu", &[][..]), ("cuda", "gpu", &emu[..])] {
        let got = cont(d, s, env).unwrap_or_else(|e| panic!("{d} from the {s} state: {e}"));
        assert_eq!(got, want, "continued on {d} from the state saved on {s}");
    }
    eprintln!("context shift: {:?} on both; saved states continue as {:?} across devices", cpu.trim(), want.trim());
    // `autark bench` decodes with the device's argmax too (`Session::eval_argmax`).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autark"));
    cmd.arg("bench").arg(&model).args(["-p", "4", "-n", "4", "-r", "1", "-t", "1", "--device", "cuda"]);
    let out = cmd.env("AUTARK_CUDA_EMU", &lib).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("tg4"), "bench: {table}{}", String::from_utf8_lossy(&out.stderr));
}
