//! The session-state reader: `Session::load_with_app_data` on arbitrary files, against a tiny
//! synthetic model, then `generate_continue`, `save_with_app_data` and a second load of what was
//! saved. Errors are fine; panics, hangs and huge allocations are not.
//!
//! The model is built once per process: a tiny Llama Hugging Face folder (hidden 64, 2 layers,
//! 4 heads, 2 KV heads of 32 values, vocabulary 32, deterministic f32 weights) quantized to q8_0
//! with `autark_quantize::quantize`, then written again without its provenance (which holds the
//! time of quantization), so that the file, and with it the identity a state is bound to
//! (`Model::id`), is the same byte for byte in every run. The committed seeds
//! (`fuzz/corpus/session_state/`) are states of this model; with `AUTARK_FUZZ_WRITE_SEEDS=<dir>`
//! the target writes them afresh into `<dir>` at start-up (see fuzz/README.md).
//!
//! Every state ends in a SHA-256 of the bytes before it, and the reader checks it only after it
//! has read everything else, so almost every mutation would stop there. An input whose checksum
//! does not match must be refused as it is; the target then also loads a copy with the checksum
//! corrected, so that mutated counts, cache bytes, logits and generation states reach the checks
//! and the code behind it. An accepted state must then generate (the result may be an error),
//! save, and load again, with the same tokens, logits and application data.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use autark_kernels::DType;
use autark_quantize::Recipe;
use autark_runtime::{CacheType, GenerateParams, Model, SamplerParams, Session, SessionParams};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

#[path = "common.rs"]
mod common;

const D: usize = 64;
const FFN: usize = 96;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 32;
const VOCAB: usize = 32;
const LAYERS: usize = 2;
/// The trailing SHA-256.
const CHECKSUM: usize = 32;

struct Fixture {
    model: Arc<Model>,
    dir: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn tensors() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        ("model.embed_tokens.weight".to_string(), vec![VOCAB, D]),
        ("model.norm.weight".into(), vec![D]),
        ("lm_head.weight".into(), vec![VOCAB, D]),
    ];
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        v.push((p("input_layernorm.weight"), vec![D]));
        v.push((p("post_attention_layernorm.weight"), vec![D]));
        v.push((p("self_attn.q_proj.weight"), vec![HEADS * HEAD_DIM, D]));
        v.push((p("self_attn.k_proj.weight"), vec![KV_HEADS * HEAD_DIM, D]));
        v.push((p("self_attn.v_proj.weight"), vec![KV_HEADS * HEAD_DIM, D]));
        v.push((p("self_attn.o_proj.weight"), vec![D, HEADS * HEAD_DIM]));
        v.push((p("mlp.gate_proj.weight"), vec![FFN, D]));
        v.push((p("mlp.up_proj.weight"), vec![FFN, D]));
        v.push((p("mlp.down_proj.weight"), vec![D, FFN]));
    }
    v
}

/// The Hugging Face folder: config, a WordLevel tokenizer of `w0`..`w31` (as in
/// cli/tests/common/mod.rs), and one safetensors file of f32 weights from a fixed LCG.
fn write_hf(dir: &Path) -> std::io::Result<()> {
    let config = format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "hidden_size": {D}, "intermediate_size": {FFN},
"num_attention_heads": {HEADS}, "num_key_value_heads": {KV_HEADS}, "num_hidden_layers": {LAYERS},
"vocab_size": {VOCAB}, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
"tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
"head_dim": {HEAD_DIM}}}"#
    );
    std::fs::write(dir.join("config.json"), config)?;
    let vocab: Vec<String> = (0..VOCAB).map(|i| format!("\"w{i}\": {i}")).collect();
    let tokenizer = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
"pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null, "decoder": null,
"model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "w0"}}}}"#,
        vocab.join(", ")
    );
    std::fs::write(dir.join("tokenizer.json"), tokenizer)?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "w1", "eos_token": "w2", "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}"#,
    )?;
    // safetensors: u64 header length, the JSON header (padded to 8 bytes), the data.
    let mut seed = 7u32;
    let (mut header, mut data) = (Vec::new(), Vec::new());
    for (name, shape) in tensors() {
        let start = data.len();
        for _ in 0..shape.iter().product::<usize>() {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2;
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.push(format!(
            r#""{name}": {{"dtype": "F32", "shape": {shape:?}, "data_offsets": [{start}, {}]}}"#,
            data.len()
        ));
    }
    let mut json = format!("{{{}}}", header.join(", ")).into_bytes();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut st = (json.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(&json);
    st.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), st)
}

