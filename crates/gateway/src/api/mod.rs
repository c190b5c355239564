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
//! - [`stream_body`]: the streamed response body and the [`stream_body::Encoder`] trait.

pub mod admin_agents;
pub mod admin_backends;
pub mod ollama;
pub mod openai;
pub mod ops;
pub mod stream_body;

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State, rejection::BytesRejection},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
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

use crate::{error::GatewayError, generation::Served, metrics::RequestLabels, state::AppState};

/// Paths served without an API key.
/// Agents authenticate with their own token inside the protocol.
pub const UNAUTHENTICATED_ROUTES: &[&str] =
    &["/", "/healthz", "/readyz", sluice_protocol::agent::CONNECT_PATH];

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let limit = state.config.server.body_limit_bytes;
    let compression = DefaultPredicate::new().and(NotForContentType::const_new("application/x-ndjson"));
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{id}", get(openai::get_model))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/embed", post(ollama::embed))
        .route("/api/version", get(ollama::version))
        .route("/admin/backends", get(admin_backends::list))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/", get(ops::root))
        .route(sluice_protocol::agent::CONNECT_PATH, get(crate::agents::session::connect))
        .route("/admin/agents", get(admin_agents::list_agents))
        .route("/admin/agent-tokens", get(admin_agents::list_tokens).post(admin_agents::create_token))
        .route("/admin/agent-tokens/{id}", axum::routing::delete(admin_agents::revoke_token))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(CompressionLayer::new().compress_when(compression))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .with_state(state)
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

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if UNAUTHENTICATED_ROUTES.contains(&path) {
        return next.run(req).await;
    }
    match state.keys.check(req.headers()) {
        Ok(()) => {
            // The key's priority class rides along for admission queues.
            let class = state.routing.class_of(crate::auth::presented_key(req.headers()));
            crate::scheduler::admission::with_class(class, next.run(req)).await
        }
        Err(why) => {
            tracing::info!(reason = why, "request refused");
            error_for_path(path, &GatewayError::Unauthorized(why.to_owned()))
        }
    }
}

async fn count_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let resp = next.run(req).await;
    let served = resp.extensions().get::<Served>();
    let labels = RequestLabels {
        route,
        model: served.map(|s| s.model.clone()).unwrap_or_default(),
        backend: served.map(|s| s.backend.clone()).unwrap_or_default(),
        status: resp.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    resp
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

/// True when some backend serves `model`, asking discovering backends again if needed.
pub async fn model_known(state: &AppState, model: &str) -> bool {
    state.registry.resolve(model).await.is_ok()
}

/// Tags a response with who served it (read by the request counter).
pub fn served_response(mut resp: Response, served: Served) -> Response {
    resp.extensions_mut().insert(served);
    resp
}

fn streaming_response(
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

/// A server-sent-events response over `body`.
pub fn sse_response(
    body: impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
) -> Response {
    streaming_response(body, "text/event-stream")
}

/// An NDJSON streaming response over `body`.
pub fn ndjson_response(
    body: impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
) -> Response {
    streaming_response(body, "application/x-ndjson")
}
