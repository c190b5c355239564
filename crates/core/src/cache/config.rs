//! The `[cache]` section of the configuration.
//!
//! ```toml
//! [cache]
//! enabled = true                 # default
//! ttl = "10m"                    # how long an answer is replayed
//! max_bytes = 67108864           # in-memory store size (answers' text and overhead)
//! redis_url = "redis://127.0.0.1:6379"   # optional: share the cache between replicas
//! key_prefix = "sluice:cache:"   # Redis keys are this prefix + the request's hash
//! redis_timeout = "100ms"        # every Redis call; slower counts as a miss
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Response cache and single-flight settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache and coalesce eligible requests (off: every request goes upstream).
    pub enabled: bool,
    /// How long a stored answer is replayed.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Size bound of the in-memory store, in bytes of stored answers.
    pub max_bytes: u64,
    /// Redis URL (`redis://`, `rediss://`, `unix://`): store answers there instead of in
    /// memory, so every replica shares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key Sluice writes.
    pub key_prefix: String,
    /// Deadline of every Redis call (connect included); past it the lookup is a miss.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Who shares answers: each tenant its own (`user`, the default), or everyone
    /// (`global`: one tenant's answer is replayed to another, on purpose).
    pub scope: CacheScope,
}

/// `[cache] scope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Answers and flights are per tenant (user, service key, anonymous address).
    #[default]
    User,
    /// Answers and flights are shared by every tenant.
    Global,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl: Duration::from_secs(600),
            max_bytes: 64 << 20,
            redis_url: None,
            key_prefix: "sluice:cache:".into(),
            redis_timeout: Duration::from_millis(100),
            scope: CacheScope::User,
        }
    }
}

impl CacheConfig {
    /// Everything wrong with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ttl.is_zero() {
            problems.push("cache.ttl must be more than 0".to_owned());
        }
        if self.max_bytes < 4096 {
            problems.push("cache.max_bytes must be at least 4096".to_owned());
        }
        if self.redis_timeout.is_zero() {
            problems.push("cache.redis_timeout must be more than 0".to_owned());
        }
        if self.key_prefix.is_empty() {
            problems.push("cache.key_prefix must not be empty".to_owned());
        }
        if let Some(url) = &self.redis_url
            && let Err(e) = redis::Client::open(url.as_str())
        {
            problems.push(format!("cache.redis_url: '{url}' is not a Redis URL ({e})"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_are_named() {
        assert!(CacheConfig::default().problems().is_empty());
        let bad = CacheConfig {
            ttl: Duration::ZERO,
            max_bytes: 1,
            redis_url: Some("http://x".into()),
            key_prefix: String::new(),
            redis_timeout: Duration::ZERO,
            ..CacheConfig::default()
        };
        let p = bad.problems().join("\n");
        for key in
            ["cache.ttl", "cache.max_bytes", "cache.redis_url", "cache.key_prefix", "cache.redis_timeout"]
        {
            assert!(p.contains(key), "{key} missing from {p}");
        }
    }
}
