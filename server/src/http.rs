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
    /// Choices per prompt (`n`).
    n: usize,
}

pub struct SseBody {
    rx: UnboundedReceiver<(usize, Event)>,
    /// With tools, each choice's text is held and sent as `tool_calls` at its end.
    tools: Option<ToolSet>,
    meta: Meta,
    include_usage: bool,
    /// Each choice's state.
    choices: Vec<Choice>,
    /// The chat's first chunks (`role`) were sent; `[DONE]` was sent.
    started: bool,
    done: bool,
    _guard: Guard,
}

/// What a response gathered of one choice.
#[derive(Default)]
struct Choice {
    /// The text (streamed: only what is held, with tools).
    text: String,
    /// Characters of text so far (the legacy `logprobs.text_offset` counts them).
    chars: usize,
    tokens: Vec<(usize, TokenLogprob)>,
    finish: Option<Finish>,
}

impl Choice {
    fn push(&mut self, text: &str, lps: Vec<TokenLogprob>) -> Vec<(usize, TokenLogprob)> {
        let lps = with_offsets(text, self.chars, lps);
        self.chars += text.chars().count();
        lps
    }
}

/// The usage of a response: each prompt's tokens once (the first of its `n` choices), every
/// choice's generated tokens; of the prompt tokens, those a slot's cache held (OpenAI's
/// `prompt_tokens_details.cached_tokens`).
fn usage(choices: &[Choice], n: usize) -> Value {
    let finishes = choices.iter().enumerate().filter_map(|(i, c)| c.finish.map(|f| (i, f)));
    let (mut prompt, mut cached, mut completion) = (0, 0, 0);
    for (i, f) in finishes {
        if i % n.max(1) == 0 {
            prompt += f.prompt_tokens;
            cached += f.cached_tokens;
        }
        completion += f.completion_tokens;
    }
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

impl SseBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.started {
            self.started = true;
            if self.meta.kind == Kind::Chat {
                let role = json!({"role": "assistant", "content": ""});
                let first =
                    (0..self.choices.len()).flat_map(|i| sse(&chunk(&self.meta, i, role.clone(), Value::Null, None)));
                return Poll::Ready(Some(Bytes::from(first.collect::<Vec<u8>>())));
            }
        }
        let mut event = self.rx.poll_recv(cx);
        while let (Some(_), Poll::Ready(Some((i, Event::Text(t, _))))) = (&self.tools, &event) {
            if let Some(c) = self.choices.get_mut(*i) {
                c.text.push_str(t);
            }
            event = self.rx.poll_recv(cx);
        }
        let n = self.meta.n;
        match event {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some((i, Event::Text(t, lps)))) => {
                let Some(c) = self.choices.get_mut(i) else { return wake(cx) };
                let lps = c.push(&t, lps);
                let logprobs = match self.meta.logprobs && !lps.is_empty() {
                    true => logprobs_json(self.meta.kind, &lps),
                    false => Value::Null,
                };
                let delta = match self.meta.kind {
                    Kind::Chat => json!({"content": t}),
                    Kind::Completion => json!(t),
                };
                Poll::Ready(Some(sse(&chunk(&self.meta, i, delta, logprobs, None))))
            }
            Poll::Ready(Some((i, Event::Done(f)))) => {
                let mut out = Vec::new();
                let mut reason = f.reason;
                let Some(c) = self.choices.get_mut(i) else { return wake(cx) };
                c.finish = Some(f);
                if let Some(set) = &self.tools {
                    let (message, r) = reply(Some(set), std::mem::take(&mut c.text), f.reason);
                    let mut delta = message;
                    delta.as_object_mut().map(|o| o.remove("role"));
                    if let Some(calls) = delta["tool_calls"].as_array_mut() {
                        calls.iter_mut().enumerate().for_each(|(i, c)| c["index"] = json!(i));
                    }
                    out.extend_from_slice(&sse(&chunk(&self.meta, i, delta, Value::Null, None)));
                    reason = r;
                }
                let empty = match self.meta.kind {
                    Kind::Chat => json!({}),
                    Kind::Completion => json!(""),
                };
                out.extend_from_slice(&sse(&chunk(&self.meta, i, empty, Value::Null, Some(reason))));
                if self.choices.iter().all(|c| c.finish.is_some()) {
                    if self.include_usage {
                        let mut u = chunk(&self.meta, 0, Value::Null, Value::Null, None);
                        u["choices"] = json!([]);
                        u["usage"] = usage(&self.choices, n);
                        out.extend_from_slice(&sse(&u));
                    }
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    self.done = true;
                }
                Poll::Ready(Some(Bytes::from(out)))
            }
            Poll::Ready(Some((_, Event::Failed(e)))) => {
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

/// Polls again at once (an event for no choice of this response; none is sent).
fn wake(cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
    cx.waker().wake_by_ref();
    Poll::Pending
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// One streamed chunk of choice `index`: a chat delta or a completion's text, with its tokens'
/// `logprobs`.
fn chunk(meta: &Meta, index: usize, delta: Value, logprobs: Value, finish: Option<&str>) -> Value {
    match meta.kind {
        Kind::Chat => json!({
            "id": meta.id, "object": "chat.completion.chunk", "created": meta.created, "model": meta.model,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }),
        Kind::Completion => json!({
            "id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "choices": [{"index": index, "text": delta, "logprobs": logprobs, "finish_reason": finish}],
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
    let mut requests = request::parse(kind, &body, &model, &state.limits)?;
    let Some(first) = requests.first_mut() else {
        return Err(ApiError::invalid(None, "nothing to complete"));
    };
    let (stream, include_usage, tools) = (first.stream, first.include_usage, first.tools.take());
    let (logprobs, n) = (first.logprobs.is_some(), first.n);
    let mut choices: Vec<Choice> = requests.iter().map(|_| Choice::default()).collect();
    let (tx, mut rx) = unbounded_channel();
    let jobs = requests.into_iter().enumerate().map(|(index, mut request)| {
        request.tools = None;
        Job { request, index, events: tx.clone(), cancel: Arc::clone(&guard.cancel) }
    });
    state.engine.submit(jobs.collect())?;
    drop(tx);
    let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
    let meta = Meta { kind, id: new_id(prefix), created: now(), model: state.model_name.clone(), logprobs, n };
    if stream {
        let body = SseBody { rx, tools, meta, include_usage, choices, started: false, done: false, _guard: guard };
        let mut r = Response::new(Body::Sse(Box::new(body)));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(r);
    }
    while choices.iter().any(|c| c.finish.is_none()) {
        match rx.recv().await {
            Some((i, Event::Text(t, lps))) => {
                if let Some(c) = choices.get_mut(i) {
                    let lps = c.push(&t, lps);
                    c.tokens.extend(lps);
                    c.text.push_str(&t);
                }
            }
            Some((i, Event::Done(f))) => {
                if let Some(c) = choices.get_mut(i) {
                    c.finish = Some(f);
                }
            }
            Some((_, Event::Failed(e))) => return Err(e),
            None => return Err(ApiError::unavailable("the engine stopped")),
        }
    }
    drop(guard);
    let usage = usage(&choices, n);
    let body: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let reason = c.finish.map_or("stop", |f| f.reason);
            let logprobs = if logprobs { logprobs_json(kind, &c.tokens) } else { Value::Null };
            match kind {
                Kind::Chat => {
                    let (message, reason) = reply(tools.as_ref(), c.text, reason);
                    json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": reason})
                }
                Kind::Completion => json!({"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": reason}),
            }
        })
        .collect();
    let object = if kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    Ok(json_response(
        200,
        &json!({"id": meta.id, "object": object, "created": meta.created, "model": meta.model, "choices": body, "usage": usage}),
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
