//! Tokenizers into `TokenizerMeta`: a Hugging Face `tokenizer.json` is embedded as-is; a GGUF
//! tokenizer (`tokenizer.ggml.*`) is rebuilt as an equivalent `tokenizer.json`:
//! - `gpt2` (byte-level BPE): vocabulary + merges, the pre-tokenizer named by
//!   `tokenizer.ggml.pre`, control / user-defined tokens as added tokens.
//! - `llama` (SentencePiece BPE): vocabulary with byte-fallback tokens, merges derived from the
//!   scores the way Hugging Face's SentencePiece converter does (pairs whose concatenation is a
//!   token, ranked by that token's score).

use std::collections::HashMap;
use std::path::Path;

use autark_format::TokenizerMeta;
use serde_json::{json, Value as J};

use crate::error::{QuantizeError, Result};
use crate::gguf::{Gguf, Value};

/// Names of end-of-generation tokens that chat models use besides their EOS token.
const END_OF_TURN: &[&str] =
    &["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>"];

// llama.cpp's pre-tokenizer regexes, by `tokenizer.ggml.pre` name.
const RE_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn strings(g: &Gguf, key: &str) -> Result<Vec<String>> {
    let a =
        g.get(key).and_then(Value::as_array).ok_or_else(|| QuantizeError::Tokenizer(format!("GGUF has no {key}")))?;
    a.iter()
        .map(|v| {
            v.as_str().map(String::from).ok_or_else(|| QuantizeError::Tokenizer(format!("{key} holds a non-string")))
        })
        .collect()
}

fn token_id(g: &Gguf, key: &str, n_vocab: usize) -> Option<u32> {
    g.get(key).and_then(Value::as_u64).filter(|&v| (v as usize) < n_vocab).map(|v| v as u32)
}

/// Builds the tokenizer metadata of a GGUF file. Returns it with notes for the user.
pub fn from_gguf(g: &Gguf) -> Result<(TokenizerMeta, Vec<String>)> {
    let mut notes = Vec::new();
    let model = g.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("");
    let tokens = strings(g, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    if n == 0 {
        return Err(QuantizeError::Tokenizer("empty vocabulary".into()));
    }
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) if a.len() == n => a.iter().map(|v| v.as_u64().map(|x| x as i64).unwrap_or(1)).collect(),
        _ => vec![1; n],
    };
    let added: Vec<J> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| types[i] == 3 || types[i] == 4)
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == 3})
        })
        .collect();
    let hf = match model {
        "gpt2" => {
            let merges = strings(g, "tokenizer.ggml.merges")?;
            let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
            let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
            let split =
                |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
            let pre_tokenizer = match pre {
                "smollm" => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                "llama-bpe" | "llama3" | "smaug-bpe" => {
                    json!({"type": "Sequence", "pretokenizers": [split(RE_LLAMA3), byte_level(false)]})
                }
                "qwen2" | "deepseek-r1-qwen" => {
                    json!({"type": "Sequence", "pretokenizers": [split(RE_QWEN2), byte_level(false)]})
                }
                "gpt2" | "default" | "gpt-2" => byte_level(true),
                other => {
                    notes.push(format!("tokenizer pre-type {other:?} is not known; using GPT-2's pre-tokenizer"));
                    byte_level(true)
                }
            };
            let vocab: serde_json::Map<String, J> =
                tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": pre_tokenizer,
                "post_processor": null,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                          "vocab": vocab, "merges": merges}
            })
        }
        "llama" => {
            let scores: Vec<f32> = match g.get("tokenizer.ggml.scores").and_then(Value::as_array) {
                Some(a) if a.len() == n => a.iter().map(|v| v.as_f32().unwrap_or(0.0)).collect(),
                _ => return Err(QuantizeError::Tokenizer("SentencePiece vocabulary without scores".into())),
            };
            let add_space = g.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
            let unk = token_id(g, "tokenizer.ggml.unknown_token_id", n).map(|i| tokens[i as usize].clone());
            let merges = spm_merges(&tokens, &scores, &types);
            let vocab: serde_json::Map<String, J> =
                tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
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
        other => {
            return Err(QuantizeError::Tokenizer(format!(
                "GGUF tokenizer model {other:?} is not supported (gpt2 and llama are)"
            )))
        }
    };
    let bos = token_id(g, "tokenizer.ggml.bos_token_id", n);
    let mut eos: Vec<u32> =
        ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .filter_map(|k| token_id(g, k, n))
            .collect();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] == 3 && END_OF_TURN.contains(&t.as_str()) {
            eos.push(i as u32);
        }
    }
    eos.sort_unstable();
    eos.dedup();
    let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(model == "llama");
    let meta = TokenizerMeta {
        hf_json: serde_json::to_string(&hf)?,
        bos_token_id: bos,
        eos_token_ids: eos,
        add_bos,
        chat_template: g.get("tokenizer.chat_template").and_then(Value::as_str).map(String::from),
        bos_token: bos.map(|i| tokens[i as usize].clone()),
        eos_token: token_id(g, "tokenizer.ggml.eos_token_id", n).map(|i| tokens[i as usize].clone()),
    };
    Ok((meta, notes))
}

/// Merges of a SentencePiece BPE vocabulary: every split of a token into two tokens, ranked by
/// the merged token's score (higher first), ties by the ids of the two halves.
fn spm_merges(tokens: &[String], scores: &[f32], types: &[i64]) -> Vec<String> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, usize, String)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] != 1 && types[i] != 4 {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[i], li, ri, format!("{l} {r}")));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|m| m.3).collect()
}

/// Tokenizer metadata of a Hugging Face folder.
pub fn from_hf(dir: &Path, config: &J) -> Result<TokenizerMeta> {
    let tj = dir.join("tokenizer.json");
    let hf_json =
        std::fs::read_to_string(&tj).map_err(|e| QuantizeError::Tokenizer(format!("{}: {e}", tj.display())))?;
    let parsed: J =
        serde_json::from_str(&hf_json).map_err(|e| QuantizeError::Tokenizer(format!("{}: {e}", tj.display())))?;
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
