//! Every metric Sluice exports, defined in one place, in Prometheus naming
//! (`sluice_` prefix, base units, counters ending in `_total`).
//!
//! Each gateway owns its own registry, so several gateways
//! in one process (as in the tests) never mix their figures.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Matched route, e.g. `/v1/chat/completions`.
    pub route: String,
    /// Model asked for (empty when not applicable).
    pub model: String,
    /// Backend that served it (empty when none did).
    pub backend: String,
    /// HTTP status.
    pub status: u16,
}

/// Labels of the per-model latency and token metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Model asked for.
    pub model: String,
    /// Backend serving it.
    pub backend: String,
}

/// Labels of the upstream error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Backend name.
    pub backend: String,
    /// Error kind (see `BackendError::metric_kind`).
    pub kind: String,
}

/// Labels naming one backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Backend name.
    pub backend: String,
}

/// Labels of the cache request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `miss`, `shared` or `bypass` (the `x-sluice-cache` header's value).
    pub result: String,
}

/// Labels of the cache store error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheStoreErrorLabels {
    /// `get` or `put`.
    pub op: String,
    /// `error`, `timeout`, or `skipped` (the store is paused after a failure).
    pub kind: String,
}

/// Response cache and single-flight metrics. Hit ratio:
/// `hit / (hit + miss + shared)` of `sluice_cache_requests_total`.
pub struct CacheMetrics {
    /// `sluice_cache_requests_total{result}`: eligible requests by how they were
    /// answered (`shared`: joined an identical request in flight), and `bypass`.
    pub requests: Family<CacheLabels, Counter>,
    /// `result="hit"`, held ready.
    pub hit: Counter,
    /// `result="miss"`, held ready.
    pub miss: Counter,
    /// `result="shared"`, held ready.
    pub shared: Counter,
    /// `result="bypass"`, held ready.
    pub bypass: Counter,
    /// `sluice_cache_entries`: answers in the in-memory store.
    pub entries: Gauge,
    /// `sluice_cache_bytes`: their approximate size.
    pub bytes: Gauge,
    /// `sluice_cache_store_errors_total{op,kind}`: failed calls to the Redis store.
    pub store_errors: Family<CacheStoreErrorLabels, Counter>,
}

impl CacheMetrics {
    fn register(registry: &mut Registry) -> CacheMetrics {
        let requests: Family<CacheLabels, Counter> = Family::default();
        registry.register(
            "cache_requests",
            "Cacheable requests by result (hit, miss, shared, bypass)",
            requests.clone(),
        );
        let get = |r: &str| requests.get_or_create(&CacheLabels { result: r.to_owned() }).clone();
        let (hit, miss, shared, bypass) = (get("hit"), get("miss"), get("shared"), get("bypass"));
        let entries = Gauge::default();
        registry.register("cache_entries", "Answers in the in-memory cache", entries.clone());
        let bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Approximate bytes of answers in the in-memory cache",
            bytes.clone(),
        );
        let store_errors = Family::default();
        registry.register(
            "cache_store_errors",
            "Failed calls to the Redis cache store, by operation and kind",
            store_errors.clone(),
        );
        CacheMetrics { requests, hit, miss, shared, bypass, entries, bytes, store_errors }
    }
}

/// Labels of the refused-agent counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// Refusal code (`unauthorized`, `version_mismatch`, `bad_hello`, `unavailable`).
    pub code: String,
}

/// Metrics of connected agents (`sluice_agent*`), labelled by agent id.
#[derive(Default)]
pub struct AgentMetrics {
    /// `sluice_agents_connected`.
    pub connected: Gauge,
    /// `sluice_agent_slots{backend}`.
    pub slots: Family<BackendLabels, Gauge>,
    /// `sluice_agent_jobs_in_flight{backend}`.
    pub jobs_in_flight: Family<BackendLabels, Gauge>,
    /// `sluice_agent_tokens_served_total{backend}`.
    pub tokens_served: Family<BackendLabels, Counter>,
    /// `sluice_agent_last_heartbeat_timestamp_seconds{backend}` (Unix time).
    pub last_heartbeat: Family<BackendLabels, Gauge>,
    /// `sluice_agent_refused_total{code}`.
    pub refused_total: Family<RefusedLabels, Counter>,
}

