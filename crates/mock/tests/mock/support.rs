//! Shared helpers: starting a mock, posting JSON, splitting streamed bodies into events.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};
use sluice_mock::{MockConfig, MockServer};
use tokio::time::timeout;

/// Generous bound for things that must happen; only hit if the mock is broken.
pub const MUST: Duration = Duration::from_secs(10);
/// Bound for things that must NOT happen (a hang stays silent); never a timing assert.
pub const SILENT: Duration = Duration::from_millis(150);

pub async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn post(url: String, body: Value) -> reqwest::Response {
    client().post(url).json(&body).send().await.unwrap()
}

pub fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "mock-model", "stream": stream, "messages": [{"role": "user", "content": content}]})
}

/// Splits a streamed body into events: SSE events (`\n\n`) or NDJSON lines (`\n`).
pub struct Events {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    separator: &'static [u8],
}

impl Events {
    pub fn sse(response: reqwest::Response) -> Events {
        Events::new(response, b"\n\n")
    }

    pub fn ndjson(response: reqwest::Response) -> Events {
        Events::new(response, b"\n")
    }

    fn new(response: reqwest::Response, separator: &'static [u8]) -> Events {
        Events { body: response.bytes_stream().boxed(), buf: Vec::new(), separator }
    }

    /// The next event; `Ok(None)` at a clean end, `Err` if the transfer broke.
    pub async fn next(&mut self) -> reqwest::Result<Option<String>> {
        loop {
            if let Some(at) = self.buf.windows(self.separator.len()).position(|w| w == self.separator) {
                let event: Vec<u8> = self.buf.drain(..at + self.separator.len()).collect();
                return Ok(Some(String::from_utf8(event[..at].to_vec()).unwrap()));
            }
            match self.body.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => return Ok(None),
            }
        }
    }

    pub async fn expect(&mut self) -> String {
        timeout(MUST, self.next()).await.unwrap().unwrap().expect("an event")
    }

    /// Everything to the end, which must be clean.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        while let Some(event) = timeout(MUST, self.next()).await.unwrap().unwrap() {
            events.push(event);
        }
        events
    }
}

pub fn sse_json(event: &str) -> Value {
    serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap()
}

pub fn sse_content(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "data: [DONE]")
        .filter_map(|e| sse_json(e)["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}