/// Quantizes the folder to q8_0 and writes the result again without provenance.
fn build_model(dir: &Path) -> Arc<Model> {
    let hf = dir.join("hf");
    std::fs::create_dir_all(&hf).expect("create the model folder");
    write_hf(&hf).expect("write the Hugging Face folder");
    let quantized = dir.join("quantized.autark");
    let recipe = Recipe::new(DType::Q8_0).expect("q8_0 recipe");
    autark_quantize::quantize(&hf, &quantized, &recipe, &mut |_| {}).expect("quantize the tiny model");
    let src = autark_format::AutarkFile::open(&quantized).expect("open the quantized model");
    let metadata = autark_format::Metadata { provenance: None, ..src.metadata().clone() };
    let specs: Vec<autark_format::TensorSpec> = src
        .tensors()
        .iter()
        .map(|t| autark_format::TensorSpec {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            layout: t.layout,
        })
        .collect();
    let path = dir.join("model.autark");
    let mut w = autark_format::Writer::create(&path, &metadata, &specs).expect("create the model file");
    for t in src.tensors() {
        w.write_tensor(&t.name, src.data(t)).expect("write a tensor");
    }
    w.finish().expect("finish the model file");
    let model = Model::load(&path).expect("load the tiny model");
    // The mapping keeps the file; nothing of the folder is needed any more.
    let _ = std::fs::remove_dir_all(&hf);
    let _ = std::fs::remove_file(&quantized);
    let _ = std::fs::remove_file(&path);
    Arc::new(model)
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = common::scratch_dir("session_state");
        let model = build_model(&dir);
        let id = hex(&model.id());
        eprintln!("session_state fuzz target: model {id}");
        warn_if_seeds_are_stale(&id);
        if let Some(out) = std::env::var_os("AUTARK_FUZZ_WRITE_SEEDS") {
            write_seeds(&model, &dir, Path::new(&out));
        }
        Fixture { model, dir }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Seeds of another model only ever meet `StateModelMismatch`: say so instead of fuzzing
/// quietly with none.
fn warn_if_seeds_are_stale(id: &str) {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/session_state");
    let Ok(entries) = std::fs::read_dir(&seeds) else { return };
    let (mut n, mut bound) = (0, 0);
    for e in entries.flatten() {
        if let Ok(b) = std::fs::read(e.path()) {
            n += 1;
            bound += usize::from(b.windows(id.len()).any(|w| w == id.as_bytes()));
        }
    }
    if n > 0 && bound == 0 {
        eprintln!(
            "WARNING: none of the {n} seeds in {} is a state of this model (the model or the .autark writer \
             changed): regenerate them (fuzz/README.md)",
            seeds.display()
        );
    }
}

fn load_params() -> SessionParams {
    SessionParams { n_threads: 1, max_memory_bytes: 64 << 20, ..Default::default() }
}

fn gen_params() -> GenerateParams {
    GenerateParams { max_tokens: 2, ..Default::default() }
}

/// Loads the state in `bytes`; on success generates, saves and loads again.
fn check(fx: &Fixture, bytes: &[u8]) {
    let input = fx.dir.join("input.state");
    std::fs::write(&input, bytes).expect("write the input");
    let Ok((mut session, app)) = Session::load_with_app_data(Arc::clone(&fx.model), &input, load_params()) else {
        return;
    };
    let _ = session.generate_continue(&gen_params(), &mut |_| true);
    let saved = fx.dir.join("saved.state");
    session.save_with_app_data(&saved, &app).expect("saving a loaded session");
    let (again, app_again) = Session::load_with_app_data(Arc::clone(&fx.model), &saved, load_params())
        .unwrap_or_else(|e| panic!("a state saved from a loaded session does not load: {e}"));
    assert_eq!(again.tokens(), session.tokens(), "tokens differ after save and load");
    let bits = |l: &[f32]| l.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(again.logits()), bits(session.logits()), "logits differ after save and load");
    assert_eq!((again.n_ctx(), again.n_batch()), (session.n_ctx(), session.n_batch()));
    assert_eq!(again.cache_types(), session.cache_types());
    assert_eq!(app_again, app, "application data differs after save and load");
}

fuzz_target!(init: { fixture(); }, |data: &[u8]| {
    let fx = fixture();
    let n = data.len();
    if n > CHECKSUM {
        let sum: [u8; 32] = Sha256::digest(&data[..n - CHECKSUM]).into();
        if data[n - CHECKSUM..] != sum {
            let input = fx.dir.join("input.state");
            std::fs::write(&input, data).expect("write the input");
            let r = Session::load_with_app_data(Arc::clone(&fx.model), &input, load_params());
            assert!(r.is_err(), "a state with a wrong checksum was accepted");
            let mut fixed = data.to_vec();
            fixed[n - CHECKSUM..].copy_from_slice(&sum);
            check(fx, &fixed);
            return;
        }
    }
    check(fx, data);
});

