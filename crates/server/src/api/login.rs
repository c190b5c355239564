//! Session routes: `POST /auth/login` (sets the `sluice_session` cookie, returns the
//! CSRF token), `POST /auth/logout`, `GET /auth/me`.
//!
//! Logins are throttled per account and per client address (429 with `Retry-After`);
//! an unknown name and a wrong password get the same answer after the same work.

use std::net::SocketAddr;

use axum::{
    Extension, Json,
    extract::{ConnectInfo, State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use serde_json::json;
use sluice_core::{context::Principal, error::GatewayError};

use super::{Ctx, json_body, openai::encode::error_response, store_error};
use crate::{
    auth::gate::{SESSION_COOKIE, session_cookie},
    state::AppState,
};

/// Body of `POST /auth/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

/// The client-facing description of a principal.
pub fn describe(principal: &Principal) -> serde_json::Value {
    match principal {
        Principal::Local => json!({ "id": null, "name": "local", "role": "admin", "kind": "local" }),
        Principal::Anonymous(ip) => {
            json!({ "id": null, "name": format!("anonymous {ip}"), "role": "user", "kind": "anonymous" })
        }
        Principal::ServiceKey(_) => {
            json!({ "id": null, "name": "service key", "role": "admin", "kind": "service_key" })
        }
        Principal::User(u) => json!({
            "id": &*u.user_id,
            "name": u.name,
            "role": u.role.as_str(),
            "kind": "user",
            "key_id": u.key.as_ref().map(|k| &k.id),
        }),
    }
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.server.tls_cert.is_some() { "; Secure" } else { "" };
    let c = format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c).expect("a hex token makes a valid cookie header")
}

/// `POST /auth/login` `{"name", "password"}`.
pub async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: Login = match json_body(&state, body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let addr = client.map(|c| c.0.0.ip());
    if let Err(wait) = state.logins.check(&req.name, addr, tokio::time::Instant::now()) {
        return error_response(&GatewayError::RateLimited {
            message: "too many failed logins: wait before trying again".into(),
            retry_after: Some(wait.max(std::time::Duration::from_secs(1))),
        });
    }
    let user = match state.store.verify_password(&req.name, &req.password).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            state.logins.failed(&req.name, addr, tokio::time::Instant::now());
            tracing::info!("login refused");
            return error_response(&GatewayError::Unauthorized("wrong name or password".into()));
        }
        Err(e) => return error_response(&store_error(e)),
    };
    state.logins.succeeded(&req.name, addr);
    start_session(&state, &user).await
}

/// Opens a session for `user`: the answer sets the cookie and holds the CSRF token.
pub async fn start_session(state: &AppState, user: &sluice_store::User) -> Response {
    let ttl = state.config.auth.session_ttl;
    let (session, token) = match state.store.create_session(&user.id, ttl).await {
        Ok(s) => s,
        Err(e) => return error_response(&store_error(e)),
    };
    tracing::info!(user = %user.name, "logged in");
    let role = if user.admin { "admin" } else { "user" };
    let body = json!({
        "user": { "id": user.id, "name": user.name, "role": role, "kind": "user" },
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at,
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie(state, &token, ttl.as_secs()));
    resp
}

/// `POST /auth/logout`: ends the cookie's session (a no-op for key callers).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers) {
        state.directory.forget_session(token);
        if let Err(e) = state.store.delete_session(token).await {
            return error_response(&store_error(e));
        }
    }
    let mut resp = Json(json!({ "logged_out": true })).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie(&state, "", 0));
    resp
}

/// `GET /auth/me`: who the caller is (and the session's CSRF token, for a cookie).
pub async fn me(State(state): State<AppState>, Ctx(ctx): Ctx, headers: HeaderMap) -> Response {
    let mut body = json!({ "user": describe(&ctx.principal) });
    let via_session = matches!(&ctx.principal, Principal::User(u) if u.key.is_none());
    if via_session && let Some(token) = session_cookie(&headers) {
        match state.directory.session(token).await {
            Ok(Some(s)) => body["csrf_token"] = json!(s.csrf_token),
            Ok(None) => {}
            Err(e) => return error_response(&store_error(e)),
        }
    }
    Json(body).into_response()
}
