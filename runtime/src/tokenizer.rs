//! The tokenizer (the `tokenizers` crate over the embedded `tokenizer.json`) and incremental
//! detokenization that never emits broken UTF-8.

use autark_format::TokenizerMeta;

use crate::error::{Result, RuntimeError};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Vec<u32>,
    add_bos: bool,
    pub(crate) bos_token: Option<String>,
    pub(crate) eos_token: Option<String>,
    pub(crate) chat_template: Option<String>,
    /// The decoder maps bytes to printable characters (GPT-2's byte-level BPE).
    byte_level: bool,
}

impl Tokenizer {
    pub fn from_meta(meta: &TokenizerMeta, vocab_size: usize) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(meta.hf_json.as_bytes())
            .map_err(|e| RuntimeError::Tokenizer(format!("tokenizer.json: {e}")))?;
        let n = inner.get_vocab_size(true);
        if n > vocab_size {
            return Err(RuntimeError::Tokenizer(format!(
                "tokenizer has {n} tokens, the model's vocabulary {vocab_size}"
            )));
        }
        let in_vocab = |id: &u32| (*id as usize) < vocab_size;
        use tokenizers::DecoderWrapper as D;
        let byte_level = match inner.get_decoder() {
            Some(D::ByteLevel(_)) => true,
            Some(D::Sequence(s)) => s.get_decoders().iter().any(|d| matches!(d, D::ByteLevel(_))),
            _ => false,
        };
        Ok(Tokenizer {
            byte_level,
            inner,
            bos: meta.bos_token_id.filter(in_vocab),
            eos: meta.eos_token_ids.iter().copied().filter(in_vocab).collect(),
            add_bos: meta.add_bos,
            bos_token: meta.bos_token.clone(),
            eos_token: meta.eos_token.clone(),
            chat_template: meta.chat_template.clone(),
        })
    }

    /// Text → token ids. `add_special`: let the tokenizer add its special tokens (BOS where the
    /// model wants one).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special).map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special && self.add_bos {
            if let Some(b) = self.bos {
                if ids.first() != Some(&b) {
                    ids.insert(0, b);
                }
            }
        }
        Ok(ids)
    }

    /// Token ids → text (special tokens included unless `skip_special`).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| RuntimeError::Tokenizer(e.to_string()))
    }

    /// End-of-generation tokens (EOS, end of turn).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eos.contains(&id)
    }

    /// The end-of-generation tokens.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.eos
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The token's text, for display.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The bytes the token stands for in decoded text, which may be part of a character:
    /// byte-level BPE vocabularies map their printable characters back to bytes, SentencePiece
    /// byte tokens (`<0xE2>`) are their byte and `▁` a space; added tokens are their content.
    /// Unlike `decode` of the token alone, no leading space is stripped. `None` for an id
    /// outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        if let Some(added) = self.inner.get_added_vocabulary().simple_id_to_token(id) {
            return Some(added.into_bytes());
        }
        let piece = self.inner.id_to_token(id)?;
        if self.byte_level {
            if let Some(bytes) = piece.chars().map(byte_of_char).collect::<Option<Vec<u8>>>() {
                return Some(bytes);
            }
        }
        let hex = piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).filter(|h| h.len() == 2);
        if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            return Some(vec![b]);
        }
        Some(piece.replace('\u{2581}', " ").into_bytes())
    }
}

/// GPT-2's byte-level alphabet backwards: the printable bytes `!`..`~`, `¡`..`¬` and `®`..`ÿ`
/// stand for themselves, the other 68 bytes, in order, for U+0100 onwards.
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let c = c as u32;
    if printable(c) {
        return Some(c as u8);
    }
    let n = c.checked_sub(256)?;
    (0..=255u32).filter(|&b| !printable(b)).nth(n as usize).map(|b| b as u8)
}

