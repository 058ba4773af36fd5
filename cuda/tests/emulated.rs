//! The CUDA kernels run on the CPU: `cuda/kernels/autark.cu` compiled by the host C++ compiler
//! with `cuda/emu/cuda_emu.h`, under AddressSanitizer and UBSan, for the `__dp4a` path
//! (`__CUDA_ARCH__` 610) and the Jetson Nano path (530), against the scalar CPU kernels on
//! every case of `autark_cuda::check`. Needs a C++20 compiler (`CXX`, else `g++`).

use std::path::{Path, PathBuf};
use std::process::Command;

use autark_cuda::check::{self, Case};
use autark_cuda::kernels::{self, Launch};

fn harness(arch: u32) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("emu");
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cuda-emu-{arch}"));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let out = Command::new(&cxx)
        .args(["-std=c++20", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .args(["-Wall", "-Wextra", "-Werror", &format!("-DEMU_ARCH={arch}"), "-o"])
        .arg(&exe)
        .arg(dir.join("harness.cpp"))
        .arg("-lpthread")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler {cxx:?} (install g++): {e}"));
    assert!(out.status.success(), "{cxx} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn push_launch(buf: &mut Vec<u8>, l: Launch) {
    for v in l.grid.into_iter().chain(l.block) {
        buf.extend(v.to_le_bytes());
    }
}

/// The case file `emu/harness.cpp` reads.
fn case_file(case: &Case) -> Vec<u8> {
    let mut buf = b"AUTKEMU1".to_vec();
    let mut name = [0u8; 32];
    let n = case.gemv.name();
    name[..n.len()].copy_from_slice(n.as_bytes());
    buf.extend(name);
    push_launch(&mut buf, kernels::quantize_act(case.n_act_blocks()));
    push_launch(&mut buf, case.gemv.launch(case.rows, case.tokens));
    for v in [case.n_act_blocks(), case.gemv.rows_arg(case.rows), case.blocks_per_row()] {
        buf.extend((v as i32).to_le_bytes());
    }
    for v in [case.w.len(), case.x.len(), case.rows * case.tokens] {
        buf.extend((v as u64).to_le_bytes());
    }
    buf.extend(&case.w);
    for v in &case.x {
        buf.extend(v.to_le_bytes());
    }
    buf
}

fn run(arch: u32) {
    let exe = harness(arch);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut failures = Vec::new();
    let cases = check::cases();
    for (i, case) in cases.iter().enumerate() {
        let input = dir.join(format!("cuda-emu-{arch}-{i}.in"));
        let output = dir.join(format!("cuda-emu-{arch}-{i}.out"));
        std::fs::write(&input, case_file(case)).expect("write the case");
        let out = Command::new(&exe).arg(&input).arg(&output).output().expect("run the harness");
        if !out.status.success() {
            failures.push(format!("{}: harness failed\n{}", case.name(), String::from_utf8_lossy(&out.stderr)));
            continue;
        }
        let bytes = std::fs::read(&output).expect("read the result");
        let act_len = case.n_act_blocks() * check::ACT_BLOCK_BYTES;
        assert_eq!(bytes.len(), act_len + 4 * case.rows * case.tokens, "{}", case.name());
        let y: Vec<f32> = bytes[act_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        if let Err(e) = check::compare(case, &check::expected(case), &bytes[..act_len], &y) {
            failures.push(format!("{}: {e}", case.name()));
        }
    }
    assert!(failures.is_empty(), "__CUDA_ARCH__ {arch}:\n{}", failures.join("\n"));
    eprintln!("__CUDA_ARCH__ {arch}: {} cases match the scalar CPU kernels", cases.len());
}

#[test]
fn kernels_match_the_cpu_on_the_dp4a_path() {
    run(610);
}

#[test]
fn kernels_match_the_cpu_on_the_jetson_nano_path() {
    run(530);
}
