//! A user's API keys: `GET /v1/keys`, `POST /v1/keys` (the key is in the answer,
//! once), `DELETE /v1/keys/{id}`.
//!
//! Users see and revoke only their own keys: another user's key id is a 404. Admins
//! may pass `?user=NAME` to list or create anyone's keys, and revoke any key.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sluice_core::{context::Principal, error::GatewayError};
use sluice_store::{NewApiKey, api_keys::Limits};

use super::{Ctx, json_body, openai::encode::error_response, reload_directory, store_error};
use crate::state::AppState;

/// `?user=NAME` (admins).
#[derive(Deserialize)]
pub struct Owner {
    user: Option<String>,
}

/// Body of `POST /v1/keys`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Create {
    name: String,
    models: Option<Vec<String>>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    max_streams: Option<u32>,
    daily_tokens: Option<u64>,
    monthly_tokens: Option<u64>,
    /// `{"monthly_usd": 10, "mode": "hard"|"soft"}`.
    budget: Option<sluice_protocol::budget::Budget>,
    /// e.g. `30d`.
    expires_in: Option<String>,
}

/// Whose keys a request is about: `Ok(None)` means everyone's (an admin without a
/// user of their own and no `?user=`).
async fn owner(
    state: &AppState,
    principal: &Principal,
    asked: Option<String>,
) -> Result<Option<String>, GatewayError> {
    if let Some(name) = asked {
        if !principal.is_admin() {
            return Err(GatewayError::Forbidden("only admins may act on another user's keys".into()));
        }
        return match state.store.user_by_name(&name).await.map_err(store_error)? {
            Some(u) => Ok(Some(u.id)),
            None => Err(GatewayError::NotFound(format!("no user named '{name}'"))),
        };
    }
    match principal {
        Principal::User(u) => Ok(Some(u.user_id.to_string())),
        Principal::Local | Principal::ServiceKey(_) => Ok(None),
        Principal::Anonymous(_) => Err(GatewayError::Forbidden("anonymous callers have no API keys".into())),
    }
}

/// Unix seconds `expires_in` from now.
pub fn expiry(expires_in: &str) -> Result<i64, GatewayError> {
    let d: Duration = humantime::parse_duration(expires_in).map_err(|e| {
        GatewayError::bad_request(format!("expires_in: {e} (e.g. '30d', '12h')"), Some("expires_in"))
    })?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Ok(i64::try_from((now + d).as_secs()).unwrap_or(i64::MAX))
}

/// `GET /v1/keys`: the caller's keys (prefixes, never the secrets).
pub async fn list(State(state): State<AppState>, Ctx(ctx): Ctx, Query(q): Query<Owner>) -> Response {
    let result = async {
        let owner = owner(&state, &ctx.principal, q.user).await?;
        state.store.list_api_keys(owner.as_deref()).await.map_err(store_error)
    }
    .await;
    match result {
        Ok(keys) => Json(json!({ "keys": keys })).into_response(),
        Err(e) => error_response(&e),
    }
}

/// `POST /v1/keys`: a new key for the caller (or `?user=`); the secret is shown once.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Query(q): Query<Owner>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let c: Create = json_body(&state, body)?;
        let Some(user_id) = owner(&state, &ctx.principal, q.user).await? else {
            return Err(GatewayError::bad_request("say whose key this is: ?user=NAME", Some("user")));
        };
        let new = NewApiKey {
            user_id,
            name: c.name,
            models: c.models,
            limits: Limits::new(c.rpm, c.tpm, c.max_streams, c.daily_tokens, c.monthly_tokens, c.budget),
            expires_at: c.expires_in.as_deref().map(expiry).transpose()?,
        };
        state.store.create_api_key(&new).await.map_err(store_error)
    }
    .await;
    match result {
        Ok((key, secret)) => {
            reload_directory(&state).await;
            tracing::info!(key_id = %key.id, "API key created");
            let mut body = json!(key);
            body["key"] = json!(secret);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `DELETE /v1/keys/{id}`: revokes one of the caller's keys (admins: any key).
pub async fn revoke(State(state): State<AppState>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Response {
    let owner = match (&ctx.principal, ctx.principal.is_admin()) {
        (_, true) => None,
        (Principal::User(u), false) => Some(u.user_id.to_string()),
        _ => return error_response(&GatewayError::Forbidden("anonymous callers have no API keys".into())),
    };
    match state.store.revoke_api_key(&id, owner.as_deref()).await {
        Ok(true) => {
            reload_directory(&state).await;
            tracing::info!(key_id = %id, "API key revoked");
            Json(json!({ "id": id, "revoked": true })).into_response()
        }
        Ok(false) => error_response(&GatewayError::NotFound(format!("no active API key with id '{id}'"))),
        Err(e) => error_response(&store_error(e)),
    }
}
