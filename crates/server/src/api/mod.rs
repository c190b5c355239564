//! HTTP surface: the route table, the middleware stack and helpers shared by the
//! dialects.
//!
//! Every route needs an API key (when keys are configured) except the short
//! [`UNAUTHENTICATED_ROUTES`] list. Each dialect renders errors in its own shape,
//! including the ones raised here (401, 404, 413).
//!
//! # Layout
//! - [`openai`]: the `/v1/*` routes.
//! - [`ollama`]: the `/api/*` routes.
//! - [`ops`]: health, readiness, metrics.
//! - [`admin_backends`]: `GET /admin/backends` (breakers, load, latency).
//! - [`admin_agents`]: connected agents and agent tokens.
//! - [`agent_connect`]: the endpoint agents dial in to.
//! - [`accounting`]: limits before an answer, usage and token corrections after it.
//! - [`respond`]: the one path from a canonical request to a response, through a
//!   dialect's encoder.
//! - [`stream_body`]: the streamed response body and the [`stream_body::Encoder`] trait.
//! - [`conversations`]: `/v1/conversations*`, the caller's saved chats.
//! - [`usage`]: `GET /v1/usage`, usage reports and CSV export.
//! - [`admin_retention`]: `GET|PUT /admin/retention`.
//! - [`owner`]: who owns stored data ([`owner::owner`]); [`data_error`]: how those
//!   routes fail.

pub mod accounting;
pub mod admin_agents;
pub mod admin_backends;
pub mod admin_retention;
pub mod agent_connect;
pub mod conversations;
pub mod data_error;
#[cfg(test)]
mod data_tests;
pub mod ollama;
pub mod openai;
pub mod ops;
pub mod owner;
pub mod respond;
pub mod stream_body;
pub mod usage;

use std::{convert::Infallible, sync::LazyLock};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Request, rejection::BytesRejection},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use tower_http::{
    compression::{
        CompressionLayer,
        predicate::{DefaultPredicate, NotForContentType, Predicate},
    },
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::state::AppState;
use sluice_core::{
    chat::Role,
    context::{Directives, Principal, RequestContext},
    error::GatewayError,
    metrics::RequestLabels,
    registry::Served,
};

/// Paths served without an API key.
/// Agents authenticate with their own token inside the protocol.
pub const UNAUTHENTICATED_ROUTES: &[&str] =
    &["/", "/healthz", "/readyz", sluice_protocol::agent::CONNECT_PATH];

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route table: every path the gateway serves and its handlers. The router and
/// the `route` metric label (`route_label`) both come from it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/chat/completions", post(openai::chat_completions)),
        ("/v1/completions", post(openai::completions)),
        ("/v1/models", get(openai::list_models)),
        ("/v1/models/{id}", get(openai::get_model)),
        ("/v1/embeddings", post(openai::embeddings)),
        ("/api/chat", post(ollama::chat)),
        ("/api/generate", post(ollama::generate)),
        ("/api/tags", get(ollama::tags)),
        ("/api/ps", get(ollama::ps)),
        ("/api/show", post(ollama::show)),
        ("/api/embed", post(ollama::embed)),
        ("/api/version", get(ollama::version)),
        ("/admin/backends", get(admin_backends::list)),
        ("/metrics", get(ops::metrics)),
        ("/healthz", get(ops::healthz)),
        ("/readyz", get(ops::readyz)),
        ("/", get(ops::root)),
        (sluice_protocol::agent::CONNECT_PATH, get(agent_connect::connect)),
        ("/admin/agents", get(admin_agents::list_agents)),
        ("/admin/agent-tokens", get(admin_agents::list_tokens).post(admin_agents::create_token)),
        ("/admin/agent-tokens/{id}", axum::routing::delete(admin_agents::revoke_token)),
        ("/admin/retention", get(admin_retention::get).put(admin_retention::put)),
        ("/v1/conversations", get(conversations::list).post(conversations::create)),
        // A static segment wins over `{id}` in the router and in `route_label`.
        ("/v1/conversations/search", get(conversations::search)),
        (
            "/v1/conversations/{id}",
            get(conversations::get).patch(conversations::rename).delete(conversations::delete),
        ),
        ("/v1/conversations/{id}/export", get(conversations::export)),
        ("/v1/conversations/{id}/messages", post(conversations::append)),
        ("/v1/usage", get(usage::report)),
    ]
}

/// The router over the route table (the middleware is in [`app`]).
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
        .fallback(fallback)
        .with_state(state)
}

