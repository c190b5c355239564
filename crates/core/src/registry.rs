//! Which backends serve which models.
//!
//! Models come from the configuration or, for backends configured without a model list,
//! from asking the backend (`/v1/models`, `/api/tags`). Discovery runs at start and again
//! when a client asks for a model nobody is known to serve (at most every few seconds),
//! so a backend that was down at start is picked up without any polling loop.
//!
//! Backends can also join and leave at runtime ([`Registry::add`], [`Registry::remove`]):
//! connected agents do. The list is copy-on-write, so readers never wait for a change.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::{
    backend::{Backend, ModelInfo},
    config::{BackendConfig, Timeouts},
    metrics::{BackendLabels, Metrics, ModelMetrics},
};

/// Least time between two on-demand discoveries.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

/// A backend and its live state.
pub struct BackendSlot {
    /// The token source.
    pub backend: Arc<dyn Backend>,
    /// Deadlines for requests to it.
    pub timeouts: Timeouts,
    /// Configured model entries (public name, upstream name); empty means discover.
    configured: Vec<(String, String)>,
    /// Models found by discovery.
    discovered: RwLock<Vec<ModelInfo>>,
    /// Configured capabilities of every model, overriding what the backend says.
    capabilities: Option<Vec<String>>,
    /// Requests in flight.
    pub outstanding: AtomicU64,
    /// Last known health.
    pub healthy: AtomicBool,
    /// Tokens it generated (monotonic): counted as deltas pass, settled to the
    /// upstream's own count when an answer ends; for live tokens/s on the admin page.
    pub completion_tokens: AtomicU64,
    /// Weight, circuit breaker, latency estimates.
    pub routing: crate::scheduler::BackendState,
    /// This backend's gauges, looked up once instead of by label on every request.
    gauges: OnceLock<SlotGauges>,
}

/// The per-backend gauges updated on the request path.
pub struct SlotGauges {
    /// `sluice_backend_outstanding_requests`.
    pub outstanding: Gauge,
    /// `sluice_breaker_state`.
    pub breaker: Gauge,
}

impl BackendSlot {
    /// A slot for `backend` configured by `cfg`.
    pub fn new(backend: Arc<dyn Backend>, cfg: &BackendConfig) -> Self {
        let models = cfg.models.iter().map(|m| (m.names().0.to_owned(), m.names().1.to_owned())).collect();
        let mut slot =
            Self::with_state(backend, cfg.timeouts, models, crate::scheduler::BackendState::new(cfg));
        slot.capabilities.clone_from(&cfg.capabilities);
        slot
    }

    /// A slot for a backend without a `[[backends]]` entry (embedded engines, agents)
    /// serving `models` (public name, backend's name; empty means discover), with the
    /// default weight, breaker and probe.
    pub fn with_models(backend: Arc<dyn Backend>, timeouts: Timeouts, models: Vec<(String, String)>) -> Self {
        Self::with_state(backend, timeouts, models, crate::scheduler::BackendState::with_defaults())
    }

    fn with_state(
        backend: Arc<dyn Backend>,
        timeouts: Timeouts,
        models: Vec<(String, String)>,
        routing: crate::scheduler::BackendState,
    ) -> Self {
        BackendSlot {
            backend,
            timeouts,
            configured: models,
            discovered: RwLock::new(Vec::new()),
            capabilities: None,
            outstanding: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            completion_tokens: AtomicU64::new(0),
            routing,
            gauges: OnceLock::new(),
        }
    }

    /// This backend's gauges in `metrics` (the application's one registry).
    pub fn gauges(&self, metrics: &Metrics) -> &SlotGauges {
        self.gauges.get_or_init(|| {
            let labels = BackendLabels { backend: self.name().to_owned() };
            SlotGauges {
                outstanding: metrics.backend_outstanding.get_or_create(&labels).clone(),
                breaker: metrics.routing.breaker.get_or_create(&labels).clone(),
            }
        })
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        self.backend.name()
    }

    fn discovers(&self) -> bool {
        self.configured.is_empty()
    }

    /// Discovered model details, by upstream name; a bare name also finds its
    /// `:latest` tag, as Ollama resolves it.
    pub fn model_info(&self, upstream: &str) -> Option<ModelInfo> {
        let d = self.discovered.read().unwrap_or_else(|p| p.into_inner());
        let bare = !upstream.contains(':');
        d.iter()
            .find(|m| m.name == upstream)
            .or_else(|| d.iter().find(|m| bare && m.name.strip_suffix(":latest") == Some(upstream)))
            .cloned()
    }
}

