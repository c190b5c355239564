//! The one request-to-response path every generating route takes: run a canonical
//! request through the cache and the scheduler, then render the answer — streamed or
//! whole — through the client's [`Dialect`]. The dialect modules keep only parsing and
//! encoding.

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use sluice_core::{
    answer::Answer,
    cache::{self, CacheStatus},
    carry::{Carried, Fields},
    chat::{ChatRequest, Input},
    context::RequestContext,
    error::GatewayError,
    registry::Served,
    reply::{self, Reply},
};
use sluice_limits::RateHeaders;

use super::{
    accounting::{self, Ledger, Metered},
    allowed_model,
    conversation::{self, Recording},
    early, served_response,
    stream_body::{Cut, Encoder, EventBody, collect, shutting_down},
    streaming_response,
};
use crate::{state::AppState, tenancy};

/// Says the token counts of an answer are estimated (characters / 4), because the
/// backend reported none.
pub static USAGE_HEADER: HeaderName = HeaderName::from_static("x-sluice-usage");

/// Names the request fields the serving backend left out ([`sluice_core::carry`]):
/// advisory fields and vendor extensions its upstream's dialect has no place for.
pub static DROPPED_HEADER: HeaderName = HeaderName::from_static("x-sluice-dropped");

/// How long the gateway took to produce a whole answer, in milliseconds (OpenAI's
/// header of the same name).
pub static PROCESSING_MS_HEADER: HeaderName = HeaderName::from_static("openai-processing-ms");

/// What is needed to tell, once a backend is chosen, which carried fields it dropped;
/// `None` when nothing is carried (the common case costs nothing).
struct CarryProbe(Carried, Vec<Fields>);

impl CarryProbe {
    fn of(req: &ChatRequest) -> Option<CarryProbe> {
        let messages = match &req.input {
            Input::Chat(m) => m.as_slice(),
            Input::Text { .. } => &[],
        };
        let any_message = messages.iter().any(|m| !m.extra.is_empty());
        (!req.carried.is_empty() || any_message)
            .then(|| CarryProbe(req.carried.clone(), messages.iter().map(|m| m.extra.clone()).collect()))
    }

    /// The `x-sluice-dropped` value for an answer served by backend `served`.
    fn dropped(&self, state: &AppState, served: &str) -> Option<HeaderValue> {
        let slots = state.core.registry.slots();
        let target = slots.iter().find(|s| s.name() == served).and_then(|s| s.backend.carries());
        let plan = self.0.plan(target, self.1.iter());
        if plan.dropped.is_empty() {
            return None;
        }
        // Client-chosen names: only header-safe ones, and a bounded list.
        let names: Vec<&str> = plan
            .dropped
            .iter()
            .map(String::as_str)
            .filter(|n| n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
            .take(32)
            .collect();
        HeaderValue::try_from(names.join(", ")).ok()
    }
}

/// How one API dialect renders an answer.
pub trait Dialect: Sized + Send + Unpin + 'static {
    /// The streamed answer's encoder.
    type Stream: Encoder;
    /// The streamed answer's content type.
    const CONTENT_TYPE: &'static str;
    /// The dialect's name in usage records (`openai`, `ollama`).
    const NAME: &'static str;
    /// The encoder for a streamed `reply`.
    fn stream(self, reply: &Reply) -> Self::Stream;
    /// A whole answer (a dialect that stores answers stores it before it is sent).
    fn whole(self, reply: &Reply, answer: Answer) -> impl Future<Output = Response> + Send;
    /// An error, in the dialect's shape.
    fn error(err: &GatewayError) -> Response;
    /// What keeps a stream alive while its answer has not started ([`super::early`]).
    fn early_keepalive(&self) -> Bytes;
    /// An error as the last event of a stream whose headers left already, carrying
    /// the status it would have had.
    fn stream_error(err: &GatewayError) -> Bytes;
}

/// Answers `req` for `ctx` in dialect `D`: limits first, then the cache and the
/// scheduler; the answer is metered on its way out (usage, token corrections).
pub async fn respond<D: Dialect>(
    state: &AppState,
    ctx: RequestContext,
    req: ChatRequest,
    dialect: D,
) -> Response {
    let stream = req.stream;
    let probe = CarryProbe::of(&req);
    let received = ctx.received;
    let mut starting: early::Starting = {
        let state = state.clone();
        Box::pin(async move { start(&state, &ctx, req, D::NAME, Storing::AsRequested).await })
    };
    let early = state.config.server.early_headers_after;
    let cut = &state.core.cut;
    let started = if stream && !early.is_zero() {
        match cut.run_until_cancelled(tokio::time::timeout(early, &mut starting)).await {
            Some(Ok(started)) => Some(started),
            Some(Err(_)) => {
                // Headers now, the answer when it comes: proxies keep the connection.
                let keepalive = state.config.server.sse_keepalive;
                let body = early::EarlyBody::new(starting, dialect, early, keepalive, Cut::new(cut.clone()));
                return streaming_response(body, D::CONTENT_TYPE);
            }
            None => None,
        }
    } else {
        cut.run_until_cancelled(starting).await
    };
    let started = match started {
        Some(Ok(s)) => s,
        // The grace period of a shutdown ended before the answer started.
        None => return D::error(&shutting_down()),
        Some(Err((e, headers))) => {
            let mut resp = D::error(&e);
            headers.apply(resp.headers_mut());
            return resp;
        }
    };
    let Started { mut reply, rate_headers, conversation_id, served, status } = started;
    let mut resp = if stream {
        let encoder = dialect.stream(reply.get_ref());
        let body = EventBody::new(reply, encoder, state.config.server.sse_keepalive, Cut::new(cut.clone()));
        streaming_response(body, D::CONTENT_TYPE)
    } else {
        match cut.run_until_cancelled(collect(&mut reply)).await.unwrap_or_else(|| Err(shutting_down())) {
            Ok(answer) => {
                let estimated = answer.usage.is_none();
                let mut resp = dialect.whole(reply.get_ref(), answer).await;
                if estimated {
                    resp.headers_mut().insert(USAGE_HEADER.clone(), HeaderValue::from_static("estimated"));
                }
                let ms = u64::try_from(received.elapsed().as_millis()).unwrap_or(u64::MAX);
                resp.headers_mut().insert(PROCESSING_MS_HEADER.clone(), HeaderValue::from(ms));
                resp
            }
            Err(e) => D::error(&e),
        }
    };
    rate_headers.apply(resp.headers_mut());
    if let Some(dropped) = probe.and_then(|p| p.dropped(state, &served.backend)) {
        resp.headers_mut().insert(DROPPED_HEADER.clone(), dropped);
    }
    if let Some(id) = conversation_id.and_then(|id| HeaderValue::try_from(id).ok()) {
        resp.headers_mut().insert(conversation::HEADER, id);
    }
    served_response(tag(resp, status), served)
}

