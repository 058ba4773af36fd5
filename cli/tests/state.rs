//! Session state on a synthetic Llama model: KV cache types, suspend and resume (in process,
//! through a saved file, and across processes through the CLI), hostile state files, context
//! shift.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use autark_kernels::DType;
use autark_quantize::Recipe;
use autark_runtime::{
    CacheType, ErrorKind, GenerateParams, Model, RuntimeError, SamplerParams, Session, SessionParams, StopReason,
};
use sha2::{Digest, Sha256};

mod common;

/// A synthetic model with heads of `hd` values (q8_0 caches need a multiple of 32).
fn model(dir: &Path, hd: usize, dtype: DType) -> (Arc<Model>, PathBuf) {
    let hf = dir.join(format!("hf{hd}"));
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_hd(&hf, "LlamaForCausalLM", hd);
    let out = dir.join(format!("m{hd}-{}.autark", dtype.name()));
    autark_quantize::quantize(&hf, &out, &Recipe::new(dtype).unwrap(), &mut |_| {}).unwrap();
    (Arc::new(Model::load(&out).unwrap()), out)
}

fn gen(seed: u64, temperature: f32, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams { temperature, seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() },
        ..Default::default()
    }
}

fn sp(k: CacheType, v: CacheType) -> SessionParams {
    SessionParams { n_ctx: 96, n_threads: 1, cache_type_k: k, cache_type_v: v, ..Default::default() }
}

/// Generates into `text`; returns the stop reason.
fn run(s: &mut Session, prompt: Option<&[u32]>, p: &GenerateParams, text: &mut String) -> StopReason {
    let mut sink = |piece: &str| {
        text.push_str(piece);
        true
    };
    let stats = match prompt {
        Some(t) => s.generate(t, p, &mut sink),
        None => s.generate_continue(p, &mut sink),
    };
    stats.unwrap().stop
}

const PROMPT: [u32; 5] = [1, 5, 9, 4, 17];

#[test]
fn cache_types_follow_the_f32_cache_and_shrink_memory() {
    let dir = common::tmp_dir("state-types");
    let (m, _) = model(dir.path(), 32, DType::F32);
    let tokens: Vec<u32> = (0..60u32).map(|i| (i * 11 + 3) % common::VOCAB as u32).collect();
    let logits = |k, v| {
        let mut s = Session::new(Arc::clone(&m), sp(k, v)).unwrap();
        let mut out = vec![0f32; tokens.len() * common::VOCAB];
        s.eval_all_logits(&tokens, &mut out).unwrap();
        (out, s.memory_bytes())
    };
    let (want, mem_f32) = logits(CacheType::F32, CacheType::F32);
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let kv_values = 2 * common::LAYERS * 96 * common::KV * 32; // keys + values, in values
    for k in CacheType::ALL {
        for v in CacheType::ALL {
            let (got, mem) = logits(k, v);
            let err = got.iter().zip(&want).fold(0f32, |a, (g, w)| a.max((g - w).abs())) / scale;
            // f16 rounds each cached value by ≤ 2^-11 relative, q8_0 by ≤ 1/254 of its block's
            // largest; the logits follow within a few times that.
            let bound = match (k, v) {
                (CacheType::F32, CacheType::F32) => 0.0,
                (CacheType::Q8_0, _) | (_, CacheType::Q8_0) => 2e-2,
                _ => 2e-3,
            };
            assert!(err <= bound, "{k:?}/{v:?}: logits differ by {err} of their scale (bound {bound})");
            if (k, v) != (CacheType::F32, CacheType::F32) {
                assert!(err > 0.0, "{k:?}/{v:?}: bit-identical to f32, the type is not used");
            }
            let bytes = |t: CacheType| t.bytes(kv_values / 2).unwrap();
            assert_eq!(mem_f32 - mem, 2 * bytes(CacheType::F32) - bytes(k) - bytes(v), "{k:?}/{v:?} memory");
        }
    }
    // q8_0 needs heads of a multiple of 32 values.
    let (m16, _) = model(dir.path(), 16, DType::F32);
    let r = Session::new(m16, sp(CacheType::Q8_0, CacheType::F32));
    assert!(matches!(r, Err(RuntimeError::InvalidArgument { name: "cache_type_k", .. })), "{:?}", r.err());
}

