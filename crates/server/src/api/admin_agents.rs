//! Admin API for the agent network: `GET /admin/agents` (who is connected, with their
//! load and figures) and `POST|GET /admin/agent-tokens`, `DELETE /admin/agent-tokens/{id}`
//! (the same operations as `sluice agent-token`). Guarded by the normal API-key auth.

use std::{
    sync::atomic::Ordering,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json,
    extract::{Path, State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{body_or_error, openai::encode::error_response},
    state::AppState,
};
use sluice_core::error::GatewayError;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// `GET /admin/agents`.
pub async fn list_agents(State(state): State<AppState>) -> Response {
    let agents: Vec<_> = state
        .agents
        .list()
        .into_iter()
        .map(|(c, slot)| {
            let heartbeat = *c.last_heartbeat.lock().unwrap_or_else(|p| p.into_inner());
            json!({
                "id": c.info.id,
                "backend": slot.name(),
                "address": c.info.addr.map(|a| a.to_string()),
                "version": c.info.version,
                "models": c.info.models,
                "slots": c.info.slots,
                "jobs_in_flight": c.jobs_in_flight(),
                "outstanding": slot.outstanding.load(Ordering::Relaxed),
                "draining": c.draining.load(Ordering::Relaxed),
                "connected_at": unix(c.info.connected_at),
                "last_heartbeat": unix(heartbeat),
                "tokens_served": c.tokens_served.load(Ordering::Relaxed),
                "token_id": c.info.token_id,
            })
        })
        .collect();
    Json(json!({ "agents": agents })).into_response()
}

/// Body of `POST /admin/agent-tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    /// Model globs its agents may serve.
    #[serde(default)]
    models: Option<Vec<String>>,
    /// Seconds until the token is refused.
    #[serde(default)]
    expires_in: Option<u64>,
}

fn store_failed(e: &sluice_store::StoreError) -> Response {
    tracing::error!(error = %e, "agent token store failed");
    error_response(&GatewayError::Unavailable("the token store is unavailable".into()))
}

/// `POST /admin/agent-tokens` `{"name": "gpu-box-1"}`: the token is in the answer, once.
pub async fn create_token(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = body_or_error(&state, body).and_then(|b| {
        serde_json::from_slice::<CreateToken>(&b)
            .map_err(|e| GatewayError::bad_request(format!("invalid body: {e}"), None))
    });
    let c = match parsed {
        Ok(c) if !c.name.trim().is_empty() && c.name.len() <= 200 => c,
        Ok(_) => {
            return error_response(&GatewayError::bad_request("name must be 1-200 characters", Some("name")));
        }
        Err(e) => return error_response(&e),
    };
    if c.models
        .as_ref()
        .is_some_and(|m| m.is_empty() || m.len() > 100 || m.iter().any(|g| g.is_empty() || g.len() > 200))
    {
        return error_response(&GatewayError::bad_request(
            "models must be 1-100 globs of 1-200 characters",
            Some("models"),
        ));
    }
    let expires_at = c.expires_in.map(|s| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(now.as_secs().saturating_add(s)).unwrap_or(i64::MAX)
    });
    match state.store.create_agent_token_scoped(c.name.trim(), c.models, expires_at).await {
        Ok((t, secret)) => {
            tracing::info!(token_id = %t.id, name = %t.name, "agent token created");
            (
                StatusCode::CREATED,
                Json(json!({ "id": t.id, "name": t.name, "created_at": t.created_at, "token": secret })),
            )
                .into_response()
        }
        Err(e) => store_failed(&e),
    }
}

/// `GET /admin/agent-tokens`: every token (never the secrets).
pub async fn list_tokens(State(state): State<AppState>) -> Response {
    match state.store.list_agent_tokens().await {
        Ok(tokens) => Json(json!({ "tokens": tokens })).into_response(),
        Err(e) => store_failed(&e),
    }
}

/// `DELETE /admin/agent-tokens/{id}`: revokes the token and disconnects the agents using it.
pub async fn revoke_token(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.revoke_agent_token(&id).await {
        Ok(true) => {
            let disconnected = state.agents.disconnect_token(&id);
            tracing::info!(token_id = %id, disconnected, "agent token revoked");
            Json(json!({ "id": id, "revoked": true, "agents_disconnected": disconnected })).into_response()
        }
        Ok(false) => error_response(&GatewayError::NotFound(format!("no active agent token with id '{id}'"))),
        Err(e) => store_failed(&e),
    }
}
