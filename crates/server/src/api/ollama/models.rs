//! Ollama's model routes: `/api/tags`, `/api/ps`, `/api/show`, `/api/version`,
//! `/api/pull`, and the model-management routes Sluice answers with a clear refusal
//! (`/api/create`, `/api/copy`, `/api/delete`, `/api/push`, `/api/blobs`): its models
//! come from its configuration.

use axum::{
    Json,
    body::Body,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use sluice_core::{backend::ModelInfo, error::GatewayError};
use sluice_protocol::ollama as ol;

use super::encode::error_response;
use crate::{
    api::{Ctx, allowed_model, body_or_error, model_known, parse_json},
    state::AppState,
};

/// The Ollama API version Sluice answers as: the release whose endpoints and fields
/// it serves (capabilities in `/api/show`, `context_length` in `/api/ps`). GitHub
/// Copilot's Ollama provider refuses servers older than 0.6.4.
pub const OLLAMA_API_VERSION: &str = "0.6.4";

/// The header carrying Sluice's own version on `/api/version`.
pub static SLUICE_VERSION: HeaderName = HeaderName::from_static("x-sluice-version");

/// `name` as Ollama lists it: with a tag (`name:latest` when it has none).
pub fn tagged(name: &str) -> String {
    if name.contains(':') { name.to_owned() } else { format!("{name}:latest") }
}

/// What discovery learned about `name` from its first route's backend.
fn model_info(state: &AppState, name: &str) -> Option<ModelInfo> {
    let table = state.core.registry.table();
    table.routes(name).and_then(|r| r.first()).and_then(|r| r.slot.model_info(&r.upstream_model))
}

/// The `/api/tags` entry of `name`; facts the backend did not give are left out.
fn tag(name: &str, info: Option<ModelInfo>) -> ol::ModelTag {
    let info = info.unwrap_or_default();
    let name = tagged(name);
    ol::ModelTag {
        model: name.clone(),
        name,
        modified_at: info.modified_at,
        size: info.size.unwrap_or(0),
        digest: info.digest,
        details: info.details.unwrap_or_default(),
        expires_at: None,
        // Ollama leaves it out of tags too.
        size_vram: None,
        context_length: None,
    }
}

/// `GET /api/tags`.
pub async fn tags(State(state): State<AppState>, Ctx(ctx): Ctx) -> Response {
    let table = state.core.registry.table();
    let models = table
        .names()
        .iter()
        .filter(|n| ctx.principal.may_use_model(n))
        .map(|n| tag(n, model_info(&state, n)))
        .collect();
    Json(ol::TagList { models }).into_response()
}

/// `GET /api/ps`: models loaded in memory. HTTP backends manage their own memory, so
/// only in-process engines appear here.
pub async fn ps(State(state): State<AppState>) -> Response {
    // Ollama shows a model kept forever as expiring centuries from now.
    let forever = std::time::UNIX_EPOCH + std::time::Duration::from_secs(10_000_000_000);
    let table = state.core.registry.table();
    let mut models = Vec::new();
    for slot in state.core.registry.slots().iter() {
        for running in slot.backend.running() {
            let served_as = |name: &&String| {
                table
                    .routes(name)
                    .unwrap_or_default()
                    .iter()
                    .any(|r| std::sync::Arc::ptr_eq(&r.slot, slot) && r.upstream_model == running.name)
            };
            let name = table.names().iter().find(served_as).cloned().unwrap_or_else(|| running.name.clone());
            let name = tagged(&name);
            // Past year 9999 the timestamp cannot be written: that is forever too.
            let expires = running.unloads_at.filter(|at| *at < forever).unwrap_or(forever);
            models.push(ol::ModelTag {
                model: name.clone(),
                digest: slot.model_info(&running.name).and_then(|i| i.digest),
                name,
                modified_at: None,
                size: running.size,
                details: running.details.unwrap_or_default(),
                expires_at: Some(humantime::format_rfc3339_seconds(expires).to_string()),
                size_vram: running.size_vram,
                context_length: running.context_length,
            });
        }
    }
    Json(ol::PsList { models }).into_response()
}

/// The model a `/api/show` or `/api/pull` body names (`model`, or the older `name`).
fn named(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<String, GatewayError> {
    let req = body_or_error(state, body).and_then(|b| parse_json::<ol::ShowRequest>(&b))?;
    req.model
        .or(req.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GatewayError::bad_request("model is required", Some("model")))
}

/// `POST /api/show`: what the model file (engine models) or the Ollama upstream says.
pub async fn show(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match named(&state, body) {
        Ok(n) => n,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = allowed_model(&ctx, &name) {
        return error_response(&e);
    }
    if !model_known(&state, &name).await {
        return error_response(&GatewayError::ModelNotFound(name));
    }
    let info = model_info(&state, &name).unwrap_or_default();
    let mut show = info.show.map(|s| *s).unwrap_or_default();
    if let Some(details) = info.details {
        show.details = details;
    }
    // Every route's word (configured, the backend's own, discovered), not only the first's.
    show.capabilities =
        state.core.registry.table().capabilities(&name).or(info.capabilities).or(show.capabilities);
    show.modified_at = info.modified_at.or(show.modified_at);
    Json(show).into_response()
}

/// `GET /api/version`: the Ollama API version Sluice serves; its own in
/// `x-sluice-version`.
pub async fn version() -> Response {
    let mut resp = Json(ol::VersionResponse { version: OLLAMA_API_VERSION.to_owned() }).into_response();
    resp.headers_mut().insert(SLUICE_VERSION.clone(), HeaderValue::from_static(env!("CARGO_PKG_VERSION")));
    resp
}

/// `POST /api/pull`: a model Sluice serves is there already, so the pull succeeds at
/// once (streamed as Ollama streams it, unless `"stream": false`); any other is a 404
/// saying where models come from.
pub async fn pull(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match body_or_error(&state, body) {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let stream = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
        .unwrap_or(true);
    let name = match named(&state, Ok(bytes)) {
        Ok(n) => n,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = allowed_model(&ctx, &name) {
        return error_response(&e);
    }
    if !model_known(&state, &name).await {
        let msg = format!(
            "pull model manifest: model '{name}' is not served by this Sluice, and Sluice does not \
             download models: add it to its configuration ([[backends]] or [engine] in sluice.toml)"
        );
        return error_response(&GatewayError::NotFound(msg));
    }
    if !stream {
        return Json(serde_json::json!({"status": "success"})).into_response();
    }
    let lines = "{\"status\":\"pulling manifest\"}\n{\"status\":\"verifying sha256 digest\"}\n\
                 {\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n";
    let mut resp = Response::new(Body::from(lines));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp
}

/// The refusal of `/api/create`, `/api/copy`, `/api/delete` and `/api/push`.
fn managed_in_config() -> GatewayError {
    GatewayError::MethodNotAllowed(
        "Sluice does not manage models through the Ollama API: its models come from its configuration \
         ([[backends]] and [engine] in sluice.toml); create, copy, delete and push are not available"
            .into(),
    )
}

/// `/api/create`, `/api/copy`, `/api/delete`, `/api/push`: refused in Ollama's shape
/// with 501, saying where models are managed. The (small) body is read first, so the
/// connection stays usable for the client's next request.
pub async fn manage(_body: Result<Bytes, BytesRejection>) -> Response {
    refused()
}

fn refused() -> Response {
    let mut resp = error_response(&managed_in_config());
    *resp.status_mut() = StatusCode::NOT_IMPLEMENTED;
    resp
}

/// `HEAD`/`POST /api/blobs/{digest}`: the same refusal (`ollama create` asks here
/// first). A blob is a whole model file: it is not read.
pub async fn blobs() -> Response {
    refused()
}
