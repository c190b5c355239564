//! [`Gateway`]: the domain's shared state — backends, routing, cache, metrics — and the
//! task tracker that owns every background task. The HTTP server and the terminal
//! client hold one; nothing here knows about HTTP.

use std::sync::Arc;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    cache::{Cache, config::CacheConfig},
    config::{ModelPolicy, RoutingConfig},
    metrics::Metrics,
    registry::{BackendSlot, Registry},
    scheduler::Routing,
};

/// The domain state every request needs, cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// The gateway's contents.
pub struct Inner {
    /// Backends and models.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Metrics,
    /// Balancing, breakers' settings, retry budget, admission.
    pub routing: Routing,
    /// Response cache and single-flight.
    pub cache: Cache,
    /// Owns background tasks (cache flights, probes).
    pub tasks: TaskTracker,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown's grace period is over: answers still running end
    /// with an explicit error (a stream's last event says the gateway is shutting
    /// down) before their connections close.
    pub cut: CancellationToken,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// The settings a [`Gateway`] is built from: the `[routing]`, `[[models]]` and
/// `[cache]` sections.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `[routing]`.
    pub routing: &'a RoutingConfig,
    /// `[[models]]`.
    pub models: &'a [ModelPolicy],
    /// `[cache]`.
    pub cache: &'a CacheConfig,
}

impl Gateway {
    /// A gateway over ready-made backend slots. Does not touch the network.
    pub fn new(settings: Settings<'_>, slots: Vec<Arc<BackendSlot>>) -> Gateway {
        let metrics = Metrics::new();
        let cache = Cache::new(settings.cache, &metrics.cache);
        Gateway {
            inner: Arc::new(Inner {
                registry: Registry::new(slots),
                routing: Routing::new(settings.routing, settings.models, &metrics),
                metrics,
                cache,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                cut: CancellationToken::new(),
            }),
        }
    }
}
