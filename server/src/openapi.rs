//! The OpenAPI description the server publishes at `GET /openapi.json`: the routes, the request
//! fields it reads and the error shape (for clients and for schema-driven fuzzers).

use serde_json::{json, Value};

use crate::request::{Limits, MAX_CHOICES, MAX_LOGIT_BIAS, MAX_TOP_LOGPROBS};

/// The description of a server whose requests are bounded by `limits` (stated in the schemas,
/// so that a schema-valid request is one the server accepts, as far as a schema can say).
pub fn document(limits: &Limits) -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let errors = |codes: &[&str]| -> Value {
        codes
            .iter()
            .map(|c| {
                (c.to_string(), json!({"description": "error", "content": {"application/json": {"schema": error}}}))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let completion_errors = errors(&["400", "401", "408", "413", "503"]);
    let with_ok = |mut e: Value, ok: Value| {
        e["200"] = ok;
        e
    };
    let stream_ok = json!({"description": "a completion, or with `stream` server-sent events ending `data: [DONE]`",
        "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}}}});
    // Each request schema is one flat object (the sampling fields and its own), which
    // schema-driven fuzzers such as schemathesis can generate from (they refuse `allOf`).
    let request = |required: &str, own: Value| -> Value {
        let mut properties = sampling(limits);
        properties.extend(own.as_object().cloned().unwrap_or_default());
        json!({"type": "object", "required": [required], "properties": properties})
    };
    // A prompt as token ids (their bound, the vocabulary, is the model's, not stated here).
    let token_ids = json!({"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": limits.n_ctx - 1});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "autark serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "An OpenAI-compatible subset: chat completions, completions, models (docs/SERVER.md)."},
        "paths": {
            "/v1/chat/completions": {"post": {
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}}},
                "responses": with_ok(completion_errors.clone(), stream_ok.clone())}},
            "/v1/completions": {"post": {
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CompletionRequest"}}}},
                "responses": with_ok(completion_errors, stream_ok)}},
            "/v1/models": {"get": {"responses": with_ok(errors(&["401"]), json!({"description": "the model", "content": {"application/json": {"schema": {"type": "object"}}}}))}},
            "/v1/models/{model}": {"get": {
                "parameters": [{"name": "model", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}],
                "responses": with_ok(errors(&["401", "404"]), json!({"description": "the model, if that is its id", "content": {"application/json": {"schema": {"type": "object"}}}}))}},
            "/health": {"get": {"responses": {"200": {"description": "ready"}, "503": {"description": "loading or shutting down"}}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": "string", "nullable": true}, "code": {"type": "string", "nullable": true}}}}},
            "ChatRequest": request("messages", json!({
                "tools": {"type": "array", "items": {"type": "object", "required": ["type", "function"], "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": {"type": "string"},
                        "parameters": {"type": "object"}}}}}},
                "tool_choice": {"type": "string", "enum": ["auto", "required", "none"]},
                "logprobs": {"type": "boolean", "nullable": true},
                "top_logprobs": {"type": "integer", "minimum": 0, "maximum": MAX_TOP_LOGPROBS, "nullable": true},
                "messages": {"type": "array", "minItems": 1, "maxItems": limits.max_messages, "items": {"type": "object", "required": ["role"], "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                    "tool_calls": {"type": "array", "nullable": true, "items": {"type": "object", "required": ["function"], "properties": {
                        "id": {"type": "string"}, "type": {"type": "string", "enum": ["function"]},
                        "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}}}}}},
                    "tool_call_id": {"type": "string", "nullable": true},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type", "text"], "properties": {
                        "type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}}], "nullable": true}}}}})),
            "CompletionRequest": request("prompt", json!({
                "logprobs": {"type": "integer", "minimum": 0, "maximum": MAX_TOP_LOGPROBS, "nullable": true},
                "echo": {"type": "boolean", "nullable": true},
                "prompt": {"oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": MAX_CHOICES},
                    token_ids.clone(),
                    {"type": "array", "items": token_ids, "minItems": 1, "maxItems": MAX_CHOICES}]}})),
        }},
    })
}

/// The request fields both completion routes read.
/// OpenAI's clients send `null` for an unset field: every one here may be `null`.
fn sampling(limits: &Limits) -> serde_json::Map<String, Value> {
    // The server counts bytes; a schema counts characters (up to 4 bytes each).
    let stop = json!({"type": "string", "minLength": 1, "maxLength": limits.max_stop_bytes / 4});
    let tokens = json!({"type": "integer", "minimum": 1, "maximum": limits.n_ctx});
    let v = json!({
        "model": {"type": "string"},
        "max_tokens": tokens,
        "max_completion_tokens": tokens,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
        "top_k": {"type": "integer", "minimum": 0},
        "min_p": {"type": "number", "minimum": 0, "maximum": 1},
        "repeat_penalty": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "maximum": 10},
        "repeat_last_n": {"type": "integer", "minimum": 0},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "logit_bias": {"type": "object", "maxProperties": MAX_LOGIT_BIAS, "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        "stop": {"oneOf": [stop.clone(), {"type": "array", "items": stop, "maxItems": limits.max_stop}]},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_CHOICES},
        "response_format": {"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
            "json_schema": {"type": "object", "properties": {"name": {"type": "string"}, "schema": {"type": "object"}}}}},
    });
    let mut fields = v.as_object().cloned().unwrap_or_default();
    fields.values_mut().for_each(|f| f["nullable"] = json!(true));
    fields
}
