//! Sessions under load and at their limits, on a synthetic model: one model shared by sessions
//! on several threads (each must produce what it produces alone), cancellation from another
//! thread, and the memory budget.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use autark_kernels::DType;
use autark_quantize::Recipe;
use autark_runtime::{
    CacheType, GenerateParams, Model, RuntimeError, SamplerParams, Session, SessionParams, StopReason,
};

mod common;

fn model(tag: &str) -> Arc<Model> {
    let dir = common::tmp_dir(&format!("sessions-{tag}"));
    std::fs::create_dir_all(dir.path().join("hf")).unwrap();
    common::write_hf(&dir.path().join("hf"), "LlamaForCausalLM");
    let out: PathBuf = dir.path().join("m.autark");
    autark_quantize::quantize(&dir.path().join("hf"), &out, &Recipe::new(DType::Q8_0).unwrap(), &mut |_| {}).unwrap();
    Arc::new(Model::load(&out).unwrap())
}

fn params(seed: u64, temperature: f32, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams { temperature, seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() },
        ..Default::default()
    }
}

fn generate(m: &Arc<Model>, n_threads: usize, prompt: &[u32], p: &GenerateParams) -> (String, Vec<u32>) {
    let mut s = Session::new(Arc::clone(m), SessionParams { n_ctx: 96, n_threads, ..Default::default() }).unwrap();
    let mut text = String::new();
    s.generate(prompt, p, &mut |piece| {
        text.push_str(piece);
        true
    })
    .unwrap();
    (text, s.tokens().to_vec())
}

#[test]
fn concurrent_sessions_match_single_threaded_runs() {
    let m = model("stress");
    let jobs: Vec<(Vec<u32>, GenerateParams)> = (0..6u32)
        .map(|i| (vec![1, 3 + i, 7, 11 + i], params(i as u64, if i % 2 == 0 { 0.0 } else { 0.9 }, 24)))
        .collect();
    let alone: Vec<_> = jobs.iter().map(|(p, g)| generate(&m, 1, p, g)).collect();
    // Six sessions at once on six threads, each with a 2-thread pool: more threads than cores.
    let together: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs.iter().map(|(p, g)| sc.spawn(|| generate(&m, 2, p, g))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "job {i} differs when run concurrently");
        assert!(a.1.len() > 4, "job {i} generated nothing");
    }
}

#[test]
fn cancel_from_another_thread() {
    let m = model("cancel");
    let mut s = Session::new(Arc::clone(&m), SessionParams { n_ctx: 96, n_threads: 1, ..Default::default() }).unwrap();
    let handle = s.cancel_handle();
    let (first_piece, wait) = mpsc::channel::<()>();
    let (cancelled, ack) = mpsc::channel::<()>();
    let canceller = std::thread::spawn(move || {
        wait.recv().unwrap();
        handle.cancel();
        cancelled.send(()).unwrap();
    });
    let mut pieces = 0;
    let stats = s
        .generate(&[1, 5, 9], &params(0, 0.9, 80), &mut |_| {
            pieces += 1;
            if pieces == 1 {
                first_piece.send(()).unwrap();
                ack.recv().unwrap();
            }
            true
        })
        .unwrap();
    canceller.join().unwrap();
    assert_eq!(stats.stop, StopReason::Cancelled);
    assert!(stats.generated_tokens < 80 && pieces >= 1);
    // The request is consumed: the next generation runs normally.
    let again = s.generate(&[1, 5, 9], &params(0, 0.9, 4), &mut |_| true).unwrap();
    assert_eq!(again.stop, StopReason::MaxTokens);
}

#[test]
fn memory_budget_is_exact_and_enforced() {
    let m = model("budget");
    let p = SessionParams { n_ctx: 64, n_threads: 1, ..Default::default() };
    let s = Session::new(Arc::clone(&m), p).unwrap();
    let need = s.memory_bytes();
    assert_eq!(Some(need), Session::required_bytes(m.config(), 64, 64, [CacheType::F32; 2]));
    assert!(Session::new(Arc::clone(&m), SessionParams { max_memory_bytes: need, ..p }).is_ok());
    match Session::new(Arc::clone(&m), SessionParams { max_memory_bytes: need - 1, ..p }) {
        Err(RuntimeError::MemoryBudget { needed, budget }) => assert_eq!((needed, budget), (need, need - 1)),
        other => panic!("expected MemoryBudget, got {:?}", other.map(|_| ())),
    }
    // A context of 2^31 is refused before any allocation.
    assert!(matches!(
        Session::new(Arc::clone(&m), SessionParams { n_ctx: 1 << 31, ..p }),
        Err(RuntimeError::InvalidArgument { name: "n_ctx", .. })
    ));
}

