//! Speculative decoding on synthetic models: the output (tokens, logits, the cache behind them)
//! is exactly plain decoding's for prompt lookup and greedy draft-model drafting, also on
//! sliding-window rings; sampled drafts keep the target's distribution (a chi-square test
//! against the exact distribution, with a negative control that shows the test has power); a
//! draft model with another vocabulary is refused with a typed error.

use std::path::Path;
use std::sync::Arc;

use autark_kernels::DType;
use autark_quantize::Recipe;
use autark_runtime::{
    GenerateParams, Model, RuntimeError, SamplerParams, Session, SessionParams, SpecMode, SpeculativeParams,
};

mod common;

/// A synthetic Llama of random stream `seed` (weights in ±scale/2), quantized to `dtype`. Its
/// end-of-sequence id lies outside the vocabulary, so that generations run to their limit.
fn model(dir: &Path, name: &str, arch: &str, seed: u32, scale: f32, dtype: DType) -> Arc<Model> {
    let hf = dir.join(name);
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_weights(&hf, arch, common::HD, seed, scale);
    endless(&hf);
    let out = dir.join(format!("{name}.autark"));
    autark_quantize::quantize(&hf, &out, &Recipe::new(dtype).unwrap(), &mut |_| {}).unwrap();
    Arc::new(Model::load(&out).unwrap())
}

fn gen(seed: u64, temperature: f32, max_tokens: usize, mode: SpecMode, draft_max: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams { temperature, seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() },
        speculative: SpeculativeParams { mode, draft_max, draft_min: 0 },
        ..Default::default()
    }
}

/// What a generation leaves: text, context, last logits, and the continuation after it.
#[derive(Debug, PartialEq)]
struct Outcome {
    text: String,
    tokens: Vec<u32>,
    logits: Vec<u32>,
    more: String,
}

fn generate(
    m: &Arc<Model>,
    draft: Option<&Arc<Model>>,
    sp: SessionParams,
    prompt: &[u32],
    p: &GenerateParams,
) -> (Outcome, usize, usize) {
    let mut s = Session::new(Arc::clone(m), sp).unwrap();
    if let Some(d) = draft {
        s.set_draft(Some(Session::new(Arc::clone(d), sp).unwrap())).unwrap();
    }
    let mut text = String::new();
    let stats = s
        .generate(prompt, p, &mut |piece| {
            text.push_str(piece);
            true
        })
        .unwrap();
    let (tokens, logits) = (s.tokens().to_vec(), s.logits().iter().map(|v| v.to_bits()).collect());
    // The cache left behind is right: continuing gives what plain decoding continues with.
    let mut more = String::new();
    s.generate_continue(p, &mut |piece| {
        more.push_str(piece);
        true
    })
    .unwrap();
    (Outcome { text, tokens, logits, more }, stats.drafted_tokens, stats.accepted_drafts)
}

