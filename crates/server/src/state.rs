//! The server's state: the domain [`Gateway`] plus what only the HTTP server holds
//! (configuration, service keys, the user directory, login throttling, the agent hub,
//! the store, limits, the usage writer, the retention settings).

use std::{sync::Arc, time::Instant};

use sluice_backends::engine::config::EngineSection;
use sluice_config::Config;
use sluice_core::{
    backend::BackendError,
    gateway::{Gateway, Settings},
    registry::BackendSlot,
};

use crate::{
    auth::{ApiKeys, directory::Directory, throttle::LoginThrottle},
    hub::{AgentHub, Link},
    retention::Retention,
    usage_writer::UsageLife,
};

/// Everything a request handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The state's contents.
pub struct Inner {
    /// The domain: registry, routing, cache, metrics, tasks.
    pub core: Gateway,
    /// The validated configuration.
    pub config: Config,
    /// Service keys from the configuration.
    pub keys: ApiKeys,
    /// Users and their keys, in memory.
    pub directory: Arc<Directory>,
    /// Failed logins per account and address.
    pub logins: LoginThrottle,
    /// Process start.
    pub started: Instant,
    /// Connected agents.
    pub agents: Arc<AgentHub>,
    /// Persistent storage (opened on first use).
    pub store: Arc<sluice_store::Store>,
    /// Rate limits, streams and quotas of every key, user and anonymous address.
    pub limits: sluice_limits::Limiter,
    /// The usage writer: `usage.sink()` is `Some` once [`AppState::start_usage`] ran
    /// (`sluice serve` does) with `[usage] enabled`.
    pub usage: UsageLife,
    /// Retention settings in force (`[retention]`, changeable at runtime).
    pub retention: Retention,
    /// Per-key request and token counters (`[usage] per_key_metrics`).
    pub per_key: Option<Arc<crate::tenancy::KeyCounters>>,
    /// UI generations (running, or finished a short while ago).
    pub runs: crate::runs::Runs,
    /// This month's spend per key and user, for budgets.
    pub budgets: Arc<crate::budgets::Budgets>,
    /// Whether [`AppState::start_auth`] seeded the quotas.
    quotas_seeded: std::sync::atomic::AtomicBool,
    /// Whether [`AppState::start_auth_or_retry`] left a retry running in the background.
    auth_retrying: std::sync::atomic::AtomicBool,
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
        let slots = sluice_backends::build(&config.backends, &config.engine)?;
        Ok(Self::with_slots(config, slots))
    }

    /// Builds the state over ready-made backend slots (embedded engines, agents, tests).
    ///
    /// # Panics
    /// If the `[limits]` section is invalid: [`Config::validate`] refuses it first.
    pub fn with_slots(config: Config, slots: Vec<Arc<BackendSlot>>) -> AppState {
        let settings = Settings { routing: &config.routing, models: &config.models, cache: &config.cache };
        let limits = sluice_limits::Limiter::new(config.limits.clone(), Arc::new(sluice_limits::SystemClock))
            .expect("[limits] was validated with the configuration");
        let store = Arc::new(sluice_store::Store::new(&config.store));
        AppState {
            inner: Arc::new(Inner {
                core: Gateway::new(settings, slots),
                keys: ApiKeys::from_hashes(&config.auth.api_key_sha256),
                directory: Arc::new(Directory::new(store.clone())),
                logins: LoginThrottle::default(),
                started: Instant::now(),
                agents: Arc::new(AgentHub::new(&config.agents)),
                store,
                limits,
                usage: UsageLife::default(),
                retention: Retention::new(config.retention),
                quotas_seeded: std::sync::atomic::AtomicBool::new(false),
                auth_retrying: std::sync::atomic::AtomicBool::new(false),
                runs: crate::runs::Runs::new(crate::runs::Limits {
                    per_owner: config.ui.generations_per_user,
                    max_text: config.ui.max_answer_bytes,
                    keep_finished: config.ui.keep_finished,
                }),
                per_key: config.usage.per_key_metrics.then(Arc::default),
                budgets: Arc::default(),
                config,
            }),
        }
    }

    /// Starts the usage writer into the store when `[usage] enabled` (once; later
    /// calls do nothing). Needs a Tokio runtime. Drained by [`UsageLife::drain`].
    pub fn start_usage(&self) {
        if !self.config.usage.enabled || self.usage.sink().is_some() {
            return;
        }
        let (sink, writer) = sluice_store::UsageWriter::start(self.store.clone(), self.config.usage.writer());
        self.usage.keep(sink, writer);
    }

    /// Loads users and keys (failing when the store cannot be read) and keeps them
    /// current until shutdown; seeds the token quotas from this day's and month's
    /// stored usage, so a restart does not reset them. Idempotent; the serve loop calls
    /// it too.
    pub async fn start_auth(&self) -> Result<(), sluice_store::StoreError> {
        use std::sync::atomic::Ordering;
        self.directory.start(&self.core.tasks, self.core.shutdown.clone()).await?;
        if !self.quotas_seeded.swap(true, Ordering::SeqCst) {
            let seeded = async {
                let n = crate::tenancy::seed_quotas(&self.store, &self.limits).await?;
                if self.prices_configured() {
                    let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
                    crate::budgets::seed_from_store(&self.store, &self.budgets, now).await?;
                }
                Ok::<_, sluice_store::StoreError>(n)
            };
            match seeded.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(subjects = n, "token quotas seeded from stored usage"),
                Err(e) => {
                    self.quotas_seeded.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Like [`AppState::start_auth`], but a Postgres store that cannot be read now is
    /// read again in the background (every few seconds, until shutdown) instead of
    /// stopping the gateway: meanwhile service keys from the configuration work, user
    /// keys get 503 and agents a retryable refusal. A SQLite store that cannot be
    /// opened is a configuration problem and still fails here.
    pub async fn start_auth_or_retry(&self) -> Result<(), sluice_store::StoreError> {
        use std::sync::atomic::Ordering;
        // `sluice serve` calls this before binding its port and the serve loop again:
        // the second call must not wait for a store that is down a second time.
        if self.auth_retrying.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Err(e) = self.start_auth().await else { return Ok(()) };
        if !self.store.is_postgres() {
            return Err(e);
        }
        if self.auth_retrying.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        tracing::warn!(error = %e, "the store is unreachable: serving with service keys only until it is back");
        let state = self.clone();
        self.core.tasks.spawn(async move {
            let shutdown = state.core.shutdown.clone();
            let mut wait = std::time::Duration::from_millis(500);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match state.start_auth().await {
                    Ok(()) => {
                        tracing::info!("the store is back: users, keys and agents are served");
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "the store is still unreachable"),
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        });
        Ok(())
    }

    /// True when some `[[models]]` entry has a price: only then is there spend to count.
    pub fn prices_configured(&self) -> bool {
        self.config.models.iter().any(|m| m.price.is_some())
    }

    /// What an agent session needs from this state.
    pub fn link(&self) -> Link {
        Link {
            core: self.core.clone(),
            store: self.store.clone(),
            agents: self.agents.clone(),
            config: self.config.agents.clone(),
            grace: self.config.server.shutdown_grace,
        }
    }

    /// Loads the engine models configured to load at start, all at once; a model that
    /// fails is logged and retried on first use.
    pub async fn load_models_at_start(&self) {
        let engine: &EngineSection = &self.config.engine;
        let slots = self.core.registry.slots();
        sluice_backends::load_at_start(&slots, engine, !self.config.backends.is_empty()).await;
    }
}