impl AgentMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("agents_connected", "Agents connected now", self.connected.clone());
        registry.register("agent_slots", "Parallel slots each agent advertised", self.slots.clone());
        registry.register(
            "agent_jobs_in_flight",
            "Jobs pushed to each agent and not finished",
            self.jobs_in_flight.clone(),
        );
        registry.register(
            "agent_tokens_served",
            "Tokens relayed from each agent",
            self.tokens_served.clone(),
        );
        registry.register(
            "agent_last_heartbeat_timestamp_seconds",
            "Unix time of each agent's last heartbeat answer",
            self.last_heartbeat.clone(),
        );
        registry.register(
            "agent_refused",
            "Agent connections refused, by reason",
            self.refused_total.clone(),
        );
    }

    fn labels(id: &str) -> BackendLabels {
        BackendLabels { backend: format!("agent:{id}") }
    }

    /// An agent connected.
    pub fn joined(&self, id: &str, slots: u32) {
        self.connected.inc();
        let l = Self::labels(id);
        self.slots.get_or_create(&l).set(i64::from(slots));
        self.heartbeat(id);
    }

    /// An agent's connection ended; `replaced` when a newer connection of the same
    /// agent took over (its figures stay).
    pub fn left(&self, id: &str, replaced: bool) {
        self.connected.dec();
        if replaced {
            return;
        }
        let l = Self::labels(id);
        self.slots.remove(&l);
        self.jobs_in_flight.remove(&l);
        self.last_heartbeat.remove(&l);
    }

    /// The jobs in flight on an agent changed.
    pub fn jobs(&self, id: &str, n: usize) {
        self.jobs_in_flight.get_or_create(&Self::labels(id)).set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Tokens were relayed from an agent.
    pub fn tokens(&self, id: &str, n: u64) {
        self.tokens_served.get_or_create(&Self::labels(id)).inc_by(n);
    }

    /// An agent answered a ping.
    pub fn heartbeat(&self, id: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last_heartbeat.get_or_create(&Self::labels(id)).set(i64::try_from(now.as_secs()).unwrap_or(0));
    }

    /// A connection was refused.
    pub fn refused(&self, code: sluice_protocol::agent::RefuseCode) {
        let code =
            serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        self.refused_total.get_or_create(&RefusedLabels { code }).inc();
    }
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~105 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 21))
}

fn gap_histogram() -> Histogram {
    // 10 µs .. ~10 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00001, 2.0, 21))
}

