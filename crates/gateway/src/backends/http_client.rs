//! The one pooled, keep-alive HTTP client every HTTP backend shares.
//!
//! reqwest keeps idle connections per host and negotiates HTTP/2 over TLS by ALPN, so
//! no request ever opens a connection that an idle one could serve. Its connect timeout
//! is per client, so backends with different connect deadlines get one client (one pool)
//! per distinct deadline: in practice one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{BackendError, Stage};

/// Hands out shared clients, one per connect timeout.
#[derive(Clone, Default)]
pub struct HttpClients {
    clients: Arc<Mutex<HashMap<Duration, reqwest::Client>>>,
}

impl HttpClients {
    /// The shared client whose connect timeout is `connect_timeout`.
    pub fn get(&self, connect_timeout: Duration) -> Result<reqwest::Client, BackendError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&connect_timeout) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BackendError::Connect(format!("building HTTP client: {e}")))?;
        clients.insert(connect_timeout, client.clone());
        Ok(client)
    }
}

/// Classifies a reqwest error into a backend error, keeping the cause for the log.
pub fn classify(err: reqwest::Error) -> BackendError {
    if err.is_connect() {
        if err.is_timeout() {
            BackendError::Timeout(Stage::Connect)
        } else {
            BackendError::Connect(err.to_string())
        }
    } else if err.is_timeout() {
        BackendError::Timeout(Stage::Total)
    } else if err.is_body() || err.is_decode() {
        BackendError::Interrupted(err.to_string())
    } else {
        BackendError::Connect(err.to_string())
    }
}

/// Reads an error response from an upstream into [`BackendError::Status`], with the
/// upstream's own message when it sent one in either dialect's error shape.
pub async fn status_error(resp: reqwest::Response) -> BackendError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Bounded: an error body is small, and a hung one must not hang the request.
    let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes()).await;
    let message = match body {
        Ok(Ok(bytes)) => error_message(&bytes),
        _ => None,
    }
    .unwrap_or_else(|| {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error")
            .to_owned()
    });
    BackendError::Status { status, message, retry_after }
}

/// Extracts the message of `{"error":{"message":..}}` or `{"error":".."}`.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let msg = e.get("message").and_then(|m| m.as_str()).or_else(|| e.as_str())?;
    // Upstream messages are passed on, but never unbounded.
    Some(msg.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_in_both_shapes() {
        assert_eq!(error_message(br#"{"error":{"message":"bad model"}}"#).as_deref(), Some("bad model"));
        assert_eq!(error_message(br#"{"error":"oops"}"#).as_deref(), Some("oops"));
        assert_eq!(error_message(b"<html>"), None);
    }
}
