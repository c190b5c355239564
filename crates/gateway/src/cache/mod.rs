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

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::response::Response;
use futures_util::{Stream, StreamExt};
use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

use self::{
    config::CacheConfig,
    entry::{Entry, Replay},
    flight::{Flights, Reader, Seat},
    key::Key,
    memory::MemoryStore,
    policy::Directives,
    redis::RedisStore,
    store::Store,
};
use crate::{
    backends::BackendError,
    chat::{ChatRequest, Event},
    error::GatewayError,
    generation::{self, Generation, Served},
    metrics::{CacheMetrics, ModelLabels},
    state::AppState,
};

/// The response header naming the [`CacheStatus`].
pub static CACHE_HEADER: HeaderName = HeaderName::from_static("x-sluice-cache");

/// The backend name reported for answers replayed from the cache.
pub const CACHE_BACKEND: &str = "cache";

/// The cache and the flights in progress, owned by the application state.
pub struct Cache {
    enabled: bool,
    store: Store,
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
        Cache { enabled: config.enabled, store, flights: Flights::default() }
    }

    async fn put(&self, key: Key, entry: Entry) {
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

/// Adds `x-sluice-cache` to a response.
pub fn tag(mut resp: Response, status: CacheStatus) -> Response {
    resp.headers_mut().insert(CACHE_HEADER.clone(), HeaderValue::from_static(status.as_str()));
    resp
}

/// An answer under way, from whichever source.
pub struct Reply {
    source: Source,
    served: Served,
    started: Instant,
    ttft: Duration,
    status: CacheStatus,
}

// The live generation is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Source {
    Live(Generation),
    Replay(Replay),
    Flight(Reader),
}

impl Reply {
    /// Who serves it (`cache` for a replay).
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time from the request to its first event.
    pub fn ttft(&self) -> Duration {
        self.ttft
    }

    /// How the cache answered.
    pub fn status(&self) -> CacheStatus {
        self.status
    }
}

impl Stream for Reply {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.get_mut().source {
            Source::Live(g) => g.poll_next_unpin(cx),
            Source::Replay(r) => r.poll_next_unpin(cx),
            Source::Flight(f) => f.poll_next_unpin(cx),
        }
    }
}

/// Answers `req` from the cache, a flight in progress, or a new generation, following
/// the client's `Cache-Control` `directives`. Returns once the first event is ready, so
/// a failure before it still gets its status code.
pub async fn start(
    state: &AppState,
    req: ChatRequest,
    directives: Directives,
) -> Result<Reply, GatewayError> {
    let started = Instant::now();
    let cache = &state.cache;
    let m = &state.metrics.cache;
    let plan = if cache.enabled { policy::plan(&req, directives) } else { None };
    let Some(plan) = plan else {
        m.bypass.inc();
        let g = generation::start(state, req).await?;
        let (served, started, ttft) = (g.served().clone(), g.started(), g.ttft());
        return Ok(Reply { source: Source::Live(g), served, started, ttft, status: CacheStatus::Bypass });
    };
    let key = Key::of(&req);
    if plan.lookup
        && let Some(found) = cache.store.get(&key).await
        && plan.max_age.is_none_or(|max| found.age <= max)
    {
        m.hit.inc();
        let served = Served { model: req.model, backend: CACHE_BACKEND.to_owned() };
        let ttft = started.elapsed();
        let labels = ModelLabels { model: served.model.clone(), backend: served.backend.clone() };
        state.metrics.time_to_first_token.get_or_create(&labels).observe(ttft.as_secs_f64());
        let source = Source::Replay(found.entry.replay());
        return Ok(Reply { source, served, started, ttft, status: CacheStatus::Hit });
    }
    let seat = if plan.lookup { cache.flights.join(key) } else { Flights::private(key) };
    let (mut reader, status) = match seat {
        Seat::Leader(reader) => {
            m.miss.inc();
            let drive = flight::drive(state.clone(), reader.flight(), req, plan.store);
            // The flight runs in its own task: carry the client's priority class there.
            let class = crate::scheduler::admission::current_class();
            state.tasks.spawn(async move {
                match class {
                    Some(c) => crate::scheduler::admission::with_class(c, drive).await,
                    None => drive.await,
                }
            });
            (reader, CacheStatus::Miss)
        }
        Seat::Follower(reader) => {
            m.shared.inc();
            (reader, CacheStatus::Shared)
        }
    };
    let served = reader.head().await?;
    Ok(Reply { source: Source::Flight(reader), served, started, ttft: started.elapsed(), status })
}