impl BackendSlot {
    /// What `upstream` can do here: the configuration's word, else the backend's own,
    /// else discovery's; `None` when nobody knows.
    pub fn capabilities(&self, upstream: &str) -> Option<Vec<String>> {
        self.capabilities
            .clone()
            .or_else(|| self.backend.capabilities(upstream))
            .or_else(|| self.model_info(upstream).and_then(|m| m.capabilities))
    }
}

/// Who served a request, for logs, metrics and response extensions.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// Public model name.
    pub model: String,
    /// Backend name.
    pub backend: String,
}

/// One way to serve a model: a backend and the name to send it.
#[derive(Clone)]
pub struct Route {
    /// The backend.
    pub slot: Arc<BackendSlot>,
    /// The model name at that backend.
    pub upstream_model: String,
    /// The generation metrics of this route, shared by its clones.
    metrics: Arc<OnceLock<Arc<ModelMetrics>>>,
}

impl Route {
    /// A route to `upstream_model` on `slot`.
    pub fn new(slot: Arc<BackendSlot>, upstream_model: String) -> Route {
        Route { slot, upstream_model, metrics: Arc::default() }
    }

    /// The generation metrics of `model` (this route's public name) on this backend.
    pub fn metrics(&self, metrics: &Metrics, model: &str) -> Arc<ModelMetrics> {
        self.metrics.get_or_init(|| Arc::new(metrics.model(model, self.slot.name()))).clone()
    }
}

/// Public model name → routes, in configuration order.
#[derive(Default)]
pub struct ModelTable {
    routes: HashMap<String, Vec<Route>>,
    names: Vec<String>,
}

impl ModelTable {
    /// What `model` can do beyond text, as `/api/show` and `/v1/models` report it:
    /// everything some route of it is known to take, in a stable order; `None` when
    /// no route says.
    pub fn capabilities(&self, model: &str) -> Option<Vec<String>> {
        let mut known: Option<Vec<String>> = None;
        for route in self.routes(model).unwrap_or_default() {
            if let Some(caps) = route.slot.capabilities(&route.upstream_model) {
                let all = known.get_or_insert_with(Vec::new);
                for c in caps {
                    if !all.contains(&c) {
                        all.push(c);
                    }
                }
            }
        }
        known
    }

    /// Routes for a model. As Ollama does, `name`, `name:latest`, `library/name` and
    /// `registry.ollama.ai/library/name` are the same model.
    pub fn routes(&self, model: &str) -> Option<&[Route]> {
        if let Some(r) = self.routes.get(model) {
            return Some(r);
        }
        let unprefixed = model.strip_prefix("registry.ollama.ai/").unwrap_or(model);
        let model = unprefixed.strip_prefix("library/").unwrap_or(unprefixed);
        if let Some(r) = self.routes.get(model) {
            return Some(r);
        }
        let alt = match model.strip_suffix(":latest") {
            Some(bare) => bare.to_owned(),
            None if !model.contains(':') => format!("{model}:latest"),
            None => return None,
        };
        self.routes.get(&alt).map(Vec::as_slice)
    }

    /// Every public model name, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// All backends and the model table built from them.
pub struct Registry {
    slots: RwLock<Arc<Vec<Arc<BackendSlot>>>>,
    table: RwLock<Arc<ModelTable>>,
    last_discovery: Mutex<Option<Instant>>,
    /// Held while an on-demand rediscovery runs: concurrent requests for unknown
    /// models share one.
    rediscovering: tokio::sync::Mutex<()>,
}

impl Registry {
    /// A registry over `slots`; call [`Registry::discover`] to fill discovered models.
    pub fn new(slots: Vec<Arc<BackendSlot>>) -> Self {
        let r = Registry {
            slots: RwLock::new(Arc::new(slots)),
            table: RwLock::new(Arc::default()),
            last_discovery: Mutex::new(None),
            rediscovering: tokio::sync::Mutex::new(()),
        };
        r.rebuild();
        r
    }

    /// Every backend, as of now.
    pub fn slots(&self) -> Arc<Vec<Arc<BackendSlot>>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds a backend that joined at runtime (an agent) and rebuilds the model table.
    pub fn add(&self, slot: Arc<BackendSlot>) {
        {
            let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
            let mut next = Vec::clone(&slots);
            next.push(slot);
            *slots = Arc::new(next);
        }
        self.rebuild();
    }

    /// Removes `slot` (by identity) and rebuilds the model table; requests already
    /// running on it keep their own reference.
    pub fn remove(&self, slot: &Arc<BackendSlot>) {
        {
            let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
            let next: Vec<_> = slots.iter().filter(|s| !Arc::ptr_eq(s, slot)).cloned().collect();
            *slots = Arc::new(next);
        }
        self.rebuild();
    }

