//! Constraint compilation (`runtime::constraint`): JSON Schemas, regular expressions and Lark
//! grammars from untrusted requests, compiled against a real vocabulary, then a few steps of
//! generation under the mask.
//!
//! The vocabulary is that of `$AUTARK_FUZZ_MODEL` (an `.autark` file), `models/smollm2-q4_1.autark`,
//! or the committed byte-level BPE fixture `fuzz/fixtures/tiny-tokenizer.json`.
//!
//! The input's first byte picks the kind (mod 4: JSON Schema, regex, grammar, tool definitions);
//! the rest is its text (lossy UTF-8). Compilation must end in `Ok` or a typed error, never a
//! panic, a hang or unbounded memory (libFuzzer's `-timeout` and `-rss_limit_mb` catch those).
//! A compiled constraint then takes up to 16 tokens, each chosen by the input among those its
//! mask allows: the mask must never be empty before the output is complete, end-of-generation
//! must be allowed only where it is complete, and an allowed token must be accepted or refused
//! with a typed error (`InvalidConstraint`: llguidance's parser disagreeing with its own mask,
//! fuzz/known-open/constraint/), never a panic.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use autark_runtime::constraint::{Compiler, Constraint};
use autark_runtime::tools::parse_tools;
use autark_runtime::RuntimeError;
use libfuzzer_sys::fuzz_target;

static COMPILER: OnceLock<Compiler> = OnceLock::new();

fn compiler() -> &'static Compiler {
    COMPILER.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        if let Some(p) = std::env::var_os("AUTARK_FUZZ_MODEL") {
            files.push(std::path::PathBuf::from(p));
        }
        files.push(root.join("models/smollm2-q4_1.autark"));
        for p in files.iter().filter(|p| p.is_file()) {
            if let Ok(f) = autark_format::AutarkFile::open(p) {
                let m = f.metadata();
                let c = Compiler::from_tokenizer_json(
                    &m.tokenizer.hf_json,
                    m.config.vocab_size,
                    &m.tokenizer.eos_token_ids,
                )
                .expect("vocabulary");
                eprintln!("constraint fuzz target: vocabulary of {}", p.display());
                return c;
            }
        }
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny-tokenizer.json");
        let json = std::fs::read_to_string(&fixture).expect("fuzz/fixtures/tiny-tokenizer.json");
        eprintln!("constraint fuzz target: vocabulary of {}", fixture.display());
        Compiler::from_tokenizer_json(&json, 272, &[271, 269]).expect("vocabulary")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    // The text is the input up to the first NUL; what follows picks the tokens.
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let text = String::from_utf8_lossy(&rest[..split]).into_owned();
    let picks = rest.get(split + 1..).unwrap_or(&[]);
    let c = match sel % 4 {
        0 => Constraint::JsonSchema(text),
        1 => Constraint::Regex(text),
        2 => Constraint::Grammar(text),
        _ => {
            // Tool definitions: the grammar the tools module builds from them.
            let Ok(tools) = parse_tools(&text) else { return };
            let choice = if picks.first().is_some_and(|b| b & 1 == 1) {
                autark_runtime::ToolChoice::Auto
            } else {
                autark_runtime::ToolChoice::Required
            };
            let set = autark_runtime::ToolSet { tools, format: autark_runtime::ToolFormat::Hermes, choice };
            set.constraint()
        }
    };
    let Ok(mut guide) = compiler().compile(&c) else { return };
    let logits = vec![0.0f32; 1 << 16];
    for &p in picks.iter().take(16) {
        if guide.is_finished() {
            break;
        }
        let Ok(masked) = guide.mask(&logits) else { return }; // a step limit: a typed error
        let allowed: Vec<u32> =
            masked.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, _)| i as u32).collect();
        assert!(!allowed.is_empty(), "empty mask for {c:?}");
        let t = allowed[p as usize % allowed.len()];
        if guide.is_end(t) {
            assert!(guide.is_complete(), "end of generation allowed before the output is complete: {c:?}");
            break;
        }
        if let Err(e) = guide.accept(t) {
            assert!(matches!(e, RuntimeError::InvalidConstraint { .. }), "allowed token {t}: {e:?} for {c:?}");
            return;
        }
    }
});
