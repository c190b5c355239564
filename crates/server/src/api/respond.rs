//! The one request-to-response path every generating route takes: run a canonical
//! request through the cache and the scheduler, then render the answer — streamed or
//! whole — through the client's [`Dialect`]. The dialect modules keep only parsing and
//! encoding.

use axum::response::Response;
use http::{HeaderName, HeaderValue};
use sluice_core::{
    cache::{self, CacheStatus},
    chat::{ChatRequest, Event},
    context::RequestContext,
    error::GatewayError,
    reply::{self, Reply},
};

use super::{
    accounting::{self, Ledger, Metered},
    allowed_model, conversation, served_response,
    stream_body::{Encoder, EventBody, collect},
    streaming_response,
};
use crate::{state::AppState, tenancy};

/// Says the token counts of an answer are estimated (characters / 4), because the
/// backend reported none.
pub static USAGE_HEADER: HeaderName = HeaderName::from_static("x-sluice-usage");

/// How one API dialect renders an answer.
pub trait Dialect: Sized + Send + 'static {
    /// The streamed answer's encoder.
    type Stream: Encoder;
    /// The streamed answer's content type.
    const CONTENT_TYPE: &'static str;
    /// The dialect's name in usage records (`openai`, `ollama`).
    const NAME: &'static str;
    /// The encoder for a streamed `reply`.
    fn stream(self, reply: &Reply) -> Self::Stream;
    /// A whole answer: `text`, ended by `done`.
    fn whole(self, reply: &Reply, text: String, done: &Event) -> Response;
    /// An error, in the dialect's shape.
    fn error(err: &GatewayError) -> Response;
}

/// Answers `req` for `ctx` in dialect `D`: limits first, then the cache and the
/// scheduler; the answer is metered on its way out (usage, token corrections).
pub async fn respond<D: Dialect>(
    state: &AppState,
    ctx: RequestContext,
    req: ChatRequest,
    dialect: D,
) -> Response {
    if let Err(e) = allowed_model(&ctx, &req.model) {
        return D::error(&e);
    }
    let stream = req.stream;
    let prompt_estimate = u64::from(prompt_estimate(&req));
    let (user_id, key_id) = tenancy::usage_owner(&ctx.principal);
    let price = accounting::price_of(state, &req.model);
    let mut ledger = Ledger {
        admission: None,
        usage: state.usage.sink().cloned(),
        budgets: (price.is_some() && user_id.is_some()).then(|| state.budgets.clone()),
        user_id,
        key_id,
        dialect: D::NAME,
        prompt_estimate,
        price,
        received: ctx.received,
        recording: None,
        per_key: state.per_key.clone(),
    };
    let rate_headers = match accounting::admit(state, &ctx, prompt_estimate).await {
        Ok(a) => {
            let headers = a.headers().clone();
            ledger.admission = Some(a);
            headers
        }
        Err((err, headers)) => {
            ledger.failed(&err, req.model);
            let mut resp = D::error(&err);
            headers.apply(resp.headers_mut());
            return resp;
        }
    };
    let recording = match conversation::begin(state, &ctx, &req).await {
        Ok(r) => r,
        Err(e) => {
            ledger.failed(&e, req.model);
            let mut resp = D::error(&e);
            rate_headers.apply(resp.headers_mut());
            return resp;
        }
    };
    let conversation_id = recording.as_ref().map(|r| r.conversation_id.clone());
    ledger.recording = recording;
    let model = (ledger.usage.is_some()).then(|| req.model.clone());
    let reply = match reply::start(&state.core, &ctx, req).await {
        Ok(r) => r,
        Err(e) => {
            ledger.failed(&e, model.unwrap_or_default());
            let mut resp = D::error(&e);
            rate_headers.apply(resp.headers_mut());
            return resp;
        }
    };
    let (served, status) = (reply.served().clone(), reply.status());
    let mut reply = Metered::new(reply, ledger, served.clone(), status);
    let mut resp = if stream {
        let encoder = dialect.stream(reply.get_ref());
        let body = EventBody::new(reply, encoder, state.config.server.sse_keepalive);
        streaming_response(body, D::CONTENT_TYPE)
    } else {
        match collect(&mut reply).await {
            Ok((text, done)) => {
                let estimated = matches!(done, Event::Done { usage: None, .. });
                let mut resp = dialect.whole(reply.get_ref(), text, &done);
                if estimated {
                    resp.headers_mut().insert(USAGE_HEADER.clone(), HeaderValue::from_static("estimated"));
                }
                resp
            }
            Err(e) => D::error(&e),
        }
    };
    rate_headers.apply(resp.headers_mut());
    if let Some(id) = conversation_id.and_then(|id| HeaderValue::try_from(id).ok()) {
        resp.headers_mut().insert(conversation::HEADER, id);
    }
    served_response(tag(resp, status), served)
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
