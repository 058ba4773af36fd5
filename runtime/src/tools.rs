//! Tool calls (docs/STRUCTURED.md, "Tool calls"): OpenAI-style function definitions shown to the
//! model through its chat template, the model's call constrained to one of them with arguments
//! valid under its parameter schema (a grammar built here, enforced by `constraint`), and the
//! call parsed back into a name and JSON arguments.
//!
//! Each family writes a call its own way (`ToolFormat`); which one a model uses is read from its
//! chat template. A template that takes `tools` itself (Qwen2.5, Llama 3.x) renders the
//! definitions; for one that does not (SmolLM2 and other ChatML models, Phi-3), the definitions
//! and the format go into the system message.

use serde_json::{json, Value};

use crate::chat::ChatMessage;
use crate::constraint::Constraint;
use crate::error::{Result, RuntimeError};
use crate::model::Model;

/// Most tools one request may declare.
pub const MAX_TOOLS: usize = 128;

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments, as JSON text (an object).
    pub arguments: String,
}

/// How a family writes a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` (Qwen2.5, Qwen3, Hermes; also
    /// the fallback for ChatML models such as SmolLM2).
    Hermes,
    /// `{"name": …, "parameters": {…}}` (Llama 3.1–3.3 JSON tool calling).
    Llama3,
    /// `<|tool_call|>[{"name": …, "arguments": {…}}]<|/tool_call|>` (Phi-4-mini; Phi-3).
    Phi,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}]` (Mistral v3 and later: Mistral 7B v0.3,
    /// Nemo, Small).
    Mistral,
}

impl ToolFormat {
    /// The format a model's chat template expects.
    pub fn of(model: &Model) -> ToolFormat {
        let t = model.tokenizer().chat_template().unwrap_or("");
        if t.contains("<tool_call>") {
            ToolFormat::Hermes
        } else if t.contains("<|python_tag|>") || t.contains("ipython") {
            ToolFormat::Llama3
        } else if t.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if t.contains("<|tool_call|>") || model.architecture() == autark_format::Architecture::Phi3 {
            ToolFormat::Phi
        } else {
            ToolFormat::Hermes
        }
    }

    /// The format's name (`autark run --tools` prints it).
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "hermes",
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Phi => "phi",
            ToolFormat::Mistral => "mistral",
        }
    }

    /// Calls as the model writes them (what `ToolSet::parse` reads): each a JSON object of its
    /// name and arguments (an object).
    pub fn write_calls<'a>(self, calls: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
        let key = self.arguments_key();
        let one: Vec<String> =
            calls.into_iter().map(|(name, args)| format!("{{\"name\": {}, \"{key}\": {args}}}", json!(name))).collect();
        match self {
            ToolFormat::Hermes => {
                one.iter().map(|c| format!("<tool_call>\n{c}\n</tool_call>")).collect::<Vec<_>>().join("\n")
            }
            ToolFormat::Llama3 => one.join("\n"),
            ToolFormat::Phi => format!("<|tool_call|>[{}]<|/tool_call|>", one.join(", ")),
            ToolFormat::Mistral => format!("[TOOL_CALLS][{}]", one.join(", ")),
        }
    }

    fn arguments_key(self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// `schema` with every object that declares `properties` and says nothing of others closed to
/// them (`"additionalProperties": false`, as OpenAI's strict function calling requires): a call
/// carries the arguments its function declares, not extra ones a small model makes up.
fn strict(mut schema: Value) -> Value {
    fn close(v: &mut Value, depth: usize) {
        let Value::Object(m) = v else { return };
        if depth > 64 {
            return; // deeper nesting is refused by the schema compiler's own limits
        }
        let open = ["additionalProperties", "patternProperties", "unevaluatedProperties"];
        if m.contains_key("properties") && !open.iter().any(|k| m.contains_key(*k)) {
            m.insert("additionalProperties".into(), Value::Bool(false));
        }
        for (k, sub) in m.iter_mut() {
            match (k.as_str(), sub) {
                // Maps from names to schemas.
                (
                    "properties" | "$defs" | "definitions" | "patternProperties" | "dependentSchemas",
                    Value::Object(map),
                ) => map.values_mut().for_each(|x| close(x, depth + 1)),
                // Lists of schemas.
                ("anyOf" | "oneOf" | "allOf" | "prefixItems" | "items", Value::Array(list)) => {
                    list.iter_mut().for_each(|x| close(x, depth + 1))
                }
                // One schema.
                (
                    "items"
                    | "additionalProperties"
                    | "additionalItems"
                    | "unevaluatedItems"
                    | "contains"
                    | "not"
                    | "if"
                    | "then"
                    | "else"
                    | "propertyNames",
                    x,
                ) => close(x, depth + 1),
                _ => {} // data (const, enum, default, …) and annotations
            }
        }
    }
    close(&mut schema, 0);
    schema
}

fn bad(what: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidConstraint { kind: "tools", what: what.into() }
}

/// Reads OpenAI-style definitions: a JSON array of `{"type": "function", "function": {"name",
/// "description", "parameters"}}` (or of the inner objects).
pub fn parse_tools(text: &str) -> Result<Vec<Tool>> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Array(items) = v else { return Err(bad("a JSON array of function definitions")) };
    if items.is_empty() || items.len() > MAX_TOOLS {
        return Err(bad(format!("{} tools (1 to {MAX_TOOLS})", items.len())));
    }
    let mut tools = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let f = item.get("function").unwrap_or(item);
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| bad(format!("tool {i}: no \"name\"")))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(bad(format!("tool {i}: name {name:?} (letters, digits, _ - . only)")));
        }
        if tools.iter().any(|t: &Tool| t.name == name) {
            return Err(bad(format!("tool {name:?} is declared twice")));
        }
        let parameters = f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        if !parameters.is_object() {
            return Err(bad(format!("tool {name:?}: \"parameters\" is not a JSON Schema object")));
        }
        let description = f.get("description").and_then(Value::as_str).unwrap_or("").to_string();
        tools.push(Tool { name: name.to_string(), description, parameters });
    }
    Ok(tools)
}