#[test]
fn a_suspended_generation_resumes_bit_for_bit() {
    let dir = common::tmp_dir("state-resume");
    let (m, _) = model(dir.path(), 32, DType::Q8_0);
    let path = dir.path().join("s.state");
    let types = [
        (CacheType::F32, CacheType::F32),
        (CacheType::F16, CacheType::F16),
        (CacheType::Q8_0, CacheType::Q8_0),
        (CacheType::Q8_0, CacheType::F16),
    ];
    for (k, v) in types {
        for (seed, temp) in [(0, 0.0), (3, 0.9), (11, 1.3)] {
            let (n, more) = (9, 23);
            let mut s = Session::new(Arc::clone(&m), sp(k, v)).unwrap();
            let mut whole = String::new();
            run(&mut s, Some(&PROMPT), &gen(seed, temp, n + more), &mut whole);
            let want = s.tokens().to_vec();
            assert!(want.len() > PROMPT.len() + n, "{k:?}/{v:?} seed {seed}: too short to test");

            // In one session: stop after n, continue.
            let mut s = Session::new(Arc::clone(&m), sp(k, v)).unwrap();
            let mut text = String::new();
            assert_eq!(run(&mut s, Some(&PROMPT), &gen(seed, temp, n), &mut text), StopReason::MaxTokens);
            s.save(&path).unwrap();
            run(&mut s, None, &gen(seed, temp, more), &mut text);
            assert_eq!((s.tokens(), &text), (&want[..], &whole), "{k:?}/{v:?} seed {seed}: continued in place");

            // Through the saved file, in a new session (different thread count, same results).
            let mut r = Session::load(Arc::clone(&m), &path, SessionParams { n_threads: 2, ..sp(k, v) }).unwrap();
            assert_eq!(r.cache_types(), [k, v]);
            let mut text2 = String::new();
            let mut first = String::new();
            let mut s = Session::new(Arc::clone(&m), sp(k, v)).unwrap();
            run(&mut s, Some(&PROMPT), &gen(seed, temp, n), &mut first);
            run(&mut r, None, &gen(seed, temp, more), &mut text2);
            assert_eq!(r.tokens(), &want[..], "{k:?}/{v:?} seed {seed}: resumed from the file");
            assert_eq!(first + &text2, whole, "{k:?}/{v:?} seed {seed}: text");
        }
    }
}

#[test]
fn a_saved_prefix_serves_many_sessions() {
    let dir = common::tmp_dir("state-prefix");
    let (m, _) = model(dir.path(), 32, DType::Q8_0);
    let p = sp(CacheType::Q8_0, CacheType::Q8_0);
    let system: Vec<u32> = (0..40u32).map(|i| (i * 7 + 2) % common::VOCAB as u32).collect();
    let mut s = Session::new(Arc::clone(&m), p).unwrap();
    s.eval(&system).unwrap();
    let path = dir.path().join("system.state");
    s.save(&path).unwrap();
    for user in [[3u32, 4, 5], [9, 8, 7], [30, 1, 2]] {
        let prompt: Vec<u32> = system.iter().chain(&user).copied().collect();
        let mut fresh = Session::new(Arc::clone(&m), p).unwrap();
        let mut want = String::new();
        run(&mut fresh, Some(&prompt), &gen(5, 0.8, 12), &mut want);
        let mut loaded = Session::load(Arc::clone(&m), &path, p).unwrap();
        let mut got = String::new();
        let stats = loaded.generate(&prompt, &gen(5, 0.8, 12), &mut |t| {
            got.push_str(t);
            true
        });
        assert_eq!(stats.unwrap().prompt_evaluated, user.len(), "the saved prefix is re-used");
        assert_eq!((loaded.tokens(), got), (fresh.tokens(), want));
    }
}

/// Rewrites a state's checksum after editing it (to reach the checks behind the checksum).
fn reseal(b: &mut [u8]) {
    let n = b.len() - 32;
    let sum: [u8; 32] = Sha256::digest(&b[..n]).into();
    b[n..].copy_from_slice(&sum);
}

/// A state with its header JSON edited by `f` (and sealed again).
fn edit_header(state: &[u8], f: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let len = u32::from_le_bytes(state[12..16].try_into().unwrap()) as usize;
    let mut h: serde_json::Value = serde_json::from_slice(&state[16..16 + len]).unwrap();
    f(&mut h);
    let json = serde_json::to_vec(&h).unwrap();
    let mut b = state[..12].to_vec();
    b.extend_from_slice(&(json.len() as u32).to_le_bytes());
    b.extend_from_slice(&json);
    b.extend_from_slice(&state[16 + len..]);
    reseal(&mut b);
    b
}

