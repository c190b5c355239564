//! The layer's error: a limits configuration the limiter cannot work with.

/// Failures building a limiter.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// `redis_url` does not parse.
    #[error("limits.redis_url is not a valid Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
    /// A setting is out of range.
    #[error("limits.{field} {reason}")]
    Invalid {
        /// The setting, e.g. `replicas`.
        field: &'static str,
        /// What is wrong, e.g. "must be at least 1".
        reason: &'static str,
    },
}
