//! `Session::eval_together`, the server's continuous batching: sequences evaluated in shared
//! forward passes end exactly where each ends alone (logits bit for bit after every step), for
//! mixed prompt chunks and single tokens, every KV cache type, passes split by the first
//! session's batch, a sliding-window model whose ring caches wrap, and 1 or 2 threads; sessions
//! that cannot share passes are refused.

use std::path::Path;
use std::sync::Arc;

use autark_kernels::DType;
use autark_quantize::Recipe;
use autark_runtime::{CacheType, ErrorKind, Model, RuntimeError, Session, SessionParams};

mod common;

/// A synthetic model of `arch` with heads of 32 values (q8_0 caches need a multiple of 32);
/// `window`: a Mistral-style sliding window.
fn model(dir: &Path, dtype: DType, window: Option<usize>) -> Arc<Model> {
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_hd(&hf, "LlamaForCausalLM", 32);
    if let Some(w) = window {
        let path = hf.join("config.json");
        let mut c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        c["architectures"] = serde_json::json!(["MistralForCausalLM"]);
        c["sliding_window"] = serde_json::json!(w);
        std::fs::write(&path, c.to_string()).unwrap();
    }
    let out = dir.join("m.autark");
    autark_quantize::quantize(&hf, &out, &Recipe::new(dtype).unwrap(), &mut |_| {}).unwrap();
    Arc::new(Model::load(&out).unwrap())
}

/// Per step, per session: the tokens it evaluates (0, 1 or a prompt chunk), from a fixed stream.
fn schedule(sessions: usize, steps: usize, n_ctx: usize) -> Vec<Vec<Vec<u32>>> {
    let mut seed = 12345u32;
    let mut next = |m: u32| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) % m
    };
    let mut used = vec![0; sessions];
    (0..steps)
        .map(|_| {
            (0..sessions)
                .map(|i| {
                    let len = [0, 1, 1, 1, 1, 3, 7, 20, 33][next(9) as usize] as usize;
                    let len = len.min(n_ctx - used[i]);
                    used[i] += len;
                    (0..len).map(|_| next(common::VOCAB as u32)).collect()
                })
                .collect()
        })
        .collect()
}

/// Runs `schedule` on sessions of `params` (the first leads) alone and together, comparing the
/// logits of every session that evaluated something after every step.
fn same_as_alone(m: &Arc<Model>, params: &[SessionParams], steps: usize) {
    let n_ctx = params.iter().map(|p| p.n_ctx).min().unwrap();
    let plan = schedule(params.len(), steps, n_ctx);
    let mut alone: Vec<Session> = params.iter().map(|p| Session::new(Arc::clone(m), *p).unwrap()).collect();
    let mut together: Vec<Session> = params.iter().map(|p| Session::new(Arc::clone(m), *p).unwrap()).collect();
    for (step, feeds) in plan.iter().enumerate() {
        for (s, t) in alone.iter_mut().zip(feeds).filter(|(_, t)| !t.is_empty()) {
            s.eval(t).unwrap();
        }
        let mut work: Vec<(&mut Session, &[u32])> =
            together.iter_mut().zip(feeds).map(|(s, t)| (s, t.as_slice())).collect();
        Session::eval_together(&mut work).unwrap();
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(a.tokens(), b.tokens(), "step {step}, session {i}: tokens");
            if !a.tokens().is_empty() {
                let same = a.logits().iter().zip(b.logits()).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "step {step}, session {i}: logits differ from the session alone");
            }
        }
    }
    assert!(together.iter().all(|s| s.tokens().len() > 40), "the schedule filled the contexts");
}

fn sp(n_batch: usize, n_threads: usize, k: CacheType, v: CacheType) -> SessionParams {
    SessionParams { n_ctx: 128, n_threads, n_batch, cache_type_k: k, cache_type_v: v, ..Default::default() }
}

#[test]
fn sequences_evaluated_together_match_each_alone() {
    use CacheType::*;
    for dtype in [DType::Q4_0, DType::Q8_0, DType::F32] {
        let dir = common::tmp_dir(&format!("together-{}", dtype.name()));
        let m = model(dir.path(), dtype, None);
        for threads in [1, 2] {
            // A lead of 24 tokens splits the larger steps over several passes.
            let params = [
                sp(24, threads, F32, F32),
                sp(64, threads, Q8_0, Q8_0),
                sp(8, threads, F16, Q8_0),
                sp(16, threads, F32, F16),
            ];
            same_as_alone(&m, &params, 40);
        }
    }
}