/// Moves a model folder's end-of-sequence id out of the vocabulary.
fn endless(hf: &Path) {
    let cfg_path = hf.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["eos_token_id"] = serde_json::json!(1000);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    std::fs::write(hf.join("tokenizer_config.json"), r#"{"bos_token": "w1"}"#).unwrap();
}

/// Prompts with and without repetition (so that lookup finds n-grams, or not).
fn prompts() -> Vec<Vec<u32>> {
    let v = common::VOCAB as u32;
    vec![
        vec![1, 5, 9, 5, 9, 5, 9, 12],
        vec![1, 3, 4, 7, 3, 4, 7, 3, 4],
        (0..40).map(|i| (i * 7 + 3) % v).collect(),
        vec![1, 20],
        (0..30).map(|i| [4, 8, 15, 16, 23, 31][i % 6]).collect(),
    ]
}

#[test]
fn lookup_and_greedy_drafts_give_exactly_the_plain_output() {
    let dir = common::tmp_dir("spec-identity");
    let target = model(dir.path(), "target", "LlamaForCausalLM", 7, 0.6, DType::Q8_0);
    // The draft: another quantization of the same weights (agrees often, not always).
    let draft = model(dir.path(), "draft", "LlamaForCausalLM", 7, 0.6, DType::Q4_0);
    let (mut drafted, mut accepted) = (0, 0);
    for threads in [1, 2] {
        let sp = SessionParams { n_ctx: 128, n_threads: threads, ..Default::default() };
        for (i, prompt) in prompts().iter().enumerate() {
            for (temperature, seed) in [(0.0, 0), (0.9, i as u64 + 11)] {
                let plain = generate(&target, None, sp, prompt, &gen(seed, temperature, 40, SpecMode::Off, 8)).0;
                assert!(plain.tokens.len() > prompt.len() + 4, "prompt {i}: nothing generated");
                for k in [1, 3, 8] {
                    // Depths 1 and 3 fixed (`draft_min`), 8 adaptive: the adaptive choice follows
                    // wall-clock timings, so only fixed depths make the drafting repeatable.
                    let mut p = gen(seed, temperature, 40, SpecMode::Lookup, k);
                    p.speculative.draft_min = if k < 8 { k } else { 0 };
                    let (o, d, a) = generate(&target, None, sp, prompt, &p);
                    assert_eq!(o, plain, "lookup, prompt {i}, T={temperature}, {threads} threads, draft_max {k}");
                    (drafted, accepted) = (drafted + d, accepted + a);
                    if temperature == 0.0 {
                        let p = gen(seed, temperature, 40, SpecMode::Draft, k);
                        let (o, d, a) = generate(&target, Some(&draft), sp, prompt, &p);
                        assert_eq!(o, plain, "draft model, prompt {i}, {threads} threads, draft_max {k}");
                        (drafted, accepted) = (drafted + d, accepted + a);
                    }
                }
            }
        }
    }
    // The identity above is not vacuous: drafts were made, and both kinds of verdict happened.
    assert!(accepted > 50 && accepted < drafted, "{accepted} of {drafted} drafts accepted");
}

/// Row-major matrices (GGUF's block order) verify drafts through the prefill tiles rather than
/// the row dot of a one-token step; the two agree bit for bit for any number of tokens (the
/// numerical contract, docs/NUMERICS.md).
/// `draft_min = draft_max` makes every match draft as far as it can, whatever the timings say
/// (the adaptive depth follows wall-clock times and drafted short on a loaded machine).
#[test]
fn long_drafts_on_row_major_weights_stay_exact() {
    let dir = common::tmp_dir("spec-rows");
    let hf = dir.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_weights(&hf, "LlamaForCausalLM", common::HD, 7, 0.6);
    endless(&hf);
    let out = dir.path().join("rows.autark");
    let mut recipe = Recipe::new(DType::Q8_0).unwrap();
    recipe.interleave = false;
    autark_quantize::quantize(&hf, &out, &recipe, &mut |_| {}).unwrap();
    let m = Arc::new(Model::load(&out).unwrap());
    let sp = SessionParams { n_ctx: 256, n_batch: 64, ..Default::default() };
    let (mut drafted, mut accepted) = (0, 0);
    let mut long = gen(0, 0.0, 200, SpecMode::Lookup, 64);
    long.speculative.draft_min = 64;
    for prompt in prompts() {
        let plain = generate(&m, None, sp, &prompt, &gen(0, 0.0, 200, SpecMode::Off, 64)).0;
        let (o, d, a) = generate(&m, None, sp, &prompt, &long);
        assert_eq!(o, plain);
        (drafted, accepted) = (drafted + d, accepted + a);
    }
    assert!(accepted > 100, "{accepted} of {drafted}");
}

/// Stop strings, a full context and a context shift end or bend the generation exactly where
/// plain decoding does.
#[test]
fn limits_and_stops_fall_where_plain_decoding_puts_them() {
    let dir = common::tmp_dir("spec-limits");
    let m = model(dir.path(), "m", "LlamaForCausalLM", 7, 0.6, DType::Q8_0);
    let mut drafted = 0;
    for prompt in prompts() {
        for n_ctx in [prompt.len() + 7, prompt.len() + 20, 64] {
            let sp = SessionParams { n_ctx, n_batch: 8, ..Default::default() };
            for shift in [false, true] {
                let mut p = gen(3, 0.0, 90, SpecMode::Off, 16);
                p.context_shift = shift;
                p.n_keep = 2;
                let plain = generate(&m, None, sp, &prompt, &p).0;
                // A stop string taken from the middle of the plain text.
                let words: Vec<&str> = plain.text.split_whitespace().collect();
                let stop = words.get(words.len() / 2).map(|w| w.to_string());
                p.speculative.mode = SpecMode::Lookup;
                let (o, d, _) = generate(&m, None, sp, &prompt, &p);
                assert_eq!(o, plain, "n_ctx {n_ctx}, shift {shift}");
                drafted += d;
                if let Some(stop) = stop {
                    let mut ps = gen(3, 0.0, 90, SpecMode::Off, 16);
                    ps.stop = vec![stop.clone()];
                    let plain = generate(&m, None, sp, &prompt, &ps).0;
                    ps.speculative.mode = SpecMode::Lookup;
                    assert_eq!(generate(&m, None, sp, &prompt, &ps).0, plain, "stop {stop:?}");
                }
            }
        }
    }
    assert!(drafted > 0);
}

/// Drafts are undone by cutting the cache back; on sliding-window rings that is possible only
/// a few tokens deep, and drafting stays within it.
#[test]
fn drafts_on_sliding_window_rings_stay_exact() {
    let dir = common::tmp_dir("spec-ring");
    let hf = dir.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf_weights(&hf, "MistralForCausalLM", common::HD, 7, 0.6);
    let cfg_path = hf.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["sliding_window"] = serde_json::json!(5);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    endless(&hf);
    let out = dir.path().join("m.autark");
    autark_quantize::quantize(&hf, &out, &Recipe::new(DType::F32).unwrap(), &mut |_| {}).unwrap();
    let m = Arc::new(Model::load(&out).unwrap());
    let sp = SessionParams { n_ctx: 128, n_batch: 4, ..Default::default() };
    let mut drafted = 0;
    for prompt in prompts() {
        let plain = generate(&m, None, sp, &prompt, &gen(0, 0.0, 60, SpecMode::Off, 16)).0;
        let (o, d, _) = generate(&m, None, sp, &prompt, &gen(0, 0.0, 60, SpecMode::Lookup, 16));
        assert_eq!(o, plain);
        drafted += d;
    }
    assert!(drafted > 0);
}

#[test]
fn a_draft_of_another_vocabulary_is_refused() {
    let dir = common::tmp_dir("spec-vocab");
    let target = model(dir.path(), "target", "LlamaForCausalLM", 7, 0.2, DType::Q8_0);
    let hf = dir.path().join("other");
    std::fs::create_dir_all(&hf).unwrap();
    common::write_hf(&hf, "LlamaForCausalLM");
    std::fs::write(hf.join("tokenizer.json"), common::tokenizer_json().replace("\"w7\"", "\"seven\"")).unwrap();
    let out = dir.path().join("other.autark");
    autark_quantize::quantize(&hf, &out, &Recipe::new(DType::Q8_0).unwrap(), &mut |_| {}).unwrap();
    let other = Arc::new(Model::load(&out).unwrap());
    let sp = SessionParams { n_ctx: 64, ..Default::default() };
    let mut s = Session::new(Arc::clone(&target), sp).unwrap();
    let err = s.set_draft(Some(Session::new(other, sp).unwrap())).unwrap_err();
    assert!(matches!(&err, RuntimeError::DraftMismatch(w) if w.contains("token 7")), "{err}");
    // Draft mode without a draft model, and a draft_max out of range, are refused too.
    let refused = |p: &GenerateParams, s: &mut Session| {
        let err = s.generate(&[1, 2, 3], p, &mut |_| true).unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidArgument { .. }), "{err}");
    };
    refused(&gen(0, 0.0, 8, SpecMode::Draft, 4), &mut s);
    refused(&gen(0, 0.0, 8, SpecMode::Lookup, 0), &mut s);
    // A draft whose context is shorter than the target's cannot keep up.
    let short = Session::new(Arc::clone(&target), SessionParams { n_ctx: 16, ..sp }).unwrap();
    assert!(s.set_draft(Some(short)).is_err());
}

