//! The settings the domain owns: a `[[backends]]` entry and its deadlines, and (in
//! [`routing`]) the `[routing]` and `[[models]]` sections. The `[cache]` section lives
//! beside the cache (`cache::config`); the whole file is put together in the
//! `sluice-config` crate.

pub mod routing;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::routing::{
    BreakerConfig, FallbackOn, HealthConfig, HedgeConfig, ModelPolicy, PriorityConfig, RetryConfig,
    RoutingConfig, default_weight,
};

/// One upstream backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Which protocol it speaks.
    pub kind: BackendKind,
    /// Base URL (`…/v1` for OpenAI-compatible servers, the root for Ollama).
    pub url: String,
    /// Environment variable holding the upstream's API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Models served; empty means "ask the backend at start".
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// Deadlines.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Relative capacity for load balancing.
    #[serde(default = "routing::default_weight")]
    pub weight: f64,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: routing::BreakerConfig,
    /// Active health probe.
    #[serde(default)]
    pub health: routing::HealthConfig,
    /// What its models can do beyond text (`tools`, `vision`, `json_schema`,
    /// `logprobs`, `thinking`); overrides discovery. Absent: as discovered (Ollama's
    /// `/api/show`), or unknown (the upstream decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

impl BackendConfig {
    /// An entry for `url` of `kind` with every other setting at its default: models
    /// discovered, default deadlines, weight, breaker and probe.
    pub fn new(name: &str, kind: BackendKind, url: &str) -> BackendConfig {
        BackendConfig {
            name: name.to_owned(),
            kind,
            url: url.to_owned(),
            api_key_env: None,
            models: Vec::new(),
            timeouts: Timeouts::default(),
            weight: routing::default_weight(),
            breaker: Default::default(),
            health: Default::default(),
            capabilities: None,
        }
    }
}

/// Protocol of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// OpenAI-compatible HTTP.
    Openai,
    /// Ollama's native HTTP API.
    Ollama,
}

impl BackendKind {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Openai => "openai",
            BackendKind::Ollama => "ollama",
        }
    }
}

/// A model entry: a plain name, or a public alias for an upstream name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelEntry {
    /// Served under the same name.
    Name(String),
    /// Served as `name`, sent upstream as `upstream`.
    Alias {
        /// Public name.
        name: String,
        /// Name at the backend.
        upstream: String,
    },
}

impl ModelEntry {
    /// (public name, upstream name).
    pub fn names(&self) -> (&str, &str) {
        match self {
            ModelEntry::Name(n) => (n, n),
            ModelEntry::Alias { name, upstream } => (name, upstream),
        }
    }
}

/// Per-backend deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Opening a connection.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// From sending the request to the first token.
    #[serde(with = "humantime_serde")]
    pub first_token: Duration,
    /// Longest gap between two tokens.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// The whole request.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_token: Duration::from_secs(120),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(1800),
        }
    }
}