/// The metrics of generations of one model on one backend: handles into the families
/// of [`Metrics`], looked up once (per route) instead of by label on every request.
pub struct ModelMetrics {
    /// `sluice_time_to_first_token_seconds`.
    pub ttft: Histogram,
    /// `sluice_inter_token_latency_seconds`.
    pub inter_token: Histogram,
    /// `sluice_request_duration_seconds`.
    pub duration: Histogram,
    /// `sluice_prompt_tokens_total`.
    pub prompt_tokens: Counter,
    /// `sluice_completion_tokens_total`.
    pub completion_tokens: Counter,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// `sluice_requests_total{route,model,backend,status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `sluice_time_to_first_token_seconds{model,backend}`.
    pub time_to_first_token: HistFamily<ModelLabels>,
    /// `sluice_inter_token_latency_seconds{model,backend}`.
    pub inter_token: HistFamily<ModelLabels>,
    /// `sluice_request_duration_seconds{model,backend}` (end to end).
    pub request_duration: HistFamily<ModelLabels>,
    /// `sluice_prompt_tokens_total{model,backend}`.
    pub prompt_tokens: Family<ModelLabels, Counter>,
    /// `sluice_completion_tokens_total{model,backend}`.
    pub completion_tokens: Family<ModelLabels, Counter>,
    /// `sluice_active_streams`.
    pub active_streams: Gauge,
    /// `sluice_upstream_errors_total{backend,kind}`.
    pub upstream_errors: Family<ErrorLabels, Counter>,
    /// `sluice_backend_up{backend}`: 1 when the last probe succeeded.
    pub backend_up: Family<BackendLabels, Gauge>,
    /// `sluice_backend_outstanding_requests{backend}`.
    pub backend_outstanding: Family<BackendLabels, Gauge>,
    /// Breakers, retries, hedges, fallbacks, admission.
    pub routing: RoutingMetrics,
    /// Response cache and single-flight.
    pub cache: CacheMetrics,
    /// Connected agents.
    pub agents: AgentMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The generation metrics of `model` served by `backend`.
    pub fn model(&self, model: &str, backend: &str) -> ModelMetrics {
        let l = ModelLabels { model: model.to_owned(), backend: backend.to_owned() };
        ModelMetrics {
            ttft: self.time_to_first_token.get_or_create(&l).clone(),
            inter_token: self.inter_token.get_or_create(&l).clone(),
            duration: self.request_duration.get_or_create(&l).clone(),
            prompt_tokens: self.prompt_tokens.get_or_create(&l).clone(),
            completion_tokens: self.completion_tokens.get_or_create(&l).clone(),
        }
    }

    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let requests = Family::default();
        registry.register("requests", "HTTP requests by route, model, backend and status", requests.clone());
        let time_to_first_token: HistFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "time_to_first_token",
            "Time from request to first token",
            prometheus_client::registry::Unit::Seconds,
            time_to_first_token.clone(),
        );
        let inter_token: HistFamily<ModelLabels> = Family::new_with_constructor(gap_histogram);
        registry.register_with_unit(
            "inter_token_latency",
            "Gap between successive tokens of a stream",
            prometheus_client::registry::Unit::Seconds,
            inter_token.clone(),
        );
        let request_duration: HistFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "End-to-end duration of generation requests",
            prometheus_client::registry::Unit::Seconds,
            request_duration.clone(),
        );
        let prompt_tokens = Family::default();
        registry.register("prompt_tokens", "Prompt tokens read", prompt_tokens.clone());
        let completion_tokens = Family::default();
        registry.register("completion_tokens", "Tokens generated", completion_tokens.clone());
        let active_streams = Gauge::default();
        registry.register("active_streams", "Generations in progress", active_streams.clone());
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by backend and kind",
            upstream_errors.clone(),
        );
        let backend_up = Family::default();
        registry.register(
            "backend_up",
            "1 when the backend's last health probe succeeded",
            backend_up.clone(),
        );
        let backend_outstanding = Family::default();
        registry.register(
            "backend_outstanding_requests",
            "Requests in flight per backend",
            backend_outstanding.clone(),
        );
        let routing = RoutingMetrics::register(&mut registry);
        let cache = CacheMetrics::register(&mut registry);
        let agents = AgentMetrics::default();
        agents.register(&mut registry);
        Metrics {
            routing,
            agents,
            registry,
            requests,
            time_to_first_token,
            inter_token,
            request_duration,
            prompt_tokens,
            completion_tokens,
            active_streams,
            upstream_errors,
            backend_up,
            backend_outstanding,
            cache,
        }
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, backend: &str, kind: &str) {
        self.upstream_errors
            .get_or_create(&ErrorLabels { backend: backend.to_owned(), kind: kind.to_owned() })
            .inc();
    }

    /// The registry in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Labels naming one public model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelNameLabels {
    /// Model asked for.
    pub model: String,
}

/// Labels of a per-model counter with a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Model asked for.
    pub model: String,
    /// Why (a failure class or rejection reason).
    pub reason: String,
}

/// Labels of the fallback counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Model asked for.
    pub model: String,
    /// Model fallen back to.
    pub fallback: String,
}

