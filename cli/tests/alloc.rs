//! The decode loop allocates nothing (README): a counting global allocator around 64 decoded
//! tokens — sample, then evaluate the token — on a model whose embedding is stored interleaved
//! (`rows16`, the quantizer's default), for one and two threads.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use autark_format::AutarkFile;
use autark_kernels::{DType, TensorLayout};
use autark_quantize::Recipe;
use autark_runtime::{Model, Sampler, SamplerParams, Session, SessionParams};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn decode_loop_does_not_allocate() {
    let dir = common::tmp_dir("alloc");
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    common::write_hf(&hf, "LlamaForCausalLM");
    let out = dir.path().join("m.autark");
    autark_quantize::quantize(&hf, &out, &Recipe::new(DType::Q4_0).unwrap(), &mut |_| {}).unwrap();
    let file = AutarkFile::open(&out).unwrap();
    let embd = file.tensors().iter().find(|t| t.name == "token_embd.weight").unwrap();
    assert_eq!(embd.layout, TensorLayout::Rows16, "the test must cover the interleaved embedding lookup");
    let model = Arc::new(Model::load(&out).unwrap());
    for threads in [1, 2] {
        let params = SessionParams { n_ctx: 96, n_threads: threads, ..Default::default() };
        let mut session = Session::new(Arc::clone(&model), params).unwrap();
        let mut sampler = Sampler::new(SamplerParams { seed: 3, ..Default::default() }, common::VOCAB).unwrap();
        session.eval(&[1, 5, 9, 4]).unwrap();
        // One token first: threads and their buffers start on first use.
        let token = sampler.sample(session.logits(), session.tokens());
        session.eval(&[token]).unwrap();
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..64 {
            let token = sampler.sample(session.logits(), session.tokens());
            session.eval(&[token]).unwrap();
        }
        COUNTING.store(false, Ordering::SeqCst);
        assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0, "allocations in 64 decoded tokens, {threads} thread(s)");
        assert_eq!(session.tokens().len(), 4 + 1 + 64);
    }
}
