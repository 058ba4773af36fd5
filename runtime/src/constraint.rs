//! Constrained decoding (docs/STRUCTURED.md): a JSON Schema, a regular expression or a Lark
//! grammar, compiled by llguidance against the model's vocabulary into a `Guide` that masks the
//! logits before every draw, so that the output always matches.
//!
//! The vocabulary (a `TokTrie` of every token's bytes, read from the model's `tokenizer.json`)
//! and llguidance's `ParserFactory` are built once per model (`Model::constraints`); each
//! request compiles its constraint (`Model::compile_constraint`). Everything a request brings is
//! checked here before llguidance sees it, and fails closed: a schema keyword that cannot be
//! enforced is `RuntimeError::UnsupportedKeyword`, anything else that cannot be compiled is
//! `RuntimeError::InvalidConstraint`, and the compiler runs under fixed limits (`LIMITS`).

use std::sync::Arc;

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::toktrie::{self, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::ParserFactory;
use serde_json::Value;

use crate::error::{Result, RuntimeError};
use crate::model::Model;

/// What a generation's output must match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum Constraint {
    /// A JSON Schema (its JSON text); the output is one JSON value that validates.
    JsonSchema(String),
    /// A regular expression (Rust `regex` syntax); the whole output matches it.
    Regex(String),
    /// A grammar in llguidance's Lark syntax (docs/STRUCTURED.md).
    Grammar(String),
}

impl Constraint {
    /// The name front ends and errors use for this kind of constraint.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::JsonSchema(_) => "json_schema",
            Constraint::Regex(_) => "regex",
            Constraint::Grammar(_) => "grammar",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Constraint::JsonSchema(t) | Constraint::Regex(t) | Constraint::Grammar(t) => t,
        }
    }
}

// ---- bounds ------------------------------------------------------------------------------------

/// Longest constraint text accepted (schema, regex or grammar).
pub const MAX_CONSTRAINT_BYTES: usize = 1 << 20;
/// Deepest nesting of brackets in a regex or grammar: the parsers recurse on nesting, so this
/// bounds their stack.
pub const MAX_NESTING: usize = 64;
/// Deepest nesting of a schema's JSON (serde_json's own limit; about 40 levels of objects).
pub const MAX_SCHEMA_NESTING: usize = 128;

/// llguidance's limits (its defaults, with fewer lexer states): they bound the compile time and
/// memory of any constraint, and the work of each token's mask (docs/STRUCTURED.md, "Bounds").
pub fn limits() -> ParserLimits {
    ParserLimits {
        // Lexer states are 1–2 kB each: 50 000 bound the lexer near 100 MB.
        max_lexer_states: 50_000,
        // Errors name the problem, not the whole grammar.
        verbose_errors: false,
        ..ParserLimits::default()
    }
}

// ---- JSON Schema keywords ----------------------------------------------------------------------

/// Keywords enforced (llguidance's JSON compiler).
pub const SUPPORTED_KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Keywords that do not constrain the value (annotations, definitions, identifiers).
pub const ANNOTATION_KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "$anchor",
    "$defs",
    "definitions",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
];

/// JSON Schema keywords (drafts 4 to 2020-12) that constrain a value but are not enforced: a
/// schema using one is refused. Keys that are no JSON Schema keyword are annotations, as the
/// specification says, and ignored.
pub const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$vocabulary",
    "contentSchema",
    "deprecated",
    // llguidance's own options inside a schema (they could turn its checks off).
    "x-guidance",
];

/// The first keyword of `schema` that cannot be enforced, with its JSON pointer (which starts
/// with `path`).
pub(crate) fn unsupported_keyword(schema: &Value, path: &mut String) -> Option<(String, String)> {
    let Value::Object(map) = schema else { return None };
    for (k, v) in map {
        if UNSUPPORTED_KEYWORDS.contains(&k.as_str()) {
            return Some((k.clone(), format!("{path}/{}", escape_pointer(k))));
        }
        let len = path.len();
        path.push('/');
        path.push_str(&escape_pointer(k));
        let found = match k.as_str() {
            // A map of schemas.
            "properties" | "patternProperties" | "$defs" | "definitions" => match v {
                Value::Object(m) => m.iter().find_map(|(name, s)| {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&escape_pointer(name));
                    let r = unsupported_keyword(s, path);
                    path.truncate(len);
                    r
                }),
                _ => None,
            },
            // A list of schemas.
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => list(v, path),
            // One schema (or, for draft-4 `items`, a list).
            "items" | "additionalItems" | "additionalProperties" => match v {
                Value::Array(_) => list(v, path),
                s => unsupported_keyword(s, path),
            },
            _ => None,
        };
        path.truncate(len);
        if found.is_some() {
            return found;
        }
    }
    None
}

