//! What an answer costs its owner: the limits checked before it starts, and the
//! settlement when it ends — the token charge corrected to the real count, one usage
//! record queued for the batched writer.
//!
//! [`admit`] runs before the cache and the scheduler. The answer's event stream is then
//! wrapped in [`Metered`], which watches the events on their way to the client and
//! settles once, when the stream ends or is dropped (a client that disconnects is
//! charged for what was generated). Nothing here waits on the database.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::{FutureExt as _, Stream};
use sluice_core::{
    backend::BackendError,
    cache::CacheStatus,
    chat::{Event, Usage},
    config::routing::Price,
    context::RequestContext,
    error::GatewayError,
    registry::Served,
};
use sluice_limits::{Admission, LimitSpec, RateHeaders, Refusal, Subject};
use sluice_store::{UsageRecord, UsageSink};
use tokio::time::Instant;

use super::conversation::{Answer, Recording};
use crate::state::AppState;

/// The subjects a request is limited as, with their limits.
pub fn checks(state: &AppState, ctx: &RequestContext) -> Vec<(Subject, LimitSpec)> {
    crate::tenancy::limit_checks(&state.config.limits, &ctx.principal)
}

/// Admits a request of about `estimate_tokens` prompt tokens, or says which limit
/// refused it (a 429 with `Retry-After` and the rate headers).
pub async fn admit(
    state: &AppState,
    ctx: &RequestContext,
    estimate_tokens: u64,
) -> Result<Admission, (GatewayError, RateHeaders)> {
    let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
    state.budgets.check(&ctx.principal, now).map_err(|e| (e, RateHeaders::default()))?;
    let checks = checks(state, ctx);
    let refs: Vec<(Subject, &LimitSpec)> = checks.iter().map(|(s, l)| (s.clone(), l)).collect();
    state.limits.admit(&refs, estimate_tokens).await.map_err(|r: Refusal| {
        let err = GatewayError::RateLimited { message: r.message, retry_after: Some(r.retry_after) };
        (err, r.headers)
    })
}

/// What is known of a request when its answer starts, for its usage record.
pub struct Ledger {
    /// The limits' hold on the request; corrected and released at the end.
    pub admission: Option<Admission>,
    /// Where the usage record goes (`None`: usage recording is off).
    pub usage: Option<UsageSink>,
    /// The owner, as stored (`None` for callers without an account).
    pub user_id: Option<Arc<str>>,
    /// The API key's id, when one was used.
    pub key_id: Option<String>,
    /// Which API dialect the client spoke.
    pub dialect: &'static str,
    /// The prompt's estimated size, used when the backend reports no counts.
    pub prompt_estimate: u64,
    /// The model's price, if configured.
    pub price: Option<Price>,
    /// When the gateway received the request.
    pub received: Instant,
    /// Where the answer is stored, when the client asked (`x-sluice-conversation`).
    pub recording: Option<Recording>,
    /// Per-key counters, when `[usage] per_key_metrics` is on.
    pub per_key: Option<Arc<crate::tenancy::KeyCounters>>,
    /// Where spend is counted for budgets (`None`: no price, nothing to count).
    pub budgets: Option<Arc<crate::budgets::Budgets>>,
}

impl Ledger {
    /// Settles a request that failed before its answer started: no tokens were
    /// generated, so the token estimate is given back; the failure is recorded.
    pub fn failed(self, err: &GatewayError, model: String) {
        let status = err.status_code().as_u16();
        let served = Served { model, backend: String::new() };
        let s = Settlement {
            ledger: self,
            served,
            cached: false,
            first_event: None,
            generated_chars: 0,
            usage: Some(Usage { prompt_tokens: 0, completion_tokens: 0 }),
            status,
            text: String::new(),
            finish_reason: None,
            error: Some(err.client_message()),
        };
        s.finish();
    }
}

/// The price of `model` from its `[[models]]` entry.
pub fn price_of(state: &AppState, model: &str) -> Option<Price> {
    let model = model.strip_suffix(":latest").unwrap_or(model);
    state.config.models.iter().find(|m| m.name == model).and_then(|m| m.price)
}

/// An answer's event stream, metered: settles its [`Ledger`] exactly once, when the
/// stream ends or is dropped.
pub struct Metered<S> {
    inner: S,
    settle: Option<Settlement>,
}

/// The ledger plus what the stream showed.
struct Settlement {
    ledger: Ledger,
    served: Served,
    cached: bool,
    first_event: Option<Instant>,
    generated_chars: u64,
    usage: Option<Usage>,
    /// The HTTP status the request is recorded with.
    status: u16,
    /// The answer's text, kept only while it is being stored in a conversation.
    text: String,
    finish_reason: Option<&'static str>,
    /// What the client was told went wrong, for the stored answer.
    error: Option<String>,
}

impl<S> Metered<S> {
    /// Meters `inner`, served by `served` with cache status `status`.
    pub fn new(inner: S, ledger: Ledger, served: Served, status: CacheStatus) -> Metered<S> {
        let settle = Settlement {
            ledger,
            served,
            cached: matches!(status, CacheStatus::Hit),
            first_event: None,
            generated_chars: 0,
            usage: None,
            status: 200,
            text: String::new(),
            finish_reason: None,
            error: None,
        };
        Metered { inner, settle: Some(settle) }
    }

