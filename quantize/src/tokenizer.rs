//! Tokenizers into `TokenizerMeta`: a Hugging Face `tokenizer.json` is embedded as-is; a GGUF
//! tokenizer (`tokenizer.ggml.*`) is rebuilt as an equivalent `tokenizer.json`, one that tokenizes
//! as llama.cpp does on the same file:
//! - `gpt2` (byte-level BPE): vocabulary + merges, the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (`pretok.rs`), control / user-defined tokens as added tokens.
//! - `llama` (SentencePiece BPE): vocabulary with byte-fallback tokens, merges derived from the
//!   scores the way llama.cpp's SentencePiece tokenizer merges (two pieces merge when their
//!   concatenation is a token, the best-scored first), control / user-defined / unknown tokens as
//!   added tokens matched on the raw text (user-defined ones may hold spaces and tabs: llama.cpp's
//!   converter stores Gemma's whitespace runs that way).
//!
//! Merges are written as pairs (`[["a", "b"], …]`), never as space-joined strings, so tokens that
//! contain spaces survive. What is written is loaded and exercised by the quantizer before the
//! file is written (`autark_runtime::probe`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use autark_format::TokenizerMeta;
use serde_json::{json, Value as J};

use crate::error::{QuantizeError, Result};
use crate::gguf::{Gguf, Value};
use crate::pretok;

/// Names of end-of-generation tokens that chat models use besides their EOS token.
const END_OF_TURN: &[&str] =
    &["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>"];

// llama.cpp's token types (gguf-py `TokenType`).
const NORMAL: i64 = 1;
const UNKNOWN: i64 = 2;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

type Kv = BTreeMap<String, Value>;

fn strings(kv: &Kv, key: &'static str) -> Result<Vec<String>> {
    let a = kv
        .get(key)
        .and_then(Value::as_array)
        .ok_or(QuantizeError::TokenizerKey { key, what: "is missing or not an array".into() })?;
    a.iter()
        .map(|v| {
            v.as_str().map(String::from).ok_or(QuantizeError::TokenizerKey { key, what: "holds a non-string".into() })
        })
        .collect()
}

fn token_id(kv: &Kv, key: &str, n_vocab: usize) -> Option<u32> {
    kv.get(key).and_then(Value::as_u64).filter(|&v| (v as usize) < n_vocab).map(|v| v as u32)
}

/// Builds the tokenizer metadata of a GGUF file. Returns it with notes for the user.
pub fn from_gguf(g: &Gguf) -> Result<(TokenizerMeta, Vec<String>)> {
    from_gguf_kv(&g.kv)
}

