//! What limits are configured: a subject's [`LimitSpec`], the gateway-wide
//! [`LimitsConfig`], and the [`Subject`] a spec applies to.

use std::{
    cmp::Ordering,
    fmt,
    hash::{BuildHasher, Hash, Hasher, RandomState},
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// The limits of one subject (an API key, a user, or an anonymous client address).
/// Every field is optional: an unset field does not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Requests per minute (GCRA; a full minute's worth may come at once).
    pub rpm: Option<u64>,
    /// Tokens per minute (GCRA; charged by the estimate, corrected at completion).
    pub tpm: Option<u64>,
    /// Concurrent generations. Unset: [`LimitsConfig::default_key_streams`].
    pub max_streams: Option<u32>,
    /// Tokens per UTC day.
    pub daily_tokens: Option<u64>,
    /// Tokens per UTC calendar month.
    pub monthly_tokens: Option<u64>,
}

impl LimitSpec {
    /// This spec as one of `replicas` replicas applies it alone (Redis unreachable):
    /// every amount divided by `replicas`, at least 1. Quotas are not scaled here; the
    /// limiter splits what remains of them (see `local`).
    pub fn scaled(&self, replicas: u32) -> LimitSpec {
        let share = |v: u64| (v / u64::from(replicas.max(1))).max(1);
        LimitSpec {
            rpm: self.rpm.map(share),
            tpm: self.tpm.map(share),
            max_streams: self.max_streams,
            daily_tokens: self.daily_tokens,
            monthly_tokens: self.monthly_tokens,
        }
    }
}

/// The `[limits]` section of the gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Redis shared by all replicas for request, token and quota counters; unset: each
    /// replica counts alone. Concurrent streams are always counted per replica.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key the limiter writes.
    pub redis_prefix: String,
    /// Deadline of each Redis call, in milliseconds.
    pub redis_timeout_ms: u64,
    /// How many gateway replicas share the limits; while Redis is unreachable each
    /// replica enforces `1/replicas` of every rate (at least 1).
    pub replicas: u32,
    /// Concurrent generations on this gateway, all subjects together.
    pub max_concurrent_generations: u32,
    /// Concurrent generations of a subject whose spec sets no `max_streams`.
    pub default_key_streams: u32,
    /// The limits of each anonymous client address.
    pub anonymous: LimitSpec,
    /// The limits of each user, all of the user's keys and sessions together (a key's
    /// own limits apply on top).
    pub user: LimitSpec,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            redis_url: None,
            redis_prefix: "sluice:limits:".to_owned(),
            redis_timeout_ms: 50,
            replicas: 1,
            max_concurrent_generations: 16_384,
            default_key_streams: 256,
            anonymous: LimitSpec::default(),
            user: LimitSpec::default(),
        }
    }
}

impl LimitsConfig {
    /// Checks the settings a limiter cannot work with (the Redis URL is checked by
    /// `Limiter::new`).
    pub fn validate(&self) -> Result<(), crate::error::LimitsError> {
        let at_least_one = |field, v: u64| {
            if v == 0 {
                Err(crate::error::LimitsError::Invalid { field, reason: "must be at least 1" })
            } else {
                Ok(())
            }
        };
        at_least_one("replicas", u64::from(self.replicas))?;
        at_least_one("max_concurrent_generations", u64::from(self.max_concurrent_generations))?;
        at_least_one("redis_timeout_ms", self.redis_timeout_ms)
    }

    /// The deadline of each Redis call.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }
}

/// Who a limit applies to: an opaque id such as `key:ID`, `user:ID` or `ip:1.2.3.4`.
/// Cheap to clone; hashed once, when made (build it once per key and keep it).
#[derive(Clone)]
pub struct Subject {
    id: Arc<str>,
    /// SipHash of `id` under a per-process random key (the limiter's maps use it as is).
    hash: u64,
}

impl PartialEq for Subject {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.id, &other.id) || self.id == other.id)
    }
}

impl Eq for Subject {}

impl Hash for Subject {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Subject {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Subject {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id.cmp(&other.id)
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Subject").field(&self.id).finish()
    }
}

impl Subject {
    /// A subject with this exact id.
    pub fn new(id: impl Into<Arc<str>>) -> Subject {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        let id: Arc<str> = id.into();
        let hash = KEY.get_or_init(RandomState::new).hash_one(&*id);
        Subject { id, hash }
    }

    /// The hash of the id, fixed for the life of the process.
    pub(crate) fn hash_value(&self) -> u64 {
        self.hash
    }

    /// The subject of an API key.
    pub fn key(id: &str) -> Subject {
        Subject::new(format!("key:{id}"))
    }

    /// The subject of a user.
    pub fn user(id: &str) -> Subject {
        Subject::new(format!("user:{id}"))
    }

    /// The subject of an anonymous client address.
    pub fn ip(addr: impl fmt::Display) -> Subject {
        Subject::new(format!("ip:{addr}"))
    }

    /// The id, e.g. `key:abc`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// What the subject is, for messages: "key", "user", "address" or "subject".
    pub fn kind(&self) -> &'static str {
        match self.id.split_once(':').map(|(k, _)| k) {
            Some("key") => "key",
            Some("user") => "user",
            Some("ip") => "address",
            _ => "subject",
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let cfg: LimitsConfig =
            serde_json::from_str(r#"{"replicas": 3, "anonymous": {"rpm": 10}}"#).expect("parses");
        assert_eq!(cfg.replicas, 3);
        assert_eq!(cfg.max_concurrent_generations, 16_384);
        assert_eq!(cfg.default_key_streams, 256);
        assert_eq!(cfg.anonymous.rpm, Some(10));
        let err = serde_json::from_str::<LimitsConfig>(r#"{"rmp": 1}"#).expect_err("unknown key");
        assert!(err.to_string().contains("rmp"), "{err}");
        assert!(cfg.validate().is_ok());
        let zero = LimitsConfig { replicas: 0, ..LimitsConfig::default() };
        let err = zero.validate().expect_err("0 replicas");
        assert_eq!(err.to_string(), "limits.replicas must be at least 1");
    }

    #[test]
    fn scaled_share_is_at_least_one() {
        let spec = LimitSpec { rpm: Some(10), tpm: Some(1000), ..LimitSpec::default() };
        let s = spec.scaled(4);
        assert_eq!((s.rpm, s.tpm), (Some(2), Some(250)));
        assert_eq!(spec.scaled(100).rpm, Some(1));
        assert_eq!(spec.scaled(0).rpm, Some(10));
    }

    #[test]
    fn subject_kinds() {
        assert_eq!(Subject::key("a").as_str(), "key:a");
        assert_eq!(Subject::ip("1.2.3.4").kind(), "address");
        assert_eq!(Subject::new("x").kind(), "subject");
        assert_eq!(Subject::key("a"), Subject::new("key:a"));
        assert_ne!(Subject::key("a"), Subject::user("a"));
    }
}
