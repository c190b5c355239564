//! The Ollama dialect: `/api/chat`, `/api/generate`, `/api/tags`, `/api/ps`,
//! `/api/show`, `/api/embed`, `/api/version`. Same shape as the OpenAI module: parse,
//! validate, run, encode in Ollama's format (NDJSON streams, `{"error": "..."}`).

pub mod convert;
pub mod encode;

use axum::{
    Json,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use sluice_protocol::ollama as ol;

use self::encode::{Clock, Kind, OllamaNdjson, error_response};
use sluice_core::{
    backend::ModelInfo,
    chat::{ChatRequest, EmbedRequest, Event, FinishReason, Input, KeepAlive},
    context::RequestContext,
    embeddings,
    error::GatewayError,
    reply::Reply,
};

use crate::{
    api::{
        Ctx, allowed_model, body_or_error, model_known, parse_json,
        respond::{Dialect, prompt_estimate, respond},
        served_response,
    },
    state::AppState,
};

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body_or_error(&state, body).and_then(|b| parse_json::<ol::ChatRequest>(&b)).and_then(|r| {
        let keep_alive = keep_alive(r.keep_alive.clone())?;
        Ok((convert::chat_request(r)?, keep_alive))
    }) {
        Ok((req, keep_alive)) => run(state, ctx, req, keep_alive, Kind::Chat).await,
        Err(e) => error_response(&e),
    }
}

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body_or_error(&state, body).and_then(|b| parse_json::<ol::GenerateRequest>(&b)).and_then(|r| {
        let keep_alive = keep_alive(r.keep_alive.clone())?;
        Ok((convert::generate_request(r)?, keep_alive))
    }) {
        Ok((req, keep_alive)) => run(state, ctx, req, keep_alive, Kind::Generate).await,
        Err(e) => error_response(&e),
    }
}

/// Reads Ollama's `keep_alive` field.
fn keep_alive(v: Option<serde_json::Value>) -> Result<Option<KeepAlive>, GatewayError> {
    v.map(|v| KeepAlive::parse_value(&v).map_err(|m| GatewayError::bad_request(m, Some("keep_alive"))))
        .transpose()
}

fn is_load_only(req: &ChatRequest) -> bool {
    match &req.input {
        Input::Chat(m) => m.is_empty(),
        Input::Text { prompt, .. } => prompt.is_empty(),
    }
}

/// Every request sets the model's keep-alive (its own, or the default), as in Ollama;
/// an empty prompt only loads (or, with `keep_alive: 0`, unloads) the model.
async fn run(
    state: AppState,
    ctx: RequestContext,
    req: ChatRequest,
    keep_alive: Option<KeepAlive>,
    kind: Kind,
) -> Response {
    let model = req.model.clone();
    let registry = &state.core.registry;
    if is_load_only(&req) {
        if let Err(e) = allowed_model(&ctx, &model) {
            return error_response(&e);
        }
        if !model_known(&state, &model).await {
            return error_response(&GatewayError::ModelNotFound(model));
        }
        registry.set_keep_alive(&model, keep_alive);
        if keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO)) {
            return load_reply(kind, &model, "unload");
        }
        if let Err(e) = registry.load(&model).await {
            return error_response(&e);
        }
        return load_reply(kind, &model, "load");
    }
    registry.set_keep_alive(&model, keep_alive);
    let dialect = Ollama { kind, prompt_estimate: prompt_estimate(&req), model };
    respond(&state, ctx, req, dialect).await
}

/// How an Ollama answer is rendered.
struct Ollama {
    kind: Kind,
    model: String,
    prompt_estimate: u32,
}

impl Ollama {
    fn clock(&self, reply: &Reply) -> Clock {
        Clock { started: reply.started(), ttft: reply.ttft(), prompt_estimate: self.prompt_estimate }
    }
}

impl Dialect for Ollama {
    type Stream = OllamaNdjson;
    const CONTENT_TYPE: &'static str = "application/x-ndjson";
    const NAME: &'static str = "ollama";

    fn stream(self, reply: &Reply) -> OllamaNdjson {
        OllamaNdjson::new(self.kind, &self.model, self.clock(reply))
    }

    fn whole(self, reply: &Reply, text: String, done: &Event) -> Response {
        encode::whole(self.kind, &self.model, text, done, self.clock(reply))
    }

