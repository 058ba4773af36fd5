//! The check a file's tokenizer and chat template pass before anyone relies on them: the
//! quantizer runs it on what it is about to write (and refuses a file that fails), `autark
//! verify` on what a file holds. It loads both exactly as `Model::load` and `Model::prompt_tokens`
//! do, then tokenizes a short text in many scripts and renders a one-message conversation.

use autark_format::TokenizerMeta;

use crate::chat::{self, ChatMessage};
use crate::error::{Result, RuntimeError};
use crate::tokenizer::Tokenizer;

/// The probe: the six languages of `data/eval/`, Greek, Cyrillic, CJK, emoji (with a skin tone
/// and a flag), runs of spaces, tabs and newlines, and code.
pub const PROBE_TEXT: &str = "The quick brown fox jumps over the lazy dog. \
Le cœur a ses raisons. Größe, Übermaß und Straße. ¿Dónde está la estación? \
Perché no? Zażółć gęślą jaźń. Ελληνικά, русский, 日本語のテキスト, 中文, 한국어. \
emoji 🙂👍🏽🇪🇺 and\u{a0}nbsp\n\n    indented\tand\t\ttabbed   spaces  \r\n\
fn main() { let x = vec![1, 2, 3]; println!(\"{x:?}\"); } // 1234567890";

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Tokens the tokenizer knows (the model's vocabulary may be larger).
    pub vocab: usize,
    /// Tokens of `PROBE_TEXT` (without special tokens).
    pub probe_tokens: usize,
    /// Whether those tokens decode back to exactly `PROBE_TEXT` (tokenizers that normalize text,
    /// e.g. NFKC or lower-casing, legitimately do not).
    pub round_trip: bool,
    /// Tokens of the rendered probe conversation; `None` without a chat template.
    pub chat_tokens: Option<usize>,
}

/// Loads `meta` for a model of `vocab_size` tokens, tokenizes and decodes `PROBE_TEXT`, and
/// renders and tokenizes a one-message conversation with the chat template, if there is one.
/// Every token id must lie inside the vocabulary.
pub fn check(meta: &TokenizerMeta, vocab_size: usize) -> Result<ProbeReport> {
    let tok = Tokenizer::from_meta(meta, vocab_size)?;
    let in_vocab = |ids: &[u32], what: &str| -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= vocab_size) {
            Some(id) => Err(RuntimeError::Tokenizer(format!(
                "{what} gives token id {id}, outside the model's vocabulary of {vocab_size}"
            ))),
            None => Ok(()),
        }
    };
    let ids = tok.encode(PROBE_TEXT, false)?;
    if ids.is_empty() {
        return Err(RuntimeError::Tokenizer("the probe text gives no tokens".into()));
    }
    in_vocab(&ids, "the probe text")?;
    in_vocab(&tok.encode(PROBE_TEXT, true)?, "the probe text with special tokens")?;
    let back = tok.decode(&ids, false)?;
    let chat_tokens = match &meta.chat_template {
        Some(_) => {
            let text = chat::render(&tok, &[ChatMessage::new("user", PROBE_TEXT)], true)?;
            let ids = tok.encode(&text, false)?;
            in_vocab(&ids, "the rendered chat template")?;
            Some(ids.len())
        }
        None => None,
    };
    Ok(ProbeReport { vocab: tok.vocab_size(), probe_tokens: ids.len(), round_trip: back == PROBE_TEXT, chat_tokens })
}

/// Checks a chat template on its own, as `check` does: it must render a one-message
/// conversation (`bos` and `eos` are the model's special token strings).
pub fn check_chat_template(template: &str, bos: &str, eos: &str) -> Result<String> {
    chat::render_template(template, &[ChatMessage::new("user", PROBE_TEXT)], true, bos, eos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_covers_what_it_claims() {
        for needle in
            ["fox", "cœur", "Größe", "estación", "Perché", "Zażółć", "日本語", "🇪🇺", "    ", "\t\t", "\r\n", "fn "]
        {
            assert!(PROBE_TEXT.contains(needle), "{needle:?}");
        }
    }
}
