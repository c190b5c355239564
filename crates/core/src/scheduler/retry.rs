//! What a failure before the first token means for the request (retry here, retry
//! elsewhere, fall back, or give up), the retry budget that keeps retries from
//! amplifying an outage, and the backoff between attempts.

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

use super::window::SlidingWindow;
use crate::backend::{BackendError, Stage};
use crate::config::{FallbackOn, RetryConfig};

/// A failure before the first token, by what can be done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection failed or broke before any token (also a dead agent): any
    /// backend may be retried, this one too.
    Unreachable,
    /// The backend is at capacity (`Overloaded`, 503): any backend, after a backoff.
    Busy,
    /// 429: another backend now, this one only once its `Retry-After` has passed.
    RateLimited(Option<Duration>),
    /// 5xx, a malformed answer, the upstream refusing our credentials: another backend.
    Error,
    /// A deadline passed: another backend (this one just used up a whole deadline).
    Timeout,
    /// The prompt does not fit: no retry, but a fallback with a longer context may do.
    ContextOverflow,
    /// The request itself is wrong (400, 404, 413, 422, ...): nobody will do better.
    Client,
}

impl Failure {
    /// Classifies a backend error.
    pub fn of(e: &BackendError) -> Failure {
        match e {
            BackendError::Connect(_) | BackendError::Interrupted(_) => Failure::Unreachable,
            BackendError::Overloaded => Failure::Busy,
            BackendError::Timeout(_) => Failure::Timeout,
            BackendError::Protocol(_) => Failure::Error,
            BackendError::ContextOverflow { .. } => Failure::ContextOverflow,
            BackendError::Unsupported(_) | BackendError::UnsupportedField { .. } => Failure::Client,
            BackendError::Status { status, retry_after, .. } => match *status {
                429 => Failure::RateLimited(*retry_after),
                408 => Failure::Timeout,
                503 => Failure::Busy,
                // Our credentials at that upstream: another backend may hold good ones.
                401 | 403 => Failure::Error,
                400..=499 => Failure::Client,
                _ => Failure::Error,
            },
        }
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Busy => "busy",
            Failure::RateLimited(_) => "rate_limited",
            Failure::Error => "error",
            Failure::Timeout => "timeout",
            Failure::ContextOverflow => "context_overflow",
            Failure::Client => "client",
        }
    }

    /// True when another attempt may succeed.
    pub fn retryable(self) -> bool {
        !matches!(self, Failure::ContextOverflow | Failure::Client)
    }

    /// True when the same backend may be tried again (after a backoff), not only others.
    pub fn same_backend_ok(self, max_retry_after: Duration) -> bool {
        match self {
            Failure::Unreachable | Failure::Busy => true,
            Failure::RateLimited(after) => after.unwrap_or(Duration::ZERO) <= max_retry_after,
            _ => false,
        }
    }

    /// True when this says the backend is unwell (feeds its circuit breaker).
    pub fn trips_breaker(self) -> bool {
        matches!(self, Failure::Unreachable | Failure::Busy | Failure::Error | Failure::Timeout)
    }

    /// The fallback condition this failure meets, if any.
    pub fn fallback_condition(self) -> Option<FallbackOn> {
        match self {
            Failure::Unreachable | Failure::Busy | Failure::Error => Some(FallbackOn::Error),
            Failure::Timeout => Some(FallbackOn::Timeout),
            Failure::RateLimited(_) => Some(FallbackOn::RateLimited),
            Failure::ContextOverflow => Some(FallbackOn::ContextOverflow),
            Failure::Client => None,
        }
    }
}

/// True when `e` says the backend as a whole is gone (no connection, or it broke, or
/// connecting timed out) rather than that one of its models answered badly. Feeds the
/// backend's own breaker; every other failure feeds the model's.
pub fn backend_wide(e: &BackendError) -> bool {
    matches!(
        e,
        BackendError::Connect(_) | BackendError::Interrupted(_) | BackendError::Timeout(Stage::Connect)
    )
}

