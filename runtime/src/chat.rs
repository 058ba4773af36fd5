//! Chat templates: the model's Jinja template (from `tokenizer_config.json` or GGUF's
//! `tokenizer.chat_template`) rendered with minijinja, with the Python string methods and
//! helpers (`raise_exception`, `strftime_now`) Hugging Face templates use.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant turn's function calls, in OpenAI's shape with the arguments as an object
    /// (as Hugging Face templates read them): `[{"id", "type": "function", "function":
    /// {"name", "arguments": {…}}}]`. A template that does not render `tool_calls` gets them
    /// written into the content in the model's call format instead (`tools::calls_as_text`,
    /// which `Model::tool_prompt_tokens` applies; `Prompt::Chat` renders them as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A tool turn's answer to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None }
    }
}

/// Instruction budget of one rendering (minijinja "fuel").
const TEMPLATE_FUEL: u64 = 5_000_000;

/// Memory budget of one rendering: every string the template builds counts against it (see
/// third_party/minijinja/AUTARK-PATCH.md). A fixed floor plus a multiple of the input, because
/// templates legitimately copy each message a few times (trim, concatenate, emit).
const TEMPLATE_MEMORY_FLOOR: usize = 64 << 20;
const TEMPLATE_MEMORY_PER_INPUT_BYTE: usize = 16;

/// The largest output a single string method (`join`, `replace`) may build; the budget itself is
/// only charged after a method returns.
const METHOD_OUTPUT_MAX: usize = 16 << 20;

/// Renders `messages` with the model's template.
pub fn render(tok: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
    render_with_tools(tok, messages, add_generation_prompt, None)
}

/// `render`, with `tools` (OpenAI-style function definitions) given to the template as `tools`.
pub fn render_with_tools(
    tok: &Tokenizer,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    tools: Option<&serde_json::Value>,
) -> Result<String> {
    let template = tok.chat_template.as_deref().ok_or(RuntimeError::NoChatTemplate)?;
    let (bos, eos) = (tok.bos_token.as_deref().unwrap_or(""), tok.eos_token.as_deref().unwrap_or(""));
    render_template_with_tools(template, messages, add_generation_prompt, bos, eos, tools)
}

pub fn render_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String> {
    render_template_with_tools(template, messages, add_generation_prompt, bos, eos, None)
}

fn render_template_with_tools(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
    tools: Option<&serde_json::Value>,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(bounded_pycompat_method);
    // Templates come from model files: bound the work a template may do (a real chat template
    // needs a few hundred instructions per message), its recursion, and the memory it builds.
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_recursion_limit(64);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
    let err = |e: minijinja::Error| RuntimeError::Template(e.to_string());
    env.add_template("chat", template).map_err(err)?;
    let t = env.get_template("chat").map_err(err)?;

    let tools_bytes = tools.map_or(0, |t| t.to_string().len());
    let input_bytes: usize =
        messages.iter().map(|m| m.role.len() + m.content.len()).sum::<usize>() + bos.len() + eos.len() + tools_bytes;
    let budget = TEMPLATE_MEMORY_FLOOR.saturating_add(input_bytes.saturating_mul(TEMPLATE_MEMORY_PER_INPUT_BYTE));
    let _budget = MemoryBudget::set(budget);
    let rendered = t
        .render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos,
            eos_token => eos,
            tools => tools,
        })
        .map_err(err)?;
    if minijinja::memory_budget_exceeded() {
        return Err(RuntimeError::Template(format!(
            "chat template exceeded its memory budget of {} MiB",
            budget >> 20
        )));
    }
    Ok(rendered)
}

/// Sets the rendering memory budget of this thread for its lifetime, restoring the previous one.
struct MemoryBudget(Option<usize>);

impl MemoryBudget {
    fn set(bytes: usize) -> Self {
        MemoryBudget(minijinja::set_memory_budget(Some(bytes)))
    }
}

impl Drop for MemoryBudget {
    fn drop(&mut self) {
        minijinja::set_memory_budget(self.0);
    }
}