    /// Says why the answer ends early (stored with it) before the stream is dropped.
    pub fn interrupt(&mut self, why: &str) {
        if let Some(s) = self.settle.as_mut() {
            s.error = Some(why.to_owned());
        }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Stream<Item = Result<Event, BackendError>> + Unpin> Stream for Metered<S> {
    type Item = Result<Event, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = std::task::ready!(Pin::new(&mut this.inner).poll_next(cx));
        if let Some(s) = this.settle.as_mut() {
            match &item {
                Some(Ok(Event::Delta(text))) => {
                    s.first_event.get_or_insert_with(Instant::now);
                    s.generated_chars += text.len() as u64;
                    if s.ledger.recording.is_some() {
                        s.text.push_str(text);
                    }
                }
                Some(Ok(Event::Reasoning(text))) => {
                    s.first_event.get_or_insert_with(Instant::now);
                    s.generated_chars += text.len() as u64;
                }
                Some(Ok(Event::ToolCall(d))) => {
                    s.first_event.get_or_insert_with(Instant::now);
                    s.generated_chars += (d.arguments.len() + d.name.as_ref().map_or(0, String::len)) as u64;
                }
                Some(Ok(Event::Logprobs(_))) => {}
                Some(Ok(Event::Done { usage, finish_reason, .. })) => {
                    s.first_event.get_or_insert_with(Instant::now);
                    s.usage = *usage;
                    s.finish_reason = Some(finish_reason.as_str());
                }
                Some(Err(e)) => {
                    s.status = 502;
                    s.error = Some(GatewayError::Backend(e.clone()).client_message());
                }
                None => {}
            }
        }
        if matches!(item, None | Some(Ok(Event::Done { .. })) | Some(Err(_)))
            && let Some(s) = this.settle.take()
        {
            s.finish();
        }
        Poll::Ready(item)
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        // A client that left early is charged for what was generated until then.
        if let Some(s) = self.settle.take() {
            s.finish();
        }
    }
}

impl Settlement {
    fn finish(self) {
        let Settlement {
            ledger,
            served,
            cached,
            first_event,
            generated_chars,
            usage,
            status,
            text,
            finish_reason,
            error,
        } = self;
        let (prompt, completion) = match usage {
            Some(u) => (u64::from(u.prompt_tokens), u64::from(u.completion_tokens)),
            None => (ledger.prompt_estimate, generated_chars.div_ceil(4)),
        };
        // A replay from the cache generated nothing: it costs no tokens of the limits.
        let charged = if cached { 0 } else { prompt + completion };
        if let Some(admission) = ledger.admission {
            let mut done = Box::pin(admission.complete(charged));
            // Local limits settle at once; a shared (Redis) correction goes on alone.
            if done.as_mut().now_or_never().is_none() {
                tokio::spawn(done);
            }
        }
        let now = Instant::now();
        let ttft_ms = first_event.map(|t| millis(t - ledger.received));
        if let Some(recording) = ledger.recording {
            let error = match (status, finish_reason, error) {
                (200, Some(_), _) => None,
                (_, _, Some(e)) => Some(e),
                (200, None, None) => Some("the client left before the answer ended".to_owned()),
                (s, _, None) => Some(format!("the answer failed (status {s})")),
            };
            recording.finish(Answer {
                text,
                model: served.model.clone(),
                tokens: (prompt, completion),
                ttft_ms,
                duration_ms: millis(now - ledger.received),
                finish_reason: finish_reason.map(str::to_owned),
                error,
            });
        }
        if let Some(counters) = &ledger.per_key {
            let user = ledger.user_id.as_deref().unwrap_or("");
            counters.add(user, ledger.key_id.as_deref().unwrap_or(""), prompt, completion);
        }
        let spend = if cached { 0.0 } else { ledger.price.map_or(0.0, |p| p.spend(prompt, completion)) };
        if let Some(budgets) = &ledger.budgets {
            let micros = sluice_protocol::budget::usd_to_micros(spend);
            let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
            budgets.charge(ledger.user_id.as_deref(), ledger.key_id.as_deref(), micros, now);
        }
        let Some(sink) = ledger.usage else { return };
        sink.record(UsageRecord {
            at: crate::clock::now_ms(),
            user_id: ledger.user_id.map(|u| u.to_string()),
            key_id: ledger.key_id,
            model: served.model,
            backend: served.backend,
            dialect: ledger.dialect.to_owned(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached,
            ttft_ms,
            duration_ms: millis(now - ledger.received),
            status,
            spend,
        });
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Appends the limiter's state to a Prometheus text exposition (before its `# EOF`):
/// generations running, and whether this replica counts alone because Redis failed.
pub fn with_limits_metrics(text: String, limits: &sluice_limits::Limiter) -> String {
    use std::fmt::Write as _;
    let fallback = u8::from(limits.fallback_active());
    crate::exposition::append(text, |out| {
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "# HELP sluice_limits_active_generations Generations admitted and running on this gateway.\n\
         # TYPE sluice_limits_active_generations gauge\n\
         sluice_limits_active_generations {}\n\
         # HELP sluice_limits_redis_fallback 1 while Redis is unreachable and this replica enforces its share of the limits alone.\n\
         # TYPE sluice_limits_redis_fallback gauge\n\
         sluice_limits_redis_fallback {fallback}\n\
         # HELP sluice_limits_redis_fallbacks Times the limiter fell back to local limits.\n\
         # TYPE sluice_limits_redis_fallbacks counter\n\
         sluice_limits_redis_fallbacks_total {}\n\
         # HELP sluice_limits_redis_errors Failed Redis calls of the limiter.\n\
         # TYPE sluice_limits_redis_errors counter\n\
         sluice_limits_redis_errors_total {}\n",
            limits.active_generations(),
            limits.fallbacks_total(),
            limits.redis_errors_total(),
        );
    })
}
