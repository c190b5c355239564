//! Harness for the router tests of the stored-data routes (conversations, usage,
//! retention): a gateway with two service keys (two owners) over a SQLite in-memory
//! store or a Postgres schema of its own, called through the whole middleware stack.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use sluice_config::{Config, Overrides};
use sqlx::Connection as _;
use tower::ServiceExt;

use super::app;
use crate::{auth::hash_key, state::AppState};

/// Owner A's key.
pub const A: &str = "sk-owner-a";
/// Owner B's key.
pub const B: &str = "sk-owner-b";

/// The owner id a service key's data is stored under.
pub fn owner_id(key: &str) -> String {
    format!("service:{}", &hash_key(key)[..16])
}

/// A gateway without backends, keys A and B, the store at `url`.
pub fn state(url: &str) -> AppState {
    let toml = format!(
        "[auth]\napi_key_sha256 = [\"{}\", \"{}\"]\n[cache]\nenabled = false\n[store]\nurl = \"{url}\"\n",
        hash_key(A),
        hash_key(B)
    );
    AppState::with_slots(Config::from_toml(&toml, &Overrides::default()).unwrap(), Vec::new())
}

/// One response: status, headers, body.
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// The `param` of an OpenAI-shaped error.
    pub fn param(&self) -> String {
        self.json()["error"]["param"].as_str().unwrap_or_default().to_owned()
    }
}

/// Calls `method path` with `key` and a JSON `body` (none when empty).
pub async fn call(state: &AppState, method: &str, path: &str, key: &str, body: &str) -> Reply {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = app(state.clone()).oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

/// A Postgres database URL confined to a new schema, and the schema's name (drop it
/// with [`drop_schema`]).
pub async fn postgres_schema() -> (String, String) {
    let base = std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("Postgres for tests is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    (format!("{base}?options=-c%20search_path%3D{schema}"), schema)
}

/// Drops a schema made by [`postgres_schema`].
pub async fn drop_schema(schema: &str) {
    let base = std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
}
