//! The CUDA kernels' checks outside `cargo test` (docs/CUDA.md):
//!
//! - `autark-gpu-check ptx DIR ARCH…` compiles the kernels with NVRTC to `DIR/autark.ARCH.ptx`
//!   (no driver or GPU needed; `scripts/check-cuda-kernels.sh` assembles them with `ptxas`).
//! - `autark-gpu-check run [--ptx FILE]… [--json FILE]` on a machine with a GPU: describes the
//!   device, runs every kernel case of `autark_cuda::check` against the scalar CPU kernels with
//!   the kernels NVRTC compiles for this device and with each PTX file given (built for other
//!   compute capabilities, e.g. Jetson's, so their code paths run here too), and times each GEMV
//!   on a matrix larger than the GPU's cache. Exit code 1 when a case fails or nothing runs.

use std::fmt::Write as _;
use std::process::ExitCode;

use autark_cuda::check;
use autark_cuda::gpu::{self, Gpu};
use autark_cuda::kernels::Gemv;

const USAGE: &str = "usage: autark-gpu-check ptx DIR ARCH… | run [--ptx FILE]… [--json FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ptx") if args.len() >= 3 => emit_ptx(&args[1], &args[2..]),
        Some("run") => run(&args[1..]),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn emit_ptx(dir: &str, archs: &[String]) -> Result<(), String> {
    let (major, minor) = gpu::nvrtc_version().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    for arch in archs {
        let ptx = gpu::compile(arch).map_err(|e| e.to_string())?;
        let path = format!("{dir}/autark.{arch}.ptx");
        std::fs::write(&path, ptx).map_err(|e| format!("{path}: {e}"))?;
        println!("NVRTC {major}.{minor}: {path}");
    }
    Ok(())
}

/// Runs every case on `gpu`; one JSON object of the results, and whether all passed.
fn run_cases(gpu: &Gpu) -> (String, bool) {
    let mut ok = true;
    let mut json = format!("{{\"kernels\":{:?},\"cases\":[", gpu.kernels);
    for (i, case) in check::cases().iter().enumerate() {
        let verdict = gpu
            .run(case)
            .map_err(|e| e.to_string())
            .and_then(|(act, y)| check::compare(case, &check::expected(case), &act, &y));
        ok &= verdict.is_ok();
        println!(
            "  {} {}{}",
            if verdict.is_ok() { "PASS" } else { "FAIL" },
            case.name(),
            verdict.as_ref().err().map(|e| format!(": {e}")).unwrap_or_default()
        );
        let _ =
            write!(json, "{}{{\"case\":{:?},\"pass\":{}}}", if i > 0 { "," } else { "" }, case.name(), verdict.is_ok());
    }
    json.push_str("]}");
    (json, ok)
}

fn run(args: &[String]) -> Result<(), String> {
    let mut ptx_files = Vec::new();
    let mut json_path = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ptx" => ptx_files.push(it.next().ok_or(USAGE)?.clone()),
            "--json" => json_path = Some(it.next().ok_or(USAGE)?.clone()),
            _ => return Err(USAGE.into()),
        }
    }
    let info = autark_cuda::probe().map_err(|e| e.to_string())?;
    println!("device: {info}");
    let mut all_ok = true;
    let mut runs = Vec::new();
    let native = Gpu::new().map_err(|e| e.to_string())?;
    println!("kernels: {}", native.kernels);
    let (json, ok) = run_cases(&native);
    all_ok &= ok;
    runs.push(json);
    for file in &ptx_files {
        let ptx = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        match Gpu::with_ptx(ptx, file.clone()) {
            Ok(g) => {
                println!("kernels: {}", g.kernels);
                let (json, ok) = run_cases(&g);
                all_ok &= ok;
                runs.push(json);
            }
            Err(e) => {
                println!("kernels: {file}: {e}");
                all_ok = false;
                runs.push(format!("{{\"kernels\":{file:?},\"error\":{:?}}}", e.to_string()));
            }
        }
    }
    // Bandwidth: 16384 × 8192 weights (64–136 MiB, beyond the largest L2), one token.
    let (rows, cols) = (16384, 8192);
    let mut bench = Vec::new();
    println!("GEMV {rows}×{cols}, 1 token (median of 10 × 20 calls):");
    for gemv in Gemv::all() {
        let secs = native.time_gemv(gemv, rows, cols, 1, 10).map_err(|e| e.to_string())?;
        let bytes = gemv.matrix_bytes(rows, cols).expect("whole blocks");
        let gbs = bytes as f64 / secs / 1e9;
        println!("  {:<18} {:>8.1} µs  {:>7.1} GB/s of weights", gemv.name(), secs * 1e6, gbs);
        bench.push(format!(
            "{{\"kernel\":{:?},\"rows\":{rows},\"cols\":{cols},\"us\":{:.2},\"weight_gb_s\":{:.1}}}",
            gemv.name(),
            secs * 1e6,
            gbs
        ));
    }
    let json = format!(
        "{{\"device\":{:?},\"compute\":\"{}.{}\",\"driver_cuda\":{},\"runs\":[{}],\"gemv_bandwidth\":[{}],\"pass\":{all_ok}}}\n",
        info.name,
        info.compute.0,
        info.compute.1,
        info.driver_version,
        runs.join(","),
        bench.join(",")
    );
    if let Some(p) = json_path {
        std::fs::write(&p, json).map_err(|e| format!("{p}: {e}"))?;
    }
    if all_ok {
        Ok(())
    } else {
        Err("some kernel cases failed".into())
    }
}
