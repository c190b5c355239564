//! The response cache and single-flight: the stage between the API handlers and
//! [`generation::start`].
//!
//! Handlers call [`start`] instead of `generation::start`. For an eligible request (see
//! [`policy`]) it replays a stored answer, or joins an identical request already in
//! flight, or leads a new flight whose completed answer is stored. Every way yields a
//! [`Reply`]: the same stream of events a live generation gives, so each dialect's
//! encoder renders it in the client's own format, streamed or whole. The response
//! says what happened in `x-sluice-cache`:
//!
//! | value | meaning |
//! |---|---|
//! | `hit` | replayed from the cache, no upstream request |
//! | `miss` | generated upstream for this request (and stored, unless `no-store`) |
//! | `shared` | joined an identical request in flight: one upstream generation, every client gets the whole answer from its start |
//! | `bypass` | not eligible, or the cache is disabled: straight upstream |
//!
//! # Layout
//! - [`config`]: the `[cache]` section.
//! - [`policy`]: which requests are eligible; `Cache-Control`.
//! - [`key`]: the canonical request hash.
//! - [`entry`]: a stored answer, its replay and its bytes.
//! - [`store`], [`memory`], [`redis`]: where answers are kept.
//! - [`flight`]: single-flight coalescing.

pub mod config;
pub mod entry;
pub mod flight;
pub mod key;
pub mod memory;
pub mod policy;
pub mod redis;
pub mod store;

use http::HeaderName;

use self::{
    config::CacheConfig, entry::Entry, flight::Flights, key::Key, memory::MemoryStore, redis::RedisStore,
    store::Store,
};
use crate::metrics::CacheMetrics;

/// The response header naming the [`CacheStatus`].
pub static CACHE_HEADER: HeaderName = HeaderName::from_static("x-sluice-cache");

/// The backend name reported for answers replayed from the cache.
pub const CACHE_BACKEND: &str = "cache";

/// The cache and the flights in progress, owned by the application state.
pub struct Cache {
    pub(crate) enabled: bool,
    /// Whether answers are per tenant or shared.
    pub(crate) scope: config::CacheScope,
    pub(crate) store: Store,
    /// Flights in progress.
    pub flights: Flights,
}

impl Cache {
    /// Builds the configured store (Redis is not contacted until first use).
    pub fn new(config: &CacheConfig, metrics: &CacheMetrics) -> Cache {
        let memory = || {
            Store::Memory(MemoryStore::new(
                config.max_bytes,
                config.ttl,
                metrics.entries.clone(),
                metrics.bytes.clone(),
            ))
        };
        let store = match &config.redis_url {
            None => memory(),
            Some(url) => {
                match RedisStore::new(
                    url,
                    &config.key_prefix,
                    config.ttl,
                    config.redis_timeout,
                    metrics.store_errors.clone(),
                ) {
                    Ok(r) => Store::Redis(Box::new(r)),
                    // Validation rejects such URLs before startup; this only guards.
                    Err(e) => {
                        tracing::error!(error = %e, "cache.redis_url unusable; caching in memory");
                        memory()
                    }
                }
            }
        };
        Cache { enabled: config.enabled, scope: config.scope, store, flights: Flights::default() }
    }

    pub(crate) async fn put(&self, key: Key, entry: Entry) {
        self.store.put(key, entry).await;
    }
}

/// How a reply relates to the cache; the value of `x-sluice-cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Replayed from the cache.
    Hit,
    /// Generated upstream for this request.
    Miss,
    /// Joined an identical request in flight.
    Shared,
    /// Not eligible, or the cache is disabled.
    Bypass,
}

impl CacheStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Shared => "shared",
            CacheStatus::Bypass => "bypass",
        }
    }
}