/// A Mistral-style model whose every layer attends through a window of 5: its caches are rings
/// of window + n_batch − 1 positions. Continuing a conversation may cut back at most n_batch
/// tokens and keep the cache; a deeper cut re-evaluates from the start. Either way the logits
/// equal a fresh evaluation of the same tokens.
#[test]
fn sliding_window_rings_bound_memory_and_continue_correctly() {
    let dir = common::tmp_dir("sessions-ring");
    std::fs::create_dir_all(dir.path().join("hf")).unwrap();
    common::write_hf(&dir.path().join("hf"), "MistralForCausalLM");
    let cfg_path = dir.path().join("hf/config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["sliding_window"] = serde_json::json!(5);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = dir.path().join("m.autark");
    autark_quantize::quantize(&dir.path().join("hf"), &out, &Recipe::new(DType::F32).unwrap(), &mut |_| {}).unwrap();
    let m = Arc::new(Model::load(&out).unwrap());
    assert_eq!(m.config().sliding_window, Some(5));

    let p = SessionParams { n_ctx: 128, n_batch: 4, ..Default::default() };
    let ring = Session::new(Arc::clone(&m), p).unwrap();
    let mut full_cfg = m.config().clone();
    full_cfg.sliding_window = None;
    let full = Session::required_bytes(&full_cfg, 128, 4, [CacheType::F32; 2]).unwrap();
    let kv_full = 2 * common::LAYERS * 128 * common::KV * common::HD * 4;
    let kv_ring = 2 * common::LAYERS * (5 + 4 - 1) * common::KV * common::HD * 4;
    assert_eq!(full - ring.memory_bytes(), kv_full - kv_ring, "the KV cache shrinks to the rings");

    let seq =
        |n: usize, salt: u32| -> Vec<u32> { (0..n as u32).map(|i| (i * 7 + salt) % common::VOCAB as u32).collect() };
    let fresh = |tokens: &[u32]| -> Vec<f32> {
        let mut s = Session::new(Arc::clone(&m), p).unwrap();
        s.eval(tokens).unwrap();
        s.logits().to_vec()
    };
    let close = |a: &[f32], b: &[f32], what: &str| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale, "{what}: max diff {diff} (scale {scale})");
    };

    let a = seq(40, 3);
    let mut s = ring;
    s.eval(&a).unwrap();
    close(s.logits(), &fresh(&a), "40 tokens through the rings");

    // Cut back 3 (< n_batch): the rings still hold what the new tokens see; the prefix is kept.
    let mut b = a[..37].to_vec();
    b.extend(seq(6, 11));
    s.eval_continuing(&b).unwrap();
    close(s.logits(), &fresh(&b), "continued after a short cut");
    assert_eq!(s.tokens(), &b[..]);

    // Cut back 20 (> n_batch): positions the new tokens need were overwritten; re-evaluated.
    let mut c = b[..23].to_vec();
    c.extend(seq(5, 5));
    s.eval_continuing(&c).unwrap();
    close(s.logits(), &fresh(&c), "continued after a deep cut");
    assert_eq!(s.tokens(), &c[..]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Device::Cuda` where it cannot run (a build without the `cuda` feature, or no driver here)
/// is a typed error naming why, and the same model still runs on the CPU.
#[test]
fn a_cuda_session_that_cannot_run_says_why() {
    let m = model("cuda");
    let p = SessionParams { n_ctx: 64, n_threads: 1, device: autark_runtime::Device::Cuda, ..Default::default() };
    match Session::new(Arc::clone(&m), p) {
        Err(e) => {
            assert_eq!(e.kind(), autark_runtime::ErrorKind::Internal, "{e}");
            let why = if cfg!(feature = "cuda") {
                "CUDA: no CUDA driver found"
            } else {
                "CUDA: this build has no CUDA support"
            };
            assert!(e.to_string().starts_with(why), "{e}");
        }
        // Only a `cuda` build on a machine with a GPU gets here.
        Ok(_) if cfg!(feature = "cuda") => {}
        Ok(_) => panic!("a CUDA session without CUDA support"),
    }
    let f16 = SessionParams { cache_type_k: CacheType::F16, ..p };
    assert!(matches!(Session::new(Arc::clone(&m), f16), Err(RuntimeError::InvalidArgument { .. })));
    let cpu = SessionParams { device: autark_runtime::Device::Cpu, ..p };
    assert!(Session::new(m, cpu).is_ok());
}