    /// The current model table.
    pub fn table(&self) -> Arc<ModelTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn rebuild(&self) {
        // Held from reading the slots to publishing the table, so that of two concurrent
        // rebuilds the last to publish has seen the latest list.
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        let slots = self.slots();
        for slot in slots.iter() {
            let entries: Vec<(String, String)> = if slot.discovers() {
                let d = slot.discovered.read().unwrap_or_else(|p| p.into_inner());
                d.iter().map(|m| (m.name.clone(), m.name.clone())).collect()
            } else {
                slot.configured.clone()
            };
            for (public, upstream) in entries {
                routes.entry(public).or_default().push(Route::new(slot.clone(), upstream));
            }
        }
        let mut names: Vec<String> = routes.keys().cloned().collect();
        names.sort();
        *table = Arc::new(ModelTable { routes, names });
    }

    /// Asks every backend for its models (all at once, each bounded by its connect
    /// deadline plus a few seconds), records health, and rebuilds the table.
    pub async fn discover(&self) {
        *self.last_discovery.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let slots = self.slots();
        let probes = slots.iter().map(|slot| async move {
            let limit = slot.timeouts.connect + Duration::from_secs(5);
            let res = tokio::time::timeout(limit, slot.backend.models()).await;
            match res {
                Ok(Ok(models)) => {
                    slot.healthy.store(true, Ordering::Relaxed);
                    *slot.discovered.write().unwrap_or_else(|p| p.into_inner()) = models;
                }
                Ok(Err(e)) => {
                    tracing::warn!(backend = slot.name(), error = %e, cause = ?e, "backend probe failed");
                    slot.healthy.store(false, Ordering::Relaxed);
                }
                Err(_) => {
                    tracing::warn!(backend = slot.name(), "backend probe timed out");
                    slot.healthy.store(false, Ordering::Relaxed);
                }
            }
        });
        futures_util::future::join_all(probes).await;
        self.rebuild();
    }

    /// Runs discovery again if a backend discovers its models and the last run is
    /// old enough; returns whether the table is new. Callers that arrive while one
    /// runs wait for it instead of starting their own; within [`REDISCOVER_EVERY`] of
    /// a run, an unknown name is unknown without asking the backends again.
    pub async fn rediscover_if_stale(&self) -> bool {
        if !self.slots().iter().any(|s| s.discovers()) || self.discovered_lately() {
            return false;
        }
        let _one = self.rediscovering.lock().await;
        if self.discovered_lately() {
            // Another caller just ran it.
            return true;
        }
        self.discover().await;
        true
    }

    fn discovered_lately(&self) -> bool {
        let last = self.last_discovery.lock().unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|t| t.elapsed() < REDISCOVER_EVERY)
    }

    /// Every route of `model`: asks discovering backends again (rate-limited) when the
    /// model is unknown.
    pub async fn routes(&self, model: &str) -> Result<Vec<Route>, crate::error::GatewayError> {
        let mut table = self.table();
        if table.routes(model).is_none() && self.rediscover_if_stale().await {
            table = self.table();
        }
        table.routes(model).map(<[Route]>::to_vec).ok_or_else(|| self.unknown_model(model))
    }

    /// The route for `model` the scheduler would pick now.
    pub async fn resolve(&self, model: &str) -> Result<Route, crate::error::GatewayError> {
        let routes = self.routes(model).await?;
        pick(&routes).cloned().ok_or_else(|| self.unknown_model(model))
    }

    /// The error for a model no route serves: 503 when a backend that discovers its
    /// models could not be asked (the model may well be there), else 404.
    pub fn unknown_model(&self, model: &str) -> crate::error::GatewayError {
        let slots = self.slots();
        let unreachable: Vec<&str> = slots
            .iter()
            .filter(|s| s.discovers() && !s.healthy.load(Ordering::Relaxed))
            .map(|s| s.name())
            .collect();
        if unreachable.is_empty() {
            crate::error::GatewayError::ModelNotFound(model.to_owned())
        } else {
            crate::error::GatewayError::Unavailable(format!(
                "model '{model}' is not known: backend(s) {} could not be asked for their models",
                unreachable.join(", ")
            ))
        }
    }

    /// True when at least one backend answered its last probe.
    pub fn any_healthy(&self) -> bool {
        self.slots().iter().any(|s| s.healthy.load(Ordering::Relaxed))
    }
}

