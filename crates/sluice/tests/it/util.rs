//! Test harness: start gateways and mocks, read streams.

use std::{net::SocketAddr, time::Duration};

use sluice_config::{Config, Overrides};
use sluice_mock::{MockConfig, MockServer};
use sluice_server::{serve as server, state::AppState};

/// A gateway running on 127.0.0.1:0.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: AppState,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    /// Starts a gateway from a TOML config (listen address is replaced by port 0).
    /// Without a `[store]` section the store is in memory: a test never sees users
    /// or keys of this machine's default store.
    pub async fn start(toml: &str) -> Gateway {
        let toml = if toml.contains("[store]") {
            toml.to_owned()
        } else {
            format!("{toml}\n[store]\nurl = \"sqlite::memory:\"\n")
        };
        let cfg = Config::from_toml(&toml, &Overrides::default()).expect("test config is valid");
        let state = AppState::new(cfg).expect("state builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        state.core.registry.discover().await;
        // As `sluice serve` does: users, keys and quotas are read before the port serves.
        state.start_auth().await.expect("the test store opens");
        let task = tokio::spawn(server::run(listener, state.clone()));
        Gateway { addr, state, task }
    }

    /// A gateway with one backend of `kind` in front of `mock`, serving `mock-model`.
    pub async fn over(mock: &MockServer, kind: &str, extra: &str) -> Gateway {
        Gateway::start(&backend_toml("mock", kind, mock, extra)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A `[[backends]]` entry for `mock`.
pub fn backend_toml(name: &str, kind: &str, mock: &MockServer, extra: &str) -> String {
    let url = if kind == "openai" { mock.openai_base() } else { mock.ollama_base() };
    format!(
        "[[backends]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\nmodels = [\"mock-model\"]\n{extra}\n"
    )
}

pub async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.expect("mock starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An OpenAI chat body.
pub fn chat_body(content: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

/// An Ollama chat body.
pub fn ollama_chat_body(content: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    })
}

/// Upper bound for anything that should happen "at once" in a test; a failure means
/// it did not happen at all, not that it was slow.
pub const SOON: Duration = Duration::from_secs(5);

/// Reads a streamed body into complete SSE `data:` payloads (or NDJSON lines).
pub struct Frames {
    resp: reqwest::Response,
    buf: String,
    sep: &'static str,
}

impl Frames {
    pub fn sse(resp: reqwest::Response) -> Frames {
        Frames { resp, buf: String::new(), sep: "\n\n" }
    }

    pub fn ndjson(resp: reqwest::Response) -> Frames {
        Frames { resp, buf: String::new(), sep: "\n" }
    }

    /// The next complete frame, or `None` at the end of the body.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find(self.sep) {
                let frame: String = self.buf.drain(..i + self.sep.len()).collect();
                let frame = frame.trim_end().to_owned();
                if frame.starts_with(':') || frame.is_empty() {
                    continue;
                }
                return Some(frame.strip_prefix("data: ").unwrap_or(&frame).to_owned());
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.push_str(std::str::from_utf8(&c).unwrap()),
                Ok(None) => return None,
                Err(e) => panic!("body failed: {e}"),
            }
        }
    }

    /// The next frame within [`SOON`].
    pub async fn next_soon(&mut self) -> Option<String> {
        tokio::time::timeout(SOON, self.next()).await.expect("a frame should arrive")
    }

    /// All remaining frames.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(f) = tokio::time::timeout(SOON, self.next()).await.expect("stream should end") {
            v.push(f);
        }
        v
    }
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// An agent's local registry over the backends of `cfg`, with engine models loaded as
/// `sluice agent` loads them.
pub async fn local_registry(cfg: Config) -> sluice_core::registry::Registry {
    let slots = sluice_backends::build(&cfg.backends, &cfg.engine).expect("backends build");
    sluice_backends::load_at_start(&slots, &cfg.engine, !cfg.backends.is_empty()).await;
    sluice_core::registry::Registry::new(slots)
}

/// Runs `python3 -c script args...` (a real client SDK script), fails the test with its
/// output if it fails, and returns the JSON its last line of output prints.
pub async fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the client script ({args:?}) failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default()).expect("the script's JSON line")
}
