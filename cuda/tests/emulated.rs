//! The CUDA kernels run on the CPU: `cuda/kernels/autark.cu` compiled by the host C++ compiler
//! with `cuda/emu/cuda_emu.h`, under AddressSanitizer and UBSan, for the `__dp4a` path
//! (`__CUDA_ARCH__` 610) and the Jetson Nano path (530), against the scalar CPU kernels on
//! every case of `autark_cuda::check`; and the f32 kernels of a forward pass (RMSNorm, adds,
//! gating, RoPE, KV store, attention, row selection, argmax) against `autark_kernels::ops` and an f64
//! attention reference, with the launch geometry of `autark_cuda::kernels`. Needs a C++20
//! compiler (`CXX`, else `g++`).

use std::path::{Path, PathBuf};
use std::process::Command;

use autark_cuda::check::{self, Case};
use autark_cuda::kernels::{self, Launch};
use autark_kernels::ops;
use autark_kernels::rng::Rng;
use autark_kernels::types::{f16_to_f32, f32_to_f16};

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
    let n = case.gemv.kernel(case.tokens);
    name[..n.len()].copy_from_slice(n.as_bytes());
    buf.extend(name);
    let n_act = case.n_act_blocks();
    push_launch(&mut buf, kernels::quantize_act(n_act));
    push_launch(&mut buf, case.gemv.launch(case.rows, case.tokens));
    for v in [n_act, case.gemv.rows_arg(case.rows), case.gemv.cols_arg(case.cols), case.tokens] {
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
        let n_act = case.n_act_blocks();
        let act_len = n_act * check::ACT_BLOCK_BYTES;
        assert_eq!(bytes.len(), act_len + 4 * case.rows * case.tokens, "{}", case.name());
        let y: Vec<f32> = bytes[act_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        if let Err(e) = check::compare(case, &check::expected(case), &bytes[..act_len], &y) {
            failures.push(format!("{}: {e}", case.name()));
        }
    }
    failures.extend(f32_ops(&exe, dir, arch));
    assert!(failures.is_empty(), "__CUDA_ARCH__ {arch}:\n{}", failures.join("\n"));
    eprintln!("__CUDA_ARCH__ {arch}: {} GEMV cases and the f32 kernels match the CPU", cases.len());
}

