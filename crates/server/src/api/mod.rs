//! HTTP surface: the route table, the middleware stack and helpers shared by the
//! dialects.
//!
//! Each route of the table says who may call it ([`Access`]): public, any
//! authenticated caller, or admins only; the gate ([`crate::auth::gate`]) resolves the
//! caller. Each dialect renders errors in its own shape, including the ones raised
//! here (401, 403, 404, 413).
//!
//! # Layout
//! - [`openai`]: the `/v1/*` routes.
//! - [`ollama`]: the `/api/*` routes.
//! - [`ops`]: health, readiness, metrics.
//! - [`admin_backends`]: `GET /admin/backends` (breakers, load, latency).
//! - [`admin_agents`]: connected agents and agent tokens.
//! - [`agent_connect`]: the endpoint agents dial in to.
//! - [`accounting`]: limits before an answer, usage and token corrections after it.
//! - [`login`]: login, logout and "who am I" (session cookies).
//! - [`keys`]: a user's own API keys (admins: anyone's).
//! - [`admin_users`]: users, for admins.
//! - [`conversation`]: API chats stored on request (`x-sluice-conversation`).
//! - [`respond`]: the one path from a canonical request to a response, through a
//!   dialect's encoder.
//! - [`cors`]: which browser origins may read answers; preflights before auth.
//! - [`early`]: headers and keep-alives before a slow first token.
//! - [`stream_body`]: the streamed response body and the [`stream_body::Encoder`] trait.
//! - [`conversations`]: `/v1/conversations*`, the caller's saved chats.
//! - [`usage`]: `GET /v1/usage`, usage reports and CSV export.
//! - [`admin_retention`]: `GET|PUT /admin/retention`.
//! - [`setup`]: first-run admin creation and password changes.
//! - [`compress`]: response compression, skipped on the generating routes.
//! - [`generations`]: UI generations (start, attach over SSE, stop).
//! - [`webui`]: the embedded web UI (pages, assets, security headers).
//! - [`owner`]: who owns stored data ([`owner::owner`]); [`data_error`]: how those
//!   routes fail.

pub mod accounting;
pub mod admin_agents;
pub mod admin_backends;
pub mod admin_retention;
pub mod admin_users;
pub mod agent_connect;
pub mod compress;
pub mod conversation;
pub mod conversations;
pub mod cors;
pub mod data_error;
#[cfg(test)]
mod data_tests;
pub mod early;
pub mod extras;
pub mod generations;
pub mod keys;
pub mod login;
pub mod ollama;
pub mod openai;
pub mod ops;
pub mod owner;
pub mod respond;
pub mod setup;
pub mod stream_body;
pub mod usage;
pub mod webui;

use std::{convert::Infallible, net::SocketAddr, sync::LazyLock};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    extract::{DefaultBodyLimit, Request, rejection::BytesRejection},
    response::{IntoResponse, Response},
    routing::{MethodRouter, delete, get, post},
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

