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
        Ok(Tokenizer {
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

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token's text, for display.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Turns a stream of token ids into text pieces. A piece is released only once it decodes to
/// complete characters, so multi-byte characters split across tokens (byte-level BPE or
/// SentencePiece byte fallback) come out whole. Decoding a window of recent tokens, rather than
/// each token alone, keeps the tokenizer's spacing rules (leading-space stripping) intact.
#[derive(Default)]
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