/// `from_gguf` over the metadata alone.
pub fn from_gguf_kv(kv: &Kv) -> Result<(TokenizerMeta, Vec<String>)> {
    let mut notes = Vec::new();
    let model = kv.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("");
    let tokens = strings(kv, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    if n == 0 {
        return Err(QuantizeError::TokenizerKey { key: "tokenizer.ggml.tokens", what: "is empty".into() });
    }
    let types: Vec<i64> = match kv.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) if a.len() == n => a.iter().map(|v| v.as_u64().map(|x| x as i64).unwrap_or(NORMAL)).collect(),
        _ => vec![NORMAL; n],
    };
    // llama.cpp splits control, user-defined and unknown tokens out of the raw text before the
    // model sees it (`tokenizer_st_partition`), as Hugging Face does with added tokens.
    let added: Vec<J> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| matches!(types[i], UNKNOWN | CONTROL | USER_DEFINED))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] != USER_DEFINED})
        })
        .collect();
    let vocab: serde_json::Map<String, J> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    // Whether BOS is added when the file does not say: llama.cpp's default for the kind.
    let mut default_add_bos = model == "llama";
    let hf = match model {
        "gpt2" => {
            let merges = strings(kv, "tokenizer.ggml.merges")?;
            let pre = kv.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("");
            let p = match pretok::lookup(if pre.is_empty() { "default" } else { pre }) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(QuantizeError::PreTokenizer { name: pre.into(), why: "is not one llama.cpp knows" })
                }
                Err(why) => return Err(QuantizeError::PreTokenizer { name: pre.into(), why }),
            };
            default_add_bos = p.add_bos;
            if pre.is_empty() {
                notes.push("the GGUF names no pre-tokenizer (tokenizer.ggml.pre): using llama.cpp's default".into());
            }
            let mut pretokenizers: Vec<J> = p
                .splits
                .iter()
                .map(|re| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false}))
                .collect();
            pretokenizers.push(
                json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}),
            );
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretokenizers},
                "post_processor": null,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                          "ignore_merges": p.ignore_merges, "vocab": vocab,
                          "merges": merges.iter().map(|m| gguf_merge_pair(m)).collect::<Vec<_>>()}
            })
        }
        "llama" => {
            let scores: Vec<f32> = match kv.get("tokenizer.ggml.scores").and_then(Value::as_array) {
                Some(a) if a.len() == n => a.iter().map(|v| v.as_f32().unwrap_or(0.0)).collect(),
                _ => {
                    return Err(QuantizeError::TokenizerKey {
                        key: "tokenizer.ggml.scores",
                        what: format!("is missing or does not hold one score per token ({n})"),
                    })
                }
            };
            let add_space = kv.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
            let unk = token_id(kv, "tokenizer.ggml.unknown_token_id", n).map(|i| tokens[i as usize].clone());
            let merges = spm_merges(&tokens, &scores);
            let mut normalizers = vec![json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"})];
            if add_space {
                normalizers.insert(0, json!({"type": "Prepend", "prepend": "\u{2581}"}));
            }
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if add_space {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": {"type": "Sequence", "normalizers": normalizers},
                "pre_tokenizer": null,
                "post_processor": null,
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                          "vocab": vocab, "merges": merges}
            })
        }
        other => return Err(QuantizeError::TokenizerModel { model: other.into() }),
    };
    let bos = token_id(kv, "tokenizer.ggml.bos_token_id", n);
    let mut eos: Vec<u32> =
        ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .filter_map(|k| token_id(kv, k, n))
            .collect();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] == CONTROL && END_OF_TURN.contains(&t.as_str()) {
            eos.push(i as u32);
        }
    }
    eos.sort_unstable();
    eos.dedup();
    let add_bos = kv.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(default_add_bos);
    let meta = TokenizerMeta {
        hf_json: serde_json::to_string(&hf)?,
        bos_token_id: bos,
        eos_token_ids: eos,
        add_bos,
        chat_template: kv.get("tokenizer.chat_template").and_then(Value::as_str).map(String::from),
        bos_token: bos.map(|i| tokens[i as usize].clone()),
        eos_token: token_id(kv, "tokenizer.ggml.eos_token_id", n).map(|i| tokens[i as usize].clone()),
    };
    Ok((meta, notes))
}

/// A GGUF merge `"a b"` as the pair `["a", "b"]`, split where llama.cpp splits it: at the first
/// space after the first byte (so a merge whose left half is a space survives). A merge with
/// no such space is kept whole as its left half and an empty right half, which the tokenizer
/// refuses to load: the quantizer reports it.
fn gguf_merge_pair(m: &str) -> J {
    match m.bytes().skip(1).position(|b| b == b' ') {
        Some(i) => json!([&m[..i + 1], &m[i + 2..]]),
        None => json!([m, ""]),
    }
}

/// Merges of a SentencePiece BPE vocabulary, as pairs: every split of a token into two tokens,
/// ranked by the merged token's score (higher first), ties by the ids of the two halves.
///
/// llama.cpp's SentencePiece tokenizer merges the adjacent pair whose concatenation is the
/// best-scored token, whatever the type of that token; a BPE model with these merges in this
/// order picks the same pair (up to pairs of equal score, which llama.cpp takes leftmost first).
fn spm_merges(tokens: &[String], scores: &[f32]) -> Vec<[String; 2]> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        // A token spelled twice: the id llama.cpp's (and the vocabulary map's) lookup finds.
        if ids.get(t.as_str()) != Some(&i) {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[i], li, ri));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|(_, l, r)| [tokens[l].clone(), tokens[r].clone()]).collect()
}