/// Whether the reply must be a call (OpenAI's `tool_choice: "required"`) or may be text instead
/// (`"auto"`). (`"none"` is not declaring the tools.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Required,
    Auto,
}

impl ToolChoice {
    pub fn parse(name: &str) -> Option<ToolChoice> {
        match name {
            "required" => Some(ToolChoice::Required),
            "auto" => Some(ToolChoice::Auto),
            _ => None,
        }
    }
}

/// A request's tools, bound to a model's format.
#[derive(Debug, Clone)]
pub struct ToolSet {
    pub tools: Vec<Tool>,
    pub format: ToolFormat,
    pub choice: ToolChoice,
}

impl ToolSet {
    /// `parse_tools(text)` in `model`'s format; each tool's schema is checked as a constraint.
    pub fn new(model: &Model, text: &str) -> Result<ToolSet> {
        let set = ToolSet { tools: parse_tools(text)?, format: ToolFormat::of(model), choice: ToolChoice::Required };
        for (i, t) in set.tools.iter().enumerate() {
            let mut path = format!("/{i}/parameters");
            if let Some((keyword, path)) = crate::constraint::unsupported_keyword(&t.parameters, &mut path) {
                return Err(RuntimeError::UnsupportedKeyword { keyword, path });
            }
        }
        Ok(set)
    }

    /// The definitions as the OpenAI API and chat templates take them.
    pub fn openai_json(&self) -> Value {
        Value::Array(
            self.tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect(),
        )
    }

