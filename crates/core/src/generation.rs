//! Starting a generation and watching it run.
//!
//! [`start`] admits the request (per-model caps and queues), then has the scheduler
//! route it, retrying and falling back until the first event is in (each attempt under
//! its first-token deadline), so anything that fails before a byte reaches the client
//! still gets a proper status code, or another backend. The rest of the answer flows
//! through a [`Generation`], which enforces the idle and total deadlines, records
//! metrics, and releases the backend's outstanding count when dropped. Deadlines are
//! checked lazily: a timer is re-armed only when it fires, never once per token.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll, ready},
    time::Duration,
};

use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::{
    backend::{BackendError, EventStream, Stage},
    chat::{ChatRequest, Event, Usage},
    context::RequestContext,
    dispatch::{self, Opened, Outstanding},
    error::GatewayError,
    gateway::Gateway,
    metrics::ModelMetrics,
    registry::{self, Served},
    scheduler::admission,
};

/// A generation under way: its first event already arrived.
pub struct Generation {
    first: Option<Event>,
    inner: EventStream,
    /// Holds the model's admission slot until the generation ends.
    _admission: Option<admission::Permit>,
    outstanding: Outstanding,
    state: Gateway,
    served: Served,
    /// The backend's name for the model (its breaker's key).
    upstream_model: Box<str>,
    started: Instant,
    last_event: Instant,
    ttft: Duration,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    total_timer: Pin<Box<Sleep>>,
    metrics: Arc<ModelMetrics>,
    tokens_out: u64,
    finished: bool,
}

/// Admits, routes and starts `req` (retrying, hedging and falling back as configured,
/// all before the first event); returns once its first event is in.
pub async fn start(
    state: &Gateway,
    ctx: &RequestContext,
    req: ChatRequest,
) -> Result<Generation, GatewayError> {
    let started = ctx.received;
    let admission = dispatch::admit(state, ctx, &req.model).await?;
    let Opened { out: (inner, first), served, outstanding, metrics, upstream_model } =
        dispatch::open(state, ctx, &req).await?;
    let t = outstanding.slot().timeouts;

    let now = Instant::now();
    let ttft = now - started;
    metrics.ttft.observe(ttft.as_secs_f64());
    state.metrics.active_streams.inc();
    let tokens_out = u64::from(first.is_output());
    outstanding.slot().completion_tokens.fetch_add(tokens_out, Ordering::Relaxed);
    Ok(Generation {
        first: Some(first),
        inner,
        _admission: admission,
        outstanding,
        state: state.clone(),
        served,
        upstream_model,
        started,
        last_event: now,
        ttft,
        idle: t.idle,
        idle_timer: Box::pin(tokio::time::sleep_until(now + t.idle)),
        total_timer: Box::pin(tokio::time::sleep_until(started + t.total)),
        metrics,
        tokens_out,
        finished: false,
    })
}

impl Generation {
    /// Who is serving it.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// When the request started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time to the first event.
    pub fn ttft(&self) -> Duration {
        self.ttft
    }

    fn on_done(&mut self, usage: Option<Usage>) {
        let m = &self.metrics;
        m.duration.observe(self.started.elapsed().as_secs_f64());
        let completion = usage.map_or(self.tokens_out, |u| u64::from(u.completion_tokens));
        m.completion_tokens.inc_by(completion);
        // Deltas were counted as they passed; the upstream's count settles the rest.
        let rest = completion.saturating_sub(self.tokens_out);
        self.outstanding.slot().completion_tokens.fetch_add(rest, Ordering::Relaxed);
        if let Some(u) = usage {
            m.prompt_tokens.inc_by(u64::from(u.prompt_tokens));
        }
    }

    fn fail(&mut self, e: BackendError) -> Poll<Option<Result<Event, BackendError>>> {
        self.finished = true;
        self.state.metrics.upstream_error(&self.served.backend, e.metric_kind());
        let (slot, now) = (self.outstanding.slot(), Instant::now());
        slot.routing.on_stream_failure(&self.upstream_model, &e, now);
        registry::publish_breaker(&self.state.metrics, slot, &self.upstream_model, now);
        tracing::warn!(backend = %self.served.backend, model = %self.served.model, error = %e, cause = ?e, "generation failed mid-stream");
        Poll::Ready(Some(Err(e)))
    }

    fn observe(&mut self, ev: &Event) {
        let now = Instant::now();
        if ev.is_output() {
            self.metrics.inter_token.observe((now - self.last_event).as_secs_f64());
            self.tokens_out += 1;
            self.outstanding.slot().completion_tokens.fetch_add(1, Ordering::Relaxed);
        }
        self.last_event = now;
    }
}

impl Stream for Generation {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            if let Event::Done { usage, .. } = &first {
                let usage = *usage;
                this.finished = true;
                this.on_done(usage);
            }
            return Poll::Ready(Some(Ok(first)));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(ev))) => {
                this.observe(&ev);
                if let Event::Done { usage, .. } = &ev {
                    let usage = *usage;
                    this.finished = true;
                    this.on_done(usage);
                }
                return Poll::Ready(Some(Ok(ev)));
            }
            Poll::Ready(Some(Err(e))) => return this.fail(e),
            Poll::Ready(None) => {
                return this
                    .fail(BackendError::Interrupted("stream ended before the answer finished".into()));
            }
            Poll::Pending => {}
        }
        if this.total_timer.as_mut().poll(cx).is_ready() {
            return this.fail(BackendError::Timeout(Stage::Total));
        }
        loop {
            ready!(this.idle_timer.as_mut().poll(cx));
            let deadline = this.last_event + this.idle;
            if Instant::now() >= deadline {
                return this.fail(BackendError::Timeout(Stage::Idle));
            }
            this.idle_timer.as_mut().reset(deadline);
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.state.metrics.active_streams.dec();
        if !self.finished {
            tracing::debug!(backend = %self.served.backend, "client went away; upstream request dropped");
        }
    }
}