impl Registry {
    /// Applies an Ollama-style keep-alive to every backend serving `model` (`None`
    /// restores each backend's default). Only in-process engines hold models.
    pub fn set_keep_alive(&self, model: &str, keep_alive: Option<crate::chat::KeepAlive>) {
        let table = self.table();
        for r in table.routes(model).unwrap_or_default() {
            r.slot.backend.set_keep_alive(&r.upstream_model, keep_alive);
        }
    }

    /// Loads `model` into memory on every backend serving it.
    pub async fn load(&self, model: &str) -> Result<(), crate::error::GatewayError> {
        let table = self.table();
        let routes =
            table.routes(model).ok_or_else(|| crate::error::GatewayError::ModelNotFound(model.into()))?;
        let loads = routes.iter().map(|r| r.slot.backend.load(&r.upstream_model));
        for res in futures_util::future::join_all(loads).await {
            res?;
        }
        Ok(())
    }
}

/// Publishes the state of `slot`'s breaker, and of its breaker for `model` (the
/// backend's name for it) once that one exists, to the metrics.
pub fn publish_breaker(metrics: &Metrics, slot: &BackendSlot, model: &str, now: Instant) {
    slot.gauges(metrics).breaker.set(slot.routing.breaker_state(now).gauge());
    // Only models that ever failed have a breaker of their own, and a series.
    if let Some(state) = slot.routing.model_breaker(model, now) {
        let labels = crate::metrics::ModelLabels { model: model.to_owned(), backend: slot.name().to_owned() };
        metrics.routing.model_breaker.get_or_create(&labels).set(state.gauge());
    }
}

/// The cost of one more request on `r` now (see [`balance::cost`]), spread over the
/// backend's slots when it has a hard limit (agents); `None` when it is not available.
pub fn route_cost(r: &Route, now: Instant) -> Option<f64> {
    let s = &r.slot;
    let slots = s.backend.slots().map_or(1.0, |n| f64::from(n.max(1)));
    s.routing.candidate_cost(&r.upstream_model, s.outstanding.load(Ordering::Relaxed), now).map(|c| c / slots)
}

/// Whether `r` can start one more request without waiting for a slot.
pub fn has_free_slot(r: &Route) -> bool {
    r.slot.backend.slots().is_none_or(|n| r.slot.outstanding.load(Ordering::Relaxed) < u64::from(n))
}

/// The route a request for these routes would take now (no permit taken): available,
/// healthy and with a free slot first, then the cheapest; `None` when there are no routes.
pub fn pick(routes: &[Route]) -> Option<&Route> {
    let now = Instant::now();
    let key = |r: &Route| {
        let cost = route_cost(r, now);
        (
            cost.is_none(),
            !r.slot.healthy.load(Ordering::Relaxed),
            !has_free_slot(r),
            cost.unwrap_or(f64::INFINITY),
        )
    };
    routes.iter().min_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        (ka.0, ka.1, ka.2).cmp(&(kb.0, kb.1, kb.2)).then(ka.3.total_cmp(&kb.3))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicUsize;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::{
        backend::{Backend, BackendError, EventStream, ModelInfo},
        chat::{ChatRequest, EmbedRequest, Embeddings},
        config::Timeouts,
        context::RequestContext,
    };

    /// Counts model listings, each taking a moment.
    struct Listing(Arc<AtomicUsize>);

    impl Backend for Listing {
        fn name(&self) -> &str {
            "listing"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn chat(
            &self,
            _: &RequestContext,
            _: ChatRequest,
        ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
            Box::pin(async { Err(BackendError::Unsupported("no".into())) })
        }
        fn embed(&self, _: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
            Box::pin(async { Err(BackendError::Unsupported("no".into())) })
        }
        fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(vec![ModelInfo { name: "known".into(), ..ModelInfo::default() }])
            })
        }
    }

    /// Many requests for an unknown model at once, on every worker thread: one
    /// rediscovery for all of them, and none again within the negative-cache window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unknown_models_share_one_rediscovery() {
        let listings = Arc::new(AtomicUsize::new(0));
        let slot = BackendSlot::with_models(Arc::new(Listing(listings.clone())), Timeouts::default(), vec![]);
        let registry = Arc::new(Registry::new(vec![Arc::new(slot)]));
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let asks = (0..64).map(|i| {
            let (registry, barrier) = (registry.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                registry.routes(&format!("unknown-{i}")).await.is_err()
            })
        });
        for unknown in futures_util::future::join_all(asks).await {
            assert!(unknown.unwrap());
        }
        assert_eq!(listings.load(Ordering::SeqCst), 1, "one discovery for every request");
        assert!(registry.routes("another").await.is_err());
        assert_eq!(listings.load(Ordering::SeqCst), 1, "an unknown name within the window asks nobody");
        assert!(registry.routes("known").await.is_ok());
    }
}