    /// One call's JSON: any of the tools, its name first, then its arguments.
    fn call_schema(&self) -> Value {
        let key = self.format.arguments_key();
        let calls: Vec<Value> = self
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "object",
                    "properties": {"name": {"const": t.name}, key: strict(t.parameters.clone())},
                    "required": ["name", key],
                    "additionalProperties": false,
                })
            })
            .collect();
        let mut schema =
            if calls.len() == 1 { calls.into_iter().next().unwrap_or_default() } else { json!({"anyOf": calls}) };
        schema["x-guidance"] = crate::constraint::json_options();
        schema
    }

    /// What a call begins with, in the model's format.
    fn opener(&self) -> &'static str {
        match self.format {
            ToolFormat::Hermes => "<tool_call>",
            ToolFormat::Llama3 => "{",
            ToolFormat::Phi => "<|tool_call|>",
            ToolFormat::Mistral => "[TOOL_CALLS]",
        }
    }

    /// The constraint on the model's reply: exactly one call, in the model's format; with
    /// `ToolChoice::Auto`, or else text that does not begin like a call (after any whitespace),
    /// so that whatever begins a call is held to the declared tools.
    pub fn constraint(&self) -> Constraint {
        let call = self.call_schema().to_string();
        let form = match self.format {
            ToolFormat::Hermes => "\"<tool_call>\\n\" call \"\\n</tool_call>\"",
            ToolFormat::Llama3 => "call",
            ToolFormat::Phi => "\"<|tool_call|>[\" call \"]<|/tool_call|>\"",
            ToolFormat::Mistral => "\"[TOOL_CALLS][\" call \"]\"",
        };
        let start = match self.choice {
            ToolChoice::Required => format!("start: {form}"),
            ToolChoice::Auto => format!(
                "start: {form} | TEXT\nTEXT: /(?s:.+)/ & ~(/(?s:\\s*)/ {} /(?s:.*)/)",
                serde_json::Value::from(self.opener())
            ),
        };
        Constraint::Grammar(format!("{start}\ncall: %json {call}\n"))
    }

    /// The system message that declares the tools, for templates that do not take `tools`.
    pub fn system_prompt(&self) -> String {
        let defs: Vec<String> = self.openai_json().as_array().into_iter().flatten().map(Value::to_string).collect();
        let (open, close, key) = match self.format {
            ToolFormat::Hermes => ("<tool_call>\n", "\n</tool_call>", "arguments"),
            ToolFormat::Llama3 => ("", "", "parameters"),
            ToolFormat::Phi => ("<|tool_call|>[", "]<|/tool_call|>", "arguments"),
            ToolFormat::Mistral => ("[TOOL_CALLS][", "]", "arguments"),
        };
        format!(
            "You are a function-calling assistant. These functions are available:\n<tools>\n{}\n</tools>\n\
             To call a function, reply with {open}{{\"name\": <function name>, \"{key}\": <arguments as a JSON object>}}{close}",
            defs.join("\n")
        )
    }

    /// `messages` with the tools declared: given to the template as `tools` when it takes them,
    /// otherwise in the system message (merged with one the conversation has).
    pub fn messages(&self, model: &Model, messages: &[ChatMessage]) -> (Vec<ChatMessage>, Option<Value>) {
        let template = model.tokenizer().chat_template().unwrap_or("");
        if template.contains("tools") {
            return (messages.to_vec(), Some(self.openai_json()));
        }
        let mut out = messages.to_vec();
        let sys = self.system_prompt();
        match out.first_mut().filter(|m| m.role == "system") {
            Some(m) => m.content = format!("{}\n\n{sys}", m.content),
            None => out.insert(0, ChatMessage::new("system", &sys)),
        }
        (out, None)
    }

    /// The calls in a reply the constraint produced, or `None` for a text reply (`ToolChoice::Auto`
    /// only: a reply that does not begin like a call).
    pub fn parse_reply(&self, text: &str) -> Result<Option<Vec<ToolCall>>> {
        if self.choice == ToolChoice::Auto && !text.trim_start().starts_with(self.opener()) {
            return Ok(None);
        }
        self.parse(text).map(Some)
    }

    /// The calls in a reply the constraint produced.
    pub fn parse(&self, text: &str) -> Result<Vec<ToolCall>> {
        let t = text.trim();
        let body = match self.format {
            ToolFormat::Hermes => t.strip_prefix("<tool_call>").and_then(|s| s.strip_suffix("</tool_call>")),
            ToolFormat::Llama3 => Some(t.strip_prefix("<|python_tag|>").unwrap_or(t)),
            ToolFormat::Phi => t.strip_prefix("<|tool_call|>").and_then(|s| s.strip_suffix("<|/tool_call|>")),
            ToolFormat::Mistral => t.strip_prefix("[TOOL_CALLS]"),
        }
        .ok_or_else(|| bad(format!("not a tool call: {t:?}")))?;
        let v: Value = serde_json::from_str(body.trim()).map_err(|e| bad(format!("tool call is not JSON: {e}")))?;
        let calls = match v {
            Value::Array(a) => a,
            v => vec![v],
        };
        calls
            .into_iter()
            .map(|c| {
                let name = c.get("name").and_then(Value::as_str).ok_or_else(|| bad("tool call without a name"))?;
                if !self.tools.iter().any(|t| t.name == name) {
                    return Err(bad(format!("call of an undeclared tool {name:?}")));
                }
                let args = c
                    .get(self.format.arguments_key())
                    .filter(|a| a.is_object())
                    .ok_or_else(|| bad("tool call without arguments"))?;
                Ok(ToolCall { name: name.to_string(), arguments: args.to_string() })
            })
            .collect()
    }
}

