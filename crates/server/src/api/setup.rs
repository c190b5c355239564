//! First run and passwords: `GET /auth/setup` (is there an admin yet?), `POST
//! /auth/setup` (create the first admin and sign in), `POST /auth/password` (change
//! one's own password).
//!
//! Setup is open only to the person keyless mode already treats as the admin: no user
//! and no key exists, the listener is on loopback, and the request comes to a loopback
//! `Host` from a local page. The store, not this process, decides who is first
//! ([`sluice_store::Store::create_first_admin`]), so two setups racing — here or on
//! another replica — make one admin.

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use sluice_core::{context::Principal, error::GatewayError};

use super::{Ctx, caller, json_body, login::start_session, openai::encode::error_response, store_error};
use crate::{auth::gate::Rules, state::AppState};

/// Body of `POST /auth/setup`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    name: String,
    password: String,
}

/// Body of `POST /auth/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

/// True while the first admin can be created from a local browser.
fn open(state: &AppState) -> bool {
    let rules = Rules {
        keys: &state.keys,
        directory: &state.directory,
        loopback_listener: state.config.server.listen.ip().is_loopback(),
        allow_anonymous: state.config.auth.allow_anonymous,
    };
    rules.keyless()
}

/// `GET /auth/setup`: `{"needed": true}` while no user or key exists yet (the UI then
/// offers to create the admin).
pub async fn status(State(state): State<AppState>) -> Response {
    Json(json!({ "needed": open(&state) })).into_response()
}

/// `POST /auth/setup` `{"name", "password"}`: creates the first admin and answers like
/// a login (session cookie, CSRF token). 403 once any user or key exists.
pub async fn create(State(state): State<AppState>, req: Request) -> Response {
    let taken = || GatewayError::Forbidden("setup is done: an account exists already; log in".into());
    if !open(&state) {
        return error_response(&taken());
    }
    // The caller must be the keyless-mode admin: a loopback Host and a local Origin.
    let (head, body) = req.into_parts();
    match caller(&state, &head.method, &head.headers, &head.uri, &head.extensions).await {
        Ok(Principal::Local) => {}
        Ok(_) => return error_response(&taken()),
        Err(e) => return error_response(&e),
    }
    let limit = state.config.server.body_limit_bytes;
    let body = axum::body::to_bytes(body, limit).await;
    let body = body.map_err(|_| GatewayError::PayloadTooLarge { limit });
    let setup: Setup = match body.and_then(|b| super::parse_json(&b)) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let user = match state.store.create_first_admin(setup.name.trim(), &setup.password).await {
        Ok(Some(u)) => u,
        Ok(None) => return error_response(&taken()),
        Err(e) => return error_response(&store_error(e)),
    };
    tracing::info!(user = %user.name, "first admin created");
    super::reload_directory(&state).await;
    start_session(&state, &user).await
}

/// `POST /auth/password` `{"current", "new"}`: the signed-in user's own password
/// (failed attempts count as failed logins).
pub async fn change_password(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Principal::User(user) = &ctx.principal else {
        return error_response(&GatewayError::bad_request("only a user account has a password", None));
    };
    let req: PasswordChange = match json_body(&state, body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let now = tokio::time::Instant::now();
    if let Err(wait) = state.logins.check(&user.name, None, now) {
        return error_response(&GatewayError::RateLimited {
            message: "too many wrong passwords: wait before trying again".into(),
            retry_after: Some(wait.max(std::time::Duration::from_secs(1))),
        });
    }
    match state.store.verify_password(&user.name, &req.current).await {
        Ok(Some(_)) => state.logins.succeeded(&user.name, None),
        Ok(None) => {
            state.logins.failed(&user.name, None, now);
            return error_response(&GatewayError::bad_request(
                "the current password is wrong",
                Some("current"),
            ));
        }
        Err(e) => return error_response(&store_error(e)),
    }
    match state.store.set_password(&user.user_id, &req.new).await {
        Ok(_) => Json(json!({ "changed": true })).into_response(),
        Err(e) => error_response(&store_error(e)),
    }
}