    fn error(err: &GatewayError) -> Response {
        error_response(err)
    }
}

/// Ollama answers an empty prompt by loading the model (`done_reason` "load") or, with
/// `keep_alive: 0`, by unloading it ("unload"); no stats.
fn load_reply(kind: Kind, model: &str, reason: &str) -> Response {
    let mut chat = encode::chat_response(
        model,
        String::new(),
        encode::End::of(FinishReason::Stop, None),
        ol::FinalStats::default(),
    );
    chat.done_reason = Some(reason.into());
    chat.stats = None;
    match kind {
        Kind::Chat => Json(chat).into_response(),
        Kind::Generate => Json(ol::GenerateResponse {
            model: chat.model,
            created_at: chat.created_at,
            response: String::new(),
            done: true,
            done_reason: chat.done_reason,
            stats: None,
            extra: ol::Fields::new(),
        })
        .into_response(),
    }
}

/// What discovery learned about `name` from its first route's backend.
fn model_info(state: &AppState, name: &str) -> Option<ModelInfo> {
    let table = state.core.registry.table();
    table.routes(name).and_then(|r| r.first()).and_then(|r| r.slot.model_info(&r.upstream_model))
}

/// The `/api/tags` entry of `name`; facts the backend did not give are left out.
fn tag(name: &str, info: Option<ModelInfo>) -> ol::ModelTag {
    let info = info.unwrap_or_default();
    ol::ModelTag {
        name: name.to_owned(),
        model: name.to_owned(),
        modified_at: info.modified_at,
        size: info.size.unwrap_or(0),
        digest: info.digest,
        details: info.details.unwrap_or_default(),
        expires_at: None,
        // Ollama leaves it out of tags too.
        size_vram: None,
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
            let expires = running.unloads_at.unwrap_or(forever);
            models.push(ol::ModelTag {
                model: name.clone(),
                digest: slot.model_info(&running.name).and_then(|i| i.digest),
                name,
                modified_at: None,
                size: running.size,
                details: running.details.unwrap_or_default(),
                expires_at: Some(humantime::format_rfc3339_seconds(expires).to_string()),
                size_vram: running.size_vram,
            });
        }
    }
    Json(ol::PsList { models }).into_response()
}

/// `POST /api/show`.
pub async fn show(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req = match body_or_error(&state, body).and_then(|b| parse_json::<ol::ShowRequest>(&b)) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let Some(name) = req.model.or(req.name).filter(|n| !n.is_empty()) else {
        return error_response(&GatewayError::bad_request("model is required", Some("model")));
    };
    if let Err(e) = allowed_model(&ctx, &name) {
        return error_response(&e);
    }
    if !model_known(&state, &name).await {
        return error_response(&GatewayError::ModelNotFound(name));
    }
    let info = model_info(&state, &name).unwrap_or_default();
    Json(ol::ShowResponse {
        details: info.details.unwrap_or_default(),
        capabilities: info.capabilities,
        modified_at: info.modified_at,
        ..Default::default()
    })
    .into_response()
}

/// `POST /api/embed`.
pub async fn embed(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req = match body_or_error(&state, body).and_then(|b| parse_json::<ol::EmbedRequest>(&b)) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = allowed_model(&ctx, &req.model) {
        return error_response(&e);
    }
    let input = req.input.into_vec();
    if input.is_empty() {
        return error_response(&GatewayError::bad_request("input must not be empty", Some("input")));
    }
    match keep_alive(req.keep_alive) {
        Ok(k) => state.core.registry.set_keep_alive(&req.model, k),
        Err(e) => return error_response(&e),
    }
    let started = tokio::time::Instant::now();
    let model = req.model.clone();
    match embeddings::embed(&state.core, &ctx, EmbedRequest { model: req.model, input }).await {
        Ok((e, served)) => {
            let resp = ol::EmbedResponse {
                model,
                embeddings: e.vectors,
                total_duration: started.elapsed().as_nanos() as u64,
                load_duration: u64::try_from(e.load.as_nanos()).unwrap_or(u64::MAX),
                prompt_eval_count: e.prompt_tokens,
            };
            served_response(Json(resp).into_response(), served)
        }
        Err(e) => error_response(&e),
    }
}

/// `GET /api/version`: Sluice's own version.
pub async fn version() -> Response {
    Json(ol::VersionResponse { version: env!("CARGO_PKG_VERSION").to_owned() }).into_response()
}
