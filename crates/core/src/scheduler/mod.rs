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

/// A backend's routing state: weight, breakers, latency estimates, throttling.
///
/// Two kinds of breaker guard a backend. Its own breaker hears of failures that say
/// the backend as a whole is gone (a connection refused or broken, a connect
/// timeout); a breaker per model hears of failures for which the backend answered,
/// but for one model (a 5xx, a 503, a malformed answer, a first-token deadline).
/// Hosted APIs fail and limit each model on its own, so one model's outage leaves
/// the backend's other models in service, as a 429 already does.
pub struct BackendState {
    /// Relative capacity.
    pub weight: f64,
    /// Active probe settings.
    pub health: HealthConfig,
    breaker_cfg: BreakerConfig,
    live: Mutex<Live>,
}

/// Model breakers kept per backend at most (closed ones are forgotten first). Models
/// come from configuration or discovery, so this is a guard, not a working limit.
const MAX_MODEL_BREAKERS: usize = 256;

struct Live {
    breaker: CircuitBreaker,
    /// Breakers of models that failed at least once (the others are closed).
    models: Vec<(Box<str>, CircuitBreaker)>,
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

    fn model(&mut self, model: &str) -> Option<&mut CircuitBreaker> {
        self.models.iter_mut().find(|(m, _)| &**m == model).map(|(_, b)| b)
    }

    /// `model`'s breaker, made (closed) if it has none yet.
    fn model_or_new(&mut self, model: &str, cfg: BreakerConfig, now: Instant) -> &mut CircuitBreaker {
        let at = match self.models.iter().position(|(m, _)| &**m == model) {
            Some(at) => at,
            None => {
                if self.models.len() >= MAX_MODEL_BREAKERS {
                    let closed = self.models.iter().position(|(_, b)| b.state(now) == BreakerState::Closed);
                    self.models.remove(closed.unwrap_or(0));
                }
                self.models.push((model.into(), CircuitBreaker::new(cfg, now)));
                self.models.len() - 1
            }
        };
        &mut self.models[at].1
    }

    fn model_allows(&self, model: &str, now: Instant) -> bool {
        self.models.iter().find(|(m, _)| &**m == model).is_none_or(|(_, b)| b.allows(now))
    }

    fn available(&self, model: &str, now: Instant) -> bool {
        self.breaker.allows(now)
            && self.model_allows(model, now)
            && self.throttled_until(model, now).is_none()
    }
}

/// Permission to send one request for one model: the backend breaker's permit and,
/// when the model has a breaker of its own, that one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    backend: Permit,
    model: Option<Permit>,
}

/// A backend's routing figures at one moment, for the admin API.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The backend's own breaker.
    pub breaker: BreakerState,
    /// Models whose own breaker is not closed, by the backend's name for them.
    pub model_breakers: Vec<(String, BreakerState)>,
    /// Peak-EWMA of time to first token.
    pub ewma_ttft: Duration,
    /// 95th percentile of recent times to first token.
    pub p95_ttft: Option<Duration>,
    /// Still refusing with 429 for this long.
    pub throttled_for: Option<Duration>,
}

impl BackendState {
    /// The state of a backend configured by `cfg`, with closed breakers.
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
            breaker_cfg: breaker,
            live: Mutex::new(Live {
                breaker: CircuitBreaker::new(breaker, now),
                models: Vec::new(),
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
        let mut model_breakers: Vec<(String, BreakerState)> = l
            .models
            .iter()
            .map(|(m, b)| (m.to_string(), b.state(now)))
            .filter(|(_, s)| *s != BreakerState::Closed)
            .collect();
        model_breakers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            breaker: l.breaker.state(now),
            model_breakers,
            ewma_ttft: l.ewma.estimate(now),
            p95_ttft: l.ttfts.p95(1),
            throttled_for: l.throttled.iter().map(|(_, t)| *t).filter(|t| *t > now).max().map(|t| t - now),
        }
    }

    /// The backend's own breaker state at `now`.
    pub fn breaker_state(&self, now: Instant) -> BreakerState {
        self.live().breaker.state(now)
    }

    /// The state of `model`'s own breaker at `now`; `None` while the model never
    /// failed here (it has no breaker of its own yet).
    pub fn model_breaker(&self, model: &str, now: Instant) -> Option<BreakerState> {
        self.live().model(model).map(|b| b.state(now))
    }

    /// True when a new request for `model` (the backend's name for it) may go here
    /// now: both breakers willing, the model not throttled.
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

