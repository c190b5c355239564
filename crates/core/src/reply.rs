//! [`start`]: the stage between the API handlers and [`generation::start`]. For a
//! request the cache may answer (see [`cache::policy`]) it replays a stored answer,
//! or joins an identical request already in flight, or leads a new flight whose
//! completed answer is stored; otherwise it starts a generation. Every way yields a
//! [`Reply`]: the same stream of events a live generation gives, so each dialect's
//! encoder renders it in the client's own format, streamed or whole. The response says
//! what happened in `x-sluice-cache` ([`CacheStatus`]).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::{
    backend::BackendError,
    cache::{
        CACHE_BACKEND, CacheStatus,
        config::CacheScope,
        entry::{Entry, Replay},
        flight::{Flight, Flights, Reader, Seat, lock},
        key::Key,
        policy,
    },
    chat::{ChatRequest, Event},
    context::RequestContext,
    error::GatewayError,
    gateway::Gateway,
    generation::{self, Generation},
    metrics::ModelLabels,
    registry::Served,
};

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
/// the client's `Cache-Control` directives (in `ctx`). Returns once the first event is
/// ready, so a failure before it still gets its status code.
pub async fn start(state: &Gateway, ctx: &RequestContext, req: ChatRequest) -> Result<Reply, GatewayError> {
    let started = ctx.received;
    let cache = &state.cache;
    let m = &state.metrics.cache;
    let plan = if cache.enabled { policy::plan(&req, ctx.cache) } else { None };
    let Some(plan) = plan else {
        m.bypass.inc();
        let g = generation::start(state, ctx, req).await?;
        let (served, started, ttft) = (g.served().clone(), g.started(), g.ttft());
        return Ok(Reply { source: Source::Live(g), served, started, ttft, status: CacheStatus::Bypass });
    };
    let tenant = (cache.scope == CacheScope::User).then(|| ctx.principal.tenant());
    let key = Key::scoped(&req, tenant.as_ref());
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
            // The flight runs in its own task, under the leader's context.
            state.tasks.spawn(drive(state.clone(), ctx.clone(), reader.flight(), req, plan.store));
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

/// Runs the flight's one generation, records it for the readers, stores a completed
/// answer when `store` is set, and closes the flight. Stops, dropping the generation
/// and so the upstream request, as soon as every reader has gone.
pub async fn drive(state: Gateway, ctx: RequestContext, flight: Arc<Flight>, req: ChatRequest, store: bool) {
    let cache = &state.cache;
    let started = tokio::select! {
        biased;
        () = flight.abandoned.notified() => None,
        r = generation::start(&state, &ctx, req) => Some(r),
    };
    let mut generation = match started {
        None => return cache.flights.remove(&flight),
        Some(Err(e)) => {
            flight.update(|p| {
                p.head = Some(Err(e));
                p.closed = true;
            });
            return cache.flights.remove(&flight);
        }
        Some(Ok(g)) => g,
    };
    let backend: Arc<str> = generation.served().backend.as_str().into();
    let served = generation.served().clone();
    flight.update(|p| p.head = Some(Ok(served)));
    loop {
        let ev = tokio::select! {
            biased;
            () = flight.abandoned.notified() => {
                tracing::debug!(key = ?flight.key, "every client left; upstream request dropped");
                return cache.flights.remove(&flight);
            }
            ev = generation.next() => ev,
        };
        match ev {
            Some(Ok(ev)) => {
                let done = matches!(ev, Event::Done { .. });
                if done && store {
                    // Stored before any client sees the end: whoever holds a whole answer
                    // finds it in the cache when asking again.
                    let mut events = lock(&flight.progress).events.clone();
                    events.push(ev.clone());
                    if let Some(entry) = Entry::complete(events.into(), backend.clone()) {
                        cache.put(flight.key, entry).await;
                    }
                }
                flight.update(|p| {
                    p.events.push(ev);
                    p.done = done;
                });
                if done {
                    return cache.flights.remove(&flight);
                }
            }
            Some(Err(e)) => {
                flight.update(|p| {
                    p.failure = Some(e);
                    p.closed = true;
                });
                return cache.flights.remove(&flight);
            }
            None => {
                let e = BackendError::Interrupted("stream ended before the answer finished".into());
                flight.update(|p| {
                    p.failure = Some(e);
                    p.closed = true;
                });
                return cache.flights.remove(&flight);
            }
        }
    }
}
