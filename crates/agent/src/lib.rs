//! `sluice agent`: serves this machine's models through a gateway. The agent dials out
//! (so it works behind NAT), authenticates with its token, advertises its models and
//! slots, and runs the jobs the gateway pushes on its own backends: the same
//! `[[backends]]` entries (or `--backend kind=url`) as `sluice serve`.
//!
//! Lost connections are retried with jittered exponential backoff; a refused token or
//! a protocol version mismatch stops the agent with the gateway's reason.
//!
//! # Layout
//! - [`session`]: one connection: handshake, reader, writer, drain.
//! - [`outbox`]: frames waiting for the socket (adaptive coalescing).
//! - [`worker`]: runs one job on the local backends.
//! - [`socket`]: tungstenite's WebSocket adapted to the link's message type.

pub mod outbox;
pub mod session;
pub mod socket;
pub mod worker;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_tungstenite::Connector;
use tokio_util::sync::CancellationToken;

use self::session::{SessionEnd, SessionError};
use sluice_core::registry::Registry;

/// How to reach the gateway and what to offer it.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// WebSocket URL of the gateway's agent endpoint (`ws://` or `wss://`).
    pub url: String,
    /// The agent token.
    pub token: String,
    /// Agent id, unique per gateway.
    pub agent_id: String,
    /// Jobs run at once.
    pub slots: u32,
    /// Extra CA certificate(s) to trust, PEM; each is also pinned (a gateway showing
    /// exactly that certificate is trusted).
    pub ca: Option<std::path::PathBuf>,
    /// Allow `ws://` (the token in clear) to a gateway that is not on this machine.
    pub insecure: bool,
    /// Deadline for dialing and for the handshake.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long running jobs may take to finish on shutdown.
    pub drain_timeout: Duration,
}

impl AgentOptions {
    /// Options with defaults for `gateway` (any of `http(s)://host:port` or
    /// `ws(s)://host:port[/path]`) and `token`.
    pub fn new(gateway: &str, token: &str) -> Result<AgentOptions, String> {
        Ok(AgentOptions {
            url: connect_url(gateway)?,
            token: token.to_owned(),
            agent_id: default_agent_id(),
            slots: 4,
            ca: None,
            insecure: false,
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
        })
    }
}

/// The WebSocket URL for a gateway address: the scheme becomes ws/wss, and an empty
/// path becomes the agent endpoint.
pub fn connect_url(gateway: &str) -> Result<String, String> {
    let mut u = reqwest::Url::parse(gateway).map_err(|e| format!("gateway URL '{gateway}': {e}"))?;
    let scheme = match u.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(format!("gateway URL '{gateway}': scheme '{other}' is not http(s) or ws(s)")),
    };
    u.set_scheme(scheme).map_err(|()| format!("gateway URL '{gateway}' cannot use {scheme}"))?;
    if u.path().is_empty() || u.path() == "/" {
        u.set_path(sluice_protocol::agent::CONNECT_PATH);
    }
    Ok(u.to_string())
}

fn default_agent_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    host.unwrap_or_else(|| "agent".to_owned())
}

/// Where the agent stands, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    /// Dialing or waiting to redial.
    Disconnected,
    /// Welcomed by the gateway.
    Connected,
}

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The gateway refused us and retrying cannot help.
    #[error(transparent)]
    Refused(SessionError),
    /// The TLS settings cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// `ws://` to another machine without `--insecure`.
    #[error(
        "refusing to send the agent token in clear to {0}: use https:// (wss://) for a gateway on another machine, or pass --insecure"
    )]
    Cleartext(String),
}

