//! A request body → what the engine runs: the prompt's tokens and the generation's settings.
//! Every field is checked here, and a bad one is a 400 that names it.

use autark_runtime::tools::calls_as_text;
use autark_runtime::{ChatMessage, Constraint, GenerateParams, Guide, Model, Prompt, ToolChoice, ToolSet, DEFAULTS};
use serde_json::{Map, Value};

use crate::error::{from_runtime, ApiError};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`: `messages`, rendered with the model's chat template.
    Chat,
    /// `/v1/completions`: a plain `prompt`.
    Completion,
}

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tokens a slot holds (prompt + generated).
    pub n_ctx: usize,
    /// Most messages in a conversation.
    pub max_messages: usize,
    /// Most stop strings, and the longest one (bytes).
    pub max_stop: usize,
    pub max_stop_bytes: usize,
}

/// Most entries of `logit_bias`.
pub const MAX_LOGIT_BIAS: usize = 1024;

/// Most alternatives `top_logprobs` (chat) or `logprobs` (completions) may ask for per token:
/// OpenAI's limit for chat.
pub const MAX_TOP_LOGPROBS: u64 = 20;

pub const DEFAULT_LIMITS: Limits = Limits { n_ctx: 2048, max_messages: 256, max_stop: 4, max_stop_bytes: 256 };

/// Most choices one request may ask for (prompts × `n`).
pub const MAX_CHOICES: u64 = 16;

/// A checked request: one choice of the response (`parse` gives one per prompt and sample).
#[derive(Clone)]
pub struct Request {
    pub kind: Kind,
    pub tokens: Vec<u32>,
    pub params: GenerateParams,
    pub guide: Option<Box<Guide>>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    /// `tools` (chat only): the output is constrained to calls of them, answered as
    /// `tool_calls`.
    pub tools: Option<ToolSet>,
    /// `logprobs`: each generated token's log-probability with this many alternatives.
    pub logprobs: Option<usize>,
    /// `logit_bias`: added to these tokens' logits before sampling.
    pub logit_bias: Vec<(u32, f32)>,
    /// `echo` (completions): the text begins with the prompt's, and with `logprobs` the prompt's
    /// tokens come first with theirs (the first token has none).
    pub echo: bool,
    /// Choices per prompt (`n`); this one's index is its place in `parse`'s list, and the
    /// first of each prompt's counts the prompt's tokens in the usage.
    pub n: usize,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("tokens", &self.tokens.len())
            .field("params", &self.params)
            .field("stream", &self.stream)
            .field("logprobs", &self.logprobs)
            .finish()
    }
}

/// Parses and checks a body: UTF-8, JSON, an object, every field known to matter. One request
/// per choice of the response: each prompt (completions take several) `n` times, prompt by
/// prompt; with a `seed`, the `n` samples of a prompt draw from `seed`, `seed + 1`, ….
pub fn parse(kind: Kind, body: &[u8], model: &Model, limits: &Limits) -> Result<Vec<Request>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|e| ApiError::invalid(None, format!("the body is not valid UTF-8 ({e})")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| ApiError::invalid(None, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(None, "the body must be a JSON object"));
    };
    let f = Fields(&obj);

    if let Some(m) = f.present("model") {
        if !m.is_string() {
            return Err(ApiError::field("model", "expected a string"));
        }
    }
    let n = f.uint("n")?.unwrap_or(1);
    if !(1..=MAX_CHOICES).contains(&n) {
        return Err(ApiError::field("n", format!("{n} is outside 1..={MAX_CHOICES}")));
    }
    // The completions API's options that change what comes back, refused rather than ignored.
    let echo = kind == Kind::Completion && f.bool("echo")? == Some(true);
    if kind == Kind::Completion {
        // best_of = n returns every candidate, as n does; more would need a ranking.
        if f.uint("best_of")?.is_some_and(|b| b != n) {
            return Err(ApiError::field("best_of", "only best_of = n is supported"));
        }
        if f.present("suffix").is_some_and(|s| s.as_str() != Some("")) {
            return Err(ApiError::field("suffix", "insertion (a suffix) is not supported"));
        }
    }
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.present("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool_at("include_usage", "stream_options.include_usage")?.unwrap_or(false),
        Some(_) => return Err(ApiError::field("stream_options", "expected an object")),
    };

    // The prompt.
    let tools = tools(&f, kind, model)?;
    let logprobs = logprobs(&f, kind)?;
    if logprobs.is_some() && tools.is_some() {
        return Err(ApiError::field("logprobs", "cannot be combined with tools"));
    }
    let (prompts, param) = match kind {
        Kind::Chat => {
            let messages = messages(&f, limits)?;
            let t = match &tools {
                Some(set) => model.tool_prompt_tokens(&messages, set),
                None => model.prompt_tokens(Prompt::Chat(&calls_as_text(model, &messages))),
            };
            (vec![t.map_err(|e| from_runtime("messages", &e))?], "messages")
        }
        Kind::Completion => (completion_prompts(f.get("prompt"), model)?, "prompt"),
    };
    if prompts.len() as u64 * n > MAX_CHOICES {
        let what = format!("{} prompts × n = {n} choices; at most {MAX_CHOICES}", prompts.len());
        return Err(ApiError::field(if prompts.len() > 1 { param } else { "n" }, what));
    }
    for tokens in &prompts {
        if tokens.is_empty() {
            return Err(ApiError::field(param, "the prompt is empty"));
        }
        if tokens.len() >= limits.n_ctx {
            return Err(ApiError::field(
                param,
                format!("the prompt has {} tokens; a slot holds {} (prompt and output)", tokens.len(), limits.n_ctx),
            )
            .with_code("context_length_exceeded"));
        }
    }

    // The generation's settings; defaults are the runtime's (DEFAULTS), the token limit the
    // slot's room (set per prompt below).
    let mut params = GenerateParams { max_tokens: 0, ..DEFAULTS.generate };
    let max = f.uint("max_completion_tokens")?.or(f.uint("max_tokens")?);
    if let Some(max) = max {
        // No new token only makes sense when the prompt comes back (to score it).
        if (max == 0 && !echo) || max as usize > limits.n_ctx {
            let name = if f.get("max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
            let low = if echo { 0 } else { 1 };
            return Err(ApiError::field(name, format!("{max} is outside {low}..={}", limits.n_ctx)));
        }
        params.max_tokens = max as usize;
    }
    let s = &mut params.sampler;
    if let Some(t) = f.number_in("temperature", "[0, 2]", |t| (0.0..=2.0).contains(&t))? {
        s.temperature = t;
    }
    if let Some(p) = f.number_in("top_p", "(0, 1]", |p| p > 0.0 && p <= 1.0)? {
        // A positive value below f32's range still means "only the most likely token".
        s.top_p = p.max(f32::MIN_POSITIVE);
    }
    let seed = match f.get("seed") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Some(u),
            (None, Some(i)) => Some(i as u64),
            _ => return Err(ApiError::field("seed", "expected an integer")),
        },
        Some(_) => return Err(ApiError::field("seed", "expected an integer")),
    };
    // Beside OpenAI's, the sampling fields llama-server reads.
    if let Some(k) = f.uint("top_k")? {
        s.top_k = usize::try_from(k).unwrap_or(usize::MAX);
    }
    if let Some(n) = f.uint("repeat_last_n")? {
        s.repeat_last_n = usize::try_from(n).unwrap_or(usize::MAX);
    }
    let settings: [(&str, &str, Accepts, &mut f32); 4] = [
        ("min_p", "[0, 1]", |p| (0.0..=1.0).contains(&p), &mut s.min_p),
        ("repeat_penalty", "(0, 10]", |r| r > 0.0 && r <= 10.0, &mut s.repeat_penalty),
        ("frequency_penalty", "[-2, 2]", |v| (-2.0..=2.0).contains(&v), &mut s.frequency_penalty),
        ("presence_penalty", "[-2, 2]", |v| (-2.0..=2.0).contains(&v), &mut s.presence_penalty),
    ];
    for (name, range, ok, to) in settings {
        if let Some(v) = f.number_in(name, range, ok)? {
            *to = v;
        }
    }
    params.stop = stops(&f, limits)?;
    params.sampler.validate().map_err(|e| ApiError::invalid(None, e.to_string()))?;

    let constraint = match (response_format(&f)?, &tools) {
        (Some(_), Some(_)) => return Err(ApiError::field("response_format", "cannot be combined with tools")),
        (Some(c), None) => Some((c, "response_format")),
        (None, Some(set)) => Some((set.constraint(), "tools")),
        (None, None) => None,
    };
    let guide = match constraint {
        None => None,
        Some((c, param)) => Some(Box::new(model.compile_constraint(&c).map_err(|e| from_runtime(param, &e))?)),
    };
    let logit_bias = logit_bias(&f, model.config().vocab_size)?;
    let n = n as usize;
    let one = Request {
        kind,
        tokens: Vec::new(),
        params,
        guide,
        stream,
        include_usage,
        tools,
        logprobs,
        logit_bias,
        echo,
        n,
    };
    let mut choices = Vec::with_capacity(prompts.len() * n);
    for tokens in prompts {
        for j in 0..n {
            let mut c = one.clone();
            c.params.sampler.seed = seed.map_or_else(fresh_seed, |s| s.wrapping_add(j as u64));
            if max.is_none() {
                c.params.max_tokens = limits.n_ctx - tokens.len();
            }
            c.tokens = tokens.clone();
            choices.push(c);
        }
    }
    Ok(choices)
}

/// `/v1/completions`' `prompt`, in OpenAI's forms: a string, token ids, or an array of prompts
/// in either form (what batching clients such as lm-evaluation-harness send).
fn completion_prompts(v: Option<&Value>, model: &Model) -> Result<Vec<Vec<u32>>, ApiError> {
    match v {
        None => Err(ApiError::field("prompt", "required")),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(|p| p.is_string() || p.is_array()) => {
            if a.len() as u64 > MAX_CHOICES {
                return Err(ApiError::field("prompt", format!("{} prompts; at most {MAX_CHOICES}", a.len())));
            }
            a.iter().map(|p| completion_prompt(p, model)).collect()
        }
        Some(v) => Ok(vec![completion_prompt(v, model)?]),
    }
}

/// One prompt: a string or token ids.
fn completion_prompt(v: &Value, model: &Model) -> Result<Vec<u32>, ApiError> {
    match v {
        Value::String(s) => model.prompt_tokens(Prompt::Text(s)).map_err(|e| from_runtime("prompt", &e)),
        Value::Array(ids) if ids.iter().all(Value::is_number) => {
            let vocab = model.config().vocab_size;
            ids.iter()
                .map(|id| match id.as_u64() {
                    Some(t) if (t as usize) < vocab => Ok(t as u32),
                    _ => Err(ApiError::field("prompt", format!("{id} is not a token id below {vocab}"))),
                })
                .collect()
        }
        _ => Err(ApiError::field("prompt", "expected a string, an array of token ids, or an array of those")),
    }
}

/// `logit_bias`: token ids (as strings, OpenAI's form) → −100 to 100, added to the logits.
fn logit_bias(f: &Fields<'_>, vocab: usize) -> Result<Vec<(u32, f32)>, ApiError> {
    let map = match f.present("logit_bias") {
        None => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::field("logit_bias", "expected an object of token ids to numbers")),
    };
    if map.len() > MAX_LOGIT_BIAS {
        return Err(ApiError::field("logit_bias", format!("{} entries; at most {MAX_LOGIT_BIAS}", map.len())));
    }
    map.iter()
        .map(|(k, v)| {
            let id = k.parse::<u32>().ok().filter(|&id| (id as usize) < vocab);
            let id =
                id.ok_or_else(|| ApiError::field("logit_bias", format!("{k:?} is not a token id below {vocab}")))?;
            match v.as_f64() {
                Some(b) if (-100.0..=100.0).contains(&b) => Ok((id, b as f32)),
                _ => Err(ApiError::field("logit_bias", format!("token {k}: expected a number from -100 to 100"))),
            }
        })
        .collect()
}

/// Chat: `logprobs: true` with `top_logprobs` alternatives (0 to 20; it needs `logprobs`);
/// completions (OpenAI's legacy form): `logprobs` as the number of alternatives.
fn logprobs(f: &Fields<'_>, kind: Kind) -> Result<Option<usize>, ApiError> {
    let check = |name: &str, n: u64| {
        if n > MAX_TOP_LOGPROBS {
            return Err(ApiError::field(name, format!("{n} is outside 0..={MAX_TOP_LOGPROBS}")));
        }
        Ok(n as usize)
    };
    match kind {
        Kind::Chat => {
            let top = f.uint("top_logprobs")?;
            match (f.bool("logprobs")?.unwrap_or(false), top) {
                (true, top) => Ok(Some(check("top_logprobs", top.unwrap_or(0))?)),
                (false, Some(_)) => Err(ApiError::field("top_logprobs", "needs logprobs: true")),
                (false, None) => Ok(None),
            }
        }
        Kind::Completion => f.uint("logprobs")?.map(|n| check("logprobs", n)).transpose(),
    }
}

/// A seed for a request that names none (OpenAI's sampled outputs differ between requests).
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

fn messages(f: &Fields<'_>, limits: &Limits) -> Result<Vec<ChatMessage>, ApiError> {
    let list = match f.get("messages") {
        None => return Err(ApiError::field("messages", "required")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::field("messages", "expected an array")),
    };
    if list.is_empty() {
        return Err(ApiError::field("messages", "must hold at least one message"));
    }
    if list.len() > limits.max_messages {
        return Err(ApiError::field("messages", format!("{} messages; at most {}", list.len(), limits.max_messages)));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::field(&format!("messages[{i}]"), "expected an object"));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => {
                if r == "developer" {
                    "system"
                } else {
                    r.as_str()
                }
            }
            Some(Value::String(r)) => {
                return Err(ApiError::field(&format!("messages[{i}].role"), format!("unknown role {r:?}")))
            }
            _ => return Err(ApiError::field(&format!("messages[{i}].role"), "expected a string")),
        };
        let param = format!("messages[{i}].content");
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            // Content parts: only text parts.
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => s.push_str(t),
                        _ => return Err(ApiError::field(&param, "only text content parts are supported")),
                    }
                }
                s
            }
            Some(_) => return Err(ApiError::field(&param, "expected a string or an array of text parts")),
        };
        let mut message = ChatMessage::new(role, &content);
        if role == "assistant" {
            message.tool_calls = tool_calls(m.get("tool_calls"), i)?;
        }
        match m.get("tool_call_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => message.tool_call_id = Some(id.clone()),
            Some(_) => return Err(ApiError::field(&format!("messages[{i}].tool_call_id"), "expected a string")),
        }
        out.push(message);
    }
    Ok(out)
}

/// An assistant message's `tool_calls` (a conversation sent back after a call), with each
/// call's `arguments` (JSON text, as OpenAI sends them) read into an object for the template.
fn tool_calls(v: Option<&Value>, i: usize) -> Result<Option<Value>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::field(&format!("messages[{i}].tool_calls"), "expected an array")),
    };
    let mut calls = Vec::with_capacity(list.len());
    for (j, c) in list.iter().enumerate() {
        let at = format!("messages[{i}].tool_calls[{j}]");
        let f =
            c.get("function").filter(|f| f.is_object()).ok_or_else(|| ApiError::field(&at, "expected a function"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::field(&format!("{at}.function.name"), "expected a string"))?;
        let arguments = match f.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| ApiError::field(&format!("{at}.function.arguments"), format!("not JSON: {e}")))?,
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(ApiError::field(&format!("{at}.function.arguments"), "expected JSON text")),
        };
        let id = c.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{j}"), str::to_string);
        calls.push(
            serde_json::json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}),
        );
    }
    Ok(Some(Value::Array(calls)))
}

fn stops(f: &Fields<'_>, limits: &Limits) -> Result<Vec<String>, ApiError> {
    let list: Vec<&Value> = match f.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v @ Value::String(_)) => vec![v],
        Some(Value::Array(a)) => a.iter().collect(),
        Some(_) => return Err(ApiError::field("stop", "expected a string or an array of strings")),
    };
    if list.len() > limits.max_stop {
        return Err(ApiError::field("stop", format!("at most {} stop strings", limits.max_stop)));
    }
    list.into_iter()
        .map(|v| match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= limits.max_stop_bytes => Ok(s.to_string()),
            Some(_) => {
                Err(ApiError::field("stop", format!("a stop string must hold 1 to {} bytes", limits.max_stop_bytes)))
            }
            None => Err(ApiError::field("stop", "expected a string or an array of strings")),
        })
        .collect()
}

/// `tools` (OpenAI function definitions) in the model's call format, with `tool_choice`
/// ("auto", the default: a call or text; "required": a call); `None` without tools or with
/// `tool_choice: "none"`.
fn tools(f: &Fields<'_>, kind: Kind, model: &Model) -> Result<Option<ToolSet>, ApiError> {
    let list = match f.present("tools") {
        None => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(v @ Value::Array(_)) => v,
        Some(_) => return Err(ApiError::field("tools", "expected an array")),
    };
    if kind == Kind::Completion {
        return Err(ApiError::field("tools", "only /v1/chat/completions takes tools"));
    }
    // OpenAI's default with tools is "auto": a call or a text reply.
    let choice = match f.present("tool_choice") {
        None => Some(ToolChoice::Auto),
        Some(Value::String(c)) if c == "none" => return Ok(None),
        Some(Value::String(c)) => ToolChoice::parse(c),
        Some(_) => None,
    }
    .ok_or_else(|| ApiError::field("tool_choice", "expected \"auto\", \"required\" or \"none\""))?;
    let set = ToolSet::new(model, &list.to_string()).map_err(|e| from_runtime("tools", &e))?;
    Ok(Some(ToolSet { choice, ..set }))
}

/// `response_format`: `text`, `json_object` (any JSON object) or `json_schema` (its `schema`).
fn response_format(f: &Fields<'_>) -> Result<Option<Constraint>, ApiError> {
    let rf = match f.get("response_format") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => Fields(o),
        Some(_) => return Err(ApiError::field("response_format", "expected an object")),
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Constraint::JsonSchema(r#"{"type":"object"}"#.into()))),
        Some("json_schema") => {
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| ApiError::field("response_format.json_schema.schema", "required"))?;
            if !schema.is_object() {
                return Err(ApiError::field("response_format.json_schema.schema", "expected an object"));
            }
            Ok(Some(Constraint::JsonSchema(schema.to_string())))
        }
        _ => Err(ApiError::field("response_format.type", "expected \"text\", \"json_object\" or \"json_schema\"")),
    }
}

/// Whether a number is a field's value.
type Accepts = fn(f64) -> bool;

/// Typed access to a JSON object's fields; `null` counts as absent.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    fn present(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| ApiError::field(name, "expected a non-negative integer")),
        }
    }

    fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::field(name, "expected a number")),
        }
    }

    /// A number that `ok` accepts (`range` names what it accepts), as f32.
    fn number_in(&self, name: &str, range: &str, ok: impl Fn(f64) -> bool) -> Result<Option<f32>, ApiError> {
        match self.number(name)? {
            Some(v) if !ok(v) => Err(ApiError::field(name, format!("{v} is outside {range}"))),
            v => Ok(v.map(|v| v as f32)),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.bool_at(name, name)
    }

    fn bool_at(&self, name: &str, param: &str) -> Result<Option<bool>, ApiError> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| ApiError::field(param, "expected a boolean")),
        }
    }
}