/// `messages` for the model's template: when the template does not render `tool_calls`
/// itself, each assistant turn's calls are written after its content in the model's call
/// format (what the model wrote when it made them), so that a conversation sent back with its
/// calls shows them.
pub fn calls_as_text<'a>(model: &Model, messages: &'a [ChatMessage]) -> std::borrow::Cow<'a, [ChatMessage]> {
    let template = model.tokenizer().chat_template().unwrap_or("");
    if messages.iter().all(|m| m.tool_calls.is_none()) || template.contains("tool_calls") {
        return std::borrow::Cow::Borrowed(messages);
    }
    let format = ToolFormat::of(model);
    let out = messages
        .iter()
        .map(|m| {
            let Some(calls) = m.tool_calls.as_ref().and_then(Value::as_array) else { return m.clone() };
            let calls = calls.iter().filter_map(|c| {
                let f = c.get("function").unwrap_or(c);
                Some((f.get("name")?.as_str()?, f.get("arguments")?))
            });
            let text = format.write_calls(calls);
            let content = if m.content.is_empty() { text } else { format!("{}\n{text}", m.content) };
            ChatMessage { content, tool_calls: None, ..m.clone() }
        })
        .collect();
    std::borrow::Cow::Owned(out)
}

/// Calls as JSON text: `[{"name": …, "arguments": {…}}]` (what the CLI prints and C returns).
pub fn calls_json(calls: &[ToolCall]) -> String {
    let v: Vec<Value> = calls
        .iter()
        .map(|c| {
            let args: Value = serde_json::from_str(&c.arguments).unwrap_or_default();
            json!({"name": c.name, "arguments": args})
        })
        .collect();
    Value::Array(v).to_string()
}

impl Model {
    /// The prompt tokens of a conversation with tools declared (`ToolSet::messages`).
    pub fn tool_prompt_tokens(&self, messages: &[ChatMessage], tools: &ToolSet) -> Result<Vec<u32>> {
        let messages = calls_as_text(self, messages);
        let (messages, tools_json) = tools.messages(self, &messages);
        let text = crate::chat::render_with_tools(self.tokenizer(), &messages, true, tools_json.as_ref())?;
        self.tokenizer().encode(&text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: &str = r#"[
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}
    ]"#;

    #[test]
    fn argument_objects_are_closed_unless_they_say_otherwise() {
        let s = strict(json!({"type": "object", "properties": {
            "properties": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "open": {"type": "object", "properties": {}, "additionalProperties": true},
            "list": {"type": "array", "items": {"type": "object", "properties": {"y": {}}}},
            "either": {"anyOf": [{"type": "object", "properties": {"z": {}}}, {"type": "null"}]},
            "data": {"const": {"properties": {}}},
        }}));
        assert_eq!(s["additionalProperties"], false);
        let p = &s["properties"];
        // A property named "properties" is a schema, not a map of them.
        assert_eq!(p["properties"]["additionalProperties"], false);
        assert!(p["properties"]["properties"].get("additionalProperties").is_none());
        assert_eq!(p["open"]["additionalProperties"], true);
        assert_eq!(p["list"]["items"]["additionalProperties"], false);
        assert_eq!(p["either"]["anyOf"][0]["additionalProperties"], false);
        assert_eq!(p["data"], json!({"const": {"properties": {}}}));
    }

    fn set(format: ToolFormat) -> ToolSet {
        ToolSet { tools: parse_tools(TOOLS).unwrap(), format, choice: ToolChoice::Required }
    }

    #[test]
    fn definitions_are_read_in_both_shapes() {
        let t = parse_tools(TOOLS).unwrap();
        assert_eq!(t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["get_weather", "add"]);
        assert_eq!(t[0].description, "Weather in a city");
        for bad in [
            "{}",
            "[]",
            r#"[{"name": ""}]"#,
            r#"[{"name": "a b"}]"#,
            r#"[{"name": "a"}, {"name": "a"}]"#,
            r#"[{"name": "a", "parameters": 3}]"#,
        ] {
            assert!(matches!(parse_tools(bad), Err(RuntimeError::InvalidConstraint { kind: "tools", .. })), "{bad}");
        }
    }

