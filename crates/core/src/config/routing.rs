//! Routing configuration: the `[routing]` section (retries, hedging, stickiness,
//! priority classes), the per-backend `weight`, `breaker` and `health` settings, and
//! the `[[models]]` policies (admission caps, queues, fallbacks). Checked by
//! [`validate`] before a port is bound.
//!
//! ```toml
//! [routing]
//! sticky = false
//! retry = { max_attempts = 3, budget_ratio = 0.2, budget_min_retries = 10 }
//! hedge = { enabled = false, min_delay = "20ms", cold_delay = "1s" }
//! [routing.priority]
//! classes = ["interactive", "batch"]       # highest first
//! default_class = "interactive"
//! keys = { "<sha256 of a key>" = "batch" }
//!
//! [[models]]
//! name = "llama"
//! max_concurrency = 32
//! max_queue = 128
//! max_queue_wait = "30s"
//! fallbacks = ["gpt-4o-mini"]
//! fallback_on = ["error", "timeout", "rate_limited", "context_overflow"]
//! ```

use std::{collections::BTreeMap, collections::HashSet, time::Duration};

use serde::{Deserialize, Serialize};

/// The `[routing]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Retries before the first byte, and their budget.
    pub retry: RetryConfig,
    /// Asking a second backend when the first is slow to answer.
    pub hedge: HedgeConfig,
    /// Send every turn of a conversation to the same backend (keeps its prefix cache
    /// warm) unless that backend is unavailable or much busier than the others.
    pub sticky: bool,
    /// Time constant of the peak-EWMA of each backend's time to first token.
    #[serde(with = "humantime_serde")]
    pub ewma_decay: Duration,
    /// Priority classes of API keys, for admission queues.
    pub priority: PriorityConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            retry: RetryConfig::default(),
            hedge: HedgeConfig::default(),
            sticky: false,
            ewma_decay: Duration::from_secs(10),
            priority: PriorityConfig::default(),
        }
    }
}

/// Retries before anything reached the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per model, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Retries (and hedges) allowed per request over the window: 0.2 = 20%.
    pub budget_ratio: f64,
    /// Retries always allowed per window, so a quiet gateway can still retry.
    pub budget_min_retries: u32,
    /// The sliding window of the budget.
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
    /// First backoff before retrying a backend already tried.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest backoff.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Longest upstream `Retry-After` worth waiting for; a longer one moves on to
    /// another backend or a fallback model.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            budget_ratio: 0.2,
            budget_min_retries: 10,
            budget_window: Duration::from_secs(10),
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(2),
        }
    }
}

/// Hedged requests: off by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// Ask a second backend when the first token is later than the backend's p95.
    pub enabled: bool,
    /// Never hedge sooner than this.
    #[serde(with = "humantime_serde")]
    pub min_delay: Duration,
    /// The delay while a backend has too few samples for a p95.
    #[serde(with = "humantime_serde")]
    pub cold_delay: Duration,
    /// Samples needed before the p95 is trusted.
    pub min_samples: u32,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            enabled: false,
            min_delay: Duration::from_millis(20),
            cold_delay: Duration::from_secs(1),
            min_samples: 20,
        }
    }
}

/// Priority classes: admission queues serve a higher class first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityConfig {
    /// Class names, highest priority first.
    pub classes: Vec<String>,
    /// Class of keys not listed in `keys` (and of anonymous requests).
    pub default_class: String,
    /// Hex SHA-256 of an API key → its class.
    pub keys: BTreeMap<String, String>,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            classes: vec!["interactive".into(), "batch".into()],
            default_class: "interactive".into(),
            keys: BTreeMap::new(),
        }
    }
}

/// A backend's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Opens when failures make up at least this share of the window's requests...
    pub error_ratio: f64,
    /// ...once the window holds at least this many requests.
    pub min_requests: u32,
    /// The sliding window of the error ratio.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long it stays open the first time; doubles (jittered) on each failed probe.
    #[serde(with = "humantime_serde")]
    pub open_base: Duration,
    /// Longest open period.
    #[serde(with = "humantime_serde")]
    pub open_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            error_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_base: Duration::from_secs(1),
            open_max: Duration::from_secs(30),
        }
    }
}

/// A backend's active health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Probe at all.
    pub enabled: bool,
    /// Time between probes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Deadline of one probe.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { enabled: true, interval: Duration::from_secs(10), timeout: Duration::from_secs(5) }
    }
}

/// The weight of a backend when none is configured.
pub fn default_weight() -> f64 {
    1.0
}

/// A failure that may send a request on to a fallback model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackOn {
    /// The backends failed (unreachable, 5xx, malformed, none available).
    Error,
    /// A deadline passed.
    Timeout,
    /// The backends refused with 429.
    RateLimited,
    /// The prompt does not fit the model's context.
    ContextOverflow,
}