/// Where an answer is stored.
pub enum Storing {
    /// As the client asked with `x-sluice-conversation` (or not at all).
    AsRequested,
    /// Into a conversation whose user message is already stored (UI generations).
    Into(Recording),
}

/// An answer under way, metered, with what its response says about it.
pub struct Started {
    /// The answer's events; settles usage and limits (and stores the answer) when it
    /// ends or is dropped.
    pub reply: Metered<Reply>,
    /// The caller's rate-limit headers.
    pub rate_headers: RateHeaders,
    /// The conversation the answer is stored in, if any.
    pub conversation_id: Option<String>,
    /// Who serves it.
    pub served: Served,
    /// How the cache answered.
    pub status: CacheStatus,
}

/// Starts answering `req` for `ctx` (a client of dialect `dialect`): the model check,
/// the limits, the stored user message, then the cache and the scheduler. Every
/// generating route — API chats and UI generations — starts here, so all are limited
/// and metered alike. A refusal is recorded (and stored as the answer, when storing).
pub async fn start(
    state: &AppState,
    ctx: &RequestContext,
    req: ChatRequest,
    dialect: &'static str,
    storing: Storing,
) -> Result<Started, (GatewayError, RateHeaders)> {
    let given = match storing {
        Storing::AsRequested => None,
        Storing::Into(r) => Some(r),
    };
    let storing_given = given.is_some();
    let prompt_estimate = u64::from(prompt_estimate(&req));
    let (user_id, key_id) = tenancy::usage_owner(&ctx.principal);
    let price = accounting::price_of(state, &req.model);
    let mut ledger = Ledger {
        admission: None,
        usage: state.usage.sink().cloned(),
        budgets: (price.is_some() && user_id.is_some()).then(|| state.budgets.clone()),
        user_id,
        key_id,
        dialect,
        prompt_estimate,
        price,
        received: ctx.received,
        recording: given,
        per_key: state.per_key.clone(),
    };
    if let Err(e) = allowed_model(ctx, &req.model) {
        // Refused before anything ran: recorded only when an answer is owed.
        if storing_given {
            ledger.failed(&e, req.model);
        }
        return Err((e, RateHeaders::default()));
    }
    let rate_headers = match accounting::admit(state, ctx, prompt_estimate).await {
        Ok(a) => {
            let headers = a.headers().clone();
            ledger.admission = Some(a);
            headers
        }
        Err((err, headers)) => {
            ledger.failed(&err, req.model);
            return Err((err, headers));
        }
    };
    if !storing_given {
        match conversation::begin(state, ctx, &req).await {
            Ok(r) => ledger.recording = r,
            Err(e) => {
                ledger.failed(&e, req.model);
                return Err((e, rate_headers));
            }
        }
    }
    let conversation_id = ledger.recording.as_ref().map(|r| r.conversation_id.clone());
    let model = (ledger.usage.is_some() || ledger.recording.is_some()).then(|| req.model.clone());
    let reply = match reply::start(&state.core, ctx, req).await {
        Ok(r) => r,
        Err(e) => {
            ledger.failed(&e, model.unwrap_or_default());
            return Err((e, rate_headers));
        }
    };
    let (served, status) = (reply.served().clone(), reply.status());
    let reply = Metered::new(reply, ledger, served.clone(), status);
    Ok(Started { reply, rate_headers, conversation_id, served, status })
}

/// Adds `x-sluice-cache` to a response.
pub fn tag(mut resp: Response, status: CacheStatus) -> Response {
    resp.headers_mut().insert(cache::CACHE_HEADER.clone(), HeaderValue::from_static(status.as_str()));
    resp
}

/// A prompt's size in tokens, estimated from its characters, for backends that report
/// no usage.
pub fn prompt_estimate(req: &ChatRequest) -> u32 {
    u32::try_from(req.input.char_len() / 4).unwrap_or(u32::MAX)
}