/// The whole HTTP application: the [`router`] inside one middleware stack (request id,
/// trace span, compression, request counting, authentication, body limit).
///
/// The stack wraps the router from outside instead of through `Router::layer`: axum
/// boxes every route again for each layer added that way and clones those boxes on
/// every request (dozens of allocations per request); here a request costs one clone
/// of the router (an `Arc`) and one boxed future.
pub fn app(
    state: AppState,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let limit = state.config.server.body_limit_bytes;
    let compression = DefaultPredicate::new().and(NotForContentType::const_new("application/x-ndjson"));
    let gate_state = state.clone();
    tower::ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        // The compression body holds the encoders' state inline (kilobytes): box it at
        // once, or every layer above moves it with the response.
        .map_response(IntoResponse::into_response)
        .layer(CompressionLayer::new().compress_when(compression))
        .layer(tower::layer::layer_fn(move |inner| Gate { inner, state: gate_state.clone() }))
        .layer(DefaultBodyLimit::max(limit))
        .service(router(state))
}
/// True for paths answered in Ollama's error shape.
fn is_ollama_path(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Renders an error in the dialect of `path`.
pub fn error_for_path(path: &str, err: &GatewayError) -> Response {
    if is_ollama_path(path) {
        ollama::encode::error_response(err)
    } else {
        openai::encode::error_response(err)
    }
}

/// Counts every request (`sluice_requests_total`) and checks its API key, except on
/// [`UNAUTHENTICATED_ROUTES`]; a refusal is a 401 in the path's dialect. The key's
/// priority class rides along for admission queues.
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Gate<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone is ready only once polled; keep the one that is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let mut req = req;
        let path = req.uri().path();
        let route = route_label(path);
        let refusal = if UNAUTHENTICATED_ROUTES.contains(&path) {
            None
        } else {
            match state.keys.check(req.headers()) {
                Ok(principal) => {
                    let ctx = context(&state, &req, principal);
                    req.extensions_mut().insert(ctx);
                    None
                }
                Err(why) => {
                    tracing::info!(reason = why, "request refused");
                    Some(error_for_path(req.uri().path(), &GatewayError::Unauthorized(why.to_owned())))
                }
            }
        };
        Box::pin(async move {
            let resp = match refusal {
                None => inner.call(req).await?,
                Some(resp) => resp,
            };
            let served = resp.extensions().get::<Served>();
            let labels = RequestLabels {
                route: route.to_owned(),
                model: served.map(|s| s.model.clone()).unwrap_or_default(),
                backend: served.map(|s| s.backend.clone()).unwrap_or_default(),
                status: resp.status().as_u16(),
            };
            state.core.metrics.requests.get_or_create(&labels).inc();
            Ok(resp)
        })
    }
}

/// The request's context, made once here and taken by the handler ([`Ctx`]).
fn context(state: &AppState, req: &Request, principal: Principal) -> RequestContext {
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut ctx = RequestContext::new(id, principal, state.core.routing.class_of(&principal));
    ctx.cache = Directives::from_headers(req.headers());
    ctx
}

/// The [`RequestContext`] the auth layer made for this request, taken out of the
/// request (not cloned); routes outside the auth layer get an anonymous one.
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(parts.extensions.remove::<RequestContext>().unwrap_or_else(RequestContext::internal)))
    }
}

/// The route-table path that `path` matches, for the `route` metric label (bounded:
/// ids are not labels). A `{…}` segment matches any one non-empty segment.
fn route_label(path: &str) -> &'static str {
    static PATTERNS: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| routes().into_iter().map(|(p, _)| p).collect());
    let matches = |pattern: &str| {
        let (mut want, mut got) = (pattern.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w == g || (w.starts_with('{') && !g.is_empty()) => {}
                _ => return false,
            }
        }
    };
    // Most requests hit a path without ids: compare whole strings first.
    let exact = PATTERNS.iter().copied().find(|p| *p == path);
    exact.or_else(|| PATTERNS.iter().copied().find(|p| p.contains('{') && matches(p))).unwrap_or("unmatched")
}

async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    error_for_path(path, &GatewayError::NotFound(format!("no route for {} {path}", req.method())))
}

/// The body, or the error for a body that is too large or unreadable.
pub fn body_or_error(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, GatewayError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::PayloadTooLarge { limit: state.config.server.body_limit_bytes }
        } else {
            GatewayError::bad_request(rej.body_text(), None)
        }
    })
}

/// Parses a JSON body into `T` (either dialect), turning serde's complaint into a 400 naming the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // serde names a missing field between backticks: "missing field `model`".
        let missing = msg.strip_prefix("missing field `").and_then(|m| m.split('`').next());
        let param = match (path.as_str(), missing) {
            (".", Some(f)) => Some(f.to_owned()),
            (p, Some(f)) => Some(format!("{p}.{f}")),
            (".", None) => None,
            (p, None) => Some(p.to_owned()),
        };
        let message = match &param {
            Some(p) if missing.is_none() => format!("invalid request body: {p}: {msg}"),
            _ => format!("invalid request body: {msg}"),
        };
        GatewayError::BadRequest { message, param }
    })
}

/// Parses the role of `messages[index]` (either dialect), or a 400 naming that field.
pub fn role_at(s: &str, index: usize) -> Result<Role, GatewayError> {
    Role::parse(s).ok_or_else(|| {
        let field = format!("messages[{index}].role");
        GatewayError::bad_request(format!("{field}: unknown role '{s}'"), Some(&field))
    })
}

/// True when some backend serves `model`, asking discovering backends again if needed.
pub async fn model_known(state: &AppState, model: &str) -> bool {
    state.core.registry.resolve(model).await.is_ok()
}

/// Tags a response with who served it (read by the request counter).
pub fn served_response(mut resp: Response, served: Served) -> Response {
    resp.extensions_mut().insert(served);
    resp
}

/// A streamed response of `content_type` over `body`, never buffered by proxies.
pub fn streaming_response(
    body: impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
    content_type: &'static str,
) -> Response {
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod accounting_tests;
#[cfg(test)]
mod router_tests;

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn route_labels_are_the_route_table_paths() {
        assert_eq!(route_label("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(route_label("/v1/models/llama3"), "/v1/models/{id}");
        assert_eq!(route_label("/admin/agent-tokens/42"), "/admin/agent-tokens/{id}");
        assert_eq!(route_label("/"), "/");
        assert_eq!(route_label("/v1/conversations/search"), "/v1/conversations/search");
        assert_eq!(route_label("/v1/conversations/abc"), "/v1/conversations/{id}");
        assert_eq!(route_label("/v1/conversations/abc/export"), "/v1/conversations/{id}/export");
        // Unknown paths and ids with slashes never become labels of their own.
        assert_eq!(route_label("/v1/models/a/b"), "unmatched");
        assert_eq!(route_label("/v1/models/"), "unmatched");
        assert_eq!(route_label("/nope"), "unmatched");
    }
}
