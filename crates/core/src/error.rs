//! The gateway's error type: one enum for everything that can end a request, with a
//! status code and a stable type name. Each API dialect renders it in its own shape.
//!
//! Messages shown to clients never carry internals (no upstream URLs, no socket
//! errors); the full cause is logged where the error is created.

use std::time::Duration;

use http::StatusCode;

use crate::backend::BackendError;

/// Why a request failed, as the client will be told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Malformed or invalid input.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, naming the field.
        message: String,
        /// The offending parameter, when one is to blame.
        param: Option<String>,
    },
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed to do this (a user key on an admin route, a
    /// model outside the key's list, a missing CSRF token, a foreign `Origin`).
    #[error("{0}")]
    Forbidden(String),
    /// The model is served by no backend.
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    /// The route does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request body exceeds the limit.
    #[error("request body too large (limit {limit} bytes)")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Too many requests; retry later.
    #[error("{message}")]
    RateLimited {
        /// What was exceeded.
        message: String,
        /// When to retry.
        retry_after: Option<Duration>,
    },
    /// A spend budget is used up (OpenAI's `insufficient_quota`): retrying soon does
    /// not help.
    #[error("{message}")]
    QuotaExceeded {
        /// Which budget, and how much of it was spent.
        message: String,
        /// When the budget renews.
        retry_after: Option<Duration>,
    },
    /// No backend can take the request now.
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl GatewayError {
    /// A 400 naming the offending field.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::BadRequest { message: message.into(), param: param.map(str::to_owned) }
    }

    /// The HTTP status the client gets.
    pub fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::ModelNotFound(_) | GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RateLimited { .. } | GatewayError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Backend(e) => e.status_code(),
        }
    }

    /// A stable, machine-readable name for the kind of error.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::BadRequest { .. } => "invalid_request_error",
            GatewayError::Unauthorized(_) => "authentication_error",
            GatewayError::Forbidden(_) => "permission_error",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::PayloadTooLarge { .. } => "request_too_large",
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::QuotaExceeded { .. } => "insufficient_quota",
            GatewayError::Unavailable(_) => "service_unavailable",
            GatewayError::Backend(e) => e.error_type(),
        }
    }

    /// The parameter to blame, if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::BadRequest { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::Backend(BackendError::ContextOverflow { .. }) => Some("messages"),
            GatewayError::Backend(BackendError::UnsupportedField { param, .. }) => Some(param),
            GatewayError::Backend(BackendError::Status { .. }) => {
                self.upstream_detail().and_then(|d| d.param.as_deref())
            }
            _ => None,
        }
    }

    /// Seconds the client should wait before retrying, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::QuotaExceeded { retry_after, .. } => *retry_after,
            // An upstream refusal without its own hint still tells the client to wait a bit.
            GatewayError::Backend(BackendError::Status { status: 429 | 503, retry_after, .. }) => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            GatewayError::Backend(BackendError::Status { retry_after: Some(after), .. }) => Some(*after),
            GatewayError::Backend(BackendError::Overloaded) => Some(Duration::from_secs(1)),
            GatewayError::Unavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The message the client sees: an upstream's own message as it wrote it (its
    /// credentials scrubbed where it was read), or the gateway's.
    pub fn client_message(&self) -> String {
        match self {
            GatewayError::Backend(BackendError::Status { status: 401 | 403 | 407, message, .. }) => format!(
                "the gateway's credentials for this model's upstream were refused (upstream status {}): \
                 {message}; this is a gateway configuration problem, retrying will not help",
                self.upstream_status().unwrap_or(0)
            ),
            GatewayError::Backend(BackendError::Status { message, .. }) => message.clone(),
            _ => self.to_string(),
        }
    }

    /// The upstream's HTTP status, for errors an upstream answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            GatewayError::Backend(BackendError::Status { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// The upstream's error object (`type`, `code`, `param`), to be passed on as it
    /// came; `None` for the gateway's own errors and for credential failures (those
    /// are the gateway's problem, not the client's).
    pub fn upstream_detail(&self) -> Option<&crate::backend::UpstreamError> {
        match self {
            GatewayError::Backend(e @ BackendError::Status { detail: Some(d), .. })
                if !e.credentials_refused() =>
            {
                Some(d)
            }
            _ => None,
        }
    }

    /// `Some(false)` when a retry of the same request cannot succeed although the
    /// status alone would invite one (OpenAI's SDKs retry every 5xx unless told not to
    /// by `x-should-retry`).
    pub fn should_retry(&self) -> Option<bool> {
        match self {
            GatewayError::Backend(e) if e.credentials_refused() => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Stage;

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            (GatewayError::bad_request("x", Some("model")), 400),
            (GatewayError::Unauthorized("no".into()), 401),
            (GatewayError::Forbidden("no".into()), 403),
            (GatewayError::ModelNotFound("m".into()), 404),
            (GatewayError::PayloadTooLarge { limit: 1 }, 413),
            (GatewayError::RateLimited { message: "x".into(), retry_after: None }, 429),
            (GatewayError::Backend(BackendError::Connect("refused".into())), 502),
            (GatewayError::Unavailable("busy".into()), 503),
            (GatewayError::Backend(BackendError::Timeout(Stage::FirstToken)), 504),
        ];
        for (err, code) in cases {
            assert_eq!(err.status_code().as_u16(), code, "{err:?}");
        }
    }

    #[test]
    fn model_not_found_names_the_model() {
        let e = GatewayError::ModelNotFound("llama-9000".into());
        assert!(e.client_message().contains("llama-9000"));
        assert_eq!(e.param(), Some("model"));
    }
}
