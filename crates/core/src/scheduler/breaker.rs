//! The circuit breaker of one backend: a small state machine fed with the outcomes of
//! real requests (passive health detection).
//!
//! - **Closed**: requests flow. It opens after `consecutive_failures` failures in a
//!   row, or when failures reach `error_ratio` of at least `min_requests` requests in
//!   the sliding `window`.
//! - **Open**: no request is sent until the open period ends. The period starts at
//!   `open_base` and doubles after each failed probe up to `open_max`, each time
//!   jittered down by up to half so that breakers opened together do not probe together.
//! - **Half-open**: the first request after the open period is the probe; others stay
//!   away until it ends. Success closes the breaker, failure opens it again. A probe
//!   that ends without an outcome (its client left) lets the next request probe.
//!
//! Nothing here reads the clock or a random source: callers pass `now` and the jitter,
//! so the tests drive time by hand.

use tokio::time::Instant;

use super::window::SlidingWindow;
use crate::config::BreakerConfig;

/// What the breaker lets through, as shown in metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// One probe request is allowed.
    HalfOpen,
    /// Nothing is sent.
    Open,
}

impl BreakerState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// Value of the `sluice_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// Permission to send one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// An ordinary request through a closed breaker.
    Normal,
    /// The half-open probe: its outcome decides the breaker's state.
    Probe,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One backend's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: State,
    consecutive: u32,
    /// [requests, failures] over the configured window.
    window: SlidingWindow<2>,
    /// Open periods since the breaker last closed, for the backoff.
    openings: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        CircuitBreaker {
            cfg,
            state: State::Closed,
            consecutive: 0,
            window: SlidingWindow::new(cfg.window, now),
            openings: 0,
        }
    }

    /// The state as seen at `now` (an open breaker whose period ended is half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// True when [`CircuitBreaker::try_acquire`] would grant a permit at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probing } => !probing,
        }
    }

    /// When an open breaker lets a probe through.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// A permit to send one request, or `None` while open or while a probe runs.
    pub fn try_acquire(&mut self, now: Instant) -> Option<Permit> {
        match self.state {
            State::Closed => Some(Permit::Normal),
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: true };
                Some(Permit::Probe)
            }
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Some(Permit::Probe)
            }
            State::Open { .. } | State::HalfOpen { probing: true } => None,
        }
    }

    /// The request sent under `permit` worked.
    pub fn on_success(&mut self, permit: Permit, now: Instant) {
        match (permit, self.state) {
            (Permit::Probe, State::HalfOpen { .. }) => {
                self.state = State::Closed;
                self.consecutive = 0;
                self.openings = 0;
                self.window.clear(now);
            }
            (Permit::Normal, State::Closed) => {
                self.consecutive = 0;
                self.window.add(now, [1, 0]);
            }
            // A request that started before the breaker opened says nothing new.
            _ => {}
        }
    }

    /// The request sent under `permit` failed; `jitter` in `[0, 1)` shortens the next
    /// open period by up to half.
    pub fn on_failure(&mut self, permit: Permit, now: Instant, jitter: f64) {
        match (permit, self.state) {
            (Permit::Probe, State::HalfOpen { .. }) => self.open(now, jitter),
            (Permit::Normal, State::Closed) => {
                self.consecutive += 1;
                self.window.add(now, [1, 1]);
                let [total, failed] = self.window.totals(now);
                let ratio_tripped = total >= self.cfg.min_requests
                    && f64::from(failed) >= self.cfg.error_ratio * f64::from(total);
                if self.consecutive >= self.cfg.consecutive_failures || ratio_tripped {
                    self.open(now, jitter);
                }
            }
            _ => {}
        }
    }

    /// The request sent under `permit` ended without an outcome (cancelled).
    pub fn on_abandon(&mut self, permit: Permit) {
        if let (Permit::Probe, State::HalfOpen { .. }) = (permit, self.state) {
            self.state = State::HalfOpen { probing: false };
        }
    }

    fn open(&mut self, now: Instant, jitter: f64) {
        let doubling = 2u32.saturating_pow(self.openings.min(16));
        let period = self.cfg.open_base.saturating_mul(doubling).min(self.cfg.open_max);
        let period = period.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0));
        self.openings = self.openings.saturating_add(1);
        self.consecutive = 0;
        self.state = State::Open { until: now + period };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_base: Duration::from_secs(1),
            open_max: Duration::from_secs(4),
        }
    }

    fn fail(b: &mut CircuitBreaker, n: u32) {
        for _ in 0..n {
            let p = b.try_acquire(Instant::now()).expect("closed");
            b.on_failure(p, Instant::now(), 0.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let mut b = CircuitBreaker::new(cfg(), Instant::now());
        fail(&mut b, 2);
        let ok = b.try_acquire(Instant::now()).unwrap();
        b.on_success(ok, Instant::now());
        fail(&mut b, 2);
        assert_eq!(b.state(Instant::now()), BreakerState::Closed, "a success resets the streak");
        fail(&mut b, 1);
        assert_eq!(b.state(Instant::now()), BreakerState::Open);
        assert_eq!(b.try_acquire(Instant::now()), None);

        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(b.try_acquire(Instant::now()), None, "still open just before the period ends");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(Instant::now()), BreakerState::HalfOpen);
        let probe = b.try_acquire(Instant::now());
        assert_eq!(probe, Some(Permit::Probe));
        assert_eq!(b.try_acquire(Instant::now()), None, "one probe at a time");
        b.on_success(Permit::Probe, Instant::now());
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
        assert_eq!(b.try_acquire(Instant::now()), Some(Permit::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_double_the_open_period_up_to_the_cap() {
        let mut b = CircuitBreaker::new(cfg(), Instant::now());
        fail(&mut b, 3);
        for expected in [2, 4, 4] {
            tokio::time::advance(b.reopens_at().unwrap() - Instant::now()).await;
            let p = b.try_acquire(Instant::now()).expect("probe");
            b.on_failure(p, Instant::now(), 0.0);
            assert_eq!(b.reopens_at().unwrap() - Instant::now(), Duration::from_secs(expected));
        }
        // Jitter only ever shortens the period, by at most half.
        tokio::time::advance(Duration::from_secs(4)).await;
        let p = b.try_acquire(Instant::now()).unwrap();
        b.on_failure(p, Instant::now(), 0.999);
        let period = b.reopens_at().unwrap() - Instant::now();
        assert!(period > Duration::from_secs(2) && period < Duration::from_millis(2010), "{period:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_request_probe() {
        let mut b = CircuitBreaker::new(cfg(), Instant::now());
        fail(&mut b, 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        let p = b.try_acquire(Instant::now()).unwrap();
        b.on_abandon(p);
        assert_eq!(b.try_acquire(Instant::now()), Some(Permit::Probe));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_error_ratio_within_the_window_only() {
        let mut c = cfg();
        c.consecutive_failures = 100;
        let mut b = CircuitBreaker::new(c, Instant::now());
        // Alternate: 50% failures, never three in a row.
        for i in 0..9 {
            let p = b.try_acquire(Instant::now()).unwrap();
            if i % 2 == 0 { b.on_failure(p, Instant::now(), 0.0) } else { b.on_success(p, Instant::now()) }
        }
        assert_eq!(b.state(Instant::now()), BreakerState::Closed, "9 requests: below min_requests");
        // The window slides: old outcomes no longer count.
        tokio::time::advance(Duration::from_secs(11)).await;
        let p = b.try_acquire(Instant::now()).unwrap();
        b.on_failure(p, Instant::now(), 0.0);
        assert_eq!(b.state(Instant::now()), BreakerState::Closed, "old requests slid out");
        for i in 0..10 {
            let p = b.try_acquire(Instant::now()).unwrap();
            if i % 2 == 0 { b.on_success(p, Instant::now()) } else { b.on_failure(p, Instant::now(), 0.0) }
        }
        assert_eq!(b.state(Instant::now()), BreakerState::Open, "6 of 11 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_of_requests_begun_before_opening_are_ignored() {
        let mut b = CircuitBreaker::new(cfg(), Instant::now());
        let early = b.try_acquire(Instant::now()).unwrap();
        fail(&mut b, 3);
        b.on_success(early, Instant::now());
        assert_eq!(b.state(Instant::now()), BreakerState::Open);
    }
}
