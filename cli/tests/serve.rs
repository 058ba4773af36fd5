//! `autark serve` over raw HTTP, on a synthetic model: every kind of bad request gets its
//! OpenAI-style error body and status (never a 500, never a dropped connection), the API key is
//! enforced, and SIGTERM stops the server cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use autark_kernels::DType;
use autark_quantize::Recipe;
use serde_json::Value;

mod common;

const KEY: &str = "s3cret-key";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `autark serve` on a free port and waits until the model is loaded.
fn start(model: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_autark"))
        .args(["serve", model.to_str().unwrap(), "--port", "0", "--parallel", "2", "--ctx-per-slot", "64"])
        .args(["--api-key", KEY, "-t", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut port = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
            port = rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        if line.contains("ready") {
            break;
        }
    }
    assert_ne!(port, 0, "the server did not say where it listens");
    // Keep draining stderr so that the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server { child, port }
}

/// Sends raw bytes, returns (status, headers, body).
fn raw(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8(out[..split].to_vec()).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn request(method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(k) = key {
        r.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    r.push_str("Content-Type: application/json\r\n\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// POSTs `body` with the key; returns (status, parsed body).
fn post(port: u16, path: &str, body: &[u8]) -> (u16, Value) {
    let (status, _, b) = raw(port, &request("POST", path, Some(KEY), body));
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Asserts an OpenAI error body with this status and `param`.
fn error(got: (u16, Value), status: u16, param: Option<&str>) {
    let (s, v) = got;
    assert_eq!(s, status, "{v}");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert_eq!(e["param"].as_str(), param, "{v}");
    assert!(e.get("code").is_some(), "{v}");
}

#[test]
fn bad_requests_get_error_bodies_and_sigterm_stops_cleanly() {
    let dir = common::tmp_dir("serve");
    std::fs::create_dir_all(dir.path().join("hf")).unwrap();
    common::write_hf(&dir.path().join("hf"), "LlamaForCausalLM");
    let model = dir.path().join("m.autark");
    autark_quantize::quantize(&dir.path().join("hf"), &model, &Recipe::new(DType::Q8_0).unwrap(), &mut |_| {}).unwrap();
    let mut server = start(&model);
    let port = server.port;
    let c = "/v1/completions";

    // Health and models.
    assert_eq!(raw(port, &request("GET", "/health", None, b"")).0, 200);
    let (s, _, b) = raw(port, &request("GET", "/v1/models", Some(KEY), b""));
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["data"][0]["id"], "m");

    // A good request works.
    let (s, v) = post(port, c, br#"{"prompt":"w1 w2 w3","max_tokens":4,"temperature":0}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 4);

    // The key.
    let ok_body = br#"{"prompt":"w1","max_tokens":1}"#;
    error(raw_json(port, &request("POST", c, None, ok_body)), 401, None);
    error(raw_json(port, &request("POST", c, Some("s3cret-kex"), ok_body)), 401, None);
    error(raw_json(port, &request("POST", c, Some("s3cret-key-longer"), ok_body)), 401, None);
    error(raw_json(port, &request("GET", "/v1/models", None, b"")), 401, None);

    // Malformed bodies.
    error(post(port, c, b"{\"prompt\": \"w1\""), 400, None);
    error(post(port, c, b"not json"), 400, None);
    error(post(port, c, b"[1,2]"), 400, None);
    error(post(port, c, b""), 400, None);
    error(post(port, c, b"{\"prompt\": \"w1 \xff\xfe\"}"), 400, None);

    // Wrong types and values name their field.
    let cases: &[(&str, &[u8], &str)] = &[
        (c, br#"{"prompt":5}"#, "prompt"),
        (c, br#"{}"#, "prompt"),
        (c, br#"{"prompt":"w1","max_tokens":"8"}"#, "max_tokens"),
        (c, br#"{"prompt":"w1","max_tokens":-1}"#, "max_tokens"),
        (c, br#"{"prompt":"w1","max_tokens":0}"#, "max_tokens"),
        (c, br#"{"prompt":"w1","max_tokens":100000}"#, "max_tokens"),
        (c, br#"{"prompt":"w1","temperature":"hot"}"#, "temperature"),
        (c, br#"{"prompt":"w1","temperature":-1}"#, "temperature"),
        (c, br#"{"prompt":"w1","top_p":0}"#, "top_p"),
        (c, br#"{"prompt":"w1","seed":1.5}"#, "seed"),
        (c, br#"{"prompt":"w1","stop":[1]}"#, "stop"),
        (c, br#"{"prompt":"w1","stop":["a","b","c","d","e"]}"#, "stop"),
        (c, br#"{"prompt":"w1","stream":"yes"}"#, "stream"),
        (c, br#"{"prompt":"w1","n":0}"#, "n"),
        (c, br#"{"prompt":"w1","n":17}"#, "n"),
        (c, br#"{"prompt":"w1","model":7}"#, "model"),
        (c, br#"{"prompt":"w1","response_format":{"type":"xml"}}"#, "response_format.type"),
        (c, br#"{"prompt":"w1","stream_options":{"include_usage":1}}"#, "stream_options.include_usage"),
        (c, br#"{"prompt":"w1","tools":[{"type":"function","function":{"name":"f"}}]}"#, "tools"),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":"w1"}],"tools":5}"#, "tools"),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"user","content":"w1"}],"tools":[{"name":"f"}],"tool_choice":7}"#,
            "tool_choice",
        ),
        (c, br#"{"prompt":"w1","echo":"yes"}"#, "echo"),
        (c, br#"{"prompt":[1,"w1"]}"#, "prompt"),
        (c, br#"{"prompt":[99999999]}"#, "prompt"),
        (c, br#"{"prompt":"w1","best_of":3}"#, "best_of"),
        (c, br#"{"prompt":"w1","suffix":"end"}"#, "suffix"),
        (c, br#"{"prompt":"w1","logit_bias":{"a":1}}"#, "logit_bias"),
        (c, br#"{"prompt":"w1","logit_bias":[1]}"#, "logit_bias"),
        (c, br#"{"prompt":"w1","logprobs":true}"#, "logprobs"),
        (c, br#"{"prompt":"w1","logprobs":21}"#, "logprobs"),
        (c, br#"{"prompt":"w1","frequency_penalty":2.5}"#, "frequency_penalty"),
        (c, br#"{"prompt":"w1","presence_penalty":"x"}"#, "presence_penalty"),
        (c, br#"{"prompt":"w1","min_p":2}"#, "min_p"),
        (c, br#"{"prompt":"w1","top_k":-1}"#, "top_k"),
        (c, br#"{"prompt":"w1","repeat_penalty":0}"#, "repeat_penalty"),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":"w1"}],"logprobs":3}"#, "logprobs"),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":"w1"}],"top_logprobs":2}"#, "top_logprobs"),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"user","content":"w1"}],"logprobs":true,"top_logprobs":30}"#,
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"user","content":"w1"}],"tools":[{"type":"function","function":{"name":"f"}}],"logprobs":true}"#,
            "logprobs",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"{x"}}]}]}"#,
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"assistant","tool_calls":[{"type":"function"}]}]}"#,
            "messages[0].tool_calls[0]",
        ),
        ("/v1/chat/completions", br#"{"messages":[{"role":"tool","content":"1","tool_call_id":3}]}"#, "messages[0].tool_call_id"),
        ("/v1/chat/completions", br#"{"messages":"hi"}"#, "messages"),
        ("/v1/chat/completions", br#"{"messages":[]}"#, "messages"),
        ("/v1/chat/completions", br#"{"messages":[{"role":"wizard","content":"hi"}]}"#, "messages[0].role"),
        ("/v1/chat/completions", br#"{"messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
    ];
    for (path, body, param) in cases {
        error(post(port, path, body), 400, Some(param));
    }
    // A prompt longer than a slot.
    let long = format!(r#"{{"prompt":"{}"}}"#, "w1 ".repeat(100));
    error(post(port, c, long.as_bytes()), 400, Some("prompt"));

    // Size limits: the body (declared, and sent), the headers.
    let head = format!("POST {c} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 5000000\r\n\r\n");
    error(raw_json(port, head.as_bytes()), 413, None);
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw(port, many.as_bytes()).0, 431);

    // Routes and methods.
    error(raw_json(port, &request("GET", "/v2/nothing", Some(KEY), b"")), 404, None);
    error(raw_json(port, &request("GET", c, Some(KEY), b"")), 405, None);
    error(raw_json(port, &request("POST", "/health", None, b"")), 405, None);

    // Still alive, and counting.
    let (s, _, b) = raw(port, &request("GET", "/metrics", None, b""));
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(text.contains("autark_requests_total 1"), "{text}");
    assert!(text.contains("# TYPE autark_queue_length gauge"), "{text}");
    let (s, _, b) = raw(port, &request("GET", "/openapi.json", None, b""));
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert!(v["paths"]["/v1/chat/completions"]["post"].is_object());

    // SIGTERM: a clean exit.
    let st = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn raw_json(port: u16, req: &[u8]) -> (u16, Value) {
    let (s, _, b) = raw(port, req);
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}