#[test]
fn sliding_window_rings_wrap_the_same_together() {
    let dir = common::tmp_dir("together-window");
    let m = model(dir.path(), DType::Q8_0, Some(8));
    assert_eq!(m.config().sliding_window, Some(8));
    let f = CacheType::F32;
    same_as_alone(&m, &[sp(40, 2, f, f), sp(8, 2, f, f), sp(3, 2, f, f)], 40);
}

#[test]
fn sessions_that_cannot_share_passes_are_refused() {
    let dir = common::tmp_dir("together-refused");
    let m = model(dir.path(), DType::Q8_0, None);
    let other = model(&dir.path().join("b"), DType::Q8_0, None);
    let f = CacheType::F32;
    let mut a = Session::new(Arc::clone(&m), sp(16, 1, f, f)).unwrap();
    let mut b = Session::new(other, sp(16, 1, f, f)).unwrap();
    let err = Session::eval_together(&mut [(&mut a, &[1, 2][..]), (&mut b, &[3][..])]).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidArgument { name: "sessions", .. }), "{err}");
    let mut long = Session::new(Arc::clone(&m), SessionParams { n_ctx: 256, ..sp(16, 1, f, f) }).unwrap();
    let err = Session::eval_together(&mut [(&mut a, &[1][..]), (&mut long, &[3][..])]).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidArgument { name: "sessions", .. }), "{err}");
    // A prompt longer than a context, or a token past the vocabulary: nothing is evaluated.
    let mut c = Session::new(Arc::clone(&m), sp(16, 1, f, f)).unwrap();
    let err = Session::eval_together(&mut [(&mut a, &[1][..]), (&mut c, &[7; 129][..])]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextOverflow, "{err}");
    let err = Session::eval_together(&mut [(&mut a, &[1][..]), (&mut c, &[999][..])]).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidToken { id: 999, .. }), "{err}");
    assert!(a.tokens().is_empty() && c.tokens().is_empty());
    // Nothing to do is not an error.
    Session::eval_together(&mut []).unwrap();
    Session::eval_together(&mut [(&mut a, &[][..]), (&mut c, &[][..])]).unwrap();
    assert!(a.tokens().is_empty());
}

/// `release_memory` (a server slot whose request ended) forgets the context and allocates the
/// cache anew: what is evaluated next gives exactly a fresh session's logits, on every cache
/// type; `kv_bytes_for` counts the cache bytes of a context length.
#[test]
fn a_released_session_evaluates_like_a_fresh_one() {
    use CacheType::*;
    let dir = common::tmp_dir("together-release");
    let m = model(dir.path(), DType::Q8_0, None);
    let c = m.config();
    let first: Vec<u32> = (0..50).map(|i| (i * 7 + 3) % common::VOCAB as u32).collect();
    let next: Vec<u32> = (0..20).map(|i| (i * 5 + 1) % common::VOCAB as u32).collect();
    for (k, v) in [(F32, F32), (F16, F16), (Q8_0, Q8_0), (F32, Q8_0)] {
        let mut used = Session::new(Arc::clone(&m), sp(16, 1, k, v)).unwrap();
        used.eval(&first).unwrap();
        used.release_memory().unwrap();
        assert!(used.tokens().is_empty());
        used.eval(&next).unwrap();
        let mut fresh = Session::new(Arc::clone(&m), sp(16, 1, k, v)).unwrap();
        fresh.eval(&next).unwrap();
        assert!(used.logits().iter().zip(fresh.logits()).all(|(a, b)| a.to_bits() == b.to_bits()), "{k:?}/{v:?}");
        let bytes = |t: CacheType| match t {
            F32 => 4.0,
            F16 => 2.0,
            Q8_0 => 34.0 / 32.0,
        };
        let per_token = (c.n_layers * c.n_kv_heads * c.head_dim) as f64 * (bytes(k) + bytes(v));
        assert_eq!(used.kv_bytes_for(70) as f64, 70.0 * per_token, "{k:?}/{v:?}");
        assert_eq!(used.kv_bytes_for(10_000), used.kv_bytes_for(128), "capped at the context");
    }
}