/// The routing layer's metrics.
pub struct RoutingMetrics {
    /// `sluice_breaker_state{backend}`: 0 closed, 1 half-open, 2 open.
    pub breaker: Family<BackendLabels, Gauge>,
    /// `sluice_model_breaker_state{model,backend}`: a model's own breaker at that
    /// backend (`model` is the backend's name for it), set once it first failed.
    pub model_breaker: Family<ModelLabels, Gauge>,
    /// `sluice_retries_total{model,reason}`: attempts after a failure before the first token.
    pub retries: Family<ReasonLabels, Counter>,
    /// `sluice_retry_budget_exhausted_total`: retries or hedges refused by the budget.
    pub retry_budget_exhausted: Counter,
    /// `sluice_hedges_total{model}`: second requests sent for a slow first token.
    pub hedges: Family<ModelNameLabels, Counter>,
    /// `sluice_fallbacks_total{model,fallback}`.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// `sluice_queue_depth{model}`: requests waiting for admission.
    pub queue_depth: Family<ModelNameLabels, Gauge>,
    /// `sluice_queue_wait_seconds{model}`: time spent waiting for admission.
    pub queue_wait: HistFamily<ModelNameLabels>,
    /// `sluice_rejections_total{model,reason}`: requests refused without an attempt
    /// (`queue_full`, `queue_timeout`, `no_backend`, `rate_limited`).
    pub rejections: Family<ReasonLabels, Counter>,
}

impl RoutingMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = RoutingMetrics {
            breaker: Family::default(),
            model_breaker: Family::default(),
            retries: Family::default(),
            retry_budget_exhausted: Counter::default(),
            hedges: Family::default(),
            fallbacks: Family::default(),
            queue_depth: Family::default(),
            queue_wait: Family::new_with_constructor(latency_histogram),
            rejections: Family::default(),
        };
        registry.register(
            "breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            m.breaker.clone(),
        );
        registry.register(
            "model_breaker_state",
            "Circuit breaker of one model at one backend: 0 closed, 1 half-open, 2 open",
            m.model_breaker.clone(),
        );
        registry.register("retries", "Retries before the first token, by failure", m.retries.clone());
        registry.register(
            "retry_budget_exhausted",
            "Retries and hedges refused by the retry budget",
            m.retry_budget_exhausted.clone(),
        );
        registry.register("hedges", "Hedged requests for a slow first token", m.hedges.clone());
        registry.register("fallbacks", "Requests sent on to a fallback model", m.fallbacks.clone());
        registry.register("queue_depth", "Requests waiting for admission", m.queue_depth.clone());
        registry.register_with_unit(
            "queue_wait",
            "Time spent waiting for admission",
            prometheus_client::registry::Unit::Seconds,
            m.queue_wait.clone(),
        );
        registry.register(
            "rejections",
            "Requests refused before any attempt, by reason",
            m.rejections.clone(),
        );
        m
    }

    /// Counts a retry of `model` after a failure of class `reason`.
    pub fn retry(&self, model: &str, reason: &str) {
        self.retries
            .get_or_create(&ReasonLabels { model: model.to_owned(), reason: reason.to_owned() })
            .inc();
    }

    /// Counts a hedge.
    pub fn hedge(&self, model: &str) {
        self.hedges.get_or_create(&ModelNameLabels { model: model.to_owned() }).inc();
    }

    /// Counts a fallback.
    pub fn fallback(&self, model: &str, fallback: &str) {
        self.fallbacks
            .get_or_create(&FallbackLabels { model: model.to_owned(), fallback: fallback.to_owned() })
            .inc();
    }

    /// Counts a rejection.
    pub fn rejection(&self, model: &str, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabels { model: model.to_owned(), reason: reason.to_owned() })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        let l = ModelLabels { model: "m".into(), backend: "b".into() };
        m.time_to_first_token.get_or_create(&l).observe(0.01);
        m.completion_tokens.get_or_create(&l).inc_by(3);
        m.requests
            .get_or_create(&RequestLabels {
                route: "/v1/x".into(),
                model: "m".into(),
                backend: "b".into(),
                status: 200,
            })
            .inc();
        let text = m.render();
        for name in [
            "sluice_time_to_first_token_seconds_bucket",
            "sluice_completion_tokens_total{model=\"m\",backend=\"b\"} 3",
            "sluice_requests_total{route=\"/v1/x\",model=\"m\",backend=\"b\",status=\"200\"} 1",
            "sluice_active_streams 0",
        ] {
            assert!(text.contains(name), "{name} not in\n{text}");
        }
    }
}
