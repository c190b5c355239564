//! [`DataError`]: how the routes over stored data (conversations, usage, retention)
//! fail, rendered in OpenAI's error shape. Another owner's conversation is a 404 like a
//! missing one; the store's real failure goes to the log, the client gets a 503.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use sluice_core::error::GatewayError;
use sluice_protocol::openai as oa;
use sluice_store::StoreError;

use super::openai::encode::error_response;

/// Why a request on stored data failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Invalid input, naming the field.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The field to blame.
        param: &'static str,
    },
    /// The request has no identity that can own data.
    #[error("sign in to use conversations and usage")]
    SignIn,
    /// The caller lacks the role.
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or not the caller's.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A gateway-level error (body too large, malformed JSON).
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl DataError {
    /// A 400 about `param`.
    pub fn bad(message: impl Into<String>, param: &'static str) -> DataError {
        DataError::BadRequest { message: message.into(), param }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        match self {
            DataError::Forbidden(_) => StatusCode::FORBIDDEN,
            other => other.as_gateway().map_or(StatusCode::FORBIDDEN, |g| g.status_code()),
        }
    }

    /// The same error as a [`GatewayError`], for every kind it has one for (not 403).
    fn as_gateway(&self) -> Option<GatewayError> {
        Some(match self {
            DataError::BadRequest { message, param } => {
                GatewayError::bad_request(message.clone(), Some(param))
            }
            DataError::SignIn => GatewayError::Unauthorized(self.to_string()),
            DataError::Forbidden(_) => return None,
            DataError::NotFound(m) => GatewayError::NotFound(m.clone()),
            DataError::Store(_) => {
                GatewayError::Unavailable("the store is unavailable; retry shortly".into())
            }
            DataError::Gateway(g) => g.clone(),
        })
    }
}

impl IntoResponse for DataError {
    fn into_response(self) -> Response {
        if let DataError::Store(e) = &self {
            tracing::error!(error = %e, "store failed");
        }
        match self.as_gateway() {
            Some(g) => error_response(&g),
            None => {
                let body = oa::ErrorResponse {
                    error: oa::ErrorBody {
                        message: self.to_string(),
                        kind: Some("permission_error".into()),
                        param: None,
                        code: Some(serde_json::Value::String("forbidden".into())),
                    },
                };
                (StatusCode::FORBIDDEN, Json(body)).into_response()
            }
        }
    }
}