/// The host of a `ws://` URL that is not on this machine (a loopback address or
/// `localhost`), if `url` is one: sending the token there would send it in clear.
pub fn cleartext_host(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    if u.scheme() != "ws" {
        return None;
    }
    let host = u.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = bare.eq_ignore_ascii_case("localhost")
        || bare.to_ascii_lowercase().ends_with(".localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!local).then(|| host.to_owned())
}

/// A configured agent.
pub struct Agent {
    options: AgentOptions,
    registry: Arc<Registry>,
    models: Vec<String>,
    /// What each model can do beyond text, where the agent's backends say.
    capabilities: std::collections::BTreeMap<String, Vec<String>>,
    connector: Connector,
    status: watch::Sender<AgentStatus>,
}

impl Agent {
    /// An agent offering the models of `registry`'s backends (discovered now).
    pub async fn new(options: AgentOptions, registry: Registry) -> Result<Agent, AgentError> {
        if !options.insecure
            && let Some(host) = cleartext_host(&options.url)
        {
            return Err(AgentError::Cleartext(host));
        }
        registry.discover().await;
        let table = registry.table();
        let models = table.names().to_vec();
        let capabilities = models.iter().filter_map(|m| Some((m.clone(), table.capabilities(m)?))).collect();
        drop(table);
        let registry = Arc::new(registry);
        let connector = sluice_link::tls::client_connector(options.ca.as_deref()).map_err(AgentError::Tls)?;
        Ok(Agent {
            options,
            registry,
            models,
            capabilities,
            connector,
            status: watch::Sender::new(AgentStatus::Disconnected),
        })
    }

    /// The models it will advertise.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// Follows the connection status.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.subscribe()
    }

    /// Connects and serves until `shutdown` (then drains), reconnecting with jittered
    /// exponential backoff whenever the connection is lost.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match session::run(self, &shutdown).await {
                Ok(SessionEnd::Shutdown) => break,
                Ok(SessionEnd::Lost(why)) => {
                    tracing::warn!(reason = %why, "connection to the gateway lost; reconnecting");
                    failures = 0;
                }
                Err(SessionError::Refused { code, reason }) if code.is_permanent() => {
                    tracing::error!(code = ?code, reason = %reason, "the gateway refused this agent");
                    return Err(AgentError::Refused(SessionError::Refused { code, reason }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt = failures + 1, "cannot connect to the gateway");
                    failures = failures.saturating_add(1);
                }
            }
            let delay = backoff(self.options.backoff_min, self.options.backoff_max, failures);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => break,
            }
        }
        tracing::info!("agent stopped");
        Ok(())
    }
}

/// Delay before reconnect attempt `failures` (0 after a connection that worked):
/// `min · 2^failures` capped at `max`, then a random point in its upper half, so
/// agents that lost the gateway together do not all come back at the same instant.
pub fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let base = min.saturating_mul(1u32 << failures.min(20)).min(max);
    let half = base / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gateway_urls_become_the_agent_endpoint() {
        assert_eq!(connect_url("http://h:8080").unwrap(), "ws://h:8080/agent/v1/connect");
        assert_eq!(connect_url("https://h").unwrap(), "wss://h/agent/v1/connect");
        assert_eq!(connect_url("wss://h/custom/path").unwrap(), "wss://h/custom/path");
    }

    /// The token never travels in clear to another machine unless asked.
    #[test]
    fn cleartext_is_only_for_this_machine() {
        for local in ["ws://127.0.0.1:8080/a", "ws://localhost/a", "ws://[::1]:1/a", "ws://gw.localhost/a"] {
            assert_eq!(cleartext_host(local), None, "{local}");
        }
        assert_eq!(cleartext_host("wss://gateway.example/a"), None);
        assert_eq!(cleartext_host("ws://gateway.example:8080/a").as_deref(), Some("gateway.example"));
        assert_eq!(cleartext_host("ws://10.0.0.5/a").as_deref(), Some("10.0.0.5"));
        assert!(connect_url("ftp://h").is_err());
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for failures in 0..30 {
            let base = min.saturating_mul(1 << failures.min(20)).min(max);
            let d = backoff(min, max, failures);
            assert!(d >= base / 2 && d <= base, "{failures}: {d:?} vs {base:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(min, max, 5)).collect();
        assert!(samples.len() > 1, "no jitter");
    }
}