// ============================================================================================
// Seeds
// ============================================================================================

const PROMPT: [u32; 5] = [1, 5, 9, 4, 17];

fn session(model: &Arc<Model>, n_ctx: usize, n_batch: usize, k: CacheType, v: CacheType) -> Session {
    let p = SessionParams { n_ctx, n_batch, n_threads: 1, cache_type_k: k, cache_type_v: v, ..Default::default() };
    Session::new(Arc::clone(model), p).expect("seed session")
}

fn generate(s: &mut Session, prompt: &[u32], temperature: f32, seed: u64, max_tokens: usize, stop: &[&str]) {
    let p = GenerateParams {
        max_tokens,
        sampler: SamplerParams { temperature, seed, ..Default::default() },
        stop: stop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    s.generate(prompt, &p, &mut |_| true).expect("seed generation");
}

/// Valid states of the fixture's model, each at most 64 KiB, and a few damaged ones.
fn write_seeds(model: &Arc<Model>, scratch: &Path, out: &Path) {
    use CacheType::{F16, F32, Q8_0};
    std::fs::create_dir_all(out).expect("create the seed folder");
    let mut valid: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut save = |name: &'static str, s: &Session, app: &str| {
        let p = scratch.join("seed.state");
        s.save_with_app_data(&p, app).expect("save a seed");
        let bytes = std::fs::read(&p).expect("read a seed");
        assert!(bytes.len() <= 64 << 10, "seed {name} is {} bytes", bytes.len());
        valid.push((name, bytes));
    };

    save("empty-f32", &session(model, 16, 8, F32, F32), "");

    let mut s = session(model, 24, 4, F16, F16);
    s.eval(&PROMPT).expect("eval");
    save("eval5-f16", &s, "");

    let mut s = session(model, 32, 8, Q8_0, Q8_0);
    generate(&mut s, &PROMPT, 0.9, 3, 6, &[]);
    save("suspended-t0.9-q8_0", &s, "");

    // Suspended with text held back: the output so far ends in "1" (w1, w11, w21, w31), which
    // may still begin the stop string. The first sampler seed that gets there.
    let held = (0..500u64)
        .find_map(|seed| {
            let mut s = session(model, 32, 16, Q8_0, F16);
            generate(&mut s, &PROMPT, 0.9, seed, 4, &["1 w31 w31"]);
            let p = scratch.join("seed.state");
            s.save(&p).expect("save a seed");
            let bytes = std::fs::read(&p).expect("read a seed");
            bytes.windows(10).any(|w| w == br#""held":"1""#).then_some(s)
        })
        .expect("no sampler seed leaves held text");
    save("suspended-held-q8_0-f16", &held, r#"[{"role":"user","content":"w1 w5 w9"}]"#);

    let mut s = session(model, 20, 8, F32, Q8_0);
    generate(&mut s, &PROMPT, 0.0, 0, 3, &[]);
    save("suspended-greedy-f32-q8_0", &s, "");

    // A full context (n_tokens = n_ctx): the next token needs a context shift.
    let mut s = session(model, 16, 16, F16, F32);
    let full: Vec<u32> = (0..16u32).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
    s.eval(&full).expect("eval");
    save("full-f16-f32", &s, "");

    let mut s = session(model, 16, 4, F32, F32);
    generate(&mut s, &full[..14], 0.9, 5, 8, &[]);
    save("suspended-near-full-f32", &s, "app data");

    // Damaged copies: the reader must refuse them (or, with the checksum fixed by the target,
    // whatever they turn into).
    let base = valid[2].1.clone();
    let json_end = 16 + u32::from_le_bytes(base[12..16].try_into().unwrap()) as usize;
    let mut hostile: Vec<(&str, Vec<u8>)> = vec![
        ("hostile-truncated", base[..base.len() / 2].to_vec()),
        ("hostile-no-checksum", base[..base.len() - CHECKSUM].to_vec()),
        ("hostile-bad-magic", [b"AUTARKSX".as_slice(), &base[8..]].concat()),
    ];
    let flip = |at: usize| {
        let mut b = base.clone();
        b[at] ^= 0x40;
        b
    };
    hostile.push(("hostile-flip-header", flip(json_end - 10)));
    hostile.push(("hostile-flip-kv", flip(base.len() - CHECKSUM - 100)));
    hostile.push(("hostile-flip-checksum", flip(base.len() - 1)));
    for (name, bytes) in valid.iter().chain(&hostile) {
        std::fs::write(out.join(name), bytes).expect("write a seed");
    }
    eprintln!("session_state: wrote {} seeds to {}", valid.len() + hostile.len(), out.display());
}
