//! Routing a request to a backend it can trust.
//!
//! Per model, a request first passes admission (a concurrency cap with a bounded
//! priority queue), then [`dispatch::open`] picks a backend by power of two choices
//! over outstanding work and a peak-EWMA of time to first token, skipping backends
//! whose circuit breaker is open, and sends it. Failures before the first token are
//! retried (within a budget) on other backends, hedged if configured, and finally
//! sent on to the model's fallbacks; nothing is retried once a token went out.
//!
//! This module holds the per-backend and gateway-wide routing state and its state
//! machines; the attempt loop that uses them is the `dispatch` module, the settings
//! are in `config::routing`.
//!
//! # Layout
//! - [`balance`]: p2c, peak-EWMA, TTFT percentiles, sticky hashing.
//! - [`breaker`]: the circuit breaker state machine.
//! - [`retry`]: failure classes, the retry budget, backoff.
//! - [`admission`]: per-model caps and priority queues.
//! - [`window`]: counts over a sliding window (for the breaker and the retry budget).

pub mod admission;
pub mod balance;
pub mod breaker;
pub mod retry;
pub mod window;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use self::{
    admission::Gate,
    balance::{PeakEwma, TtftWindow},
    breaker::{BreakerState, CircuitBreaker, Permit},
    retry::RetryBudget,
};
use crate::{
    config::{
        BackendConfig, BreakerConfig, HealthConfig, HedgeConfig, ModelPolicy, RoutingConfig, default_weight,
    },
    context::Principal,
    metrics::{Metrics, ModelNameLabels},
};

/// Gateway-wide routing state: configuration, retry budget, admission gates, key
/// classes.
pub struct Routing {
    /// The `[routing]` section.
    pub config: RoutingConfig,
    /// Retries left.
    pub budget: RetryBudget,
    policies: HashMap<String, ModelPolicy>,
    gates: HashMap<String, Arc<Gate>>,
    key_classes: HashMap<[u8; 32], usize>,
    default_class: usize,
}

impl Routing {
    /// Builds the routing state from validated `[routing]` and `[[models]]` sections.
    pub fn new(routing: &RoutingConfig, models: &[ModelPolicy], metrics: &Metrics) -> Self {
        let p = &routing.priority;
        let class_of = |name: &str| p.classes.iter().position(|c| c == name).unwrap_or(0);
        let key_classes = p
            .keys
            .iter()
            .filter_map(|(hash, class)| {
                let bytes = <[u8; 32]>::try_from(hex::decode(hash).ok()?.as_slice()).ok()?;
                Some((bytes, class_of(class)))
            })
            .collect();
        let mut gates = HashMap::new();
        for m in models {
            let labels = ModelNameLabels { model: m.name.clone() };
            let depth = metrics.routing.queue_depth.get_or_create(&labels).clone();
            let wait = metrics.routing.queue_wait.get_or_create(&labels).clone();
            if let Some(g) = Gate::new(m, p.classes.len(), depth, wait) {
                gates.insert(m.name.clone(), g);
            }
        }
        Routing {
            config: routing.clone(),
            budget: RetryBudget::new(&routing.retry, Instant::now()),
            policies: models.iter().map(|m| (m.name.clone(), m.clone())).collect(),
            gates,
            key_classes,
            default_class: class_of(&p.default_class),
        }
    }

    /// The `[[models]]` entry of `model`, if any.
    pub fn policy(&self, model: &str) -> Option<&ModelPolicy> {
        self.policies.get(model)
    }

    /// The admission gate of `model`, if it has a cap.
    pub fn gate(&self, model: &str) -> Option<&Arc<Gate>> {
        self.gates.get(model)
    }

    /// Every capped model's gate, by model name, sorted (for the admin page).
    pub fn gates(&self) -> Vec<(&str, &Arc<Gate>)> {
        let mut out: Vec<_> = self.gates.iter().map(|(m, g)| (m.as_str(), g)).collect();
        out.sort_unstable_by_key(|(m, _)| *m);
        out
    }

    /// The priority class of requests from `principal` (0 = highest).
    pub fn class_of(&self, principal: &Principal) -> usize {
        principal.key_hash().and_then(|h| self.key_classes.get(h)).copied().unwrap_or(self.default_class)
    }
}

/// A backend's routing state: weight, breaker, latency estimates, throttling.
pub struct BackendState {
    /// Relative capacity.
    pub weight: f64,
    /// Active probe settings.
    pub health: HealthConfig,
    live: Mutex<Live>,
}

struct Live {
    breaker: CircuitBreaker,
    ewma: PeakEwma,
    ttfts: TtftWindow,
    /// Models a 429 asked us to keep away from until then: hosted APIs limit each
    /// model on its own, so one model's limit leaves the backend's others alone.
    throttled: Vec<(Box<str>, Instant)>,
}

impl Live {
    fn throttled_until(&self, model: &str, now: Instant) -> Option<Instant> {
        self.throttled.iter().find(|(m, t)| &**m == model && *t > now).map(|(_, t)| *t)
    }

    fn available(&self, model: &str, now: Instant) -> bool {
        self.breaker.allows(now) && self.throttled_until(model, now).is_none()
    }
}

/// A backend's routing figures at one moment, for the admin API.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Breaker state.
    pub breaker: BreakerState,
    /// Peak-EWMA of time to first token.
    pub ewma_ttft: Duration,
    /// 95th percentile of recent times to first token.
    pub p95_ttft: Option<Duration>,
    /// Still refusing with 429 for this long.
    pub throttled_for: Option<Duration>,
}

impl BackendState {
    /// The state of a backend configured by `cfg`, with a closed breaker.
    pub fn new(cfg: &BackendConfig) -> Self {
        Self::from_parts(cfg.weight, cfg.breaker, cfg.health)
    }

