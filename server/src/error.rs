//! The server's errors: `ServerError` ends `serve` (the CLI prints it), `ApiError` is one HTTP
//! error response in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Load { path: PathBuf, source: autark_runtime::RuntimeError },
    #[error("invalid setting {name}: {what}")]
    Setting { name: &'static str, what: String },
    #[error("the inference thread stopped before the model was loaded")]
    EngineGone,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An error answered to one request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `server_error`, …
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request (a field, when `param` is given) is invalid.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// 400 for a field: `"{field}: {what}"`.
    pub fn field(param: &str, what: impl std::fmt::Display) -> ApiError {
        ApiError::invalid(Some(param), format!("{param}: {what}"))
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn status(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::status(401, "authentication_error", "missing or invalid API key (Authorization: Bearer KEY)")
            .with_code("invalid_api_key")
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::status(404, "not_found_error", format!("no route {path}"))
    }

    pub fn method(method: &str, path: &str) -> ApiError {
        ApiError::status(405, "invalid_request_error", format!("method {method} is not allowed on {path}"))
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::status(503, "server_error", message).with_code("unavailable")
    }

    /// The error body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// A runtime error met while preparing a request (tokenizing, rendering the chat template,
/// compiling a constraint): the request's fault unless it is a resource failure.
pub fn from_runtime(param: &str, e: &autark_runtime::RuntimeError) -> ApiError {
    use autark_runtime::ErrorKind;
    match e.kind() {
        ErrorKind::OutOfMemory => ApiError::unavailable(e.to_string()),
        ErrorKind::Internal => ApiError::status(500, "server_error", e.to_string()),
        _ => ApiError::field(param, e),
    }
}
