//! `/v1/conversations`: a caller's saved chats. List (newest first, keyset pages),
//! create, get with every message, rename, delete, full-text search, JSON export, and
//! append a message (committed before the 201).
//!
//! Every handler acts for [`owner`](super::owner::owner) and passes its id to the
//! store, which treats another owner's conversation as missing: a 404, never a 403.

use axum::{
    Json,
    extract::{Path, Query, State, rejection::BytesRejection, rejection::QueryRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use sluice_core::chat::Role;
use sluice_store::{ConversationCursor, NewMessage, Page};

use super::{Ctx, body_or_error, data_error::DataError, owner::signed_in, parse_json};
use crate::state::AppState;

/// Longest title (or model name), in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Largest page or search result.
pub const MAX_LIMIT: u32 = 100;

type Result<T, E = DataError> = std::result::Result<T, E>;

/// The query string, or a 400 naming the field serde complained about.
pub(super) fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(t)| t).map_err(|e| DataError::bad(e.body_text(), "query"))
}

/// A JSON body, or the 400/413 saying why not.
fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<T> {
    Ok(parse_json(&body_or_error(state, body)?)?)
}

/// `limit`, defaulting to `default`, within 1..=[`MAX_LIMIT`].
pub(super) fn limit(limit: Option<u32>, default: u32) -> Result<u32> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(DataError::bad(format!("limit must be between 1 and {MAX_LIMIT}, not {n}"), "limit")),
    }
}

/// `text` trimmed, if at most [`MAX_TITLE_CHARS`] long (titles and model names).
fn short(text: &str, field: &'static str) -> Result<String> {
    let t = text.trim();
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(DataError::bad(format!("{field} is longer than {MAX_TITLE_CHARS} characters"), field));
    }
    Ok(t.to_owned())
}

fn not_found(id: &str) -> DataError {
    DataError::NotFound(format!("no conversation '{id}'"))
}

/// `GET /v1/conversations` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The `next` of the previous page.
    before: Option<String>,
    /// Conversations per page (default 50).
    limit: Option<u32>,
}

/// `GET /v1/conversations?before=CURSOR&limit=N`: newest first; `next` continues.
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    q: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let q = query(q)?;
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<ConversationCursor>().map_err(|_| {
            DataError::bad("before: not a cursor (pass the `next` of the previous page)", "before")
        })?),
    };
    let page = Page { before, limit: limit(q.limit, 50)? };
    let (data, next) = state.store.list_conversations(&owner.id, &page).await?;
    Ok(Json(json!({ "object": "list", "data": data, "next": next.map(|c| c.to_string()) })).into_response())
}

/// `POST /v1/conversations` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Shown in the list (default empty: the client names it later).
    #[serde(default)]
    title: String,
    /// The model it starts with.
    #[serde(default)]
    model: String,
}

/// `POST /v1/conversations` `{title?, model?}` → 201 with the conversation.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let b: CreateBody = match &raw {
        Ok(bytes) if bytes.is_empty() => CreateBody::default(),
        _ => body(&state, raw)?,
    };
    let c = state
        .store
        .create_conversation(&owner.id, &short(&b.title, "title")?, &short(&b.model, "model")?)
        .await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

/// `GET /v1/conversations/{id}`: the conversation and every message, oldest first.
pub async fn get(State(state): State<AppState>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let c = state.store.get_conversation(&owner.id, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(c).into_response())
}

/// `PATCH /v1/conversations/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    /// The new title.
    title: String,
}

/// `PATCH /v1/conversations/{id}` `{title}`.
pub async fn rename(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let b: RenameBody = body(&state, raw)?;
    let t = short(&b.title, "title")?;
    if !state.store.rename_conversation(&owner.id, &id, &t).await? {
        return Err(not_found(&id));
    }
    Ok(Json(json!({ "id": id, "title": t })).into_response())
}

/// `DELETE /v1/conversations/{id}`: the conversation and its messages.
pub async fn delete(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    if !state.store.delete_conversation(&owner.id, &id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(json!({ "id": id, "object": "conversation.deleted", "deleted": true })).into_response())
}

/// `GET /v1/conversations/{id}/export`: a JSON document to download.
pub async fn export(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let doc = state.store.export_conversation(&owner.id, &id).await?.ok_or_else(|| not_found(&id))?;
    // The stored id is a uuid: safe inside the quoted file name.
    let disposition = format!("attachment; filename=\"conversation-{}.json\"", doc.conversation.id);
    let mut resp = Json(doc).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `GET /v1/conversations/search` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// The words, all of which must appear.
    q: String,
    /// Hits (default 20).
    limit: Option<u32>,
}

/// `GET /v1/conversations/search?q=...&limit=N`: the caller's messages holding every
/// word, newest first.
pub async fn search(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    q: std::result::Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let q = query(q)?;
    let text = q.q.trim();
    if text.is_empty() || text.chars().count() > MAX_QUERY_CHARS {
        return Err(DataError::bad(format!("q must be 1 to {MAX_QUERY_CHARS} characters"), "q"));
    }
    let hits = state.store.search_messages(&owner.id, text, limit(q.limit, 20)?).await?;
    Ok(Json(json!({ "object": "list", "data": hits })).into_response())
}

/// `POST /v1/conversations/{id}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// `system`, `user`, `assistant` or `tool`.
    role: String,
    /// The text.
    content: String,
    /// The message it follows (siblings share a parent: an edit, a regenerated answer).
    parent_id: Option<String>,
    /// The model that wrote it.
    model: Option<String>,
}

/// `POST /v1/conversations/{id}/messages` `{role, content, parent_id?, model?}` → 201
/// with the stored message, committed before the answer.
pub async fn append(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let b: AppendBody = body(&state, raw)?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        DataError::bad(format!("role: unknown role '{}' (system, user, assistant, tool)", b.role), "role")
    })?;
    let m = NewMessage {
        parent_id: b.parent_id.filter(|p| !p.is_empty()),
        role: role.as_str().to_owned(),
        content: b.content,
        model: b.model,
        ..NewMessage::default()
    };
    let parent = m.parent_id.clone();
    match state.store.append_message(&owner.id, &id, m).await? {
        Some(stored) => Ok((StatusCode::CREATED, Json(stored)).into_response()),
        None => Err(DataError::NotFound(match parent {
            Some(p) => format!("no conversation '{id}' with a message '{p}'"),
            None => format!("no conversation '{id}'"),
        })),
    }
}

#[cfg(test)]
mod tests;