/// An argument of an f32 kernel: a buffer (by index), an int, a float.
#[derive(Clone, Copy)]
enum A {
    B(u32),
    I(usize),
    F(f32),
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn ints(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Runs kernel `name` once in the harness; every buffer afterwards.
fn op(exe: &Path, dir: &Path, tag: &str, name: &str, l: Launch, bufs: &[Vec<u8>], args: &[A]) -> Vec<Vec<u8>> {
    let mut f = b"AUTKOPS1".to_vec();
    let mut n = [0u8; 32];
    n[..name.len()].copy_from_slice(name.as_bytes());
    f.extend(n);
    push_launch(&mut f, l);
    f.extend((bufs.len() as u32).to_le_bytes());
    for b in bufs {
        f.extend((b.len() as u64).to_le_bytes());
        f.extend(b);
    }
    f.extend((args.len() as u32).to_le_bytes());
    for a in args {
        let (kind, v) = match *a {
            A::B(i) => (0u8, i),
            A::I(i) => (1, i32::try_from(i).unwrap() as u32),
            A::F(x) => (2, x.to_bits()),
        };
        f.push(kind);
        f.extend(v.to_le_bytes());
    }
    let (input, output) = (dir.join(format!("op-{tag}.in")), dir.join(format!("op-{tag}.out")));
    std::fs::write(&input, f).unwrap();
    let out = Command::new(exe).arg(&input).arg(&output).output().unwrap();
    assert!(out.status.success(), "{name}: harness failed\n{}", String::from_utf8_lossy(&out.stderr));
    let all = std::fs::read(&output).unwrap();
    let mut at = 0;
    bufs.iter()
        .map(|b| {
            at += b.len();
            all[at - b.len()..at].to_vec()
        })
        .collect()
}

/// `got` within `rel` · max|want| (+ a floor) of `want`, else the first difference.
fn close(what: &str, got: &[f32], want: &[f32], rel: f32) -> Result<(), String> {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs().is_nan() || (g - w).abs() > rel * scale + 1e-7 {
            return Err(format!("{what}: value {i} is {g}, the CPU gives {w}"));
        }
    }
    (got.len() == want.len()).then_some(()).ok_or(format!("{what}: {} values, expected {}", got.len(), want.len()))
}

fn f32_ops(exe: &Path, dir: &Path, arch: u32) -> Vec<String> {
    let mut rng = Rng::new(arch as u64);
    let mut fails = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            fails.push(e);
        }
    };
    let t = |s: &str| format!("{arch}-{s}");

    // RMSNorm into another buffer and in place, a width that is no multiple of the block.
    let (rows, width, eps) = (3, 200, 1e-5f32);
    let (x, w) = (rng.vec(rows * width, 2.0), rng.vec(width, 1.0));
    let mut want = vec![0f32; rows * width];
    for (o, xr) in want.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
        ops::rmsnorm(o, xr, &w, eps);
    }
    let l = kernels::per_row(rows, kernels::F32_THREADS);
    let args = [A::B(0), A::B(1), A::B(2), A::I(width), A::F(eps)];
    let out = op(exe, dir, &t("rms"), "rmsnorm_f32", l, &[vec![0; rows * width * 4], bytes(&x), bytes(&w)], &args);
    check(close("rmsnorm_f32", &floats(&out[0]), &want, 1e-6));
    let args = [A::B(0), A::B(0), A::B(1), A::I(width), A::F(eps)];
    let out = op(exe, dir, &t("rms-in-place"), "rmsnorm_f32", l, &[bytes(&x), bytes(&w)], &args);
    check(close("rmsnorm_f32 in place", &floats(&out[0]), &want, 1e-6));

    // Bias and residual adds: exact.
    let (total, width) = (3 * 50, 50);
    let (a, b) = (rng.vec(total, 1.0), rng.vec(total, 1.0));
    let l = kernels::elementwise(total);
    let out = op(
        exe,
        dir,
        &t("bias"),
        "add_bias_f32",
        l,
        &[bytes(&a), bytes(&b[..width])],
        &[A::B(0), A::B(1), A::I(width), A::I(total)],
    );
    let want: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + b[i % width]).collect();
    check(close("add_bias_f32", &floats(&out[0]), &want, 0.0));
    let out = op(exe, dir, &t("add"), "add_f32", l, &[bytes(&a), bytes(&b)], &[A::B(0), A::B(1), A::I(total)]);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    check(close("add_f32", &floats(&out[0]), &want, 0.0));

    // Gating: SiLU (the CPU's own exp) and GELU's tanh form.
    let (g, u) = (rng.vec(total, 6.0), rng.vec(total, 1.0));
    for (act, name) in [(0, "silu"), (1, "gelu")] {
        let mut want = g.clone();
        if act == 0 {
            ops::silu_mul(&mut want, &u);
        } else {
            ops::gelu_tanh_mul(&mut want, &u);
        }
        let out =
            op(exe, dir, &t(name), "glu_f32", l, &[bytes(&g), bytes(&u)], &[A::B(0), A::B(1), A::I(total), A::I(act)]);
        check(close(&format!("glu_f32 {name}"), &floats(&out[0]), &want, 1e-6));
    }

    // RoPE, both layouts: 2 rows at positions 4 and 1, 3 query heads and 1 key head of 8.
    let (n_q, n_k, hd, n_ctx) = (3, 1, 8, 5);
    let (cos, sin) = (rng.vec(n_ctx * hd / 2, 1.0), rng.vec(n_ctx * hd / 2, 1.0));
    let pos = [4i32, 1];
    let (q, k) = (rng.vec(2 * n_q * hd, 1.0), rng.vec(2 * n_k * hd, 1.0));
    for interleaved in [true, false] {
        let (mut wq, mut wk) = (q.clone(), k.clone());
        for (r, &p) in pos.iter().enumerate() {
            let p = p as usize;
            let (c, s) = (&cos[p * hd / 2..(p + 1) * hd / 2], &sin[p * hd / 2..(p + 1) * hd / 2]);
            wq[r * n_q * hd..(r + 1) * n_q * hd]
                .chunks_exact_mut(hd)
                .for_each(|h| ops::rope_head(h, c, s, interleaved));
            wk[r * n_k * hd..(r + 1) * n_k * hd]
                .chunks_exact_mut(hd)
                .for_each(|h| ops::rope_head(h, c, s, interleaved));
        }
        let bufs = [bytes(&q), bytes(&k), bytes(&cos), bytes(&sin), ints(&pos)];
        let args =
            [A::B(0), A::B(1), A::B(2), A::B(3), A::B(4), A::I(n_q), A::I(n_k), A::I(hd), A::I(interleaved as usize)];
        let out = op(exe, dir, &t(&format!("rope{interleaved}")), "rope_f32", kernels::per_row(2, 128), &bufs, &args);
        check(close("rope_f32 q", &floats(&out[0]), &wq, 1e-6));
        check(close("rope_f32 k", &floats(&out[1]), &wk, 1e-6));
    }

    // KV store, then attention of 3 rows (positions 6, 7, 8) over a 9-position cache, 4 query
    // heads on 2 KV heads, the whole context and a window of 3.
    let (n_heads, n_kv, hd, n_ctx, rows) = (4, 2, 8, 9, 3);
    let kv_dim = n_kv * hd;
    let pos = [6i32, 7, 8];
    let (kc0, vc0) = (rng.vec(n_ctx * kv_dim, 1.0), rng.vec(n_ctx * kv_dim, 1.0));
    let (k, v, q) = (rng.vec(rows * kv_dim, 1.0), rng.vec(rows * kv_dim, 1.0), rng.vec(rows * n_heads * hd, 1.0));
    let bufs = [bytes(&kc0), bytes(&vc0), bytes(&k), bytes(&v), ints(&pos)];
    let args = [A::B(0), A::B(1), A::B(2), A::B(3), A::B(4), A::I(kv_dim)];
    let stored = op(exe, dir, &t("kv"), "kv_store_f32", kernels::per_row(rows, 128), &bufs, &args);
    let (mut kc, mut vc) = (kc0.clone(), vc0.clone());
    for (r, &p) in pos.iter().enumerate() {
        kc[p as usize * kv_dim..][..kv_dim].copy_from_slice(&k[r * kv_dim..][..kv_dim]);
        vc[p as usize * kv_dim..][..kv_dim].copy_from_slice(&v[r * kv_dim..][..kv_dim]);
    }
    check(close("kv_store_f32 k", &floats(&stored[0]), &kc, 0.0));
    check(close("kv_store_f32 v", &floats(&stored[1]), &vc, 0.0));
    let scale = 1.0 / (hd as f32).sqrt();
    // The f64 reference: softmax(scale · q·Kᵀ) · V over each row's window.
    let reference = |q: &[f32], kc: &[f32], vc: &[f32], window: usize| -> Vec<f32> {
        let mut want = vec![0f32; rows * n_heads * hd];
        for (r, &p) in pos.iter().enumerate() {
            let p = p as usize;
            let first = (p + 1).saturating_sub(window);
            for h in 0..n_heads {
                let qh = &q[(r * n_heads + h) * hd..][..hd];
                let kvo = (h / (n_heads / n_kv)) * hd;
                let s: Vec<f64> = (first..=p)
                    .map(|j| {
                        qh.iter().zip(&kc[j * kv_dim + kvo..][..hd]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for i in 0..hd {
                    let o: f64 = (first..=p).zip(&e).map(|(j, w)| w * vc[j * kv_dim + kvo + i] as f64).sum();
                    want[(r * n_heads + h) * hd + i] = (o / sum) as f32;
                }
            }
        }
        want
    };
    // Attention of the 3 rows over the stored caches (`kv`'s kernels), whole and split over the
    // sequence in chunks of 4 positions (3 chunks: some rows' last chunk partly filled, the
    // window's first chunks empty) then merged, each against `want`.
    let attend =
        |kv: kernels::KvType, caches: (&[u8], &[u8]), window: usize, want: &[f32]| -> [Result<(), String>; 2] {
            let (_, single, split) = kv.kernels();
            let common = [A::I(n_heads), A::I(n_heads / n_kv), A::I(hd), A::I(kv_dim)];
            let caches = (caches.0.to_vec(), caches.1.to_vec());
            let bufs = [
                vec![0; want.len() * 4],
                bytes(&q),
                caches.0.clone(),
                caches.1.clone(),
                vec![0; rows * n_heads * n_ctx * 4],
                ints(&pos),
            ];
            let args: Vec<A> = (0..6).map(A::B).chain(common).chain([A::I(n_ctx), A::I(window), A::F(scale)]).collect();
            let out =
                op(exe, dir, &t(&format!("{single}{window}")), single, kernels::attention(rows, n_heads), &bufs, &args);
            let whole = close(&format!("{single} window {window}"), &floats(&out[0]), want, 1e-5);
            let (chunk, chunks) = (4, kernels::attention_chunks(n_ctx, 4));
            let bufs = [vec![0; rows * n_heads * chunks * (hd + 2) * 4], bytes(&q), caches.0, caches.1, ints(&pos)];
            let args: Vec<A> =
                (0..5).map(A::B).chain(common).chain([A::I(chunk), A::I(chunks), A::I(window), A::F(scale)]).collect();
            let l = kernels::attention_split(rows, n_heads, chunks);
            let part = op(exe, dir, &t(&format!("{split}{window}")), split, l, &bufs, &args);
            let bufs = [vec![0; want.len() * 4], part[0].clone()];
            let args = [A::B(0), A::B(1), A::I(n_heads), A::I(hd), A::I(chunks)];
            let l = kernels::attention(rows, n_heads);
            let out = op(exe, dir, &t(&format!("merge-{split}{window}")), "attention_merge_f32", l, &bufs, &args);
            [whole, close(&format!("{split} + merge, window {window}"), &floats(&out[0]), want, 1e-5)]
        };
    for window in [n_ctx, 3] {
        let want = reference(&q, &kc, &vc, window);
        attend(kernels::KvType::F32, (&stored[0], &stored[1]), window, &want).into_iter().for_each(&mut check);
    }

    // The f16 cache: KV store rounds to nearest even exactly as the CPU's f16 cache (values at
    // ties, subnormals, the overflow edge, signed zero), and attention over it matches the f64
    // reference computed from the same f16 values, whole and split.
    let halves = |v: &[f32]| -> Vec<u16> { v.iter().map(|&x| f32_to_f16(x)).collect() };
    let h_bytes = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let h_vals = |b: &[u8]| -> Vec<u16> { b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect() };
    let mut edge = vec![
        65504.0,
        65519.0,
        65520.0,
        -65536.0,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        6.1035156e-5,
        6.0e-5,
        2.9802322e-8,
        5.9604645e-8,
        8.940697e-8,
        1.0e-9,
        -0.0,
        0.0,
        -1.5e-7,
        0.33333334,
    ];
    edge.resize(kv_dim, 0.1);
    let ke: Vec<f32> =
        edge.iter().cycle().take(rows * kv_dim).enumerate().map(|(i, &x)| x * (1.0 + (i / kv_dim) as f32)).collect();
    let bufs = [h_bytes(&halves(&kc0)), h_bytes(&halves(&vc0)), bytes(&ke), bytes(&v), ints(&pos)];
    let args = [A::B(0), A::B(1), A::B(2), A::B(3), A::B(4), A::I(kv_dim)];
    let st = op(exe, dir, &t("kv16"), "kv_store_f16", kernels::per_row(rows, 128), &bufs, &args);
    let (mut kh, mut vh) = (halves(&kc0), halves(&vc0));
    for (r, &p) in pos.iter().enumerate() {
        kh[p as usize * kv_dim..][..kv_dim].copy_from_slice(&halves(&ke[r * kv_dim..][..kv_dim]));
        vh[p as usize * kv_dim..][..kv_dim].copy_from_slice(&halves(&v[r * kv_dim..][..kv_dim]));
    }
    if h_vals(&st[0]) != kh || h_vals(&st[1]) != vh {
        let (got, want) = (h_vals(&st[0]), kh.clone());
        let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
        check(Err(format!("kv_store_f16: value {i}: {:#06x}, the CPU stores {:#06x}", got[i], want[i])));
    }
    // Attention over f16 caches of ordinary values (the edge values above would overflow).
    let bufs = [h_bytes(&halves(&kc0)), h_bytes(&halves(&vc0)), bytes(&k), bytes(&v), ints(&pos)];
    let st = op(exe, dir, &t("kv16b"), "kv_store_f16", kernels::per_row(rows, 128), &bufs, &args);
    let kf: Vec<f32> = h_vals(&st[0]).iter().map(|&h| f16_to_f32(h)).collect();
    let vf: Vec<f32> = h_vals(&st[1]).iter().map(|&h| f16_to_f32(h)).collect();
    for window in [n_ctx, 3] {
        let want = reference(&q, &kf, &vf, window);
        attend(kernels::KvType::F16, (&st[0], &st[1]), window, &want).into_iter().for_each(&mut check);
    }

    // Row selection: rows 1 and 3 of 4 to rows 0 and 1, in place.
    let (width, x) = (300, rng.vec(4 * 300, 1.0));
    let mut want = x.clone();
    want.copy_within(width..2 * width, 0);
    want.copy_within(3 * width..4 * width, width);
    let out = op(
        exe,
        dir,
        &t("select"),
        "select_rows_f32",
        kernels::single_block(),
        &[bytes(&x), ints(&[1, 3])],
        &[A::B(0), A::B(1), A::I(2), A::I(width)],
    );
    check(close("select_rows_f32", &floats(&out[0]), &want, 0.0));

    // Argmax against `ops::argmax`: a vocabulary-sized row (no multiple of the block), the
    // maximum repeated (the first wins, in another thread's share than the later copies),
    // NaNs and −∞ around it, rows shorter than a warp, and rows where nothing counts.
    let mut vocab = rng.vec(49_157, 10.0);
    let m = vocab.iter().fold(f32::MIN, |a, &b| a.max(b)) + 1.0;
    for i in [40_001, 300, 45_000] {
        vocab[i] = m;
    }
    vocab[7] = f32::NAN;
    vocab[8] = f32::INFINITY.copysign(-1.0);
    let mut nan_first = rng.vec(1000, 1.0);
    nan_first[0] = f32::NAN;
    nan_first[999] = 50.0;
    let rows: Vec<(&str, Vec<f32>)> = vec![
        ("a vocabulary row with ties", vocab),
        ("a NaN first", nan_first),
        ("five values", rng.vec(5, 1.0)),
        ("one value", vec![-3.0]),
        ("the largest negative value", vec![f32::NEG_INFINITY, f32::MIN, f32::MIN]),
        ("signed zeros", vec![-1.0, -0.0, 0.0, -0.0]),
        ("NaN and −∞ only", vec![f32::NAN, f32::NEG_INFINITY, f32::NAN]),
        ("−∞ only", vec![f32::NEG_INFINITY; 300]),
    ];
    for (what, x) in rows {
        let out = op(
            exe,
            dir,
            &t("argmax"),
            "argmax_f32",
            kernels::single_block(),
            &[bytes(&x), ints(&[-1])],
            &[A::B(0), A::I(x.len()), A::B(1)],
        );
        let got = i32::from_le_bytes(out[1][..4].try_into().unwrap());
        let want = ops::argmax(&x) as i32;
        if got != want {
            check(Err(format!("argmax_f32, {what}: index {got}, the CPU picks {want}")));
        }
    }
    fails
}

#[test]
fn kernels_match_the_cpu_on_the_dp4a_path() {
    run(610);
}

#[test]
fn kernels_match_the_cpu_on_the_jetson_nano_path() {
    run(530);
}
