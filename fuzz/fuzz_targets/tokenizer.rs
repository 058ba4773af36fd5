//! The runtime tokenizer over a real `tokenizer.json` and the streaming `Detokenizer`.
//!
//! The tokenizer is loaded once, from the first of: `$AUTARK_FUZZ_MODEL` (an `.autark` or GGUF
//! file), `models/smollm2-q4_1.autark`, `models/SmolLM2-135M-Instruct.Q4_1.gguf`, and the
//! committed byte-level BPE fixture `fuzz/fixtures/tiny-tokenizer.json` (the tokenizer of
//! `tests/python/make_tiny.py`), so the target also runs in a fresh clone.
//!
//! The input's first byte picks the mode:
//! - even: the rest is text (lossy UTF-8). `encode(text, true)` must not panic; the ids of
//!   `encode(text, false)` streamed through a `Detokenizer` must give back pieces that never
//!   contain U+FFFD (unless the text does; `flush` may) and that concatenate to `decode(ids)`.
//! - odd: the rest is a list of little-endian u32 token ids (mod the vocabulary). Streaming
//!   them must not panic, and the pieces plus `flush` must concatenate to `decode(ids)`.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use autark_format::TokenizerMeta;
use autark_runtime::{Detokenizer, Tokenizer};
use libfuzzer_sys::fuzz_target;

static TOK: OnceLock<Tokenizer> = OnceLock::new();

fn load_meta() -> (TokenizerMeta, usize, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("AUTARK_FUZZ_MODEL") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(root.join("models/smollm2-q4_1.autark"));
    candidates.push(root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    for p in candidates.iter().filter(|p| p.is_file()) {
        if p.extension().is_some_and(|e| e == "gguf") {
            if let Ok(src) = autark_quantize::Source::open(p) {
                return (src.tokenizer.clone(), src.config.vocab_size, p.display().to_string());
            }
        } else if let Ok(f) = autark_format::AutarkFile::open(p) {
            let m = f.metadata();
            return (m.tokenizer.clone(), m.config.vocab_size, p.display().to_string());
        }
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny-tokenizer.json");
    let hf_json = std::fs::read_to_string(&fixture).expect("fuzz/fixtures/tiny-tokenizer.json");
    let meta = TokenizerMeta {
        hf_json,
        bos_token_id: Some(270),
        eos_token_ids: vec![271, 269],
        add_bos: false,
        chat_template: None,
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
    };
    (meta, 272, fixture.display().to_string())
}

fn tokenizer() -> &'static Tokenizer {
    TOK.get_or_init(|| {
        let (meta, vocab, from) = load_meta();
        let tok = Tokenizer::from_meta(&meta, vocab).expect("tokenizer");
        eprintln!("tokenizer fuzz target: {} tokens from {from}", tok.vocab_size());
        tok
    })
}

/// Streams `ids` through a Detokenizer; returns (pieces, flush).
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<String>, String) {
    let mut d = Detokenizer::new();
    let pieces = ids.iter().map(|&id| d.push(tok, id).expect("Detokenizer::push")).collect();
    let tail = d.flush(tok).expect("Detokenizer::flush");
    (pieces, tail)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let tok = tokenizer();
    if sel & 1 == 0 {
        let text = String::from_utf8_lossy(rest);
        let _ = tok.encode(&text, true);
        let Ok(ids) = tok.encode(&text, false) else { return };
        let whole = tok.decode(&ids, false).expect("decode of encoded ids");
        let (pieces, tail) = stream(tok, &ids);
        if !text.contains('\u{FFFD}') && !whole.contains('\u{FFFD}') {
            for p in &pieces {
                assert!(!p.contains('\u{FFFD}'), "piece {p:?} of {text:?} contains U+FFFD");
            }
        }
        let streamed: String = pieces.concat() + &tail;
        assert_eq!(streamed, whole, "streamed text differs from decode for {text:?}");
    } else {
        let n = tok.vocab_size().max(1) as u32;
        let ids: Vec<u32> = rest.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) % n).collect();
        let whole = tok.decode(&ids, false).expect("decode");
        let (pieces, tail) = stream(tok, &ids);
        for p in &pieces {
            // A piece is released only when it ends in a complete character.
            assert!(!p.ends_with('\u{FFFD}') || whole.contains('\u{FFFD}'));
        }
        let streamed: String = pieces.concat() + &tail;
        assert_eq!(streamed, whole, "streamed text differs from decode for ids {ids:?}");
    }
});
