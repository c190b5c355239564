//! How HTTP backends reach their upstreams.
//!
//! [`Transport`] hides two clients: plain `http://` upstreams (local servers, the common
//! self-hosted case) go through [`h1::H1Client`], whose connections are driven inside
//! the request's task so tokens that arrive together leave together; `https://` upstreams
//! go through one shared reqwest client (rustls, ALPN, HTTP/2). Both keep connections
//! alive and reuse them: never a new connection per request.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{BackendError, Stage, h1::H1Client};
use sluice_core::{backend::UpstreamError, scrub::scrub};

/// Largest whole (non-streamed) upstream answer accepted.
const MAX_WHOLE_BODY: usize = 64 << 20;

/// A response body as a stream of byte chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BackendError>> + Send>>;

/// Hands out shared reqwest clients, one per connect timeout (reqwest's connect timeout
/// is per client; in practice there is one).
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

/// The way to one upstream base URL.
pub enum Transport {
    /// Plain HTTP/1.1, connection driven in the request's task.
    Plain {
        /// The connection pool.
        client: Arc<H1Client>,
        /// Path prefix of the base URL (`/v1`, or empty).
        base_path: String,
    },
    /// Anything else (TLS), through reqwest.
    Shared {
        /// The shared client.
        client: reqwest::Client,
        /// Base URL without a trailing slash.
        base: String,
    },
}

/// An upstream response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body, streamed.
    pub body: BodyStream,
}

impl Transport {
    /// The transport for `base_url`.
    pub fn new(
        clients: &HttpClients,
        base_url: &str,
        connect_timeout: Duration,
    ) -> Result<Transport, BackendError> {
        let url = reqwest::Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| BackendError::Connect(format!("bad URL {base_url}: {e}")))?;
        if url.scheme() == "http" {
            let host =
                url.host_str().ok_or_else(|| BackendError::Connect(format!("no host in {base_url}")))?;
            let port = url.port_or_known_default().unwrap_or(80);
            let authority =
                if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
            Ok(Transport::Plain {
                client: H1Client::new(&authority, connect_timeout)?,
                base_path: url.path().trim_end_matches('/').to_owned(),
            })
        } else {
            Ok(Transport::Shared {
                client: clients.get(connect_timeout)?,
                base: base_url.trim_end_matches('/').to_owned(),
            })
        }
    }

    /// Sends a request to `path` (relative to the base URL); resolves at the response head.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, BackendError> {
        match self {
            Transport::Plain { client, base_path } => {
                let r = client.send(method, &format!("{base_path}{path}"), headers, body).await?;
                Ok(Response { status: r.status.as_u16(), headers: r.headers, body: Box::pin(r.body) })
            }
            Transport::Shared { client, base } => {
                let mut rb = client.request(method, format!("{base}{path}")).body(body);
                for (k, v) in headers {
                    rb = rb.header(k, v);
                }
                let resp = rb.send().await.map_err(classify)?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.bytes_stream().map_err(|e| match classify(e) {
                    BackendError::Connect(m) => BackendError::Interrupted(m),
                    other => other,
                });
                Ok(Response { status, headers, body: Box::pin(body) })
            }
        }
    }
}

impl Response {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Reads the whole body (bounded). A body that arrived in one piece is returned as
    /// it is, without a copy.
    pub async fn bytes(mut self) -> Result<Bytes, BackendError> {
        let mut first: Option<Bytes> = None;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            let chunk = chunk?;
            let held = first.as_ref().map_or(0, Bytes::len);
            if held + out.len() + chunk.len() > MAX_WHOLE_BODY {
                return Err(BackendError::Protocol("upstream answer too large".into()));
            }
            match first.take() {
                None if out.is_empty() => first = Some(chunk),
                earlier => {
                    if let Some(earlier) = earlier {
                        out.extend_from_slice(&earlier);
                    }
                    out.extend_from_slice(&chunk);
                }
            }
        }
        Ok(first.unwrap_or_else(|| out.freeze()))
    }

    /// Turns an error response into [`BackendError::Status`], with the upstream's own
    /// message when it sent one in either dialect's error shape.
    pub async fn into_error(self) -> BackendError {
        let status = self.status;
        let retry_after = retry_after(&self.headers, SystemTime::now());
        // Bounded: an error body is small, and a hung one must not hang the request.
        let body = tokio::time::timeout(Duration::from_secs(5), self.bytes()).await;
        let parsed = match &body {
            Ok(Ok(bytes)) => {
                // The raw body is for the operator; the client gets the scrubbed message.
                let raw = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]);
                tracing::debug!(status, body = %raw, "upstream error body");
                upstream_error(bytes)
            }
            _ => None,
        };
        let (message, detail) = match parsed {
            Some((message, detail)) => (message, detail),
            None => {
                let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
                (reason.unwrap_or("error").to_owned(), None)
            }
        };
        BackendError::Status { status, message: scrub(&message), retry_after, detail: detail.map(Box::new) }
    }
}

