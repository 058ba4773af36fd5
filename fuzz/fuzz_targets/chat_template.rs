//! Chat templates: `chat::render_template` on an arbitrary template and message. The input is
//! split at its first NUL byte: the template before it, the user message after it (both lossy
//! UTF-8). Errors are fine; panics, hangs and huge allocations are not.
#![no_main]

use autark_runtime::chat::render_template;
use autark_runtime::ChatMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (t, c) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let template = String::from_utf8_lossy(t);
    let content = String::from_utf8_lossy(c);
    let messages = [ChatMessage::new("system", "You are helpful."), ChatMessage::new("user", &content)];
    let _ = render_template(&template, &messages[1..], true, "<s>", "</s>");
    let _ = render_template(&template, &messages, false, "<s>", "</s>");
});