/// Tokenizer metadata of a Hugging Face folder.
pub fn from_hf(dir: &Path, config: &J) -> Result<TokenizerMeta> {
    let tj = dir.join("tokenizer.json");
    let hf_json = std::fs::read_to_string(&tj)
        .map_err(|e| QuantizeError::TokenizerFile { path: tj.clone(), what: e.to_string() })?;
    let parsed: J = serde_json::from_str(&hf_json)
        .map_err(|e| QuantizeError::TokenizerFile { path: tj.clone(), what: e.to_string() })?;
    let tc = dir.join("tokenizer_config.json");
    let tcfg = if tc.exists() { crate::hf::read_json(&tc)? } else { J::Null };
    let gen = dir.join("generation_config.json");
    let gcfg = if gen.exists() { crate::hf::read_json(&gen)? } else { J::Null };

    // token string → id, from the model vocabulary and the added tokens.
    let mut ids: HashMap<String, u32> = HashMap::new();
    if let Some(v) = parsed.pointer("/model/vocab").and_then(J::as_object) {
        for (k, id) in v {
            if let Some(id) = id.as_u64() {
                ids.insert(k.clone(), id as u32);
            }
        }
    }
    let mut specials = Vec::new();
    if let Some(a) = parsed.get("added_tokens").and_then(J::as_array) {
        for t in a {
            if let (Some(c), Some(id)) = (t.get("content").and_then(J::as_str), t.get("id").and_then(J::as_u64)) {
                ids.insert(c.to_string(), id as u32);
                if t.get("special").and_then(J::as_bool) == Some(true) {
                    specials.push((c.to_string(), id as u32));
                }
            }
        }
    }
    let tok_str = |v: Option<&J>| -> Option<String> {
        match v? {
            J::String(s) => Some(s.clone()),
            J::Object(o) => o.get("content").and_then(J::as_str).map(String::from),
            _ => None,
        }
    };
    let bos_token = tok_str(tcfg.get("bos_token"));
    let eos_token = tok_str(tcfg.get("eos_token"));
    let id_list = |v: Option<&J>| -> Vec<u32> {
        match v {
            Some(J::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(J::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect(),
            _ => vec![],
        }
    };
    let mut eos = id_list(config.get("eos_token_id"));
    eos.extend(id_list(gcfg.get("eos_token_id")));
    if let Some(id) = eos_token.as_ref().and_then(|t| ids.get(t)) {
        eos.push(*id);
    }
    for (t, id) in &specials {
        if END_OF_TURN.contains(&t.as_str()) {
            eos.push(*id);
        }
    }
    eos.sort_unstable();
    eos.dedup();
    let bos_id = bos_token
        .as_ref()
        .and_then(|t| ids.get(t).copied())
        .or_else(|| config.get("bos_token_id").and_then(J::as_u64).map(|x| x as u32));
    let chat_template = match tcfg.get("chat_template") {
        Some(J::String(s)) => Some(s.clone()),
        Some(J::Array(a)) => a
            .iter()
            .find(|t| t.get("name").and_then(J::as_str) == Some("default"))
            .or_else(|| a.first())
            .and_then(|t| t.get("template").and_then(J::as_str).map(String::from)),
        _ => None,
    };
    let chat_template = chat_template.or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
    Ok(TokenizerMeta {
        hf_json,
        bos_token_id: bos_id,
        eos_token_ids: eos,
        // The post-processor of an HF tokenizer.json adds BOS itself where the model wants it.
        add_bos: false,
        chat_template,
        bos_token,
        eos_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use autark_runtime::{probe, Tokenizer};

    fn strs(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::Str(s.to_string())).collect())
    }

    /// GPT-2's byte → character map (printable bytes stand for themselves).
    fn byte_char(b: u8) -> char {
        let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        if printable(b as u32) {
            return char::from(b);
        }
        let n = (0..b as u32).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).unwrap()
    }

    /// A byte-level BPE vocabulary: 256 byte tokens, a few merges (one of them pairing a
    /// space-like token), three control tokens.
    fn gpt2_kv(pre: &str) -> Kv {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
        let merges = ["Ġ t", "h e", "Ġt he", "Ġ Ġ", "ĠĠ ĠĠ", "1 2"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
        }
        tokens.extend(["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from));
        let mut types = vec![Value::I32(1); tokens.len()];
        for t in types.iter_mut().rev().take(3) {
            *t = Value::I32(3);
        }
        let n = tokens.len() as u32;
        let mut kv = Kv::new();
        kv.insert("tokenizer.ggml.model".into(), Value::Str("gpt2".into()));
        kv.insert("tokenizer.ggml.pre".into(), Value::Str(pre.into()));
        kv.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::Str).collect()));
        kv.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
        kv.insert("tokenizer.ggml.merges".into(), strs(&merges));
        kv.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(n - 1));
        kv
    }

    /// A SentencePiece (`llama`) vocabulary like Gemma's: <pad> <eos> <bos> <unk>, then
    /// `filler` unused tokens (pushing every later id past `filler`), byte tokens, pieces with
    /// scores, and whitespace runs stored as llama.cpp's converter stores user-defined tokens:
    /// with real spaces and tabs, score -1000.
    fn spm_kv(filler: usize, add_space_prefix: bool) -> Kv {
        let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"].map(String::from).to_vec();
        let mut types = vec![3, 3, 3, 2];
        let mut scores = vec![0.0f32; 4];
        for i in 0..filler {
            tokens.push(format!("<unused{i}>"));
            types.push(5);
            scores.push(0.0);
        }
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        let pieces = ["▁", "a", "b", "c", "▁a", "▁b", "ab", "▁ab", "▁▁", "▁▁▁▁", "\n"];
        for (i, p) in pieces.iter().enumerate() {
            tokens.push(p.to_string());
            types.push(1);
            scores.push(-(i as f32));
        }
        for ws in ["  ", "   ", "    ", "\t", "\t\t", "\n\n"] {
            tokens.push(ws.to_string());
            types.push(4);
            scores.push(-1000.0);
        }
        let mut kv = Kv::new();
        kv.insert("tokenizer.ggml.model".into(), Value::Str("llama".into()));
        kv.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::Str).collect()));
        kv.insert("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect()));
        kv.insert("tokenizer.ggml.scores".into(), Value::Array(scores.into_iter().map(Value::F32).collect()));
        kv.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(2));
        kv.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(1));
        kv.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(3));
        kv.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(add_space_prefix));
        kv
    }

    fn n_tokens(kv: &Kv) -> usize {
        kv["tokenizer.ggml.tokens"].as_array().unwrap().len()
    }

    fn tokenizer(kv: &Kv) -> (Tokenizer, TokenizerMeta) {
        let (meta, _) = from_gguf_kv(kv).unwrap();
        let tok = Tokenizer::from_meta(&meta, n_tokens(kv)).unwrap();
        (tok, meta)
    }

    fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
        tok.encode(text, false).unwrap().iter().map(|&id| tok.id_to_token(id).unwrap()).collect()
    }

    #[test]
    fn gguf_merges_split_where_llama_cpp_splits_them() {
        assert_eq!(gguf_merge_pair("a b"), json!(["a", "b"]));
        assert_eq!(gguf_merge_pair("  b"), json!([" ", "b"]), "a left half that is a space");
        assert_eq!(gguf_merge_pair("é b c"), json!(["é", "b c"]), "first space only; multi-byte first char");
        assert_eq!(gguf_merge_pair("ab"), json!(["ab", ""]));
    }

    #[test]
    fn gemma_style_whitespace_tokens_load_and_split_out() {
        for add_space in [false, true] {
            let kv = spm_kv(0, add_space);
            let (tok, meta) = tokenizer(&kv);
            // Merges are pairs: tokens holding spaces cannot break them.
            let hf: J = serde_json::from_str(&meta.hf_json).unwrap();
            let merges = hf.pointer("/model/merges").unwrap().as_array().unwrap();
            assert!(merges.iter().all(|m| m.as_array().is_some_and(|p| p.len() == 2)));
            assert!(merges.iter().any(|m| m[0] == " " || m[0] == "  "), "whitespace tokens take part in merges");
            // With a space prefix, llama.cpp prefixes every stretch of text after a special or
            // user-defined token, as Hugging Face's normalizer does to every added-token split.
            let prefix = if add_space { "▁" } else { "" };
            let expected: Vec<String> = if add_space {
                ["▁ab", "  ", "▁ab", "\t\t", "▁", "c"].map(String::from).to_vec()
            } else {
                ["ab", "  ", "ab", "\t\t", "c"].map(String::from).to_vec()
            };
            assert_eq!(pieces(&tok, "ab  ab\t\tc"), expected);
            // Byte fallback for what no piece covers, in the order of its UTF-8 bytes.
            assert_eq!(pieces(&tok, "aé"), [format!("{prefix}a"), "<0xC3>".into(), "<0xA9>".into()]);
            // Decoding gives the text back (with a space prefix, the one after each user-defined
            // token stays: llama.cpp's detokenizer keeps it too).
            let text = if add_space { "abc é" } else { "ab    b\t\t\tc\n\nabc é" };
            assert_eq!(tok.decode(&tok.encode(text, false).unwrap(), false).unwrap(), text);
            assert!(meta.add_bos && meta.bos_token_id == Some(2) && meta.eos_token_ids == [1]);
            probe::check(&meta, n_tokens(&kv)).unwrap();
        }
    }

    #[test]
    fn spm_merges_follow_scores() {
        // "▁a" (score -4) merges before "ab" (-6): "▁ab" comes from "▁a" + "b".
        let (tok, _) = tokenizer(&spm_kv(0, true));
        assert_eq!(pieces(&tok, "ab"), ["▁ab"]);
        assert_eq!(pieces(&tok, "ba"), ["▁b", "a"]);
        assert_eq!(pieces(&tok, "a  a"), ["▁a", "  ", "▁a"], "user-defined whitespace tokens split out first");
        let (tok, _) = tokenizer(&spm_kv(0, false));
        assert_eq!(pieces(&tok, "a b"), ["a", "▁b"]);
        assert_eq!(pieces(&tok, "ca"), ["c", "a"]);
    }

    #[test]
    fn ids_past_u16() {
        let kv = spm_kv(70_000, false);
        let (tok, meta) = tokenizer(&kv);
        let ids = tok.encode("ab\t\t", true).unwrap();
        assert_eq!(ids[0], 2);
        assert!(ids[1..].iter().all(|&id| id > 70_000), "{ids:?}");
        assert_eq!(tok.decode(&ids, true).unwrap(), "ab\t\t");
        assert!(probe::check(&meta, n_tokens(&kv)).unwrap().round_trip);
    }

    #[test]
    fn every_pre_tokenizer_loads_and_runs() {
        for p in pretok::PRE_TOKENIZERS {
            for name in p.names {
                let kv = gpt2_kv(name);
                let (meta, _) = from_gguf_kv(&kv).unwrap();
                let r = probe::check(&meta, n_tokens(&kv)).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(r.round_trip, "{name}: byte-level BPE decodes back exactly");
                let tok = Tokenizer::from_meta(&meta, n_tokens(&kv)).unwrap();
                let ids = tok.encode("<|im_start|>the", false).unwrap();
                assert_eq!(ids[0], n_tokens(&kv) as u32 - 2, "{name}: control tokens split out");
            }
        }
    }

    #[test]
    fn gpt2_pre_tokenizers_split_as_llama_cpp_does() {
        // GPT-2's pattern keeps " the" together; llama-bpe's also; smollm isolates digits.
        let (tok, _) = tokenizer(&gpt2_kv("gpt-2"));
        assert_eq!(pieces(&tok, "the the"), ["t", "he", "Ġthe"]);
        let (tok, _) = tokenizer(&gpt2_kv("smollm"));
        assert_eq!(pieces(&tok, "12"), ["1", "2"]);
        let (tok, _) = tokenizer(&gpt2_kv("qwen2"));
        assert_eq!(pieces(&tok, "12"), ["1", "2"]);
        let (tok, _) = tokenizer(&gpt2_kv("llama-bpe"));
        assert_eq!(pieces(&tok, "12"), ["12"]);
        // Runs of spaces before a word: all but the last stay apart from it.
        assert_eq!(pieces(&tok, "    the"), ["ĠĠ", "Ġ", "Ġthe"]);
        assert_eq!(pieces(&tok, "    "), ["ĠĠĠĠ"]);
    }

    #[test]
    fn refusals_are_typed() {
        let mut kv = gpt2_kv("no-such-pre");
        assert!(matches!(from_gguf_kv(&kv), Err(QuantizeError::PreTokenizer { .. })));
        kv.insert("tokenizer.ggml.pre".into(), Value::Str("kimi-k2".into()));
        assert!(matches!(from_gguf_kv(&kv), Err(QuantizeError::PreTokenizer { .. })));
        kv.insert("tokenizer.ggml.model".into(), Value::Str("t5".into()));
        assert!(matches!(from_gguf_kv(&kv), Err(QuantizeError::TokenizerModel { .. })));
        let mut kv = spm_kv(0, true);
        kv.remove("tokenizer.ggml.scores");
        assert!(matches!(from_gguf_kv(&kv), Err(QuantizeError::TokenizerKey { key: "tokenizer.ggml.scores", .. })));
        // Converted, but the merges name a token the vocabulary lacks: the probe refuses it.
        let mut kv = gpt2_kv("gpt-2");
        kv.insert("tokenizer.ggml.merges".into(), strs(&["Ġ t", "x yz"]));
        let (meta, _) = from_gguf_kv(&kv).unwrap();
        assert!(probe::check(&meta, n_tokens(&kv)).is_err());
    }
}