fn list(v: &Value, path: &mut String) -> Option<(String, String)> {
    let Value::Array(a) = v else { return None };
    a.iter().enumerate().find_map(|(i, s)| {
        let len = path.len();
        path.push_str(&format!("/{i}"));
        let r = unsupported_keyword(s, path);
        path.truncate(len);
        r
    })
}

fn escape_pointer(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// Deepest nesting of `([{` in `text` (escaped characters skipped).
fn nesting(text: &str) -> usize {
    let (mut depth, mut max, mut escaped) = (0usize, 0, false);
    for c in text.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn invalid(c: &Constraint, what: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidConstraint { kind: c.kind(), what: what.into() }
}

/// Checks `c` and turns it into llguidance's grammar (without compiling it).
fn to_grammar(c: &Constraint) -> Result<TopLevelGrammar> {
    let text = c.text();
    if text.len() > MAX_CONSTRAINT_BYTES {
        return Err(invalid(c, format!("{} bytes, over the limit of {MAX_CONSTRAINT_BYTES}", text.len())));
    }
    match c {
        Constraint::JsonSchema(s) => {
            let mut schema: Value = serde_json::from_str(s).map_err(|e| invalid(c, format!("not JSON: {e}")))?;
            if nesting(s) > MAX_SCHEMA_NESTING {
                return Err(invalid(c, format!("nested deeper than {MAX_SCHEMA_NESTING} levels")));
            }
            match &schema {
                Value::Object(_) | Value::Bool(_) => {}
                _ => return Err(invalid(c, "a schema is a JSON object or a boolean")),
            }
            if let Some((keyword, path)) = unsupported_keyword(&schema, &mut String::new()) {
                return Err(RuntimeError::UnsupportedKeyword {
                    keyword,
                    path: if path.is_empty() { "/".into() } else { path },
                });
            }
            if let Value::Object(m) = &mut schema {
                m.insert("x-guidance".into(), json_options());
            }
            Ok(TopLevelGrammar::from_json_schema(schema))
        }
        Constraint::Regex(rx) => {
            if nesting(rx) > MAX_NESTING {
                return Err(invalid(c, format!("nested deeper than {MAX_NESTING} levels")));
            }
            Ok(TopLevelGrammar::from_regex(rx))
        }
        Constraint::Grammar(g) => {
            if nesting(g) > MAX_NESTING {
                return Err(invalid(c, format!("nested deeper than {MAX_NESTING} levels")));
            }
            if g.trim().is_empty() {
                return Err(invalid(c, "empty grammar"));
            }
            // `%json` inside a grammar may carry llguidance's options (`x-guidance`), of which
            // `lenient` would turn its keyword checks off.
            if g.contains("lenient") {
                return Err(RuntimeError::UnsupportedKeyword {
                    keyword: "x-guidance.lenient".into(),
                    path: "grammar".into(),
                });
            }
            Ok(TopLevelGrammar::from_lark(g.clone()))
        }
    }
}

/// llguidance's options for JSON (as a schema's `x-guidance`): compact JSON with the usual
/// separators, so there are no runs of whitespace for a sampling model to wander into (and
/// `lenient` off, its default: unsupported keywords refused).
pub(crate) fn json_options() -> Value {
    serde_json::json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
    })
}