    /// Asks both breakers for a permit to send a request for `model`.
    pub fn try_acquire(&self, model: &str, now: Instant) -> Option<Ticket> {
        let mut l = self.live();
        let backend = l.breaker.try_acquire(now)?;
        let model = match l.model(model) {
            None => None,
            Some(b) => match b.try_acquire(now) {
                Some(p) => Some(p),
                None => {
                    l.breaker.on_abandon(backend);
                    return None;
                }
            },
        };
        Some(Ticket { backend, model })
    }

    /// The first token for `model` came `ttft` after sending.
    pub fn on_success(&self, ticket: Ticket, model: &str, ttft: Duration, decay: Duration, now: Instant) {
        let mut l = self.live();
        Self::succeeded(&mut l, ticket, model, now);
        l.ewma.set_decay(decay);
        l.ewma.observe(ttft, now);
        l.ttfts.push(ttft);
    }

    /// The backend answered for `model`, but not with a first token (an embeddings
    /// answer): the breakers hear of it, the latency estimates do not.
    pub fn on_answer(&self, ticket: Ticket, model: &str, now: Instant) {
        Self::succeeded(&mut self.live(), ticket, model, now);
    }

    fn succeeded(l: &mut Live, ticket: Ticket, model: &str, now: Instant) {
        l.breaker.on_success(ticket.backend, now);
        if let Some(b) = l.model(model) {
            b.on_success(ticket.model.unwrap_or(Permit::Normal), now);
        }
    }

    /// The attempt for `model` failed with `failure` after `elapsed`; `backend_wide`
    /// when the failure says the whole backend is gone (see [`retry::backend_wide`]).
    pub fn on_failure(
        &self,
        ticket: Ticket,
        model: &str,
        failure: retry::Failure,
        backend_wide: bool,
        elapsed: Duration,
        now: Instant,
    ) {
        let mut l = self.live();
        if failure.trips_breaker() {
            l.ewma.observe(elapsed.max(balance::FAILURE_PENALTY), now);
            if backend_wide {
                l.breaker.on_failure(ticket.backend, now, rand::random::<f64>());
                if let (Some(p), Some(b)) = (ticket.model, l.model(model)) {
                    b.on_abandon(p);
                }
            } else {
                // The backend answered: it is there, its model is not well.
                l.breaker.on_success(ticket.backend, now);
                let cfg = self.breaker_cfg;
                let permit = ticket.model.unwrap_or(Permit::Normal);
                l.model_or_new(model, cfg, now).on_failure(permit, now, rand::random::<f64>());
            }
            return;
        }
        // The backend answered: it is alive, whatever it thought of the request.
        match failure {
            retry::Failure::RateLimited(after) => {
                l.breaker.on_abandon(ticket.backend);
                if let (Some(p), Some(b)) = (ticket.model, l.model(model)) {
                    b.on_abandon(p);
                }
                let until = now + after.unwrap_or(Duration::from_secs(1));
                l.throttled.retain(|(_, t)| *t > now);
                match l.throttled.iter_mut().find(|(m, _)| &**m == model) {
                    Some((_, t)) => *t = (*t).max(until),
                    None => l.throttled.push((model.into(), until)),
                }
            }
            _ => Self::succeeded(&mut l, ticket, model, now),
        }
    }

    /// A failure of `model`'s answer after the first token (passive detection from a
    /// broken stream). An answer that merely outlived the total deadline says nothing
    /// about the backend.
    pub fn on_stream_failure(&self, model: &str, error: &crate::backend::BackendError, now: Instant) {
        if matches!(error, crate::backend::BackendError::Timeout(crate::backend::Stage::Total)) {
            return;
        }
        let mut l = self.live();
        if retry::backend_wide(error) {
            if l.breaker.state(now) == BreakerState::Closed {
                l.breaker.on_failure(Permit::Normal, now, rand::random::<f64>());
            }
            return;
        }
        let cfg = self.breaker_cfg;
        let b = l.model_or_new(model, cfg, now);
        if b.state(now) == BreakerState::Closed {
            b.on_failure(Permit::Normal, now, rand::random::<f64>());
        }
    }

