//! Errors the mock answers with, rendered in the shape of the dialect that was asked:
//! `{"error":{"message","type","param","code"}}` on `/v1`, `{"error":"..."}` on `/api`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::directive::DirectiveError;

/// Which API dialect a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI-compatible `/v1`.
    OpenAi,
    /// Ollama `/api`.
    Ollama,
}

/// Every way a mock request can fail.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MockError {
    /// The body was not the JSON the route expects.
    #[error("invalid request body: {0}")]
    BadRequest(String),
    /// A `[mock ...]` directive could not be parsed.
    #[error(transparent)]
    Directive(#[from] DirectiveError),
    /// Missing or wrong API key.
    #[error("Incorrect API key provided.")]
    Unauthorized,
    /// The model is not one the mock serves.
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    /// A status injected by `Behavior::Status`.
    #[error("mock injected status {0}")]
    Injected(u16),
}

impl MockError {
    /// The HTTP status of the reply.
    pub(crate) fn status_code(&self) -> StatusCode {
        match self {
            MockError::BadRequest(_) | MockError::Directive(_) => StatusCode::BAD_REQUEST,
            MockError::Unauthorized => StatusCode::UNAUTHORIZED,
            MockError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            MockError::Injected(code) => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// OpenAI's `error.type`.
    fn error_type(&self) -> &'static str {
        match self.status_code().as_u16() {
            401 => "invalid_request_error",
            429 => "rate_limit_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `error.code`.
    fn error_code(&self) -> Option<&'static str> {
        match self {
            MockError::Unauthorized | MockError::Injected(401) => Some("invalid_api_key"),
            MockError::ModelNotFound(_) => Some("model_not_found"),
            MockError::Injected(429) => Some("rate_limit_exceeded"),
            MockError::Injected(400) => Some("context_length_exceeded"),
            _ => None,
        }
    }

    /// OpenAI's `error.param`.
    fn error_param(&self) -> Option<&'static str> {
        match self {
            MockError::Injected(400) => Some("messages"),
            _ => None,
        }
    }

    /// The error as a response in `dialect`'s shape.
    pub(crate) fn render(self, dialect: Dialect) -> Response {
        let status = self.status_code();
        let body = match dialect {
            Dialect::OpenAi => {
                // OpenAI's own wording for the errors clients act on.
                let message = match &self {
                    MockError::ModelNotFound(model) => {
                        format!("The model `{model}` does not exist or you do not have access to it.")
                    }
                    MockError::Injected(400) => {
                        "This model's maximum context length is 8192 tokens. However, \
                        your messages resulted in 9000 tokens. Please reduce the length of the messages."
                            .to_owned()
                    }
                    MockError::Injected(401) => "Incorrect API key provided: sk-mock-4f3a9c2b71de. You can \
                        find your API key at https://platform.openai.com/account/api-keys."
                        .to_owned(),
                    other => other.to_string(),
                };
                json!({"error": {
                    "message": message,
                    "type": self.error_type(),
                    "param": self.error_param(),
                    "code": self.error_code(),
                }})
            }
            Dialect::Ollama => json!({ "error": self.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