/// Softmax of `logits` (f64).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// Pearson's chi-square of `counts` against probabilities `p` (cells expected below 5 pooled),
/// and its degrees of freedom.
fn chi_square(counts: &[usize], p: &[f64]) -> (f64, usize) {
    let n: usize = counts.iter().sum();
    let (mut stat, mut cells, mut pool_e, mut pool_o) = (0.0, 0usize, 0.0, 0.0);
    for (&o, &pi) in counts.iter().zip(p) {
        let e = pi * n as f64;
        if e < 5.0 {
            (pool_e, pool_o) = (pool_e + e, pool_o + o as f64);
        } else {
            stat += (o as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pool_e > 0.0 {
        stat += (pool_o - pool_e).powi(2) / pool_e.max(1e-9);
        cells += 1;
    }
    (stat, cells.saturating_sub(1))
}

#[test]
fn sampled_drafts_keep_the_target_distribution() {
    let dir = common::tmp_dir("spec-dist");
    // Target and draft of different weights: their next-token distributions differ, so
    // rejections and the residual distribution matter.
    let target = model(dir.path(), "target", "LlamaForCausalLM", 7, 2.0, DType::F32);
    let draft = model(dir.path(), "draft", "LlamaForCausalLM", 99, 2.0, DType::F32);
    let sp = SessionParams { n_ctx: 32, n_threads: 1, ..Default::default() };
    let prompt = [1u32, 5, 9];
    // The exact distributions: p(·|prompt + t) of the target and q of the draft, for every t.
    let next = |m: &Arc<Model>, t: u32| {
        let mut s = Session::new(Arc::clone(m), sp).unwrap();
        s.eval(&prompt).unwrap();
        s.eval(&[t]).unwrap();
        softmax(s.logits())
    };
    let v = common::VOCAB;
    let p: Vec<Vec<f64>> = (0..v as u32).map(|t| next(&target, t)).collect();
    let q: Vec<Vec<f64>> = (0..v as u32).map(|t| next(&draft, t)).collect();
    let p1 = {
        let mut s = Session::new(Arc::clone(&target), sp).unwrap();
        s.eval(&prompt).unwrap();
        softmax(s.logits())
    };
    // Two tokens a run: the first plainly, the second from one sampled draft, verified by
    // speculative sampling.
    let runs = 6000;
    let mut counts = vec![0usize; v * v];
    let mut s = Session::new(Arc::clone(&target), sp).unwrap();
    s.set_draft(Some(Session::new(Arc::clone(&draft), sp).unwrap())).unwrap();
    let (mut drafted, mut accepted) = (0, 0);
    for seed in 0..runs {
        let st = s.generate(&prompt, &gen(seed, 1.0, 2, SpecMode::Draft, 1), &mut |_| true).unwrap();
        let t = &s.tokens()[prompt.len()..];
        assert_eq!(t.len(), 2);
        counts[t[0] as usize * v + t[1] as usize] += 1;
        (drafted, accepted) = (drafted + st.drafted_tokens, accepted + st.accepted_drafts);
    }
    assert_eq!(drafted, runs as usize, "one draft a run");
    assert!(accepted > runs as usize / 50 && accepted < runs as usize * 49 / 50, "{accepted} of {drafted} accepted");
    let exact: Vec<f64> = (0..v * v).map(|i| p1[i / v] * p[i / v][i % v]).collect();
    let (stat, df) = chi_square(&counts, &exact);
    // 6 standard deviations above the mean of chi-square(df): never by chance.
    let bound = df as f64 + 6.0 * (2.0 * df as f64).sqrt();
    assert!(stat < bound, "chi-square {stat:.1} with {df} degrees of freedom (bound {bound:.1})");
    eprintln!("chi-square {stat:.1}, {df} degrees of freedom; {accepted} of {drafted} drafts accepted");
    // Negative control: what a wrong verifier (accept with min(1, p/q), else draw from p
    // instead of the residual) would produce is far from these counts.
    let wrong: Vec<f64> = (0..v * v)
        .map(|i| {
            let (a, b) = (i / v, i % v);
            let overlap: f64 = (0..v).map(|x| p[a][x].min(q[a][x])).sum();
            p1[a] * (p[a][b].min(q[a][b]) + (1.0 - overlap) * p[a][b])
        })
        .collect();
    let (wrong_stat, wrong_df) = chi_square(&counts, &wrong);
    assert!(
        wrong_stat > wrong_df as f64 + 6.0 * (2.0 * wrong_df as f64).sqrt(),
        "the test cannot tell a wrong verifier apart: chi-square {wrong_stat:.1}, {wrong_df} df"
    );
}
