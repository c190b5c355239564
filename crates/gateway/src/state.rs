//! The shared application state: configuration, backends, metrics, auth and the task
//! tracker that owns every background task.

use std::{sync::Arc, time::Instant};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::ApiKeys,
    backends::{
        Backend, BackendError, EngineBackend, OllamaHttp, OpenAiHttp,
        http_client::{HttpClients, Transport},
    },
    cache::Cache,
    config::{BackendKind, Config, Timeouts},
    metrics::Metrics,
    registry::{BackendSlot, Registry},
};

/// Everything a request handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The state's contents.
pub struct Inner {
    /// The validated configuration.
    pub config: Config,
    /// Backends and models.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Metrics,
    /// Balancing, breakers' settings, retry budget, admission.
    pub routing: crate::scheduler::Routing,
    /// Response cache and single-flight.
    pub cache: Cache,
    /// Accepted API keys.
    pub keys: ApiKeys,
    /// Owns background tasks.
    pub tasks: TaskTracker,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Process start.
    pub started: Instant,
    /// Connected agents.
    pub agents: crate::agents::AgentHub,
    /// Persistent storage (opened on first use).
    pub store: crate::store::Store,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// Builds the state from a validated configuration: one backend per entry, all on
    /// the shared HTTP client. Does not touch the network.
    pub fn new(config: Config) -> Result<AppState, BackendError> {
        let clients = HttpClients::default();
        let mut slots = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            let backend: Arc<dyn Backend> = match b.kind {
                BackendKind::Openai => {
                    let key = b.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
                    let transport = Transport::new(&clients, &b.url, b.timeouts.connect)?;
                    Arc::new(OpenAiHttp::new(&b.name, transport, key.as_deref()))
                }
                BackendKind::Ollama => {
                    let transport =
                        Transport::new(&clients, OllamaHttp::base_url(&b.url), b.timeouts.connect)?;
                    Arc::new(OllamaHttp::new(&b.name, transport))
                }
            };
            slots.push(Arc::new(BackendSlot::new(backend, b)));
        }
        for m in config.engine.resolve(!config.backends.is_empty()) {
            let backend: Arc<dyn Backend> = Arc::new(EngineBackend::new(&m));
            let models = vec![(m.name.clone(), m.name.clone())];
            slots.push(Arc::new(BackendSlot::with_models(backend, Timeouts::default(), models)));
        }
        Ok(Self::with_slots(config, slots))
    }

    /// Builds the state over ready-made backend slots (embedded engines, agents, tests).
    pub fn with_slots(config: Config, slots: Vec<Arc<BackendSlot>>) -> AppState {
        let keys = ApiKeys::from_hashes(&config.auth.api_key_sha256);
        let metrics = Metrics::new();
        let cache = Cache::new(&config.cache, &metrics.cache);
        AppState {
            inner: Arc::new(Inner {
                registry: Registry::new(slots),
                routing: crate::scheduler::Routing::new(&config, &metrics),
                metrics,
                cache,
                keys,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                started: Instant::now(),
                agents: crate::agents::AgentHub::default(),
                store: crate::store::Store::new(&config.store),
                config,
            }),
        }
    }

    /// Loads the engine models configured to load at start, all at once; a model that
    /// fails is logged and retried on first use.
    pub async fn load_models_at_start(&self) {
        let config = &self.config;
        let start: Vec<String> = config
            .engine
            .resolve(!config.backends.is_empty())
            .into_iter()
            .filter(|m| m.load == crate::backends::engine::config::LoadPolicy::Start)
            .map(|m| m.name)
            .collect();
        let slots = self.registry.slots();
        let loads = start.iter().filter_map(|model| {
            let backend = format!("engine:{model}");
            let slot = slots.iter().find(|s| s.name() == backend)?;
            let load = slot.backend.load(model);
            let started = std::time::Instant::now();
            Some(async move {
                match load.await {
                    Ok(()) => tracing::info!(model = %model, took = ?started.elapsed(), "model loaded"),
                    Err(e) => tracing::error!(model = %model, error = %e, "model failed to load at start"),
                }
            })
        });
        futures_util::future::join_all(loads).await;
    }
}