/// Python string and dict methods (`.strip()`, `.split()`, `.items()`…) as chat templates use them,
/// through minijinja-contrib's pycompat, with the two string methods whose output can be far larger
/// than their inputs (`join`, `replace`) checked first, and `format` (whose widths decide its size)
/// refused.
fn bounded_pycompat_method(
    state: &minijinja::State,
    value: &minijinja::Value,
    method: &str,
    args: &[minijinja::Value],
) -> std::result::Result<minijinja::Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        let too_large = || {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("str.{method}() result is too large"))
        };
        match method {
            "format" => {
                return Err(minijinja::Error::new(minijinja::ErrorKind::UnknownMethod, "str.format() is not supported"))
            }
            "join" => {
                let items = args.first().and_then(minijinja::Value::len).unwrap_or(0);
                if items.saturating_mul(s.len()) > METHOD_OUTPUT_MAX {
                    return Err(too_large());
                }
            }
            "replace" => {
                let (old, new) =
                    (args.first().and_then(minijinja::Value::as_str), args.get(1).and_then(minijinja::Value::as_str));
                if let (Some(old), Some(new)) = (old, new) {
                    let hits = if old.is_empty() { s.chars().count() + 1 } else { s.matches(old).count() };
                    if hits.saturating_mul(new.len()).saturating_add(s.len()) > METHOD_OUTPUT_MAX {
                        return Err(too_large());
                    }
                }
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml() {
        let t = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'].strip() }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let s = render_template(t, &[ChatMessage::new("user", " Hi ")], true, "", "").unwrap();
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    /// An assistant turn's calls reach a template that renders `tool_calls` (Qwen2.5's loop,
    /// shortened) as objects.
    #[test]
    fn tool_calls_reach_the_template() {
        let t = "{% for m in messages %}{{ m.role }}:{{ m.content }}{% for c in m.tool_calls %}[{{ c.function.name }} {{ c.function.arguments | tojson }}]{% endfor %}{% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %};{% endfor %}";
        let call =
            serde_json::json!([{"id": "c0", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]);
        let msgs = [
            ChatMessage::new("user", "q"),
            ChatMessage { tool_calls: Some(call), ..ChatMessage::new("assistant", "") },
            ChatMessage { tool_call_id: Some("c0".into()), ..ChatMessage::new("tool", "42") },
        ];
        let s = render_template(t, &msgs, false, "", "").unwrap();
        assert_eq!(s, "user:q;assistant:[f {\"x\":1}];tool:42(c0);");
    }

    #[test]
    fn runaway_templates_stop() {
        let t = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x";
        assert!(matches!(render_template(t, &[], false, "", ""), Err(RuntimeError::Template(_))));
        let t = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(matches!(render_template(t, &[], false, "", ""), Err(RuntimeError::Template(_))));
    }

    /// Templates that build huge values in few instructions (fuzzing found the first one). Each
    /// would ask for gigabytes to terabytes; each must end in a typed error instead, quickly.
    #[test]
    fn amplifying_templates_stop_at_the_memory_budget() {
        let doubling =
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
        let cases = [
            doubling.to_string(),
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}".into(),
            "{% set ns = namespace(l=['abcdefgh']) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join }}".into(),
            "{% set ns = namespace(l=['abcdefgh']) %}{% for i in range(8) %}{% set ns.l = ns.l * 100 %}{% endfor %}{{ ns.l|length }}".into(),
            "{% set s = 'x' * 10000000 %}{% for i in range(100) %}{{ s }}{% endfor %}".into(),
            "{% set s = 'x' * 10000000 %}{% set ns = namespace(l=[]) %}{% for i in range(100) %}{% set ns.l = ns.l + [s|upper] %}{% endfor %}".into(),
            "{% set s = 'x' * 1000000 %}{{ s|replace('x', s) }}".into(),
            "{% set s = 'x' * 1000000 %}{{ s.replace('x', s) }}".into(),
            "{% set s = 'x' * 1000000 %}{{ s.join([1] * 1000000) }}".into(),
            "{% set s = 'x' * 1000000 %}{{ ([s] * 1000000)|join }}".into(),
            "{% set s = 'x' * 1000000 %}{{ ([s] * 1000000)|tojson }}".into(),
            "{% set s = 'x' * 1000000 %}{{ ([s] * 1000000)|string }}".into(),
            "{% set s = 'x' * 1000000 %}{{ ([s] * 1000000)|pprint }}".into(),
            "{% set s = 'x' * 1000000 %}{{ '' ~ ([s] * 1000000) }}".into(),
            "{{ ('a\n' * 1000000)|indent(100000) }}".into(),
            "{{ '%999999999s'|format('a') }}".into(),
            "{{ '{:>999999999}'.format('a') }}".into(),
            "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = m(ns.s) %}{% endfor %}".into(),
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}".into(),
        ];
        for t in &cases {
            let start = std::time::Instant::now();
            let r = render_template(t, &[], false, "", "");
            assert!(matches!(r, Err(RuntimeError::Template(_))), "{t}: {:?}", r.map(|s| s.len()));
            assert!(start.elapsed().as_secs() < 20, "{t}: took {:?}", start.elapsed());
        }
        // The budget is per rendering: it is restored afterwards, and ordinary templates still work.
        assert!(render_template("{{ 'x' * 1000 }}", &[], false, "", "").is_ok());
    }

    #[test]
    fn long_conversations_fit_the_budget() {
        // 2000 messages of 4 KiB (8 MiB of text) rendered by a template that copies each message
        // twice (strip, then emit) and accumulates a system prompt by concatenation.
        let t = "{% set ns = namespace(sys='') %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = ns.sys + m.content %}{% endif %}{% endfor %}{{ ns.sys }}{% for m in messages %}<|{{ m.role }}|>{{ m.content.strip() }}{% endfor %}";
        let body = "word ".repeat(800);
        let mut messages: Vec<ChatMessage> =
            (0..2000).map(|i| ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, &body)).collect();
        messages[0].role = "system".into();
        let s = render_template(t, &messages, false, "", "").unwrap();
        assert!(s.len() > 2000 * body.len());
    }

    #[test]
    fn templates_see_the_tools() {
        let t =
            "{% if tools %}{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% endif %}{{ messages[0].content }}";
        let tools = serde_json::json!([{"type": "function", "function": {"name": "add"}}]);
        let m = [ChatMessage::new("user", "hi")];
        assert_eq!(render_template_with_tools(t, &m, false, "", "", Some(&tools)).unwrap(), "[add]hi");
        assert_eq!(render_template(t, &m, false, "", "").unwrap(), "hi");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{{ raise_exception('only user and assistant roles') }}";
        assert!(matches!(render_template(t, &[], false, "", ""), Err(RuntimeError::Template(_))));
    }
}
