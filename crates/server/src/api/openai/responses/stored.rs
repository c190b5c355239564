//! Stored responses: what `store` keeps, what `previous_response_id` continues from,
//! and `GET`/`DELETE /v1/responses/{id}`.
//!
//! A stored response keeps its whole context — the input items of every response
//! before it in the chain, their output items, then its own input (instructions are
//! not carried, as OpenAI does not carry them) — so continuing reads one row, and a
//! chain survives the deletion or expiry of its earlier links. The size cap
//! (`[responses] max_stored_bytes`) bounds a chain as well: a response whose context
//! and output are over it is answered but not stored, and its `store` says so.
//!
//! Responses belong to the caller's [`owner`](crate::api::owner::owner); to anyone
//! else, and once expired (`[responses] ttl`), an id is simply not found. A response
//! is written before the client receives its end (the whole object, or the stream's
//! last frame), so its id can be continued from at once.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use http::StatusCode;
use serde_json::{Value, json};
use sluice_core::{context::RequestContext, error::GatewayError};
use sluice_protocol::{openai as oa, responses as wire};
use sluice_store::{Store, StoreError, StoredResponse};

use crate::{
    api::{Ctx, openai::encode::error_response, owner::owner},
    clock::now_ms,
    state::AppState,
};

/// Longest id echoed back in a not-found message.
const ECHOED_ID_CHARS: usize = 128;

fn unavailable(e: &StoreError) -> GatewayError {
    tracing::warn!(error = %e, "the response store failed");
    GatewayError::Unavailable("the response store is unavailable; try again".into())
}

fn shown(id: &str) -> String {
    id.chars().take(ECHOED_ID_CHARS).collect()
}

/// OpenAI's 404 for a `previous_response_id` that is missing, expired or not the
/// caller's (the three are indistinguishable on purpose).
pub fn previous_not_found(id: &str) -> Response {
    let body = oa::ErrorResponse {
        error: oa::ErrorBody {
            message: format!("Previous response with id '{}' not found.", shown(id)),
            kind: Some("invalid_request_error".into()),
            param: Some("previous_response_id".into()),
            code: Some("previous_response_not_found".into()),
        },
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn not_found(id: &str) -> Response {
    error_response(&GatewayError::NotFound(format!("Response with id '{}' not found.", shown(id))))
}

/// The caller's owner id, or the 401 asking it to sign in.
fn owner_id(ctx: &RequestContext) -> Result<String, GatewayError> {
    owner(ctx)
        .map(|o| o.id)
        .ok_or_else(|| GatewayError::Unauthorized("sign in to use stored responses".into()))
}

/// The caller's stored response `id`; `None` when it has none by that id (or it expired).
async fn load(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<Option<StoredResponse>, GatewayError> {
    let owner = owner_id(ctx)?;
    state.store.get_response(&owner, id).await.map_err(|e| unavailable(&e))
}

/// The context `previous_response_id` continues: the stored response's own context,
/// then its output items; `None` when the caller has no such response.
pub async fn previous(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<Option<Vec<Value>>, GatewayError> {
    let Some(row) = load(state, ctx, id).await? else { return Ok(None) };
    // Sluice wrote it: unreadable means damaged, and is treated as missing.
    let parsed = serde_json::from_str::<Vec<Value>>(&row.input)
        .and_then(|items| Ok((items, serde_json::from_str::<Value>(&row.response)?)));
    let (mut items, response) = match parsed {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, id, "a stored response is not readable");
            return Ok(None);
        }
    };
    if let Some(Value::Array(output)) = response.get("output") {
        items.extend(output.iter().cloned());
    }
    Ok(Some(items))
}

/// A response to be stored once it ends: who owns it and the context it answers.
pub struct Keep {
    store: Arc<Store>,
    owner: String,
    /// The context as a JSON array.
    input: String,
    ttl_ms: i64,
    max_bytes: usize,
}

impl Keep {
    /// What storing a response to `input` after `previous` takes; `None` when it
    /// cannot be stored: the caller owns no data (anonymous), or the context alone is
    /// over the size cap.
    pub fn new(
        state: &AppState,
        ctx: &RequestContext,
        previous: &[Value],
        input: Option<&Value>,
    ) -> Option<Keep> {
        let owner = owner(ctx)?.id;
        let text_item;
        let own: &[Value] = match input {
            Some(Value::Array(items)) => items,
            Some(Value::String(text)) => {
                text_item = [json!({
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                })];
                &text_item
            }
            _ => &[],
        };
        let all: Vec<&Value> = previous.iter().chain(own).collect();
        let input = serde_json::to_string(&all).ok()?;
        let cfg = state.config.responses;
        if input.len() > cfg.max_stored_bytes {
            tracing::info!(
                bytes = input.len(),
                "a response's context is over responses.max_stored_bytes: not stored"
            );
            return None;
        }
        let ttl_ms = i64::try_from(cfg.ttl.as_millis()).unwrap_or(i64::MAX);
        Some(Keep { store: state.store.clone(), owner, input, ttl_ms, max_bytes: cfg.max_stored_bytes })
    }

    /// Stores `r` (as it is now, `store` true): the write, resolving to whether it
    /// was stored. `None`, with `r.store` made false, when context and response are
    /// over the size cap.
    pub fn save(self, r: &mut wire::Response) -> Option<BoxFuture<'static, bool>> {
        let response = serde_json::to_string(&*r).ok()?;
        if self.input.len() + response.len() > self.max_bytes {
            tracing::info!(
                bytes = self.input.len() + response.len(),
                "a response is over responses.max_stored_bytes: not stored"
            );
            r.store = false;
            return None;
        }
        let now = now_ms();
        let row = StoredResponse {
            id: r.id.clone(),
            user_id: self.owner,
            input: self.input,
            response,
            created_at: now,
            expires_at: now.saturating_add(self.ttl_ms),
        };
        let store = self.store;
        Some(Box::pin(async move {
            match store.put_response(&row).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, id = %row.id, "storing a response failed");
                    false
                }
            }
        }))
    }
}

/// `GET /v1/responses/{id}`: the caller's stored response object.
pub async fn get(State(state): State<AppState>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Response {
    let row = match load(&state, &ctx, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&id),
        Err(e) => return error_response(&e),
    };
    match serde_json::from_str::<Value>(&row.response) {
        Ok(body) => Json(body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, id, "a stored response is not readable");
            not_found(&id)
        }
    }
}

/// `DELETE /v1/responses/{id}`: deletes the caller's stored response.
pub async fn delete(State(state): State<AppState>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Response {
    let owner = match owner_id(&ctx) {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    match state.store.delete_response(&owner, &id).await {
        Ok(true) => Json(json!({"id": id, "object": "response", "deleted": true})).into_response(),
        Ok(false) => not_found(&id),
        Err(e) => error_response(&unavailable(&e)),
    }
}