use crate::{
    auth::gate::{Access, Presented, Rules, authorize},
    state::AppState,
};
use sluice_core::{
    chat::Role,
    context::{Directives, Principal, RequestContext},
    error::GatewayError,
    metrics::RequestLabels,
    registry::Served,
};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route table: every path the gateway serves, who may call it, and its
/// handlers. The router, the auth gate and the `route` metric label all come from it.
/// Agents authenticate with their own token inside the protocol: their endpoint is
/// public.
fn routes() -> Vec<(&'static str, Access, MethodRouter<AppState>)> {
    use Access::{Admin, Public, User};
    vec![
        ("/v1/chat/completions", User, post(openai::chat_completions)),
        ("/v1/completions", User, post(openai::completions)),
        ("/v1/responses", User, post(openai::responses::create)),
        (
            "/v1/responses/{id}",
            User,
            get(openai::responses::stored::get).delete(openai::responses::stored::delete),
        ),
        ("/v1/models", User, get(openai::list_models)),
        ("/v1/models/{id}", User, get(openai::get_model)),
        ("/v1/embeddings", User, post(openai::embeddings)),
        ("/v1/keys", User, get(keys::list).post(keys::create)),
        ("/v1/keys/{id}", User, delete(keys::revoke)),
        ("/api/chat", User, post(ollama::chat)),
        ("/api/generate", User, post(ollama::generate)),
        ("/api/tags", User, get(ollama::tags)),
        ("/api/ps", User, get(ollama::ps)),
        ("/api/show", User, post(ollama::show)),
        ("/api/embed", User, post(ollama::embed)),
        ("/api/embeddings", User, post(ollama::embeddings)),
        ("/api/version", User, get(ollama::version)),
        ("/api/pull", User, post(ollama::pull)),
        ("/api/create", User, post(ollama::manage)),
        ("/api/copy", User, post(ollama::manage)),
        ("/api/delete", User, delete(ollama::manage)),
        ("/api/push", User, post(ollama::manage)),
        ("/api/blobs/{digest}", User, post(ollama::blobs).head(ollama::blobs)),
        ("/auth/login", Public, post(login::login)),
        ("/auth/logout", User, post(login::logout)),
        ("/auth/me", User, get(login::me)),
        ("/admin/backends", Admin, get(admin_backends::list)),
        ("/admin/users", Admin, get(admin_users::list).post(admin_users::create)),
        ("/admin/users/{id}", Admin, axum::routing::patch(admin_users::update)),
        ("/metrics", User, get(ops::metrics)),
        ("/healthz", Public, get(ops::healthz)),
        ("/readyz", Public, get(ops::readyz)),
        ("/", Public, get(webui::root)),
        (sluice_protocol::agent::CONNECT_PATH, Public, get(agent_connect::connect)),
        ("/admin/agents", Admin, get(admin_agents::list_agents)),
        ("/admin/agent-tokens", Admin, get(admin_agents::list_tokens).post(admin_agents::create_token)),
        ("/admin/agent-tokens/{id}", Admin, delete(admin_agents::revoke_token)),
        ("/admin/retention", Admin, get(admin_retention::get).put(admin_retention::put)),
        ("/v1/conversations", User, get(conversations::list).post(conversations::create)),
        // A static segment wins over `{id}` in the router and in `route_label`.
        ("/v1/conversations/search", User, get(conversations::search)),
        (
            "/v1/conversations/{id}",
            User,
            get(conversations::get).patch(conversations::rename).delete(conversations::delete),
        ),
        ("/v1/conversations/{id}/export", User, get(conversations::export)),
        ("/v1/conversations/{id}/messages", User, post(conversations::append)),
        ("/v1/usage", User, get(usage::report)),
        ("/v1/conversations/{id}/generations", User, get(generations::list).post(generations::start)),
        ("/v1/conversations/{id}/generations/{message_id}", User, get(generations::attach)),
        ("/v1/conversations/{id}/generations/{message_id}/stop", User, post(generations::stop)),
        ("/auth/setup", Public, get(setup::status).post(setup::create)),
        ("/auth/password", User, post(setup::change_password)),
        // The web UI: its files, and index.html for each client-side route.
        ("/assets/{file}", Public, get(webui::asset)),
        ("/favicon.svg", Public, get(webui::favicon)),
        ("/c/{id}", Public, get(webui::page)),
        ("/login", Public, get(webui::page)),
        ("/settings", Public, get(webui::page)),
        ("/admin", Public, get(webui::page)),
    ]
}

/// The router over the route table (the middleware is in [`app`]).
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (path, _, handler)| r.route(path, handler))
        .fallback(fallback)
        // After every route: it applies to the routes already there.
        .method_not_allowed_fallback(method_not_allowed)
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
    let compression = CompressionLayer::new()
        .compress_when(DefaultPredicate::new().and(NotForContentType::const_new("application/x-ndjson")));
    let gate_state = state.clone();
    let cors = std::sync::Arc::new(cors::Cors::new(&state.config.server.cors_origins));
    tower::ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        // Compressed answers come out boxed at once (the compression body holds the
        // encoders' state inline: kilobytes that every layer above would move); the
        // generating routes skip compression and its body entirely.
        .layer(tower::layer::layer_fn(move |inner| compress::SkipGenerating::new(inner, &compression)))
        .layer(tower::layer::layer_fn(move |inner| Gate {
            inner,
            state: gate_state.clone(),
            cors: cors.clone(),
        }))
        .layer(DefaultBodyLimit::max(limit))
        .service(router(state))
}
/// True for paths answered in Ollama's error shape.
fn is_ollama_path(path: &str) -> bool {
    path.starts_with("/api/")
}

