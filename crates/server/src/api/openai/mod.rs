//! The OpenAI dialect: `/v1/chat/completions`, `/v1/completions`, `/v1/models`,
//! `/v1/models/{id}`, `/v1/embeddings`, and the Responses API `/v1/responses`
//! ([`responses`]). Handlers are thin: parse and validate into the
//! canonical request, run it, encode the answer or the error in OpenAI's shape.

pub mod convert;
pub mod encode;
pub mod responses;

use axum::{
    Json,
    extract::{Path, State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use sluice_protocol::openai as oa;

use sluice_core::{
    answer::Answer,
    chat::{ChatRequest, EmbedRequest},
    embeddings,
    error::GatewayError,
    reply::Reply,
};

use self::encode::{Kind, OpenAiSse, error_response};
use crate::{
    api::{
        Ctx, allowed_model, body_or_error, model_known, parse_json,
        respond::{Dialect, prompt_estimate, respond},
        served_response,
    },
    state::AppState,
};

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body_or_error(&state, body).and_then(|b| convert::chat_body(&b));
    match parsed {
        Ok((req, include_usage)) => {
            let dialect = OpenAi::new(Kind::Chat, &req, include_usage);
            respond(&state, ctx, req, dialect).await
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body_or_error(&state, body).and_then(|b| convert::completion_body(&b));
    match parsed {
        Ok((req, include_usage)) => {
            let dialect = OpenAi::new(Kind::Completion, &req, include_usage);
            respond(&state, ctx, req, dialect).await
        }
        Err(e) => error_response(&e),
    }
}

/// How an OpenAI answer is rendered.
struct OpenAi {
    kind: Kind,
    model: String,
    include_usage: bool,
    prompt_estimate: u32,
}

impl OpenAi {
    fn new(kind: Kind, req: &ChatRequest, include_usage: bool) -> OpenAi {
        OpenAi { kind, model: req.model.clone(), include_usage, prompt_estimate: prompt_estimate(req) }
    }
}

impl Dialect for OpenAi {
    type Stream = OpenAiSse;
    const CONTENT_TYPE: &'static str = "text/event-stream";
    const NAME: &'static str = "openai";

    fn stream(self, _: &Reply) -> OpenAiSse {
        OpenAiSse::new(self.kind, &self.model, self.include_usage, self.prompt_estimate)
    }

    fn whole(self, _: &Reply, answer: Answer) -> impl Future<Output = Response> + Send {
        std::future::ready(match self.kind {
            Kind::Chat => {
                Json(encode::chat_completion(&self.model, answer, self.prompt_estimate)).into_response()
            }
            Kind::Completion => {
                Json(encode::completion(&self.model, answer, self.prompt_estimate)).into_response()
            }
        })
    }

    fn error(err: &GatewayError) -> Response {
        error_response(err)
    }

    fn early_keepalive(&self) -> Bytes {
        Bytes::from_static(b": keep-alive\n\n")
    }

    fn stream_error(err: &GatewayError) -> Bytes {
        encode::stream_error(err)
    }
}

/// `GET /v1/models`.
pub async fn list_models(State(state): State<AppState>, Ctx(ctx): Ctx) -> Response {
    let table = state.core.registry.table();
    let created = started_unix(&state);
    let data = table
        .names()
        .iter()
        .filter(|name| ctx.principal.may_use_model(name))
        .map(|name| model_entry(name, &table, created))
        .collect();
    Json(oa::ModelList { object: "list".into(), data }).into_response()
}

/// The gateway's start in Unix seconds, read once: the same on every call.
fn started_unix(state: &AppState) -> u64 {
    static AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| encode::unix_now().saturating_sub(state.started.elapsed().as_secs()))
}

/// A model's entry. `created` is when its file or upstream entry last changed, when
/// that is known, else when the gateway started: stable from call to call.
fn model_entry(name: &str, table: &sluice_core::registry::ModelTable, started: u64) -> oa::Model {
    let route = table.routes(name).and_then(|r| r.first());
    let owner = route.map(|r| r.slot.name().to_owned()).unwrap_or_default();
    let modified = route
        .and_then(|r| r.slot.model_info(&r.upstream_model))
        .and_then(|i| i.modified_at)
        .and_then(|m| humantime::parse_rfc3339_weak(&m).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    oa::Model {
        id: name.to_owned(),
        object: "model".into(),
        created: modified.unwrap_or(started),
        owned_by: owner,
        capabilities: table.capabilities(name),
    }
}

/// `GET /v1/models/{id}`.
pub async fn get_model(State(state): State<AppState>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Response {
    if let Err(e) = allowed_model(&ctx, &id) {
        return error_response(&e);
    }
    if !model_known(&state, &id).await {
        return error_response(&GatewayError::ModelNotFound(id));
    }
    let table = state.core.registry.table();
    Json(model_entry(&id, &table, started_unix(&state))).into_response()
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req = match body_or_error(&state, body).and_then(|b| parse_json::<oa::EmbeddingRequest>(&b)) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let msg = format!("encoding_format must be 'float' or 'base64', got '{other}'");
            return error_response(&GatewayError::bad_request(msg, Some("encoding_format")));
        }
    };
    if let Err(e) = allowed_model(&ctx, &req.model) {
        return error_response(&e);
    }
    let (input, tokens) = match req.input {
        oa::EmbeddingInput::Text(t) => (t.into_vec(), Vec::new()),
        oa::EmbeddingInput::Tokens(t) => (Vec::new(), vec![t]),
        oa::EmbeddingInput::TokenLists(t) => (Vec::new(), t),
    };
    if input.is_empty() && (tokens.is_empty() || tokens.iter().any(Vec::is_empty)) {
        return error_response(&GatewayError::bad_request("'input' must not be empty", Some("input")));
    }
    if req.dimensions == Some(0) {
        return error_response(&GatewayError::bad_request(
            "'dimensions' must be at least 1",
            Some("dimensions"),
        ));
    }
    let model = req.model.clone();
    let ask = EmbedRequest { model: req.model, input, tokens, dimensions: req.dimensions, truncate: None };
    match embeddings::embed(&state.core, &ctx, ask).await {
        Ok((emb, served)) => {
            let data = emb
                .vectors
                .into_iter()
                .enumerate()
                .map(|(i, v)| oa::Embedding {
                    object: "embedding".into(),
                    index: i as u32,
                    embedding: if base64 { encode::base64_vector(&v) } else { oa::EmbeddingVector::Float(v) },
                })
                .collect();
            let usage =
                oa::EmbeddingUsage { prompt_tokens: emb.prompt_tokens, total_tokens: emb.prompt_tokens };
            served_response(
                Json(oa::EmbeddingResponse { object: "list".into(), data, model, usage }).into_response(),
                served,
            )
        }
        Err(e) => error_response(&e),
    }
}
