//! The HTTP client `sluice chat` talks to a gateway with, local or remote alike: the
//! health probe, the model list, and streamed chat completions in the OpenAI dialect.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::{StatusCode, Url};
use sluice_protocol::openai::{ChatCompletionRequest, ErrorResponse, ModelList, StreamChunkView};

use sluice_backends::sse::{SseDecoder, SseItem};

/// How long the probe for a running gateway may take: it is on loopback or near.
const PROBE_DEADLINE: Duration = Duration::from_millis(1500);
/// Opening a connection to the gateway.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// A request that is not a stream (model list, model lookup).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Longest silence on a stream. The gateway's own first-token and idle deadlines fire
/// well before this (and it sends keep-alives); this only guards against a gateway that
/// stopped answering altogether.
const READ_DEADLINE: Duration = Duration::from_secs(600);

/// What went wrong talking to the gateway; the message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection, or the connection broke.
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable {
        /// The gateway's base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The gateway answered with an error status.
    #[error("{status}: {message}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The server's message.
        message: String,
    },
    /// An error event in the middle of a stream.
    #[error("the answer failed: {0}")]
    MidStream(String),
    /// The gateway sent something that is not the OpenAI dialect.
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
}

/// A gateway's base URL and the key to use with it.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: Url,
    api_key: Option<String>,
}

impl GatewayClient {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, api_key: Option<String>) -> Result<GatewayClient, ClientError> {
        let bad = |reason: String| ClientError::Unreachable { url: base.to_owned(), reason };
        let mut url = Url::parse(base).map_err(|e| bad(format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("scheme '{}' is not http(s)", url.scheme())));
        }
        // `join` below must append to the path, not replace its last segment.
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let mut builder =
            reqwest::Client::builder().connect_timeout(CONNECT_DEADLINE).read_timeout(READ_DEADLINE);
        // A proxy set for the outside world must not intercept the gateway next door.
        if is_loopback(&url) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(GatewayClient { http, base: url, api_key })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// True if a gateway answers `GET /healthz` quickly.
    pub async fn is_up(&self) -> bool {
        let Ok(url) = self.base.join("healthz") else { return false };
        let probe = self.http.get(url).timeout(PROBE_DEADLINE).send();
        matches!(probe.await, Ok(resp) if resp.status().is_success())
    }

    /// The models the gateway serves, in its order.
    pub async fn models(&self) -> Result<Vec<String>, ClientError> {
        let resp = self.send(self.get("v1/models")?).await?;
        let list: ModelList = resp.json().await.map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }

    /// `Ok` if the gateway serves `model`; its 404 otherwise.
    pub async fn check_model(&self, model: &str) -> Result<(), ClientError> {
        let mut url = self.url("v1/models")?;
        // Pushed as one segment: model names may hold `/` or `:`.
        url.path_segments_mut()
            .map_err(|()| ClientError::Protocol("base URL cannot have a path".into()))?
            .push(model);
        self.send(self.authorized(self.http.get(url)).timeout(REQUEST_DEADLINE)).await.map(drop)
    }

    /// Starts a streamed chat completion; the answer's text comes from the returned
    /// stream. Dropping it closes the request, which cancels the generation.
    pub async fn chat(&self, req: &ChatCompletionRequest) -> Result<AnswerStream, ClientError> {
        let post = self.authorized(self.http.post(self.url("v1/chat/completions")?)).json(req);
        let resp = self.send(post).await?;
        Ok(AnswerStream {
            body: Box::pin(resp.bytes_stream()),
            decoder: SseDecoder::default(),
            base: self.base().to_owned(),
        })
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn get(&self, path: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        Ok(self.authorized(self.http.get(self.url(path)?)).timeout(REQUEST_DEADLINE))
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Sends `req`; a non-2xx answer becomes [`ClientError::Status`] with the server's
    /// own message.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(ClientError::Status { status, message: error_message(&body) })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable { url: self.base().to_owned(), reason: describe(e) }
    }
}

/// The text of a streamed answer, delta by delta.
pub struct AnswerStream {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    decoder: SseDecoder,
    base: String,
}

impl AnswerStream {
    /// The next piece of text; `None` once the answer is complete (`[DONE]`).
    /// Cancel-safe: bytes already received stay in the decoder.
    pub async fn next_delta(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            while let Some(item) = self.decoder.next_event() {
                let data = match item {
                    SseItem::Data(d) => d,
                    SseItem::TooLarge => return Err(ClientError::Protocol("an event is too large".into())),
                };
                if data.as_ref() == b"[DONE]" {
                    return Ok(None);
                }
                let chunk: StreamChunkView<'_> =
                    serde_json::from_slice(&data).map_err(|e| ClientError::Protocol(e.to_string()))?;
                if let Some(err) = chunk.error {
                    return Err(ClientError::MidStream(err.message));
                }
                let text: String = chunk
                    .choices
                    .iter()
                    .filter_map(|c| c.delta.as_ref()?.content.as_ref())
                    .map(|t| t.0.as_ref())
                    .collect();
                if !text.is_empty() {
                    return Ok(Some(text));
                }
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.decoder.push(&bytes),
                Some(Err(e)) => {
                    return Err(ClientError::Unreachable { url: self.base.clone(), reason: describe(&e) });
                }
                None => {
                    return Err(ClientError::MidStream(
                        "the stream ended before the answer was complete".into(),
                    ));
                }
            }
        }
    }
}

/// The `error.message` of an OpenAI error body, else the body itself (shortened).
fn error_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorResponse>(body) {
        return e.error.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_owned();
    }
    text.chars().take(300).collect()
}

/// A reqwest error with its causes, which hold the useful part ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => {
            host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_openai_shape() {
        let body = br#"{"error":{"message":"model 'x' not found","type":"invalid_request_error"}}"#;
        assert_eq!(error_message(body), "model 'x' not found");
        assert_eq!(error_message(b"  upstream down \n"), "upstream down");
        assert_eq!(error_message(b""), "(no message)");
    }

    #[test]
    fn base_url_keeps_its_path() {
        let c = GatewayClient::new("http://127.0.0.1:9/prefix", None).unwrap();
        assert_eq!(c.url("v1/models").unwrap().as_str(), "http://127.0.0.1:9/prefix/v1/models");
        assert!(GatewayClient::new("ftp://x", None).is_err());
        assert!(GatewayClient::new("not a url", None).is_err());
    }
}