/// The headers that tell a client when (or whether) to retry `err`: `Retry-After` in
/// whole seconds, `retry-after-ms` exactly (OpenAI's SDKs read it first), and
/// `x-should-retry: false` when retrying cannot help.
pub fn retry_headers(err: &GatewayError, h: &mut http::HeaderMap) {
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        h.insert(HeaderName::from_static("retry-after-ms"), HeaderValue::from(ms));
    }
    if err.should_retry() == Some(false) {
        h.insert(HeaderName::from_static("x-should-retry"), HeaderValue::from_static("false"));
    }
}

/// Renders an error in the dialect of `path`.
pub fn error_for_path(path: &str, err: &GatewayError) -> Response {
    if is_ollama_path(path) {
        ollama::encode::error_response(err)
    } else {
        openai::encode::error_response(err)
    }
}

/// Counts every request (`sluice_requests_total`) and resolves who is asking, for
/// every route that is not [`Access::Public`]; a refusal (401, 403) is in the path's
/// dialect. The principal's priority class rides along for admission queues.
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    state: AppState,
    cors: std::sync::Arc<cors::Cors>,
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
        let (route, access) = route_of(req.uri().path());
        let cors = self.cors.clone();
        // Browsers send preflights without credentials: answered before the gate.
        if let Some(resp) = cors.preflight(req.method(), req.headers()) {
            return Box::pin(std::future::ready(Ok(resp)));
        }
        let origin = cors.origin(req.headers()).cloned();
        Box::pin(async move {
            let admitted = match access {
                Access::Public => Ok(()),
                _ => admit(&state, &mut req, access).await,
            };
            let resp = match admitted {
                Ok(()) => inner.call(req).await?,
                Err(e) => {
                    tracing::info!(reason = %e, "request refused");
                    error_for_path(req.uri().path(), &e)
                }
            };
            let mut resp = resp;
            cors.decorate(origin, &mut resp);
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

/// Resolves the caller of `req`, checks it may call a route of `access`, and puts
/// its [`RequestContext`] in the request.
async fn admit(state: &AppState, req: &mut Request, access: Access) -> Result<(), GatewayError> {
    let principal = caller(state, req.method(), req.headers(), req.uri(), req.extensions()).await?;
    authorize(&principal, access)?;
    let ctx = context(state, req, principal);
    req.extensions_mut().insert(ctx);
    Ok(())
}

/// Who the request with this head acts for under the gateway's rules (credentials,
/// session and CSRF, keyless mode), or why it is refused.
pub async fn caller(
    state: &AppState,
    method: &http::Method,
    headers: &http::HeaderMap,
    uri: &http::Uri,
    extensions: &http::Extensions,
) -> Result<Principal, GatewayError> {
    let rules = Rules {
        keys: &state.keys,
        directory: &state.directory,
        loopback_listener: state.config.server.listen.ip().is_loopback(),
        allow_anonymous: state.config.auth.allow_anonymous,
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let presented = Presented {
        method,
        headers,
        host: host.or_else(|| uri.authority().map(|a| a.as_str())),
        client: extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
    };
    rules.resolve(&presented).await
}

/// The request's context, made once here and taken by the handler ([`Ctx`]).
fn context(state: &AppState, req: &Request, principal: Principal) -> RequestContext {
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    let class = state.core.routing.class_of(&principal);
    let mut ctx = RequestContext::new(id, principal, class);
    ctx.cache = Directives::from_headers(req.headers());
    ctx.conversation = req
        .headers()
        .get(conversation::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| std::sync::Arc::from(v.trim()));
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
/// ids are not labels), and who may call it. A `{…}` segment matches any one
/// non-empty segment. Unknown paths need a caller like any route (their 404 tells
/// strangers nothing).
fn route_of(path: &str) -> (&'static str, Access) {
    static PATTERNS: LazyLock<Vec<(&'static str, Access)>> =
        LazyLock::new(|| routes().into_iter().map(|(p, a, _)| (p, a)).collect());
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
    let exact = PATTERNS.iter().copied().find(|(p, _)| *p == path);
    exact
        .or_else(|| PATTERNS.iter().copied().find(|(p, _)| p.contains('{') && matches(p)))
        .unwrap_or(("unmatched", Access::User))
}

async fn method_not_allowed(req: Request) -> Response {
    let path = req.uri().path();
    let message = format!("{} is not allowed on {path}", req.method());
    let mut resp = error_for_path(path, &GatewayError::MethodNotAllowed(message));
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
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

/// Most stop sequences a request may give (either dialect); the engine's stop matcher
/// checks each one after every token.
pub const MAX_STOP_SEQUENCES: usize = 16;

/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// Checks the stop sequences given in `field` (at most [`MAX_STOP_SEQUENCES`], each at
/// most [`MAX_STOP_BYTES`]) and drops empty ones.
pub fn stop_sequences(stop: Vec<String>, field: &str) -> Result<Vec<String>, GatewayError> {
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(GatewayError::bad_request(
            format!("{field}: at most {MAX_STOP_SEQUENCES} stop sequences are allowed"),
            Some(field),
        ));
    }
    if stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(GatewayError::bad_request(
            format!("{field}: a stop sequence may be at most {MAX_STOP_BYTES} bytes long"),
            Some(field),
        ));
    }
    Ok(stop.into_iter().filter(|s| !s.is_empty()).collect())
}

/// A store failure as the client sees it: input problems as 400 or 404, anything
/// else as 503 (the cause goes to the log only).
pub fn store_error(e: sluice_store::StoreError) -> GatewayError {
    use sluice_store::StoreError;
    match e {
        StoreError::Invalid(m) | StoreError::Exists(m) => GatewayError::bad_request(m, None),
        StoreError::NotFound(m) => GatewayError::NotFound(m),
        e => {
            tracing::error!(error = %e, "store failed");
            GatewayError::Unavailable("the user store is unavailable; try again".into())
        }
    }
}

/// Parses a JSON body of an auth or admin route (unknown fields refused).
pub fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, GatewayError> {
    body_or_error(state, body).and_then(|b| parse_json(&b))
}

/// After this process changed users or keys: reload the directory at once, so the
/// next request sees the change (other replicas follow the store's change feed).
pub async fn reload_directory(state: &AppState) {
    if let Err(e) = state.directory.reload().await {
        tracing::error!(error = %e, "cannot reload users and keys after a change");
    }
}

/// 403 naming `model` when the caller's key is limited to other models.
pub fn allowed_model(ctx: &RequestContext, model: &str) -> Result<(), GatewayError> {
    if ctx.principal.may_use_model(model) {
        return Ok(());
    }
    Err(GatewayError::Forbidden(format!("this API key may not use model '{model}'")))
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
mod auth_tests;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod router_tests;
#[cfg(test)]
mod schema_tests;

#[cfg(test)]
mod tests {
    fn route_label(path: &str) -> &'static str {
        super::route_of(path).0
    }

    #[test]
    fn route_labels_are_the_route_table_paths() {
        assert_eq!(route_label("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(route_label("/v1/models/llama3"), "/v1/models/{id}");
        assert_eq!(route_label("/admin/agent-tokens/42"), "/admin/agent-tokens/{id}");
        assert_eq!(route_label("/"), "/");
        assert_eq!(route_label("/v1/conversations/search"), "/v1/conversations/search");
        assert_eq!(route_label("/v1/conversations/abc"), "/v1/conversations/{id}");
        assert_eq!(route_label("/v1/conversations/abc/export"), "/v1/conversations/{id}/export");
        assert_eq!(
            route_label("/v1/conversations/a/generations/b"),
            "/v1/conversations/{id}/generations/{message_id}"
        );
        assert_eq!(
            route_label("/v1/conversations/a/generations/b/stop"),
            "/v1/conversations/{id}/generations/{message_id}/stop"
        );
        assert_eq!(route_label("/assets/index-abc.js"), "/assets/{file}");
        assert_eq!(route_label("/c/abc"), "/c/{id}");
        // Unknown paths and ids with slashes never become labels of their own.
        assert_eq!(route_label("/v1/models/a/b"), "unmatched");
        assert_eq!(route_label("/v1/models/"), "unmatched");
        assert_eq!(route_label("/nope"), "unmatched");
    }
}