/// Turns a stream of token ids into text pieces. A piece is released only once it decodes to
/// complete characters, so multi-byte characters split across tokens (byte-level BPE or
/// SentencePiece byte fallback) come out whole. Decoding a window of recent tokens, rather than
/// each token alone, keeps the tokenizer's spacing rules (leading-space stripping) intact.
#[derive(Debug, Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    pub fn new() -> Self {
        Detokenizer::default()
    }

    /// Adds a token; returns the new complete text, possibly empty.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], false)?;
        let now = tok.decode(&self.ids[self.prefix..], false)?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.is_char_boundary(before.len()) {
            let piece = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// The tokens not yet fully turned into text, and how many of them were already decoded
    /// once (`from_state` rebuilds an equivalent detokenizer).
    pub fn state(&self) -> (&[u32], usize) {
        (&self.ids[self.prefix..], self.read - self.prefix)
    }

    /// A detokenizer in the state `state` reported; `None` if `read` exceeds the tokens.
    pub fn from_state(ids: Vec<u32>, read: usize) -> Option<Detokenizer> {
        (read <= ids.len()).then_some(Detokenizer { ids, prefix: 0, read })
    }

    /// Whatever is still held back (e.g. an incomplete character at the end of generation),
    /// decoded with replacement characters.
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read], false)?;
        let now = tok.decode(&self.ids[self.prefix..], false)?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now.get(before.len()..).unwrap_or("").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level BPE tokenizer with one token per byte and no merges: every multi-byte
    /// character spans several tokens.
    fn byte_tokenizer() -> Tokenizer {
        // GPT-2's byte ↔ printable-character map.
        let printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
        let mut extra = 0;
        let mut map = [0u32; 256];
        for b in 0..256u32 {
            if printable.contains(&b) {
                map[b as usize] = b;
            } else {
                map[b as usize] = 256 + extra;
                extra += 1;
            }
        }
        let vocab: serde_json::Map<String, serde_json::Value> =
            (0..256).map(|b| (char::from_u32(map[b]).unwrap().to_string(), serde_json::json!(b))).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
        });
        let meta = TokenizerMeta {
            hf_json: json.to_string(),
            bos_token_id: None,
            eos_token_ids: vec![],
            add_bos: false,
            chat_template: None,
            bos_token: None,
            eos_token: None,
        };
        Tokenizer::from_meta(&meta, 256).unwrap()
    }

    #[test]
    fn token_bytes_rebuild_the_text() {
        let tok = byte_tokenizer();
        let text = "Zażółć gęślą — 😀 ok";
        let ids = tok.encode(text, false).unwrap();
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| tok.token_bytes(i).unwrap()).collect();
        assert_eq!(bytes, text.as_bytes());
        assert_eq!(tok.token_bytes(b' ' as u32), Some(vec![b' ']));
        assert_eq!(tok.token_bytes(256), None);
        assert_eq!(byte_of_char('\u{0100}'), Some(0));
        assert_eq!(byte_of_char('\u{0144}'), None);
    }

    #[test]
    fn detokenizer_never_splits_characters() {
        let tok = byte_tokenizer();
        let text = "Zażółć gęślą — Ελληνικά 😀🇪🇺 ok";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids.len(), text.len(), "one token per byte");
        let mut d = Detokenizer::new();
        let mut out = String::new();
        let mut held_back = 0;
        for &id in &ids {
            let piece = d.push(&tok, id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "broken UTF-8 emitted: {piece:?}");
            if piece.is_empty() {
                held_back += 1;
            }
            out.push_str(&piece);
        }
        out.push_str(&d.flush(&tok).unwrap());
        assert_eq!(out, text);
        assert!(held_back > 10, "continuation bytes must be held back ({held_back})");
    }

    #[test]
    fn truncated_character_is_flushed_as_replacement() {
        let tok = byte_tokenizer();
        let ids = tok.encode("a😀", false).unwrap();
        let mut d = Detokenizer::new();
        let mut out = String::new();
        for &id in &ids[..3] {
            out.push_str(&d.push(&tok, id).unwrap());
        }
        assert_eq!(out, "a");
        assert_eq!(d.flush(&tok).unwrap(), "\u{FFFD}");
    }
}
