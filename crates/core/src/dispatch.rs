//! The attempts of one request up to its first event: pick a backend, send, and on a
//! failure before the first token retry (on another backend when there is one, within
//! the retry budget), hedge a slow first token if configured, and finally go on to the
//! model's fallbacks when the failure is one they are configured for. Once the first
//! event is in, [`open`] returns and nothing is ever retried again.
//!
//! The request is counted against the backend that answers ([`Outstanding`]) for as
//! long as its generation runs.

use std::{
    hash::{Hash, Hasher},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::time::{Instant, Sleep};

use crate::{
    backend::{Backend, BackendError, EventStream, Stage},
    capabilities,
    chat::{ChatRequest, EmbedRequest, Embeddings, Event, Input, Role},
    config::FallbackOn,
    context::RequestContext,
    error::GatewayError,
    gateway::Gateway,
    metrics::ModelMetrics,
    registry::{BackendSlot, Route, Served, has_free_slot, publish_breaker, route_cost},
    scheduler::{
        Ticket,
        admission::{self, Rejection},
        balance,
        retry::{self, Failure},
    },
};

/// What an attempt asks of one backend, and what it gets back once the backend has
/// answered: a chat's first event, or a whole embeddings answer.
trait Ask: Sync {
    /// The answer.
    type Out: Send;
    /// Whether the time to the answer is a time to first token, which balancing and
    /// hedging learn from (an embeddings answer is not).
    const FIRST_TOKEN: bool;
    /// Asks `backend` for `model` (the backend's own name for it).
    fn ask(
        &self,
        ctx: &RequestContext,
        backend: &dyn Backend,
        model: &str,
    ) -> BoxFuture<'static, Result<Self::Out, BackendError>>;

    /// The routes of `model` that can take this request; a 400 naming the field when
    /// none can.
    fn capable(&self, _model: &str, routes: Vec<Route>) -> Result<Vec<Route>, GatewayError> {
        Ok(routes)
    }
}

/// A chat request, answered once its first event is in.
struct Chat<'a>(&'a ChatRequest);

impl Ask for Chat<'_> {
    type Out = (EventStream, Event);
    const FIRST_TOKEN: bool = true;

    fn capable(&self, model: &str, routes: Vec<Route>) -> Result<Vec<Route>, GatewayError> {
        let needs = capabilities::needs(self.0);
        if needs.is_empty() {
            return Ok(routes);
        }
        let caps: Vec<Option<Vec<String>>> =
            routes.iter().map(|r| r.slot.capabilities(&r.upstream_model)).collect();
        let fit: Vec<Route> = routes
            .iter()
            .zip(&caps)
            .filter(|(_, c)| capabilities::satisfies(c.as_deref(), &needs))
            .map(|(r, _)| r.clone())
            .collect();
        if fit.is_empty() {
            return Err(capabilities::refusal(model, &needs, caps.iter().map(Option::as_deref)));
        }
        Ok(fit)
    }

    fn ask(
        &self,
        ctx: &RequestContext,
        backend: &dyn Backend,
        model: &str,
    ) -> BoxFuture<'static, Result<Self::Out, BackendError>> {
        let mut req = self.0.clone();
        req.model = model.to_owned();
        let opening = backend.chat(ctx, req);
        Box::pin(async move {
            let mut stream = opening.await?;
            match stream.next().await {
                Some(Ok(first)) => Ok((stream, first)),
                Some(Err(e)) => Err(e),
                None => Err(BackendError::Interrupted("stream ended without any event".into())),
            }
        })
    }
}

/// An embeddings request, answered whole.
struct Embed<'a>(&'a EmbedRequest);

impl Ask for Embed<'_> {
    type Out = Embeddings;
    const FIRST_TOKEN: bool = false;

    fn ask(
        &self,
        _: &RequestContext,
        backend: &dyn Backend,
        model: &str,
    ) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        backend.embed(EmbedRequest { model: model.to_owned(), ..self.0.clone() })
    }
}

/// An attempt that got its answer.
pub struct Landed<T> {
    /// The answer.
    pub out: T,
    /// The model and backend that answered (the model may be a fallback).
    pub served: Served,
    /// Counts the request against its backend.
    pub outstanding: Outstanding,
    /// The metrics of the model on that backend.
    pub metrics: Arc<ModelMetrics>,
    /// The backend's name for the model (its breaker's key).
    pub upstream_model: Box<str>,
}

/// A chat request whose first event arrived: the stream and that first event.
pub type Opened = Landed<(EventStream, Event)>;

