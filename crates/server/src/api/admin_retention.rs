//! `GET|PUT /admin/retention`: how many days conversations and usage records are kept
//! (0 keeps them). A change takes effect at once (the retention task sweeps) and lasts
//! until restart: it is kept in memory, not written to the configuration. Admins only.

use axum::{
    Json,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use sluice_config::RetentionConfig;

use super::{Ctx, body_or_error, data_error::DataError, owner::admin, parse_json};
use crate::state::AppState;

/// `PUT /admin/retention` body; a missing field keeps its value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Days a conversation is kept after its last update (0: forever).
    conversations_days: Option<u32>,
    /// Days a usage record is kept (0: forever).
    usage_days: Option<u32>,
}

fn settings(cfg: RetentionConfig) -> Response {
    Json(json!({
        "conversations_days": cfg.conversations_days,
        "usage_days": cfg.usage_days,
        "persisted": false,
    }))
    .into_response()
}

/// `GET /admin/retention`: the settings in force.
pub async fn get(State(state): State<AppState>, Ctx(ctx): Ctx) -> Result<Response, DataError> {
    admin(&ctx, "reading retention")?;
    Ok(settings(state.retention.get()))
}

/// `PUT /admin/retention` `{conversations_days?, usage_days?}`: applies at once, until
/// restart.
pub async fn put(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, DataError> {
    let who = admin(&ctx, "changing retention")?;
    let b: RetentionBody = parse_json(&body_or_error(&state, body)?)?;
    let old = state.retention.get();
    let new = RetentionConfig {
        conversations_days: b.conversations_days.unwrap_or(old.conversations_days),
        usage_days: b.usage_days.unwrap_or(old.usage_days),
    };
    state.retention.set(new);
    tracing::info!(by = %who.id, conversations_days = new.conversations_days, usage_days = new.usage_days, "retention changed");
    Ok(settings(new))
}
