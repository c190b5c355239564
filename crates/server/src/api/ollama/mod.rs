//! The Ollama dialect: `/api/chat`, `/api/generate`, `/api/tags`, `/api/ps`,
//! `/api/show`, `/api/embed`, `/api/version`. Same shape as the OpenAI module: parse,
//! validate, run, encode in Ollama's format (NDJSON streams, `{"error": "..."}`).

pub mod convert;
pub mod encode;
pub mod models;

pub use models::{blobs, manage, ps, pull, show, tags, version};

use axum::{
    Json,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use sluice_protocol::ollama as ol;

use self::encode::{Clock, Kind, OllamaNdjson, error_response};
use sluice_core::{
    answer::Answer,
    chat::{ChatRequest, EmbedRequest, Input, KeepAlive},
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
    match body_or_error(&state, body)
        .and_then(|b| convert::chat_body(&b))
        .and_then(|(req, asked)| Ok((req, keep_alive(&state, &ctx, asked)?)))
    {
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
    match body_or_error(&state, body)
        .and_then(|b| convert::generate_body(&b))
        .and_then(|(req, asked)| Ok((req, keep_alive(&state, &ctx, asked)?)))
    {
        Ok((req, keep_alive)) => run(state, ctx, req, keep_alive, Kind::Generate).await,
        Err(e) => error_response(&e),
    }
}

/// The `keep_alive` asked for, as the caller may have it
/// ([`crate::tenancy::keep_alive_for`]).
fn keep_alive(
    state: &AppState,
    ctx: &RequestContext,
    asked: Option<KeepAlive>,
) -> Result<Option<KeepAlive>, GatewayError> {
    let Some(asked) = asked else { return Ok(None) };
    crate::tenancy::keep_alive_for(&ctx.principal, asked, state.config.engine.max_keep_alive).map(Some)
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

    fn whole(self, reply: &Reply, answer: Answer) -> impl Future<Output = Response> + Send {
        std::future::ready(encode::whole(self.kind, &self.model, answer, self.clock(reply)))
    }

    fn error(err: &GatewayError) -> Response {
        error_response(err)
    }

    fn early_keepalive(&self) -> Bytes {
        // NDJSON has no comments: Ollama's own empty chunk, which every client reads.
        encode::empty_chunk(self.kind, &self.model)
    }

    fn stream_error(err: &GatewayError) -> Bytes {
        let line = serde_json::json!({"error": err.client_message(), "status": err.status_code().as_u16()});
        Bytes::from(format!("{line}\n"))
    }
}

/// Ollama answers an empty prompt by loading the model (`done_reason` "load") or, with
/// `keep_alive: 0`, by unloading it ("unload"); no stats.
fn load_reply(kind: Kind, model: &str, reason: &str) -> Response {
    let mut chat = encode::chat_response(model, Answer::default(), ol::FinalStats::default());
    chat.done_reason = Some(reason.into());
    chat.stats = None;
    match kind {
        Kind::Chat => Json(chat).into_response(),
        Kind::Generate => Json(ol::GenerateResponse {
            model: chat.model,
            created_at: chat.created_at,
            response: String::new(),
            thinking: None,
            logprobs: None,
            done: true,
            done_reason: chat.done_reason,
            stats: None,
            extra: ol::Fields::new(),
        })
        .into_response(),
    }
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
    match convert::keep_alive(req.keep_alive.as_ref()).and_then(|asked| keep_alive(&state, &ctx, asked)) {
        Ok(k) => state.core.registry.set_keep_alive(&req.model, k),
        Err(e) => return error_response(&e),
    }
    let started = tokio::time::Instant::now();
    if input.is_empty() {
        // As Ollama: no input embeds nothing (a known model is still required).
        if !model_known(&state, &req.model).await {
            return error_response(&GatewayError::ModelNotFound(req.model));
        }
        return Json(ol::EmbedResponse { model: req.model, ..Default::default() }).into_response();
    }
    let model = req.model.clone();
    let ask = EmbedRequest {
        model: req.model,
        input,
        dimensions: req.dimensions,
        // Ollama's default: inputs over the context are cut, not refused.
        truncate: Some(req.truncate.unwrap_or(true)),
        ..Default::default()
    };
    match embeddings::embed(&state.core, &ctx, ask).await {
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

/// `POST /api/embeddings`: the legacy one-text form (LlamaIndex, Haystack,
/// ollama-python's `embeddings()`); an empty prompt is an empty vector, as in Ollama.
pub async fn embeddings(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req = match body_or_error(&state, body).and_then(|b| parse_json::<ol::LegacyEmbedRequest>(&b)) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = allowed_model(&ctx, &req.model) {
        return error_response(&e);
    }
    match convert::keep_alive(req.keep_alive.as_ref()).and_then(|asked| keep_alive(&state, &ctx, asked)) {
        Ok(k) => state.core.registry.set_keep_alive(&req.model, k),
        Err(e) => return error_response(&e),
    }
    if req.prompt.is_empty() {
        if !model_known(&state, &req.model).await {
            return error_response(&GatewayError::ModelNotFound(req.model));
        }
        return Json(ol::LegacyEmbedResponse::default()).into_response();
    }
    let ask = EmbedRequest {
        model: req.model,
        input: vec![req.prompt],
        truncate: Some(true),
        ..Default::default()
    };
    match embeddings::embed(&state.core, &ctx, ask).await {
        Ok((mut e, served)) => {
            let embedding = e.vectors.pop().unwrap_or_default();
            served_response(Json(ol::LegacyEmbedResponse { embedding }).into_response(), served)
        }
        Err(e) => error_response(&e),
    }
}