    /// The state of a backend with no `[[backends]]` entry (embedded engines, agents):
    /// default weight, breaker and probe.
    pub fn with_defaults() -> Self {
        Self::from_parts(default_weight(), BreakerConfig::default(), HealthConfig::default())
    }

    fn from_parts(weight: f64, breaker: BreakerConfig, health: HealthConfig) -> Self {
        let now = Instant::now();
        BackendState {
            weight,
            health,
            live: Mutex::new(Live {
                breaker: CircuitBreaker::new(breaker, now),
                // Replaced by the configured decay when the gateway starts routing.
                ewma: PeakEwma::new(Duration::from_secs(10), now),
                ttfts: TtftWindow::default(),
                throttled: Vec::new(),
            }),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Figures for the admin API.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let l = self.live();
        Snapshot {
            breaker: l.breaker.state(now),
            ewma_ttft: l.ewma.estimate(now),
            p95_ttft: l.ttfts.p95(1),
            throttled_for: l.throttled.iter().map(|(_, t)| *t).filter(|t| *t > now).max().map(|t| t - now),
        }
    }

    /// The breaker state at `now`.
    pub fn breaker_state(&self, now: Instant) -> BreakerState {
        self.live().breaker.state(now)
    }

    /// True when a new request for `model` (the backend's name for it) may go here
    /// now: breaker willing, the model not throttled.
    pub fn available(&self, model: &str, now: Instant) -> bool {
        self.live().available(model, now)
    }

    /// The cost of one more request for `model` here (see [`balance::cost`]), or `None`
    /// when it is not [`available`](Self::available).
    pub fn candidate_cost(&self, model: &str, outstanding: u64, now: Instant) -> Option<f64> {
        let l = self.live();
        l.available(model, now).then(|| balance::cost(outstanding, l.ewma.estimate(now), self.weight))
    }

    /// When a 429 for `model` stops keeping its requests away, if one does.
    pub fn throttled_until(&self, model: &str, now: Instant) -> Option<Instant> {
        self.live().throttled_until(model, now)
    }

    /// The delay after which a request still waiting for its first token is hedged.
    pub fn hedge_delay(&self, cfg: &HedgeConfig) -> Duration {
        let min = usize::try_from(cfg.min_samples).unwrap_or(usize::MAX);
        self.live().ttfts.p95(min).unwrap_or(cfg.cold_delay).max(cfg.min_delay)
    }

    /// Asks the breaker for a permit.
    pub fn try_acquire(&self, now: Instant) -> Option<Permit> {
        self.live().breaker.try_acquire(now)
    }

    /// The first token came `ttft` after sending.
    pub fn on_success(&self, permit: Permit, ttft: Duration, decay: Duration, now: Instant) {
        let mut l = self.live();
        l.breaker.on_success(permit, now);
        l.ewma.set_decay(decay);
        l.ewma.observe(ttft, now);
        l.ttfts.push(ttft);
    }

    /// The backend answered, but not with a first token (an embeddings answer): the
    /// breaker hears of it, the latency estimates do not.
    pub fn on_answer(&self, permit: Permit, now: Instant) {
        self.live().breaker.on_success(permit, now);
    }

    /// The attempt for `model` failed with `failure` after `elapsed`.
    pub fn on_failure(
        &self,
        permit: Permit,
        model: &str,
        failure: retry::Failure,
        elapsed: Duration,
        now: Instant,
    ) {
        let mut l = self.live();
        if failure.trips_breaker() {
            l.breaker.on_failure(permit, now, rand::random::<f64>());
            l.ewma.observe(elapsed.max(balance::FAILURE_PENALTY), now);
        } else {
            // The backend answered: it is alive, whatever it thought of the request.
            match failure {
                retry::Failure::RateLimited(after) => {
                    l.breaker.on_abandon(permit);
                    let until = now + after.unwrap_or(Duration::from_secs(1));
                    l.throttled.retain(|(_, t)| *t > now);
                    match l.throttled.iter_mut().find(|(m, _)| &**m == model) {
                        Some((_, t)) => *t = (*t).max(until),
                        None => l.throttled.push((model.into(), until)),
                    }
                }
                _ => l.breaker.on_success(permit, now),
            }
        }
    }

    /// A failure after the first token (passive detection from a broken stream). An
    /// answer that merely outlived the total deadline says nothing about the backend.
    pub fn on_stream_failure(&self, error: &crate::backend::BackendError, now: Instant) {
        if matches!(error, crate::backend::BackendError::Timeout(crate::backend::Stage::Total)) {
            return;
        }
        let mut l = self.live();
        if l.breaker.state(now) == BreakerState::Closed {
            l.breaker.on_failure(Permit::Normal, now, rand::random::<f64>());
        }
    }

    /// The attempt ended without an outcome (hedge loser, client gone).
    pub fn on_abandon(&self, permit: Permit) {
        self.live().breaker.on_abandon(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_models_rate_limit_leaves_the_backends_other_models_alone() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        let permit = state.try_acquire(now).unwrap();
        let limited = retry::Failure::RateLimited(Some(Duration::from_secs(5)));
        state.on_failure(permit, "gpt-a", limited, Duration::from_millis(10), now);
        assert!(!state.available("gpt-a", now));
        assert_eq!(state.throttled_until("gpt-a", now), Some(now + Duration::from_secs(5)));
        assert!(state.available("gpt-b", now), "another model of the same backend");
        assert!(state.candidate_cost("gpt-b", 0, now).is_some());
        assert_eq!(state.snapshot(now).throttled_for, Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(state.available("gpt-a", Instant::now()), "its Retry-After has passed");
    }
}