/// How long an upstream asks to be left alone: OpenAI's `retry-after-ms`, else
/// `Retry-After` in seconds or as an HTTP date (at most a day either way).
pub fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    const MAX: Duration = Duration::from_secs(86_400);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let ms = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok());
    if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some(Duration::from_secs_f64(ms.min(MAX.as_secs_f64() * 1000.0) / 1000.0));
    }
    let v = header("retry-after")?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX))
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

/// Extracts the message of `{"error":{"message":..}}` or `{"error":".."}`.
pub fn error_message(body: &[u8]) -> Option<String> {
    upstream_error(body).map(|(m, _)| m)
}

/// The message of `{"error":{"message",...}}` or `{"error":"..."}`, with the rest of
/// OpenAI's error object (`type`, `code`, `param`) when it is there.
pub fn upstream_error(body: &[u8]) -> Option<(String, Option<UpstreamError>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let msg = e.get("message").and_then(|m| m.as_str()).or_else(|| e.as_str())?;
    let text = |k: &str| e.get(k).and_then(|v| v.as_str()).map(|s| s.chars().take(200).collect::<String>());
    let detail = e.is_object().then(|| UpstreamError {
        kind: text("type"),
        code: e.get("code").filter(|c| c.is_string() || c.is_number()).cloned(),
        param: text("param"),
    });
    // Upstream messages are passed on, but never unbounded.
    Some((msg.chars().take(2000).collect(), detail))
}

/// `Content-Type: application/json`.
pub fn json_content_type() -> (HeaderName, HeaderValue) {
    (http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
}

/// `Authorization: Bearer <key>`, marked sensitive so it is never logged.
pub fn bearer(key: &str) -> Option<(HeaderName, HeaderValue)> {
    let mut v = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
    v.set_sensitive(true);
    Some((http::header::AUTHORIZATION, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_retry_after_is_read() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let ms = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(retry_after(&ms, now), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999999")]), now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn error_messages_in_both_shapes() {
        assert_eq!(error_message(br#"{"error":{"message":"bad model"}}"#).as_deref(), Some("bad model"));
        assert_eq!(error_message(br#"{"error":"oops"}"#).as_deref(), Some("oops"));
        assert_eq!(error_message(b"<html>"), None);
    }

    fn response(chunks: &[&'static [u8]]) -> Response {
        let body =
            futures_util::stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>());
        Response { status: 200, headers: HeaderMap::new(), body: Box::pin(body) }
    }

    #[tokio::test]
    async fn whole_bodies_in_one_piece_or_many() {
        assert_eq!(response(&[b"{\"a\":1}"]).bytes().await.unwrap(), &b"{\"a\":1}"[..]);
        assert_eq!(response(&[b"ab", b"", b"cd", b"e"]).bytes().await.unwrap(), &b"abcde"[..]);
        assert_eq!(response(&[]).bytes().await.unwrap(), &b""[..]);
    }

    #[test]
    fn plain_http_uses_the_in_task_client_and_tls_the_shared_one() {
        let c = HttpClients::default();
        let t = Transport::new(&c, "http://127.0.0.1:8000/v1/", Duration::from_secs(1)).unwrap();
        assert!(matches!(&t, Transport::Plain { base_path, .. } if base_path == "/v1"));
        let t = Transport::new(&c, "https://api.example.com/v1", Duration::from_secs(1)).unwrap();
        assert!(matches!(t, Transport::Shared { .. }));
    }
}