/// Jittered exponential backoff before attempt number `retry` (1 = the first retry):
/// between half and all of `base · 2^(retry-1)`, capped at `max`; `jitter` in `[0, 1)`.
pub fn backoff(cfg: &RetryConfig, retry: u32, jitter: f64) -> Duration {
    let full = cfg.backoff_base.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1).min(16)));
    full.min(cfg.backoff_max).mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

/// Retries allowed: `ratio` of the requests in the sliding window, plus
/// `min_retries` per window. Shared by every request of the gateway.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_retries: u32,
    /// [requests, retries] over the budget window.
    inner: Mutex<SlidingWindow<2>>,
}

impl RetryBudget {
    /// A budget as configured.
    pub fn new(cfg: &RetryConfig, now: Instant) -> Self {
        RetryBudget {
            ratio: cfg.budget_ratio,
            min_retries: cfg.budget_min_retries,
            inner: Mutex::new(SlidingWindow::new(cfg.budget_window, now)),
        }
    }

    /// Counts one new request.
    pub fn deposit(&self, now: Instant) {
        self.window().add(now, [1, 0]);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let mut window = self.window();
        let [requests, retries] = window.totals(now);
        let allowed = f64::from(self.min_retries) + self.ratio * f64::from(requests);
        if f64::from(retries) >= allowed {
            return false;
        }
        window.add(now, [0, 1]);
        true
    }

    /// The window, even if a panic poisoned its lock (its counts stay consistent).
    fn window(&self) -> MutexGuard<'_, SlidingWindow<2>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig { budget_min_retries: 2, ..RetryConfig::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_a_fifth_of_requests_plus_the_floor() {
        let b = RetryBudget::new(&cfg(), Instant::now());
        for _ in 0..100 {
            b.deposit(Instant::now());
        }
        let granted = (0..1000).filter(|_| b.try_withdraw(Instant::now())).count();
        assert_eq!(granted, 22, "20% of 100 plus 2");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_as_the_window_slides() {
        let b = RetryBudget::new(&cfg(), Instant::now());
        assert!(b.try_withdraw(Instant::now()));
        assert!(b.try_withdraw(Instant::now()));
        assert!(!b.try_withdraw(Instant::now()), "floor spent, no requests yet");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!b.try_withdraw(Instant::now()), "still inside the window");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_withdraw(Instant::now()), "old retries slid out");
    }

    #[test]
    fn classification_follows_the_contract() {
        let status = |s: u16| BackendError::status(s, String::new());
        assert_eq!(Failure::of(&BackendError::Connect("x".into())), Failure::Unreachable);
        assert_eq!(Failure::of(&BackendError::Interrupted("x".into())), Failure::Unreachable);
        assert_eq!(Failure::of(&status(500)), Failure::Error);
        assert_eq!(Failure::of(&status(429)), Failure::RateLimited(None));
        for s in [400, 404, 413, 422] {
            assert!(!Failure::of(&status(s)).retryable(), "{s}");
        }
        let overflow = Failure::of(&BackendError::ContextOverflow { prompt_tokens: 9, context: 8 });
        assert!(!overflow.retryable());
        assert_eq!(overflow.fallback_condition(), Some(FallbackOn::ContextOverflow));
        let long = Failure::RateLimited(Some(Duration::from_secs(60)));
        assert!(long.retryable() && !long.same_backend_ok(Duration::from_secs(2)));
        assert!(!Failure::Error.same_backend_ok(Duration::from_secs(2)), "a 500 is retried elsewhere only");
        assert!(!Failure::RateLimited(None).trips_breaker());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let c = RetryConfig::default();
        assert_eq!(backoff(&c, 1, 0.0), Duration::from_millis(25));
        assert_eq!(backoff(&c, 3, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(&c, 3, 0.5), Duration::from_millis(75));
        assert_eq!(backoff(&c, 30, 0.0), Duration::from_secs(1));
    }
}