/// An error of llguidance's compiler as a typed error: its "Unimplemented keys" and "Unknown
/// format" name what cannot be enforced.
fn compile_error(c: &Constraint, msg: String) -> RuntimeError {
    if let Some(rest) = msg.split("Unimplemented keys: [").nth(1) {
        let keyword = rest.split(']').next().unwrap_or("").split(',').next().unwrap_or("").trim().trim_matches('"');
        return RuntimeError::UnsupportedKeyword { keyword: keyword.into(), path: "?".into() };
    }
    if msg.contains("oneOf constraints are not supported") {
        // Branches that may overlap: "exactly one" cannot be enforced token by token.
        return RuntimeError::UnsupportedKeyword { keyword: "oneOf".into(), path: "? (branches that overlap)".into() };
    }
    if msg.contains("Only absolute $ref") {
        return RuntimeError::UnsupportedKeyword { keyword: "$ref".into(), path: "? (another document)".into() };
    }
    if let Some(rest) = msg.split("Unknown format: ").nth(1) {
        let f = rest.split_whitespace().next().unwrap_or("");
        return RuntimeError::UnsupportedKeyword { keyword: format!("format: {f}"), path: "?".into() };
    }
    invalid(c, one_line(&msg))
}

/// An llguidance message on one line, at most 400 bytes.
fn one_line(msg: &str) -> String {
    let mut s = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

// ---- the vocabulary ----------------------------------------------------------------------------

/// The model's vocabulary as llguidance sees it: each token's bytes, special tokens marked.
struct Vocabulary {
    trie: TokTrie,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Only for llguidance's forced tokens and grammar literals; the sampler never relies on it.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }
}

/// A model's compiler: its vocabulary and llguidance's parser factory, built once.
pub struct Compiler {
    factory: ParserFactory,
    /// End-of-generation tokens (the model's, which llguidance allows when the output is
    /// complete).
    eog: Vec<u32>,
}

impl Compiler {
    pub(crate) fn new(model: &Model) -> Result<Compiler> {
        let json = &model.metadata().tokenizer.hf_json;
        Compiler::from_tokenizer_json(json, model.config().vocab_size, model.tokenizer().end_of_generation())
    }

    /// The compiler of a vocabulary of `vocab` tokens described by `tokenizer_json` (HF
    /// `tokenizer.json`), whose end-of-generation tokens are `eog`.
    pub fn from_tokenizer_json(json: &str, vocab: usize, eog: &[u32]) -> Result<Compiler> {
        let bad = |what: String| RuntimeError::Tokenizer(format!("vocabulary for constraints: {what}"));
        let eog: Vec<u32> = eog.iter().copied().filter(|&t| (t as usize) < vocab).collect();
        let build = || -> Result<Compiler> {
            let parsed: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
            let mut words = llguidance::token_bytes_from_tokenizer_json(&parsed).map_err(|e| bad(e.to_string()))?;
            if words.len() > vocab {
                return Err(bad(format!("{} tokens, the model has {vocab}", words.len())));
            }
            words.resize(vocab, Vec::new());
            let info = TokRxInfo {
                tok_eos: eog.first().copied().unwrap_or(toktrie::INVALID_TOKEN),
                ..TokRxInfo::new(vocab as u32, 0)
            };
            let mut trie = TokTrie::from(&info, &words);
            if !eog.is_empty() {
                trie = trie.with_eos_tokens(&eog);
            }
            let env: TokEnv = Arc::new(Vocabulary { trie });
            let mut factory = ParserFactory::new_simple(&env).map_err(|e| bad(e.to_string()))?;
            factory.quiet();
            *factory.limits_mut() = limits();
            Ok(Compiler { factory, eog: eog.clone() })
        };
        // llguidance asserts on vocabularies it cannot take; a panic is a typed error here.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
            .unwrap_or_else(|_| Err(bad("llguidance refused the vocabulary".into())))
    }

    /// Compiles `c` into a guide for one generation.
    pub fn compile(&self, c: &Constraint) -> Result<Guide> {
        let grammar = to_grammar(c)?;
        let parser = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.factory.create_parser(grammar)))
            .map_err(|_| invalid(c, "the compiler failed"))?
            .map_err(|e| compile_error(c, e.to_string()))?;
        let mut guide = Guide {
            matcher: llguidance::Matcher::new(Ok(parser)),
            eog: self.eog.clone(),
            masked: Vec::new(),
            ready: None,
            constraint: c.clone(),
            accepted: Vec::new(),
        };
        // A constraint that no output can satisfy fails here, not at the first token.
        let nothing = |why: String| invalid(c, format!("no output matches it ({why})"));
        let mask = guide.matcher.compute_mask().map_err(|e| nothing(one_line(&e.to_string())))?;
        if mask.is_zero() {
            return Err(nothing("no first token".into()));
        }
        Ok(guide)
    }
}

