//! Admin API for users: `GET /admin/users`, `POST /admin/users`, and
//! `PATCH /admin/users/{id}` (disable, enable, role, password, monthly budget) — the
//! same operations as `sluice user`. A disabled user's keys and sessions stop working at once.

use axum::{
    Json,
    extract::{Path, State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sluice_core::{context::Role, error::GatewayError};
use sluice_protocol::budget::Budget;

use super::{json_body, openai::encode::error_response, reload_directory, store_error};
use crate::state::AppState;

/// Body of `POST /admin/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

/// Body of `PATCH /admin/users/{id}`: each field present is changed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    disabled: Option<bool>,
    role: Option<String>,
    password: Option<String>,
    /// `{"monthly_usd": 25, "mode": "hard"|"soft"}` sets it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    budget: Option<Option<Budget>>,
}

/// A field that is present (even as `null`) is `Some`; an absent one stays `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Budget>>, D::Error> {
    Option::<Budget>::deserialize(d).map(Some)
}

fn admin(role: Option<&str>) -> Result<bool, GatewayError> {
    match role.map(Role::parse) {
        None => Ok(false),
        Some(Some(r)) => Ok(r == Role::Admin),
        Some(None) => Err(GatewayError::bad_request("role must be 'admin' or 'user'", Some("role"))),
    }
}

/// `GET /admin/users`.
pub async fn list(State(state): State<AppState>) -> Response {
    match state.store.list_users().await {
        Ok(users) => Json(json!({ "users": users })).into_response(),
        Err(e) => error_response(&store_error(e)),
    }
}

/// `POST /admin/users` `{"name", "password", "role"?}`.
pub async fn create(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let result = async {
        let c: Create = json_body(&state, body)?;
        let admin = admin(c.role.as_deref())?;
        state.store.create_user(&c.name, &c.password, admin).await.map_err(store_error)
    }
    .await;
    match result {
        Ok(user) => {
            reload_directory(&state).await;
            tracing::info!(user = %user.name, admin = user.admin, "user created");
            (StatusCode::CREATED, Json(json!(user))).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `PATCH /admin/users/{id}` `{"disabled"?, "role"?, "password"?, "budget"?}`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let u: Update = json_body(&state, body)?;
        let missing = || GatewayError::NotFound(format!("no user with id '{id}'"));
        let store = &state.store;
        // Everything is checked before anything changes.
        let role = u.role.as_deref().map(|r| admin(Some(r))).transpose()?;
        if let Some(password) = &u.password {
            store
                .set_password(&id, password)
                .await
                .map_err(store_error)?
                .then_some(())
                .ok_or_else(missing)?;
        }
        if let Some(admin) = role {
            store.set_user_admin(&id, admin).await.map_err(store_error)?.then_some(()).ok_or_else(missing)?;
        }
        if let Some(disabled) = u.disabled {
            store
                .set_user_disabled(&id, disabled)
                .await
                .map_err(store_error)?
                .then_some(())
                .ok_or_else(missing)?;
        }
        if let Some(budget) = u.budget {
            store
                .set_user_budget(&id, budget)
                .await
                .map_err(store_error)?
                .then_some(())
                .ok_or_else(missing)?;
        }
        if u.password.is_some() || u.disabled == Some(true) {
            store.delete_user_sessions(&id).await.map_err(store_error)?;
            state.directory.forget_all_sessions();
        }
        store.get_user(&id).await.map_err(store_error)?.ok_or_else(missing)
    }
    .await;
    match result {
        Ok(user) => {
            reload_directory(&state).await;
            tracing::info!(user = %user.name, disabled = user.disabled, admin = user.admin, "user changed");
            Json(json!(user)).into_response()
        }
        Err(e) => error_response(&e),
    }
}
