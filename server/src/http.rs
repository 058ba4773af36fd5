//! The HTTP side: routing, authentication, body limits, and turning engine events into OpenAI
//! responses (one JSON body, or server-sent events).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autark_runtime::ToolSet;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN,
    VARY,
};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::engine::{Engine, Event, Finish, Job, TokenLogprob};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::request::{self, Kind, Limits};

/// What every connection's handler shares.
pub struct State {
    pub engine: Arc<Engine>,
    /// The model's name in responses (`/v1/models`): the file's stem.
    pub model_name: String,
    pub api_key: Option<String>,
    pub limits: Limits,
    /// Largest request body (bytes).
    pub max_body: usize,
    /// Time a client has to send its body.
    pub body_timeout: Duration,
    /// Set on SIGTERM/SIGINT: new completions get 503 while running ones finish.
    pub draining: AtomicBool,
    /// Completion responses not yet fully sent.
    pub inflight: Arc<AtomicUsize>,
    /// Web origins allowed to call the API from a browser (`*`: any); empty: none.
    pub cors_origins: Vec<String>,
}

impl State {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    fn cors(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.cors_origins.iter().any(|o| o == "*") {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?;
        self.cors_origins.iter().any(|a| a.trim_end_matches('/') == o).then(|| origin.clone())
    }
}

/// The response body: all at once, or a stream of server-sent events.
pub enum Body {
    Full(Option<Bytes>),
    Sse(Box<SseBody>),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Sse(s) => s.poll_next(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
}

/// Cancels its request when dropped before the request finished (the client went away: hyper
/// drops the handler's future or the response body), and counts the response as in flight
/// meanwhile.
struct Guard {
    cancel: Arc<AtomicBool>,
    inflight: Arc<AtomicUsize>,
}

impl Guard {
    fn new(inflight: &Arc<AtomicUsize>) -> Guard {
        inflight.fetch_add(1, Ordering::AcqRel);
        Guard { cancel: Arc::new(AtomicBool::new(false)), inflight: Arc::clone(inflight) }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Release);
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Names and ids of one completion, shared by its chunks.
struct Meta {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    /// The request asked for log-probabilities.
    logprobs: bool,
}

pub struct SseBody {
    rx: UnboundedReceiver<Event>,
    /// With tools, the text is held and sent as `tool_calls` at the end.
    tools: Option<ToolSet>,
    held: String,
    meta: Meta,
    include_usage: bool,
    /// Characters of completion text sent (the legacy `logprobs.text_offset` counts them).
    chars: usize,
    /// The chat's first chunk (`role`) was sent; `[DONE]` was sent.
    started: bool,
    done: bool,
    _guard: Guard,
}

impl SseBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.started {
            self.started = true;
            if self.meta.kind == Kind::Chat {
                let first = chunk(&self.meta, json!({"role": "assistant", "content": ""}), Value::Null, None);
                return Poll::Ready(Some(sse(&first)));
            }
        }
        let mut event = self.rx.poll_recv(cx);
        while let (Some(_), Poll::Ready(Some(Event::Text(t, _)))) = (&self.tools, &event) {
            self.held.push_str(t);
            event = self.rx.poll_recv(cx);
        }
        match event {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Event::Text(t, lps))) => {
                let logprobs = match self.meta.logprobs && !lps.is_empty() {
                    true => logprobs_json(self.meta.kind, &with_offsets(&t, self.chars, lps)),
                    false => Value::Null,
                };
                self.chars += t.chars().count();
                let delta = match self.meta.kind {
                    Kind::Chat => json!({"content": t}),
                    Kind::Completion => json!(t),
                };
                Poll::Ready(Some(sse(&chunk(&self.meta, delta, logprobs, None))))
            }
            Poll::Ready(Some(Event::Done(f))) => {
                let mut out = Vec::new();
                let mut reason = f.reason;
                if let Some(set) = &self.tools {
                    let (message, r) = reply(Some(set), std::mem::take(&mut self.held), f.reason);
                    let mut delta = message;
                    delta.as_object_mut().map(|o| o.remove("role"));
                    if let Some(calls) = delta["tool_calls"].as_array_mut() {
                        calls.iter_mut().enumerate().for_each(|(i, c)| c["index"] = json!(i));
                    }
                    out.extend_from_slice(&sse(&chunk(&self.meta, delta, Value::Null, None)));
                    reason = r;
                }
                let empty = match self.meta.kind {
                    Kind::Chat => json!({}),
                    Kind::Completion => json!(""),
                };
                out.extend_from_slice(&sse(&chunk(&self.meta, empty, Value::Null, Some(reason))));
                if self.include_usage {
                    let mut u = chunk(&self.meta, Value::Null, Value::Null, None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&f);
                    out.extend_from_slice(&sse(&u));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
                Poll::Ready(Some(Bytes::from(out)))
            }
            Poll::Ready(Some(Event::Failed(e))) => {
                let mut out = sse(&e.json()).to_vec();
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
                Poll::Ready(Some(Bytes::from(out)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// One streamed chunk: a chat delta or a completion's text, with its tokens' `logprobs`.
fn chunk(meta: &Meta, delta: Value, logprobs: Value, finish: Option<&str>) -> Value {
    match meta.kind {
        Kind::Chat => json!({
            "id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }),
        Kind::Completion => json!({
            "id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": 0, "text": delta, "logprobs": logprobs, "finish_reason": finish}],
        }),
    }
}

/// Each token's log-probability with the character offset of its text in the choice's text;
/// `base`: the characters before `text`.
fn with_offsets(text: &str, base: usize, lps: Vec<TokenLogprob>) -> Vec<(usize, TokenLogprob)> {
    lps.into_iter().map(|t| (base + text.get(..t.offset).unwrap_or(text).chars().count(), t)).collect()
}

/// A log-probability as JSON, in f32's shortest decimal form; OpenAI's −9999 for a token the
/// model rules out; `null` for an echoed prompt's first token.
fn logprob_json(x: impl Into<Option<f32>>) -> Value {
    match x.into() {
        None => Value::Null,
        Some(x) if !x.is_finite() => json!(-9999.0),
        Some(x) => json!(x.to_string().parse::<f64>().unwrap_or(x as f64)),
    }
}

/// `logprobs` of a choice or chunk: chat's `content` list (each token with its bytes and
/// `top_logprobs`), or the completions API's parallel lists.
fn logprobs_json(kind: Kind, tokens: &[(usize, TokenLogprob)]) -> Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match kind {
        Kind::Chat => {
            let one = |b: &[u8], l: Option<f32>| json!({"token": text(b), "logprob": logprob_json(l), "bytes": b});
            let content: Vec<Value> = tokens
                .iter()
                .map(|(_, t)| {
                    let mut v = one(&t.bytes, t.logprob);
                    v["top_logprobs"] = t.top.iter().map(|(b, l)| one(b, Some(*l))).collect();
                    v
                })
                .collect();
            json!({"content": content, "refusal": null})
        }
        Kind::Completion => json!({
            "tokens": tokens.iter().map(|(_, t)| text(&t.bytes)).collect::<Vec<_>>(),
            "token_logprobs": tokens.iter().map(|(_, t)| logprob_json(t.logprob)).collect::<Vec<_>>(),
            "top_logprobs": tokens.iter().map(|(_, t)| match t.logprob {
                None => Value::Null,
                Some(_) => Value::Object(t.top.iter().map(|(b, l)| (text(b), logprob_json(*l))).collect()),
            }).collect::<Vec<_>>(),
            "text_offset": tokens.iter().map(|(o, _)| o).collect::<Vec<_>>(),
        }),
    }
}

/// The assistant's message and finish reason: with tools, the calls the constrained output
/// holds (`finish_reason: tool_calls`); a text reply (`tool_choice: "auto"`) and text that is not
/// a complete call (cut by `max_tokens`) stay content.
fn reply(tools: Option<&ToolSet>, text: String, reason: &'static str) -> (Value, &'static str) {
    let calls = tools.filter(|_| reason == "stop").and_then(|set| set.parse_reply(&text).ok().flatten());
    match calls {
        Some(calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("call_{i}"), "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            (json!({"role": "assistant", "content": null, "tool_calls": calls}), "tool_calls")
        }
        None => (json!({"role": "assistant", "content": text}), reason),
    }
}

fn usage(f: &Finish) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{:x}{:06x}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(v.to_string()))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.status, &e.json());
    if e.status == 401 {
        r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    if e.status == 503 {
        r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Every request goes through here; errors become OpenAI error bodies. With CORS origins set,
/// a browser's preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed
/// origin is answered, and responses to it carry `Access-Control-Allow-Origin`.
pub async fn handle(state: Arc<State>, req: HttpRequest<Incoming>) -> Result<Response<Body>, Infallible> {
    let allow = state.cors(req.headers().get(ORIGIN));
    let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let mut r = match (&allow, preflight, canonical(req.uri().path())) {
        (Some(_), true, Some(_)) => {
            let mut r = Response::new(Body::Full(None));
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
            h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            r
        }
        _ => route(&state, req).await.unwrap_or_else(|e| error_response(&e)),
    };
    if let Some(origin) = allow {
        r.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if !state.cors_origins.iter().any(|o| o == "*") {
            r.headers_mut().insert(VARY, HeaderValue::from_static("origin"));
        }
    }
    if r.status().as_u16() >= 400 {
        Metrics::add(&state.engine.metrics.errors, 1);
    }
    Ok(r)
}

/// A route's path: the OpenAI routes also without their `/v1` (as llama-server takes them,
/// for clients configured with the server's root as base URL); `/v1/models/ID` is
/// `/v1/models/`.
fn canonical(path: &str) -> Option<&'static str> {
    Some(match path {
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        "/v1/models" | "/models" => "/v1/models",
        "/v1/chat/completions" | "/chat/completions" => "/v1/chat/completions",
        "/v1/completions" | "/completions" => "/v1/completions",
        p if p.strip_prefix("/v1/models/").or(p.strip_prefix("/models/")).is_some_and(|id| !id.is_empty()) => {
            "/v1/models/"
        }
        _ => return None,
    })
}

async fn route(state: &Arc<State>, req: HttpRequest<Incoming>) -> Result<Response<Body>, ApiError> {
    let full = req.uri().path().to_string();
    let method = req.method().clone();
    let Some(path) = canonical(&full) else { return Err(ApiError::not_found(&full)) };
    let allowed = match path {
        "/v1/chat/completions" | "/v1/completions" => (Method::POST, "POST"),
        _ => (Method::GET, "GET"),
    };
    if method != allowed.0 {
        // RFC 9110: a 405 lists the methods the resource supports.
        let mut r = error_response(&ApiError::method(method.as_str(), &full));
        r.headers_mut().insert(ALLOW, HeaderValue::from_static(allowed.1));
        return Ok(r);
    }
    let model = || json!({"id": state.model_name, "object": "model", "created": 0, "owned_by": "autark"});
    match path {
        "/health" => {
            if state.draining.load(Ordering::Acquire) {
                return Ok(json_response(503, &json!({"status": "shutting down"})));
            }
            Ok(match state.engine.model() {
                Some(_) => json_response(200, &json!({"status": "ok"})),
                None => json_response(503, &json!({"status": "loading"})),
            })
        }
        "/metrics" => {
            let mut r = Response::new(Body::Full(Some(Bytes::from(state.engine.metrics.render()))));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            Ok(r)
        }
        "/openapi.json" => Ok(json_response(200, &crate::openapi::document(&state.limits))),
        "/v1/models" => {
            authorize(state, &req)?;
            Ok(json_response(200, &json!({"object": "list", "data": [model()]})))
        }
        "/v1/models/" => {
            // The one model, under its id (`client.models.retrieve`).
            authorize(state, &req)?;
            let id = full.rsplit_once("/models/").map_or("", |(_, id)| id);
            if id != state.model_name {
                return Err(ApiError::status(
                    404,
                    "invalid_request_error",
                    format!("no model {id:?}; this server has {:?}", state.model_name),
                )
                .with_code("model_not_found"));
            }
            Ok(json_response(200, &model()))
        }
        "/v1/chat/completions" | "/v1/completions" => {
            authorize(state, &req)?;
            let kind = if path == "/v1/completions" { Kind::Completion } else { Kind::Chat };
            complete(state, kind, req).await
        }
        _ => Err(ApiError::not_found(&full)),
    }
}

fn authorize(state: &State, req: &HttpRequest<Incoming>) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else { return Ok(()) };
    let given = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or(b"");
    let token = given.strip_prefix(b"Bearer ").unwrap_or(b"");
    if constant_time_eq(token, key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Reads the body up to `state.max_body` bytes within `state.body_timeout`.
async fn read_body(state: &State, req: HttpRequest<Incoming>) -> Result<Vec<u8>, ApiError> {
    let too_large =
        || ApiError::status(413, "invalid_request_error", format!("the body exceeds {} bytes", state.max_body));
    if let Some(n) = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if n > state.max_body as u64 {
            return Err(too_large());
        }
    }
    let mut body = req.into_body();
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.map_err(|e| ApiError::invalid(None, format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > state.max_body {
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(state.body_timeout, read)
        .await
        .map_err(|_| ApiError::status(408, "invalid_request_error", "the body was not received in time"))?
}

async fn complete(state: &Arc<State>, kind: Kind, req: HttpRequest<Incoming>) -> Result<Response<Body>, ApiError> {
    if state.draining.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let Some(model) = state.engine.model().cloned() else {
        return Err(ApiError::unavailable("the model is loading"));
    };
    let guard = Guard::new(&state.inflight);
    let body = read_body(state, req).await?;
    let request = request::parse(kind, &body, &model, &state.limits)?;
    let mut request = request;
    let (stream, include_usage, tools) = (request.stream, request.include_usage, request.tools.take());
    let logprobs = request.logprobs.is_some();
    let (tx, mut rx) = unbounded_channel();
    state.engine.submit(Job { request, events: tx, cancel: Arc::clone(&guard.cancel) })?;
    let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
    let meta = Meta { kind, id: new_id(prefix), created: now(), model: state.model_name.clone(), logprobs };
    if stream {
        let body = SseBody {
            rx,
            tools,
            held: String::new(),
            meta,
            include_usage,
            chars: 0,
            started: false,
            done: false,
            _guard: guard,
        };
        let mut r = Response::new(Body::Sse(Box::new(body)));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(r);
    }
    let (mut text, mut chars, mut tokens) = (String::new(), 0, Vec::new());
    let finish = loop {
        match rx.recv().await {
            Some(Event::Text(t, lps)) => {
                tokens.extend(with_offsets(&t, chars, lps));
                chars += t.chars().count();
                text.push_str(&t);
            }
            Some(Event::Done(f)) => break f,
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(ApiError::unavailable("the engine stopped")),
        }
    };
    drop(guard);
    let logprobs = if logprobs { logprobs_json(kind, &tokens) } else { Value::Null };
    let choice = match kind {
        Kind::Chat => {
            let (message, reason) = reply(tools.as_ref(), text, finish.reason);
            json!({"index": 0, "message": message, "logprobs": logprobs, "finish_reason": reason})
        }
        Kind::Completion => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish.reason}),
    };
    let object = if kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    Ok(json_response(
        200,
        &json!({"id": meta.id, "object": object, "created": meta.created, "model": meta.model, "choices": [choice], "usage": usage(&finish)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