/// One `[[models]]` entry: admission and fallbacks of a public model name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPolicy {
    /// Public model name.
    pub name: String,
    /// Requests running at once; more wait in the queue. Absent: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Requests waiting at most; more get 429.
    #[serde(default = "default_max_queue")]
    pub max_queue: u32,
    /// Longest wait in the queue; then 503.
    #[serde(default = "default_max_queue_wait", with = "humantime_serde")]
    pub max_queue_wait: Duration,
    /// Models tried in order when this one fails before the first token.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Which failures go on to the fallbacks.
    #[serde(default = "all_fallback_conditions")]
    pub fallback_on: Vec<FallbackOn>,
    /// What the model's tokens cost, for spend in usage records and budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

/// `price = { input_per_mtok = 0.15, output_per_mtok = 0.6 }`: US dollars per million
/// prompt and completion tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Dollars per million prompt tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Dollars per million completion tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
}

impl Price {
    /// The cost of `prompt` and `completion` tokens, in dollars.
    pub fn spend(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input_per_mtok + completion as f64 * self.output_per_mtok) / 1_000_000.0
    }
}

fn default_max_queue() -> u32 {
    64
}

fn default_max_queue_wait() -> Duration {
    Duration::from_secs(30)
}

fn all_fallback_conditions() -> Vec<FallbackOn> {
    vec![FallbackOn::Error, FallbackOn::Timeout, FallbackOn::RateLimited, FallbackOn::ContextOverflow]
}

/// Appends every routing problem of these sections to `problems`.
pub fn validate(
    backends: &[super::BackendConfig],
    routing: &RoutingConfig,
    models: &[ModelPolicy],
    problems: &mut Vec<String>,
) {
    for b in backends {
        let at = format!("backends.{}", b.name);
        if !(b.weight.is_finite() && b.weight > 0.0) {
            problems.push(format!("{at}.weight must be a number above 0"));
        }
        let br = &b.breaker;
        if br.consecutive_failures == 0 || br.min_requests == 0 {
            problems.push(format!("{at}.breaker: consecutive_failures and min_requests must be at least 1"));
        }
        if !(br.error_ratio > 0.0 && br.error_ratio <= 1.0) {
            problems.push(format!("{at}.breaker.error_ratio must be in (0, 1]"));
        }
        if br.window.is_zero() || br.open_base.is_zero() || br.open_max < br.open_base {
            problems
                .push(format!("{at}.breaker: window and open_base must be above 0, open_max ≥ open_base"));
        }
        if b.health.interval.is_zero() || b.health.timeout.is_zero() {
            problems.push(format!("{at}.health: interval and timeout must be above 0"));
        }
    }
    let r = routing;
    if !(1..=10).contains(&r.retry.max_attempts) {
        problems.push("routing.retry.max_attempts must be between 1 and 10".into());
    }
    if !(0.0..=1.0).contains(&r.retry.budget_ratio) {
        problems.push("routing.retry.budget_ratio must be in [0, 1]".into());
    }
    if r.retry.budget_window.is_zero() || r.retry.backoff_max < r.retry.backoff_base {
        problems.push("routing.retry: budget_window must be above 0, backoff_max ≥ backoff_base".into());
    }
    if r.ewma_decay.is_zero() {
        problems.push("routing.ewma_decay must be above 0".into());
    }
    if r.hedge.min_delay.is_zero() || r.hedge.cold_delay.is_zero() {
        problems.push("routing.hedge: min_delay and cold_delay must be above 0".into());
    }
    validate_priority(&r.priority, problems);
    let mut names = HashSet::new();
    for m in models {
        let at = format!("models.{}", m.name);
        if m.name.is_empty() {
            problems.push("models: an entry has an empty name".into());
        }
        if !names.insert(m.name.as_str()) {
            problems.push(format!("models: '{}' is listed twice", m.name));
        }
        if let Some(p) = m.price
            && !(p.input_per_mtok.is_finite()
                && p.output_per_mtok.is_finite()
                && p.input_per_mtok >= 0.0
                && p.output_per_mtok >= 0.0)
        {
            problems.push(format!("{at}.price: prices must be numbers of at least 0"));
        }
        if m.max_concurrency == Some(0) {
            problems.push(format!("{at}.max_concurrency must be at least 1 (leave it out for no cap)"));
        }
        if m.max_queue_wait.is_zero() {
            problems.push(format!("{at}.max_queue_wait must be above 0"));
        }
        if m.fallbacks.iter().any(|f| f == &m.name) {
            problems.push(format!("{at}.fallbacks: a model cannot fall back to itself"));
        }
    }
}

fn validate_priority(p: &PriorityConfig, problems: &mut Vec<String>) {
    let mut classes = HashSet::new();
    if p.classes.is_empty() || p.classes.len() > 8 {
        problems.push("routing.priority.classes must list 1 to 8 classes".into());
    }
    for c in &p.classes {
        if !classes.insert(c.as_str()) {
            problems.push(format!("routing.priority.classes: '{c}' is listed twice"));
        }
    }
    if !classes.contains(p.default_class.as_str()) {
        problems.push(format!("routing.priority.default_class '{}' is not in classes", p.default_class));
    }
    for (hash, class) in &p.keys {
        if hash.len() != 64 || hex::decode(hash).is_err() {
            problems.push("routing.priority.keys: every key must be 64 hex digits (a key's SHA-256)".into());
        }
        if !classes.contains(class.as_str()) {
            problems.push(format!("routing.priority.keys: class '{class}' is not in classes"));
        }
    }
}
