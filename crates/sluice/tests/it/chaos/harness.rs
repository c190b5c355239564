//! Real processes for the chaos tests: `sluice serve`, `sluice agent` and `sluice-mock`
//! started from the built binaries, a private `redis-server` and a private Postgres
//! cluster on free ports; signals sent with `kill`; a streamed answer read into what
//! its client saw in the end. Every wait is a condition with a deadline.

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::util::*;

/// How long a process may take to start listening on this busy box.
pub const START: Duration = Duration::from_secs(30);

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `sluice-mock` binary, built next to `sluice` by the workspace's test build.
fn mock_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_sluice")).with_file_name("sluice-mock");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (`cargo nextest run --workspace`) or `cargo build -p sluice-mock`",
        path.display()
    );
    path
}

/// Waits, polling, until `cond` holds; panics with `what` after `limit`.
pub async fn until<F: Future<Output = bool>>(what: &str, limit: Duration, mut cond: impl FnMut() -> F) {
    let wait = async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| panic!("not within {limit:?}: {what}"));
}

/// Whether something accepts connections on `port`.
pub async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

/// A child process, killed (and reaped) on drop.
pub struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Proc { child, name }
    }

    /// Sends `signal` (`KILL`, `TERM`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let ok = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(ok.success(), "kill -{signal} {} ({pid})", self.name);
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(mut self) {
        self.signal("KILL");
        tokio::time::timeout(SOON, self.child.wait()).await.expect("a killed process ends").unwrap();
    }

    /// Waits for the exit, at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let name = self.name;
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} still runs after {limit:?}"))
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.running() {
            return;
        }
        let _ = self.child.start_kill();
        // Reaped before the test ends, so no child outlives it holding its output open.
        let deadline = std::time::Instant::now() + SOON;
        while self.running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A `sluice-mock` process.
pub struct MockProc {
    pub proc: Proc,
    pub port: u16,
}

impl MockProc {
    /// Starts the mock on `port` (0: a free one).
    pub async fn start(port: u16) -> MockProc {
        let port = if port == 0 { free_port() } else { port };
        let proc = Proc::spawn(
            "sluice-mock",
            Command::new(mock_binary()).args(["--listen", &format!("127.0.0.1:{port}"), "--threads", "2"]),
        );
        until("sluice-mock listens", START, || listening(port)).await;
        MockProc { proc, port }
    }