    #[test]
    fn calls_parse_in_each_format() {
        let cases = [
            (ToolFormat::Hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"),
            (ToolFormat::Llama3, "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}"),
            (ToolFormat::Phi, "<|tool_call|>[{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]<|/tool_call|>"),
            (ToolFormat::Mistral, "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]"),
        ];
        let args = json!({"a": 1, "b": 2});
        for (f, text) in cases {
            let calls = set(f).parse(text).unwrap();
            assert_eq!(calls, [ToolCall { name: "add".into(), arguments: r#"{"a":1,"b":2}"#.into() }], "{f:?}");
            // What a conversation sent back shows of a call reads back as the call.
            let written = f.write_calls([("add", &args)]);
            assert_eq!(set(f).parse(&written).unwrap(), calls, "{f:?}: {written}");
            assert!(written.starts_with(set(f).opener()) && written.contains("{\"name\": \"add\""), "{written}");
        }
        assert!(set(ToolFormat::Hermes).parse("<tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>").is_err());
        assert!(set(ToolFormat::Hermes).parse("hello").is_err());
    }

    #[test]
    fn the_grammar_names_every_tool() {
        let Constraint::Grammar(g) = set(ToolFormat::Hermes).constraint() else { panic!() };
        assert!(g.starts_with("start: \"<tool_call>\\n\" call"), "{g}");
        assert!(g.contains(r#"{"const":"get_weather"}"#) && g.contains(r#"{"const":"add"}"#), "{g}");
        let Constraint::Grammar(g) = set(ToolFormat::Llama3).constraint() else { panic!() };
        assert!(g.contains("\"parameters\"") && !g.contains("\"arguments\""), "{g}");
    }

    /// `ToolChoice::Auto` on a real byte-level vocabulary (the fuzz fixture): text is accepted and
    /// may end anywhere, a call must name a declared tool with valid arguments, and text that
    /// begins like a call is held to being one.
    #[test]
    fn auto_accepts_text_or_a_valid_call_and_nothing_between() {
        let json = include_str!("../../fuzz/fixtures/tiny-tokenizer.json");
        let compiler = crate::constraint::Compiler::from_tokenizer_json(json, 272, &[271, 269]).unwrap();
        let tok: tokenizers::Tokenizer = json.parse().unwrap();
        let encode = |t: &str| tok.encode(t, false).unwrap().get_ids().to_vec();
        // How far the constraint follows `text`: Ok(complete) if every token is accepted.
        let run = |set: &ToolSet, text: &str| -> std::result::Result<bool, usize> {
            let mut g = compiler.compile(&set.constraint()).unwrap();
            for (i, t) in encode(text).into_iter().enumerate() {
                g.accept(t).map_err(|_| i)?;
            }
            Ok(g.is_complete())
        };
        for format in [ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Phi, ToolFormat::Mistral] {
            let auto = ToolSet { choice: ToolChoice::Auto, ..set(format) };
            let text = "The weather is fine, no call needed.";
            assert_eq!(run(&auto, text), Ok(true), "{format:?}");
            assert_eq!(auto.parse_reply(text).unwrap(), None);
            assert!(run(&set(format), text).is_err(), "{format:?}: required refuses text");
            let call = match format {
                ToolFormat::Hermes => {
                    "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"
                }
                ToolFormat::Llama3 => "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}",
                ToolFormat::Phi => {
                    "<|tool_call|>[{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]<|/tool_call|>"
                }
                ToolFormat::Mistral => "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}]",
            };
            assert_eq!(run(&auto, call), Ok(true), "{format:?}");
            assert_eq!(auto.parse_reply(call).unwrap().map(|c| c.len()), Some(1));
            // A call of an undeclared tool is refused, also after leading whitespace.
            let bad = call.replace("add", "rm");
            assert!(run(&auto, &bad).is_err(), "{format:?}: {bad}");
            assert!(run(&auto, &format!("\n {bad}")).is_err(), "{format:?}");
            // An unfinished call is not complete.
            assert_eq!(run(&auto, &call[..call.len() - 3]), Ok(false), "{format:?}");
        }
    }
}