#[test]
fn hostile_state_files_get_typed_errors() {
    let dir = common::tmp_dir("state-hostile");
    let (m, model_path) = model(dir.path(), 32, DType::Q8_0);
    let p = sp(CacheType::Q8_0, CacheType::F16);
    let mut s = Session::new(Arc::clone(&m), p).unwrap();
    run(&mut s, Some(&PROMPT), &gen(1, 0.9, 10), &mut String::new());
    let good = dir.path().join("good.state");
    s.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.state");
    let load = |b: &[u8]| {
        std::fs::write(&bad, b).unwrap();
        Session::load(Arc::clone(&m), &bad, p).map(|_| ()).map_err(|e| e.kind())
    };
    assert_eq!(load(&bytes), Ok(()));
    for cut in [0, 7, 16, 40, bytes.len() / 2, bytes.len() - 33, bytes.len() - 1] {
        assert_eq!(load(&bytes[..cut]), Err(ErrorKind::CorruptState), "truncated to {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(load(&longer), Err(ErrorKind::CorruptState), "trailing byte");
    // Every 97th byte flipped in turn: the header, tokens, logits, cache and checksum.
    for at in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        let r = load(&b);
        assert!(matches!(r, Err(ErrorKind::CorruptState | ErrorKind::StateModelMismatch)), "byte {at} flipped: {r:?}");
    }
    // Consistent checksums over inconsistent contents.
    let huge = |key: &str, v: serde_json::Value| {
        let b = edit_header(&bytes, |h| h[key] = v.clone());
        assert!(load(&b).is_err(), "{key} = {v}: accepted");
    };
    huge("n_ctx", serde_json::json!(1u64 << 40));
    huge("n_tokens", serde_json::json!(1u64 << 40));
    huge("kv_bytes", serde_json::json!(u64::MAX));
    huge("vocab_size", serde_json::json!(7));
    huge("cache_type_k", serde_json::json!("q2_k"));
    huge("n_batch", serde_json::json!(0));
    let b = edit_header(&bytes, |h| h["generation"]["held_emitted"] = serde_json::json!(1000));
    assert_eq!(load(&b), Err(ErrorKind::CorruptState));
    let b = edit_header(&bytes, |h| h["generation"]["detok_tokens"] = serde_json::json!([1u32 << 31]));
    assert_eq!(load(&b), Err(ErrorKind::CorruptState));
    // A token id past the vocabulary, checksum intact.
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut b = bytes.clone();
    b[16 + len..16 + len + 4].copy_from_slice(&9999u32.to_le_bytes());
    reseal(&mut b);
    assert_eq!(load(&b), Err(ErrorKind::InvalidToken));
    // An infinite cached value (keys q8_0: 34 bytes per 32 values; values f16), checksum intact:
    // it would make every later activation non-finite.
    let n_tokens = s.tokens().len();
    let kv_row_values = common::KV * 32;
    let keys0 = 16 + len + 4 * n_tokens + 4 * common::VOCAB;
    let values0 = keys0 + n_tokens * kv_row_values / 32 * 34;
    let mut b = bytes.clone();
    b[values0..values0 + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
    reseal(&mut b);
    assert_eq!(load(&b), Err(ErrorKind::CorruptState), "an infinite value");
    let mut b = bytes.clone();
    b[keys0..keys0 + 2].copy_from_slice(&0x7e00u16.to_le_bytes()); // a NaN block scale
    reseal(&mut b);
    assert_eq!(load(&b), Err(ErrorKind::CorruptState), "a NaN key scale");
    // Not a state at all.
    let r = Session::load(Arc::clone(&m), &model_path, p).map(|_| ());
    assert!(matches!(r, Err(RuntimeError::CorruptState(_))), "{r:?}");
    // Another model's state.
    let (other, _) = model(dir.path(), 32, DType::F32);
    let r = Session::load(other, &good, p).map(|_| ());
    assert!(matches!(r, Err(RuntimeError::StateModelMismatch { .. })), "{r:?}");
    // The save is atomic: a failed save leaves the old file.
    let missing_dir = dir.path().join("no/such/dir/x.state");
    assert!(s.save(&missing_dir).is_err());
    assert_eq!(std::fs::read(&good).unwrap(), bytes);
}

#[test]
fn context_shift_keeps_generating_and_keeps_the_prefix() {
    let dir = common::tmp_dir("state-shift");
    let (m, _) = model(dir.path(), 32, DType::Q8_0);
    for (k, v) in [(CacheType::F32, CacheType::F32), (CacheType::Q8_0, CacheType::Q8_0)] {
        let p = SessionParams { n_ctx: 32, ..sp(k, v) };
        let mut g = GenerateParams { context_shift: true, n_keep: 4, ..gen(2, 0.9, 100) };
        // Past the context, to the token limit or an end-of-generation token, for every seed.
        let mut longest = 0;
        for seed in 0..6 {
            g.sampler.seed = seed;
            let mut s = Session::new(Arc::clone(&m), p).unwrap();
            let stats = s.generate(&PROMPT, &g, &mut |_| true).unwrap();
            assert!(matches!(stats.stop, StopReason::MaxTokens | StopReason::EndOfGeneration), "{k:?}");
            let past = stats.generated_tokens + PROMPT.len();
            assert_eq!(stats.shifted_tokens > 0, past > 32, "{k:?} seed {seed}: {past} tokens");
            assert_eq!(&s.tokens()[..4], &PROMPT[..4], "{k:?} seed {seed}: the kept prefix");
            assert!(s.tokens().len() <= 32);
            longest = longest.max(stats.generated_tokens);
            if past > 32 {
                // Without the shift, the same generation stops when the context is full.
                let mut s = Session::new(Arc::clone(&m), p).unwrap();
                let no_shift = GenerateParams { context_shift: false, ..g.clone() };
                assert_eq!(run(&mut s, Some(&PROMPT), &no_shift, &mut String::new()), StopReason::ContextFull);
            }
        }
        assert!(longest + PROMPT.len() > 64, "{k:?}: no generation went past twice the context");
    }
    // Ring caches (a sliding window shorter than the context) cannot shift.
    let hf = dir.path().join("ring");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf(&hf, "MistralForCausalLM");
    let cfg_path = hf.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["sliding_window"] = serde_json::json!(5);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = dir.path().join("ring.autark");
    autark_quantize::quantize(&hf, &out, &Recipe::new(DType::F32).unwrap(), &mut |_| {}).unwrap();
    let ring = Arc::new(Model::load(&out).unwrap());
    let mut s = Session::new(ring, SessionParams { n_ctx: 16, n_batch: 4, ..Default::default() }).unwrap();
    let g = GenerateParams { context_shift: true, ..gen(0, 0.0, 40) };
    let r = s.generate(&PROMPT, &g, &mut |_| true);
    assert!(matches!(r, Err(RuntimeError::InvalidArgument { name: "context_shift", .. })), "{:?}", r.map(|_| ()));
}

/// The CLI across processes: `-n 30` equals `-n 12 --save-state` then `--load-state -n 18`.
#[test]
fn the_cli_resumes_across_processes() {
    let dir = common::tmp_dir("state-cli");
    let (_, model) = model(dir.path(), 32, DType::Q8_0);
    let state = dir.path().join("run.state");
    let autark = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_autark")).arg("run").arg(&model).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        text.strip_suffix('\n').unwrap_or(&text).to_string()
    };
    let common = ["--temp", "0.9", "--seed", "4", "--top-k", "0", "--min-p", "0", "-t", "1", "--cache-type-k", "q8_0"];
    let st = state.to_str().unwrap();
    let whole = autark(&[&["-p", "w3 w5 w7", "-n", "30"], &common[..]].concat());
    let first = autark(&[&["-p", "w3 w5 w7", "-n", "12", "--save-state", st], &common[..]].concat());
    let second = autark(&[&["--load-state", st, "-n", "18"], &common[..]].concat());
    assert!(whole.split_whitespace().count() > 20, "{whole:?}");
    assert_eq!(format!("{first}{second}"), whole);
}

/// RoPE by `by` positions in f64, as the model's configuration says (the shift's oracle).
fn rotate(head: &[f32], by: f64, theta: f64, neox: bool) -> Vec<f32> {
    let (hd, mut out) = (head.len(), head.to_vec());
    for i in 0..hd / 2 {
        let angle = by * theta.powf(-2.0 * i as f64 / hd as f64);
        let (a, b) = if neox { (i, i + hd / 2) } else { (2 * i, 2 * i + 1) };
        let (x, y) = (head[a] as f64, head[b] as f64);
        out[a] = (x * angle.cos() - y * angle.sin()) as f32;
        out[b] = (x * angle.sin() + y * angle.cos()) as f32;
    }
    out
}

/// A shift moves positions `keep + drop..` back by `drop`: values unchanged, keys rotated by
/// −drop (checked against an f64 rotation), the kept prefix untouched.
#[test]
fn context_shift_rotates_the_cached_keys() {
    let dir = common::tmp_dir("state-rotate");
    let (m, _) = model(dir.path(), 32, DType::Q8_0);
    let c = m.config().clone();
    let neox = c.rope_layout == autark_format::RopeLayout::Neox;
    for (k, bound) in [(CacheType::F32, 1e-5), (CacheType::F16, 2e-3), (CacheType::Q8_0, 2e-2)] {
        let mut s = Session::new(Arc::clone(&m), SessionParams { n_ctx: 32, ..sp(k, CacheType::F16) }).unwrap();
        let tokens: Vec<u32> = (0..30u32).map(|i| (i * 5 + 1) % common::VOCAB as u32).collect();
        s.eval(&tokens).unwrap();
        let rows = |s: &Session| -> Vec<Vec<(Vec<f32>, Vec<f32>)>> {
            (0..c.n_layers).map(|l| (0..s.tokens().len()).map(|p| s.cached_kv(l, p).unwrap()).collect()).collect()
        };
        let before = rows(&s);
        let drop = s.shift_context(4).unwrap();
        assert_eq!(drop, 13);
        assert_eq!(s.tokens(), [&tokens[..4], &tokens[17..]].concat());
        let after = rows(&s);
        for l in 0..c.n_layers {
            assert_eq!(&after[l][..4], &before[l][..4], "{k:?} layer {l}: the kept prefix");
            for p in 4..after[l].len() {
                let (was, now) = (&before[l][p + drop], &after[l][p]);
                assert_eq!(was.1, now.1, "{k:?} layer {l} position {p}: values move unchanged");
                let want: Vec<f32> = was
                    .0
                    .chunks(c.head_dim)
                    .flat_map(|h| rotate(h, -(drop as f64), c.rope_theta as f64, neox))
                    .collect();
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                let err = now.0.iter().zip(&want).fold(0f32, |a, (g, w)| a.max((g - w).abs()));
                assert!(err <= bound * scale, "{k:?} layer {l} position {p}: key off by {err} (scale {scale})");
            }
        }
        // And the session goes on from there.
        s.eval(&[3]).unwrap();
        assert!(s.logits().iter().all(|v| v.is_finite()));
    }
}

/// `autark chat --session FILE`: the conversation is saved after each reply and resumed (its
/// messages and its context) by the next run.
#[test]
fn chat_sessions_resume_across_runs() {
    use std::io::Write;
    let dir = common::tmp_dir("state-chat");
    let (_, model) = model(dir.path(), 32, DType::Q8_0);
    let file = dir.path().join("talk.state");
    let chat = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_autark"))
            .arg("chat")
            .arg(&model)
            .args(["--session", file.to_str().unwrap(), "-n", "6", "--temp", "0", "-t", "1", "--system", "w9"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stderr).unwrap()
    };
    let first = chat("w3 w5\n");
    assert!(!first.contains("resumed"), "{first}");
    let saved = std::fs::read(&file).unwrap();
    let second = chat("w7\n");
    // system, user, assistant from the first run.
    assert!(second.contains("resumed 3 messages"), "{second}");
    // The resumed context is re-used: only the new turn is evaluated.
    let evaluated = |log: &str| -> Vec<(usize, usize)> {
        log.lines()
            .filter_map(|l| l.split_once("[prompt: ").map(|(_, rest)| rest))
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w[0].parse().unwrap(), w[2].parse().unwrap())
            })
            .collect()
    };
    let turns = evaluated(&second);
    assert_eq!(turns.len(), 1, "{second}");
    assert!(turns[0].0 < turns[0].1, "the saved conversation was evaluated again: {second}");
    assert_ne!(std::fs::read(&file).unwrap(), saved, "the second reply was saved");
}
