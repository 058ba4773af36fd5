//! Sessions under load and at their limits, on a synthetic model: one model shared by sessions
//! on several threads (each must produce what it produces alone), cancellation from another
//! thread, and the memory budget.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use autark_kernels::DType;
use autark_quantize::Recipe;
use autark_runtime::{GenerateParams, Model, RuntimeError, SamplerParams, Session, SessionParams, StopReason};

mod common;

fn model(tag: &str) -> Arc<Model> {
    let dir = std::env::temp_dir().join(format!("autark-sessions-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("hf")).unwrap();
    common::write_hf(&dir.join("hf"), "LlamaForCausalLM");
    let out: PathBuf = dir.join("m.autark");
    autark_quantize::quantize(&dir.join("hf"), &out, &Recipe::new(DType::Q8_0).unwrap(), &mut |_| {}).unwrap();
    Arc::new(Model::load(&out).unwrap())
}

fn params(seed: u64, temperature: f32, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams { temperature, seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() },
        stop: vec![],
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
    assert_eq!(Some(need), Session::required_bytes(m.config(), 64, 64));
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