    /// The OpenAI base URL.
    pub fn openai(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

/// A `sluice serve` process with its config file in a temp dir.
pub struct ServeProc {
    pub proc: Proc,
    pub base: String,
    /// Holds the config file (and a SQLite store) while the process runs.
    _dir: tempfile::TempDir,
}

impl ServeProc {
    /// Starts `sluice serve` with `toml` on a free port; waits until `/healthz` answers.
    pub async fn start(toml: &str) -> ServeProc {
        let dir = tempfile::tempdir().unwrap();
        ServeProc::start_in(dir, toml).await
    }

    /// As [`ServeProc::start`], in `dir` (which may hold the SQLite store already).
    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> ServeProc {
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, toml).unwrap();
        let port = free_port();
        let proc = Proc::spawn(
            "sluice serve",
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"])
                .arg(&config)
                .env("SLUICE_LOG__LEVEL", "warn"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/healthz");
        until("sluice serve answers /healthz", START, || {
            let req = client().get(&health).send();
            async move { req.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        ServeProc { proc, base, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The sum of the series of metric `name` (every label set) in `/metrics`, 0 when
    /// absent.
    pub async fn metric(&self, name: &str, key: Option<&str>) -> f64 {
        let mut req = client().get(self.url("/metrics"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let Ok(resp) = tokio::time::timeout(SOON, req.send()).await.expect("/metrics answers") else {
            return 0.0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            .filter_map(|rest| rest.rsplit(' ').next()?.trim().parse::<f64>().ok())
            .sum()
    }
}

/// A `sluice agent` process.
pub fn agent(gateway: &str, token: &str, backend: &str) -> Proc {
    Proc::spawn(
        "sluice agent",
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["agent", "--gateway", gateway, "--token", token, "--id", "chaos", "--slots", "4"])
            .args(["--backend", backend])
            .env("SLUICE_LOG__LEVEL", "warn"),
    )
}

/// A `redis-server` of the test's own, without persistence.
pub struct PrivateRedis {
    pub proc: Proc,
    pub port: u16,
}

impl PrivateRedis {
    /// Starts Redis on `port` (0: a free one).
    pub async fn start(port: u16) -> PrivateRedis {
        let port = if port == 0 { free_port() } else { port };
        let proc = Proc::spawn(
            "redis-server",
            Command::new("redis-server").args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]),
        );
        until("redis-server listens", START, || listening(port)).await;
        PrivateRedis { proc, port }
    }
}

/// What a streamed answer amounted to for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ended as answers end (`[DONE]`, `"done": true`).
    Complete,
    /// It carried an explicit error event; its message.
    Error(String),
    /// It stopped without either: what the client saw last.
    Truncated(String),
}

/// The dialect of a streamed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Ollama,
}

impl Dialect {
    pub fn path(self) -> &'static str {
        match self {
            Dialect::OpenAi => "/v1/chat/completions",
            Dialect::Ollama => "/api/chat",
        }
    }

    pub fn body(self, content: &str) -> serde_json::Value {
        match self {
            Dialect::OpenAi => chat_body(content, true),
            Dialect::Ollama => ollama_chat_body(content, true),
        }
    }
}

/// A streamed answer under way: its response, read frame by frame.
pub struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    dialect: Dialect,
    last: String,
}

impl Stream {
    /// Sends a streamed chat of `content` to `base` and waits for its headers.
    pub async fn open(base: &str, dialect: Dialect, content: &str, key: Option<&str>) -> Stream {
        let mut req = client().post(format!("{base}{}", dialect.path())).json(&dialect.body(content));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = tokio::time::timeout(START, req.send()).await.expect("headers in time").unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        Stream { resp, buf: Vec::new(), dialect, last: String::new() }
    }

    /// The next frame (SSE data or NDJSON line), `None` at the end or when the
    /// connection broke.
    async fn frame(&mut self) -> Option<String> {
        let sep: &[u8] = if self.dialect == Dialect::OpenAi { b"\n\n" } else { b"\n" };
        loop {
            if let Some(i) = self.buf.windows(sep.len()).position(|w| w == sep) {
                let raw: Vec<u8> = self.buf.drain(..i + sep.len()).collect();
                let text = String::from_utf8_lossy(&raw).trim().to_owned();
                if text.is_empty() || text.starts_with(':') {
                    continue;
                }
                let text = text.strip_prefix("data: ").unwrap_or(&text).to_owned();
                self.last.clone_from(&text);
                return Some(text);
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits for the first token's frame.
    pub async fn first(&mut self) {
        let f = tokio::time::timeout(START, self.frame()).await.expect("a first frame in time");
        assert!(f.is_some(), "the stream ended before its first frame");
    }

    /// Reads to the end (at most `limit`) and says how it ended.
    pub async fn outcome(mut self, limit: Duration) -> Outcome {
        let read = async {
            while let Some(f) = self.frame().await {
                if f == "[DONE]" {
                    return Outcome::Complete;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&f) else { continue };
                if let Some(e) = v.get("error") {
                    let msg = e.get("message").unwrap_or(e);
                    return Outcome::Error(msg.as_str().unwrap_or_default().to_owned());
                }
                if v.get("done") == Some(&serde_json::Value::Bool(true)) {
                    return Outcome::Complete;
                }
            }
            Outcome::Truncated(self.last.clone())
        };
        tokio::time::timeout(limit, read).await.expect("the stream ends (no hang)")
    }
}