/// Sends `req` until a backend produces its first event, or every option is spent.
/// No attempt outlives the total deadline of its backend counted from when the
/// request was received.
pub async fn open(state: &Gateway, ctx: &RequestContext, req: &ChatRequest) -> Result<Opened, GatewayError> {
    state.routing.budget.deposit(Instant::now());
    let sticky = if state.routing.config.sticky { sticky_key(req) } else { None };
    let primary = req.model.as_str();
    let ask = Chat(req);
    let mut err = match open_model(state, ctx, &ask, primary, sticky).await {
        Ok(o) => return Ok(o),
        Err(e) => e,
    };
    let Some(policy) = state.routing.policy(primary) else { return Err(err) };
    for fallback in &policy.fallbacks {
        match fallback_condition(&err) {
            Some(c) if policy.fallback_on.contains(&c) => {}
            _ => return Err(err),
        }
        tracing::info!(model = primary, fallback = %fallback, error = %err, "falling back");
        state.metrics.routing.fallback(primary, fallback);
        match open_model(state, ctx, &ask, fallback, sticky).await {
            Ok(o) => return Ok(o),
            Err(GatewayError::ModelNotFound(_)) => {
                tracing::warn!(model = primary, fallback = %fallback, "fallback model is served by no backend");
            }
            Err(e) => err = e,
        }
    }
    Err(err)
}

/// Waits for a slot of `model` if it has a concurrency cap: 429 when its queue is
/// full, 503 when the wait runs out.
pub async fn admit(
    state: &Gateway,
    ctx: &RequestContext,
    model: &str,
) -> Result<Option<admission::Permit>, GatewayError> {
    let Some(gate) = state.routing.gate(model) else { return Ok(None) };
    match gate.admit(ctx.class).await {
        Ok(permit) => Ok(Some(permit)),
        Err(why) => {
            state.metrics.routing.rejection(model, why.as_str());
            Err(match why {
                Rejection::QueueFull => GatewayError::RateLimited {
                    message: format!("model '{model}' is at capacity and its queue is full"),
                    retry_after: Some(std::time::Duration::from_secs(1)),
                },
                Rejection::Timeout => GatewayError::Unavailable(format!(
                    "model '{model}' stayed at capacity for {}",
                    humantime::format_duration(gate.max_wait)
                )),
            })
        }
    }
}

/// Embeds `req.input` with a backend of `req.model`, through the same attempts as a
/// chat (breakers, retries within the budget, deadlines, metrics) but never on a
/// fallback model: another model's vectors live in another space.
pub async fn embed(
    state: &Gateway,
    ctx: &RequestContext,
    req: &EmbedRequest,
) -> Result<Landed<Embeddings>, GatewayError> {
    state.routing.budget.deposit(Instant::now());
    open_model(state, ctx, &Embed(req), &req.model, None).await
}

fn fallback_condition(e: &GatewayError) -> Option<FallbackOn> {
    match e {
        GatewayError::Backend(b) => Failure::of(b).fallback_condition(),
        GatewayError::Unavailable(_) => Some(FallbackOn::Error),
        GatewayError::RateLimited { .. } => Some(FallbackOn::RateLimited),
        _ => None,
    }
}

/// An attempt that failed before its first event.
struct Failed {
    error: BackendError,
    failure: Failure,
}

/// Tries `model`'s backends: retries, hedges, but no fallbacks.
async fn open_model<A: Ask>(
    state: &Gateway,
    ctx: &RequestContext,
    ask: &A,
    model: &str,
    sticky: Option<u64>,
) -> Result<Landed<A::Out>, GatewayError> {
    let routes = ask.capable(model, state.registry.routes(model).await?)?;
    let cfg = &state.routing.config;
    let max = cfg.retry.max_attempts;
    let mut tried = vec![false; routes.len()];
    let mut launched = 0u32;
    let mut inflight = FuturesUnordered::new();
    let mut hedge: Option<Pin<Box<Sleep>>> = None;
    let mut last: Option<Failed> = None;
    loop {
        if inflight.is_empty() {
            if launched >= max {
                break;
            }
            let Some((i, permit)) = next_route(state, &routes, &tried, last.as_ref(), launched, sticky).await
            else {
                break;
            };
            if let Some(prev) = &last {
                if !state.routing.budget.try_withdraw(Instant::now()) {
                    routes[i].slot.routing.on_abandon(permit, &routes[i].upstream_model);
                    state.metrics.routing.retry_budget_exhausted.inc();
                    tracing::warn!(model, "retry budget spent: not retrying");
                    break;
                }
                state.metrics.routing.retry(model, prev.failure.as_str());
            }
            launched += 1;
            tried[i] = true;
            inflight.push(attempt(state, ctx, &routes[i], permit, ask, model));
            hedge = (cfg.hedge.enabled && launched < max && routes.len() > 1)
                .then(|| Box::pin(tokio::time::sleep(routes[i].slot.routing.hedge_delay(&cfg.hedge))));
        }
        tokio::select! {
            Some(result) = inflight.next() => match result {
                Ok(opened) => return Ok(opened),
                Err(failed) if !failed.failure.retryable() => return Err(failed.error.into()),
                Err(failed) => last = Some(failed),
            },
            () = fire(&mut hedge) => {
                hedge = None;
                // A second backend, never one already asked, within the same budget.
                if let Some((i, permit)) = choose(state, &routes, |i| !tried[i], None) {
                    if state.routing.budget.try_withdraw(Instant::now()) {
                        tracing::debug!(model, backend = routes[i].slot.name(), "hedging a slow first token");
                        state.metrics.routing.hedge(model);
                        launched += 1;
                        tried[i] = true;
                        inflight.push(attempt(state, ctx, &routes[i], permit, ask, model));
                    } else {
                        routes[i].slot.routing.on_abandon(permit, &routes[i].upstream_model);
                        state.metrics.routing.retry_budget_exhausted.inc();
                    }
                }
            }
        }
    }
    match last {
        Some(f) => Err(f.error.into()),
        None => Err(no_backend(state, model, &routes)),
    }
}

