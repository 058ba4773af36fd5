//! The OpenAPI description the server publishes at `GET /openapi.json`: the routes, the request
//! fields it reads and the error shape (for clients and for schema-driven fuzzers).

use serde_json::{json, Value};

pub fn document() -> Value {
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
        "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}}});
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
            "/health": {"get": {"responses": {"200": {"description": "ready"}, "503": {"description": "loading or shutting down"}}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": "string", "nullable": true}, "code": {"type": "string", "nullable": true}}}}},
            "Sampling": {"type": "object", "properties": {
                "model": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "seed": {"type": "integer"},
                "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
                "stream": {"type": "boolean"},
                "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                "n": {"type": "integer", "enum": [1]},
                "response_format": {"type": "object", "properties": {
                    "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
                    "json_schema": {"type": "object", "properties": {"name": {"type": "string"}, "schema": {"type": "object"}}}}}}},
            "ChatRequest": {"allOf": [{"$ref": "#/components/schemas/Sampling"}, {"type": "object", "required": ["messages"], "properties": {
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {"type": "string", "enum": ["auto", "required", "none"]},
                "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"], "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}], "nullable": true}}}}}}]},
            "CompletionRequest": {"allOf": [{"$ref": "#/components/schemas/Sampling"}, {"type": "object", "required": ["prompt"], "properties": {
                "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}]}}}]},
        }},
    })
}