    /// The attempt for `model` ended without an outcome (hedge loser, client gone).
    pub fn on_abandon(&self, ticket: Ticket, model: &str) {
        let mut l = self.live();
        l.breaker.on_abandon(ticket.backend);
        if let (Some(p), Some(b)) = (ticket.model, l.model(model)) {
            b.on_abandon(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, Stage};

    fn fail(state: &BackendState, model: &str, error: &BackendError, now: Instant) {
        let ticket = state.try_acquire(model, now).expect("a permit");
        let failure = retry::Failure::of(error);
        state.on_failure(ticket, model, failure, retry::backend_wide(error), Duration::from_millis(10), now);
    }

    fn status(code: u16) -> BackendError {
        BackendError::status(code, "down")
    }

    #[tokio::test(start_paused = true)]
    async fn one_models_rate_limit_leaves_the_backends_other_models_alone() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        let ticket = state.try_acquire("gpt-a", now).unwrap();
        let limited = retry::Failure::RateLimited(Some(Duration::from_secs(5)));
        state.on_failure(ticket, "gpt-a", limited, false, Duration::from_millis(10), now);
        assert!(!state.available("gpt-a", now));
        assert_eq!(state.throttled_until("gpt-a", now), Some(now + Duration::from_secs(5)));
        assert!(state.available("gpt-b", now), "another model of the same backend");
        assert!(state.candidate_cost("gpt-b", 0, now).is_some());
        assert_eq!(state.snapshot(now).throttled_for, Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(state.available("gpt-a", Instant::now()), "its Retry-After has passed");
    }

    #[tokio::test(start_paused = true)]
    async fn one_models_failures_open_its_breaker_only() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        let threshold = BreakerConfig::default().consecutive_failures;
        for _ in 0..threshold {
            fail(&state, "gpt-a", &status(503), now);
        }
        assert_eq!(state.model_breaker("gpt-a", now), Some(BreakerState::Open));
        assert!(!state.available("gpt-a", now));
        assert!(state.try_acquire("gpt-a", now).is_none(), "open: nothing is sent");
        assert_eq!(state.breaker_state(now), BreakerState::Closed, "the backend answered every time");
        assert!(state.available("gpt-b", now), "another model of the same backend");
        assert_eq!(state.model_breaker("gpt-b", now), None);
        let snap = state.snapshot(now);
        assert_eq!(snap.model_breakers, vec![("gpt-a".to_owned(), BreakerState::Open)]);

        // After the open period, one probe for that model; its success closes it.
        tokio::time::advance(BreakerConfig::default().open_max).await;
        let now = Instant::now();
        let probe = state.try_acquire("gpt-a", now).expect("the probe");
        assert!(state.try_acquire("gpt-a", now).is_none(), "one probe at a time");
        assert!(state.try_acquire("gpt-b", now).is_some(), "the other model is not held up by the probe");
        state.on_success(probe, "gpt-a", Duration::from_millis(5), Duration::from_secs(10), now);
        assert_eq!(state.model_breaker("gpt-a", now), Some(BreakerState::Closed));
        assert!(state.available("gpt-a", now));
        assert!(state.snapshot(now).model_breakers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_backend_opens_the_backend_breaker_for_every_model() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        let errors = [
            BackendError::Connect("refused".into()),
            BackendError::Timeout(Stage::Connect),
            BackendError::Connect("refused".into()),
        ];
        let threshold = usize::try_from(BreakerConfig::default().consecutive_failures).unwrap();
        for e in errors.iter().cycle().take(threshold) {
            fail(&state, "gpt-a", e, now);
        }
        assert_eq!(state.breaker_state(now), BreakerState::Open);
        assert!(!state.available("gpt-a", now) && !state.available("gpt-b", now));
        assert_eq!(state.model_breaker("gpt-a", now), None, "no model is to blame");
    }

    #[tokio::test(start_paused = true)]
    async fn a_model_failing_mid_stream_feeds_its_own_breaker() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        for _ in 0..BreakerConfig::default().consecutive_failures {
            state.on_stream_failure("gpt-a", &BackendError::Protocol("bad chunk".into()), now);
        }
        assert_eq!(state.model_breaker("gpt-a", now), Some(BreakerState::Open));
        assert_eq!(state.breaker_state(now), BreakerState::Closed);
        state.on_stream_failure("gpt-a", &BackendError::Interrupted("reset".into()), now);
        assert_eq!(state.breaker_state(now), BreakerState::Closed, "one broken connection is not enough");
        assert!(state.available("gpt-b", now));
    }

    #[tokio::test(start_paused = true)]
    async fn abandoning_a_probe_lets_the_next_request_probe() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        for _ in 0..BreakerConfig::default().consecutive_failures {
            fail(&state, "gpt-a", &status(500), now);
        }
        tokio::time::advance(BreakerConfig::default().open_max).await;
        let now = Instant::now();
        let probe = state.try_acquire("gpt-a", now).unwrap();
        state.on_abandon(probe, "gpt-a");
        assert!(state.try_acquire("gpt-a", now).is_some());
    }

    #[test]
    fn model_breakers_stay_bounded() {
        let state = BackendState::with_defaults();
        let now = Instant::now();
        for i in 0..MAX_MODEL_BREAKERS + 10 {
            fail(&state, &format!("m{i}"), &status(500), now);
        }
        assert_eq!(state.live().models.len(), MAX_MODEL_BREAKERS);
    }
}