async fn fire(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// The next backend to try. A backend not tried yet if one is available; else, when
/// the last failure allows the same backend again, one already tried after a backoff
/// (or after its `Retry-After`, if that is short enough); else none.
async fn next_route(
    state: &Gateway,
    routes: &[Route],
    tried: &[bool],
    last: Option<&Failed>,
    launched: u32,
    sticky: Option<u64>,
) -> Option<(usize, Ticket)> {
    if let Some(pick) = choose(state, routes, |i| !tried[i], sticky) {
        return Some(pick);
    }
    let cfg = &state.routing.config.retry;
    let last = last?;
    if !last.failure.same_backend_ok(cfg.max_retry_after) {
        return None;
    }
    tokio::time::sleep(retry::backoff(cfg, launched, rand::random::<f64>())).await;
    if let Some(pick) = choose(state, routes, |_| true, sticky) {
        return Some(pick);
    }
    let now = Instant::now();
    let until = routes.iter().filter_map(|r| r.slot.routing.throttled_until(&r.upstream_model, now)).min()?;
    if until - now > cfg.max_retry_after {
        return None;
    }
    tokio::time::sleep_until(until).await;
    choose(state, routes, |_| true, sticky)
}

/// Picks among the eligible available routes, healthy ones first: the sticky choice
/// unless it is much busier than the least busy, else power of two choices. Takes a
/// breaker permit; `None` when no route can be used.
fn choose(
    state: &Gateway,
    routes: &[Route],
    eligible: impl Fn(usize) -> bool,
    sticky: Option<u64>,
) -> Option<(usize, Ticket)> {
    let now = Instant::now();
    let mut cands: Vec<usize> = (0..routes.len())
        .filter(|&i| eligible(i) && routes[i].slot.routing.available(&routes[i].upstream_model, now))
        .collect();
    let healthy = |i: &usize| routes[*i].slot.healthy.load(Ordering::Relaxed);
    if cands.iter().any(healthy) {
        cands.retain(healthy);
    }
    // An agent never gets more jobs than its slots while another backend has room.
    if cands.iter().any(|&i| has_free_slot(&routes[i])) {
        cands.retain(|&i| has_free_slot(&routes[i]));
    }
    let outstanding = |i: usize| routes[i].slot.outstanding.load(Ordering::Relaxed);
    while !cands.is_empty() {
        let costs: Vec<f64> =
            cands.iter().map(|&i| route_cost(&routes[i], now).unwrap_or(f64::INFINITY)).collect();
        let mut k = balance::p2c(&costs, rand::random::<u64>());
        if let Some(key) = sticky
            && let Some(s) = balance::rendezvous(key, cands.iter().map(|&i| routes[i].slot.name()))
        {
            let least = cands.iter().map(|&i| outstanding(i)).min().unwrap_or(0);
            // Keep the conversation where its prefix is cached unless that backend is
            // clearly the busiest.
            if outstanding(cands[s]) <= 2 * least + 2 {
                k = s;
            }
        }
        let i = cands[k];
        if let Some(permit) = routes[i].slot.routing.try_acquire(&routes[i].upstream_model, now) {
            publish_breaker(&state.metrics, &routes[i].slot, &routes[i].upstream_model, now);
            return Some((i, permit));
        }
        // Another request took the half-open probe meanwhile.
        cands.swap_remove(k);
    }
    None
}

/// Gives the breaker permit back if the attempt is dropped before an outcome.
struct Trial<'a> {
    slot: &'a BackendSlot,
    model: &'a str,
    permit: Ticket,
    armed: bool,
}

