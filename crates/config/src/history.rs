//! `[usage]`, `[retention]` and `[responses]`: what Sluice keeps about requests, chats
//! and Responses API responses, and for how long.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_store::UsageWriterConfig;

/// `[usage]`: one record per request, written in batches by a background writer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Record usage (default on).
    pub enabled: bool,
    /// Write as soon as this many records wait.
    pub max_batch: usize,
    /// Write at most this long after the first unwritten record arrived.
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
    /// Records that may wait; beyond this new records are dropped (and counted).
    pub queue: usize,
    /// Also count requests and tokens per user and key in `/metrics` (off by default:
    /// one series per key).
    pub per_key_metrics: bool,
}

impl Default for UsageConfig {
    fn default() -> Self {
        let w = UsageWriterConfig::default();
        UsageConfig {
            enabled: true,
            max_batch: w.max_batch,
            flush_every: w.flush_every,
            queue: w.queue,
            per_key_metrics: false,
        }
    }
}

impl UsageConfig {
    /// The writer's settings.
    pub fn writer(&self) -> UsageWriterConfig {
        UsageWriterConfig { max_batch: self.max_batch, flush_every: self.flush_every, queue: self.queue }
    }

    /// Adds what is wrong with these settings to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.max_batch == 0 {
            problems.push("usage.max_batch must be at least 1".to_owned());
        }
        if self.flush_every.is_zero() {
            problems.push("usage.flush_every must be more than 0".to_owned());
        }
        if self.queue < self.max_batch {
            problems.push(format!("usage.queue ({}) must be at least usage.max_batch", self.queue));
        }
    }
}

/// `[retention]`: how many days stored data is kept; 0 keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Conversations not updated for this many days are deleted (0: keep).
    pub conversations_days: u32,
    /// Usage records older than this many days are deleted (0: keep).
    pub usage_days: u32,
}

/// `[responses]`: Responses API responses stored for `previous_response_id` (those
/// asked with `store`, OpenAI's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesConfig {
    /// How long a stored response can be continued from or read (30 days, as OpenAI).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Bytes one stored response may take, its whole context included; a longer one is
    /// answered but not stored (its `store` says false).
    pub max_stored_bytes: usize,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig { ttl: Duration::from_secs(30 * 86_400), max_stored_bytes: 1 << 20 }
    }
}

impl ResponsesConfig {
    /// Adds what is wrong with these settings to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.ttl < Duration::from_secs(1) {
            problems.push("responses.ttl must be at least 1s".to_owned());
        }
        if self.max_stored_bytes < 1024 {
            problems.push("responses.max_stored_bytes must be at least 1024".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Overrides};

    #[test]
    fn sections_parse_and_default() {
        let cfg = Config::from_toml("", &Overrides::default()).unwrap();
        assert!(cfg.usage.enabled);
        assert_eq!(cfg.usage.writer().max_batch, 512);
        assert_eq!(cfg.retention.conversations_days, 0);
        let cfg = Config::from_toml(
            "[usage]\nenabled = false\nmax_batch = 64\nflush_every = \"50ms\"\n[retention]\nconversations_days = 30\nusage_days = 400\n",
            &Overrides::default(),
        )
        .unwrap();
        assert!(!cfg.usage.enabled);
        assert_eq!(cfg.usage.writer().flush_every, std::time::Duration::from_millis(50));
        assert_eq!((cfg.retention.conversations_days, cfg.retention.usage_days), (30, 400));
        let cfg = Config::from_toml("[responses]\nttl = \"2h\"\n", &Overrides::default()).unwrap();
        assert_eq!(cfg.responses.ttl, std::time::Duration::from_secs(7200));
        assert_eq!(cfg.responses.max_stored_bytes, 1 << 20);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml("[usage]\nmax_batch = 0\nflush_every = \"0s\"\n", &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("usage.max_batch") && err.contains("usage.flush_every"), "{err}");
        let err =
            Config::from_toml("[retention]\nusage_day = 3\n", &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("usage_day"), "{err}");
        let err =
            Config::from_toml("[responses]\nttl = \"0s\"\nmax_stored_bytes = 10\n", &Overrides::default())
                .unwrap_err()
                .to_string();
        assert!(err.contains("responses.ttl") && err.contains("responses.max_stored_bytes"), "{err}");
    }
}
