//! Chat templates: the model's Jinja template (from `tokenizer_config.json` or GGUF's
//! `tokenizer.chat_template`) rendered with minijinja, with the Python string methods and
//! helpers (`raise_exception`, `strftime_now`) Hugging Face templates use.

use serde::Serialize;

use crate::error::{Result, RuntimeError};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Instruction budget of one rendering (minijinja "fuel").
const TEMPLATE_FUEL: u64 = 5_000_000;

/// Renders `messages` with the model's template.
pub fn render(tok: &Tokenizer, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
    let template = tok.chat_template.as_deref().ok_or(RuntimeError::NoChatTemplate)?;
    render_template(
        template,
        messages,
        add_generation_prompt,
        tok.bos_token.as_deref().unwrap_or(""),
        tok.eos_token.as_deref().unwrap_or(""),
    )
}

pub fn render_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    // Templates come from model files: bound the work a template may do (a real chat template
    // needs a few hundred instructions per message) and its recursion.
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
    t.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos,
        eos_token => eos,
    })
    .map_err(err)
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

    #[test]
    fn runaway_templates_stop() {
        let t = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x";
        assert!(matches!(render_template(t, &[], false, "", ""), Err(RuntimeError::Template(_))));
        let t = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(matches!(render_template(t, &[], false, "", ""), Err(RuntimeError::Template(_))));
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{{ raise_exception('only user and assistant roles') }}";
        assert!(matches!(render_template(t, &[], false, "", ""), Err(RuntimeError::Template(_))));
    }
}