impl Trial<'_> {
    /// The outcome is in: the caller reports it.
    fn disarm(mut self) -> Ticket {
        self.armed = false;
        self.permit
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.slot.routing.on_abandon(self.permit, self.model);
        }
    }
}

/// One attempt on one backend, up to its answer (a chat's first event) or its
/// first-token deadline.
async fn attempt<A: Ask>(
    state: &Gateway,
    ctx: &RequestContext,
    route: &Route,
    permit: Ticket,
    ask: &A,
    model: &str,
) -> Result<Landed<A::Out>, Failed> {
    let slot = &route.slot;
    let trial = Trial { slot, model: &route.upstream_model, permit, armed: true };
    let outstanding = Outstanding::new(state, slot);
    let t = slot.timeouts;
    let sent = Instant::now();
    let opening = ask.ask(ctx, slot.backend.as_ref(), &route.upstream_model);
    let (first_by, total_by) = (sent + t.first_token, ctx.received + t.total);
    let outcome = match tokio::time::timeout_at(first_by.min(total_by), opening).await {
        Ok(r) => r,
        Err(_) => {
            Err(BackendError::Timeout(if first_by <= total_by { Stage::FirstToken } else { Stage::Total }))
        }
    };
    let now = Instant::now();
    let permit = trial.disarm();
    let error = match outcome {
        Ok(out) => {
            if A::FIRST_TOKEN {
                slot.routing.on_success(
                    permit,
                    &route.upstream_model,
                    now - sent,
                    state.routing.config.ewma_decay,
                    now,
                );
            } else {
                slot.routing.on_answer(permit, &route.upstream_model, now);
            }
            publish_breaker(&state.metrics, slot, &route.upstream_model, now);
            let served = Served { model: model.to_owned(), backend: slot.name().to_owned() };
            let metrics = route.metrics(&state.metrics, model);
            return Ok(Landed {
                out,
                served,
                outstanding,
                metrics,
                upstream_model: route.upstream_model.as_str().into(),
            });
        }
        Err(e) => e,
    };
    let failure = Failure::of(&error);
    let wide = retry::backend_wide(&error);
    slot.routing.on_failure(permit, &route.upstream_model, failure, wide, now - sent, now);
    publish_breaker(&state.metrics, slot, &route.upstream_model, now);
    state.metrics.upstream_error(slot.name(), error.metric_kind());
    tracing::warn!(backend = slot.name(), model, error = %error, cause = ?error, "attempt failed before the first token");
    Err(Failed { error, failure })
}

/// The error when no backend of `model` can be asked: 429 when every one is rate
/// limited, else 503.
fn no_backend(state: &Gateway, model: &str, routes: &[Route]) -> GatewayError {
    let now = Instant::now();
    let throttled: Vec<Instant> =
        routes.iter().filter_map(|r| r.slot.routing.throttled_until(&r.upstream_model, now)).collect();
    if !routes.is_empty() && throttled.len() == routes.len() {
        state.metrics.routing.rejection(model, "rate_limited");
        let wait = throttled.iter().min().map_or(std::time::Duration::from_secs(1), |t| *t - now);
        return GatewayError::RateLimited {
            message: format!("every backend of model '{model}' is rate limited"),
            retry_after: Some(wait.max(std::time::Duration::from_secs(1))),
        };
    }
    state.metrics.routing.rejection(model, "no_backend");
    GatewayError::Unavailable(format!(
        "no backend of model '{model}' can take requests now (circuit breakers open)"
    ))
}

/// Identifies a conversation by everything up to its first user message, which stays
/// the same on every turn.
fn sticky_key(req: &ChatRequest) -> Option<u64> {
    let Input::Chat(messages) = &req.input else { return None };
    let first_user = messages.iter().position(|m| m.role == Role::User)?;
    let mut h = std::hash::DefaultHasher::new();
    req.model.hash(&mut h);
    for m in &messages[..=first_user] {
        m.role.as_str().hash(&mut h);
        m.content.hash(&mut h);
    }
    Some(h.finish())
}

/// Counts a request against its backend until dropped.
pub struct Outstanding {
    state: Gateway,
    slot: Arc<BackendSlot>,
}

impl Outstanding {
    /// Counts one more request on `slot`.
    pub fn new(state: &Gateway, slot: &Arc<BackendSlot>) -> Self {
        let n = slot.outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        slot.gauges(&state.metrics).outstanding.set(i64::try_from(n).unwrap_or(i64::MAX));
        Outstanding { state: state.clone(), slot: slot.clone() }
    }

    /// The backend counted.
    pub fn slot(&self) -> &Arc<BackendSlot> {
        &self.slot
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let n = self.slot.outstanding.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.slot.gauges(&self.state.metrics).outstanding.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