// ---- one generation ----------------------------------------------------------------------------

/// A compiled constraint following one generation: the token mask before each draw, the
/// accepted tokens after. A clone goes on independently from the same point.
#[derive(Clone)]
pub struct Guide {
    matcher: llguidance::Matcher,
    eog: Vec<u32>,
    /// The logits with every forbidden token at −∞ (vocabulary-sized, reused).
    masked: Vec<f32>,
    /// The next mask, computed ahead (`prepare`) while the forward pass ran.
    ready: Option<std::result::Result<toktrie::SimpleVob, String>>,
    constraint: Constraint,
    /// Tokens accepted so far (to rebuild the guide: `Compiler::replay`).
    accepted: Vec<u32>,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide").field("constraint", &self.constraint).field("accepted", &self.accepted.len()).finish()
    }
}

impl Guide {
    fn failed(&self, e: impl std::fmt::Display) -> RuntimeError {
        invalid(&self.constraint, one_line(&e.to_string()))
    }

    /// `logits` with every token the constraint forbids at −∞. End-of-generation tokens are
    /// allowed exactly when the output so far is complete.
    pub fn mask(&mut self, logits: &[f32]) -> Result<&[f32]> {
        let mask = match self.ready.take() {
            Some(m) => m,
            None => self.matcher.compute_mask().map_err(|e| e.to_string()),
        }
        .map_err(|e| self.failed(e))?;
        if mask.is_zero() {
            return Err(self.failed("no token can continue the output"));
        }
        // A word of the mask covers 32 tokens: whole words allowed (inside a JSON string, most of
        // them) or forbidden are copied or filled at once.
        self.masked.clear();
        self.masked.extend_from_slice(logits);
        let words = mask.as_slice();
        for (out, &w) in self.masked.chunks_mut(32).zip(words) {
            // Bit `b` of word `k` is token `32k + b` (toktrie's `SimpleVob`).
            match w {
                u32::MAX => {}
                0 => out.fill(f32::NEG_INFINITY),
                w => {
                    for (bit, o) in out.iter_mut().enumerate() {
                        if w & (1 << bit) == 0 {
                            *o = f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        // Tokens past the mask's words (none for a vocabulary-sized mask) are forbidden.
        if let Some(rest) = self.masked.get_mut(words.len() * 32..) {
            rest.fill(f32::NEG_INFINITY);
        }
        Ok(&self.masked)
    }

    /// Computes the next mask now (`mask` then uses it): the work that `generate::eval_ahead` overlaps
    /// with the forward pass.
    pub fn prepare(&mut self) {
        if self.ready.is_none() && !self.matcher.is_stopped() {
            self.ready = Some(self.matcher.compute_mask().map_err(|e| e.to_string()));
        }
    }

    /// Advances past the sampled token `t` (which `mask` allowed).
    pub fn accept(&mut self, t: u32) -> Result<()> {
        self.ready = None;
        self.matcher.consume_token(t).map_err(|e| self.failed(e))?;
        self.accepted.push(t);
        Ok(())
    }

    /// The output is complete and nothing may follow: generation ends here.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The output so far is complete (it may still go on, e.g. a regex `[0-9]+`).
    pub fn is_complete(&mut self) -> bool {
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }

    /// Is `t` an end-of-generation token.
    pub fn is_end(&self, t: u32) -> bool {
        self.eog.contains(&t)
    }

    pub fn constraint(&self) -> &Constraint {
        &self.constraint
    }

    /// Tokens accepted so far.
    pub fn accepted(&self) -> &[u32] {
        &self.accepted
    }
}

/// A thread that computes guides' next masks (`Guide::prepare`), kept for a session's lifetime:
/// spawning one per token cost about 90 µs of each constrained step. A guide is sent to it and
/// comes back prepared; the thread ends when the session drops its sender.
pub(crate) struct MaskThread {
    to: std::sync::mpsc::Sender<Box<Guide>>,
    from: std::sync::mpsc::Receiver<Box<Guide>>,
}

impl MaskThread {
    /// `None` when the system refuses a thread (the mask is then computed in line).
    pub fn start() -> Option<MaskThread> {
        let (to, jobs) = std::sync::mpsc::channel::<Box<Guide>>();
        let (done, from) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("autark-mask".into())
            .spawn(move || {
                for mut g in jobs {
                    g.prepare();
                    if done.send(g).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(MaskThread { to, from })
    }

    /// Hands `g` to the thread; gives it back if the thread is gone.
    pub fn send(&self, g: Box<Guide>) -> std::result::Result<(), Box<Guide>> {
        self.to.send(g).map_err(|e| e.0)
    }

    /// The guide last sent, prepared.
    pub fn receive(&self) -> Result<Box<Guide>> {
        // `prepare` does not panic (llguidance's matcher catches its own panics), so the thread
        // answers every guide it takes.
        self.from.recv().map_err(|_| RuntimeError::ThreadPool("the constraint's mask thread ended".into()))
    }
}

impl Model {
    /// The constraint compiler of this model's vocabulary (built on first use, then shared).
    pub fn constraints(&self) -> Result<&Compiler> {
        let erased = match self.constraints.get() {
            Some(c) => c,
            None => {
                let c = Compiler::new(self)?;
                self.constraints.get_or_init(|| Box::new(c))
            }
        };
        // Only this function stores into the slot, always a `Compiler`.
        erased
            .downcast_ref()
            .ok_or_else(|| RuntimeError::Tokenizer("constraint compiler slot holds another type".into()))
    }

    /// Compiles `c` against this model's vocabulary.
    pub fn compile_constraint(&self, c: &Constraint) -> Result<Guide> {
        self.constraints()?.compile(c)
    }

    /// A guide for `c` that has accepted `tokens` (a suspended generation that continues).
    pub fn replay_constraint(&self, c: &Constraint, tokens: &[u32]) -> Result<Guide> {
        let mut g = self.compile_constraint(c)?;
        for &t in tokens {
            g.accept(t)?;
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_unsupported(s: &str) -> Option<(String, String)> {
        unsupported_keyword(&serde_json::from_str(s).unwrap(), &mut String::new())
    }

    #[test]
    fn unsupported_keywords_are_found_with_their_path() {
        assert_eq!(first_unsupported(r#"{"type":"object"}"#), None);
        assert_eq!(
            first_unsupported(r#"{"properties":{"a/b":{"items":{"uniqueItems":true}}}}"#),
            Some(("uniqueItems".into(), "/properties/a~1b/items/uniqueItems".into()))
        );
        assert_eq!(
            first_unsupported(r#"{"anyOf":[{"type":"string"},{"not":{}}]}"#),
            Some(("not".into(), "/anyOf/1/not".into()))
        );
        // Data is not a schema: `enum` values and `default` may hold any keys.
        assert_eq!(first_unsupported(r#"{"enum":[{"not":1}],"default":{"if":2}}"#), None);
        assert_eq!(first_unsupported(r#"{"x-guidance":{"lenient":true}}"#).unwrap().0, "x-guidance");
    }

    #[test]
    fn nesting_counts_brackets_not_escapes() {
        assert_eq!(nesting(r"a(b[c]\()"), 2);
        assert_eq!(nesting(&"(".repeat(100)), 100);
    }

    #[test]
    fn compile_errors_name_the_keyword() {
        let c = Constraint::JsonSchema(String::new());
        match compile_error(&c, r#"Unimplemented keys: ["foo", "bar"]"#.into()) {
            RuntimeError::UnsupportedKeyword { keyword, .. } => assert_eq!(keyword, "foo"),
            e => panic!("{e}"),
        }
        match compile_error(&c, "Unknown format: ipv9\nmore".into()) {
            RuntimeError::UnsupportedKeyword { keyword, .. } => assert_eq!(keyword, "format: ipv9"),
            e => panic!("{e}"),
        }
    }
}
