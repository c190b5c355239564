//! Router-level tests: every route of the table, through the whole middleware stack,
//! with `tower::ServiceExt::oneshot` (no socket). Auth, error shapes and routing.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use sluice_config::{Config, Overrides};
use sluice_core::{
    backend::{Backend, BackendError, EventStream, ModelInfo},
    chat::{ChatRequest, EmbedRequest, Embeddings, Event, FinishReason},
    config::{BackendConfig, BackendKind, ModelEntry},
    context::RequestContext,
    registry::BackendSlot,
};
use tower::ServiceExt;

use super::{app, route_of, routes};
use crate::{
    auth::{gate::Access, hash_key},
    state::AppState,
};

const KEY: &str = "sk-test";

/// Answers every chat with "ok" and every embedding with one vector.
pub(super) struct Echo;

impl Backend for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn chat(
        &self,
        _: &RequestContext,
        _: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        let events = [
            Ok(Event::Delta("ok".into())),
            Ok(Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None, details: None }),
        ];
        Box::pin(async move { Ok(Box::pin(futures_util::stream::iter(events)) as EventStream) })
    }
    fn embed(&self, req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        Box::pin(async move {
            Ok(Embeddings {
                vectors: vec![vec![0.5]; req.input.len()],
                prompt_tokens: 1,
                ..Default::default()
            })
        })
    }
    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        Box::pin(async { Ok(vec![]) })
    }
}

/// A gateway over [`Echo`] (models `m` and `llama3`) with an in-memory store, its
/// directory loaded, configured by `extra` TOML.
pub(super) async fn state_with(extra: &str) -> AppState {
    let toml = format!("[cache]\nenabled = false\n[store]\nurl = \"sqlite::memory:\"\n{extra}");
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let mut cfg = BackendConfig::new("echo", BackendKind::Openai, "http://127.0.0.1:1/v1");
    cfg.models = vec![ModelEntry::Name("m".into()), ModelEntry::Name("llama3".into())];
    cfg.health.enabled = false;
    let state = AppState::with_slots(config, vec![Arc::new(BackendSlot::new(Arc::new(Echo), &cfg))]);
    state.directory.reload().await.unwrap();
    state
}

/// A gateway whose one credential is the service key [`KEY`].
async fn state() -> AppState {
    state_with(&format!("[auth]\napi_key_sha256 = [\"{}\"]\n", hash_key(KEY))).await
}

/// Every route of the table with a method it serves and a valid body. A route added
/// to the table without a line here fails `every_route_is_covered`.
pub(super) const CALLS: &[(&str, &str, &str)] = &[
    ("POST", "/v1/chat/completions", r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
    ("POST", "/v1/completions", r#"{"model":"m","prompt":"hi"}"#),
    ("GET", "/v1/models", ""),
    ("GET", "/v1/models/m", ""),
    ("POST", "/v1/embeddings", r#"{"model":"m","input":"hi"}"#),
    ("POST", "/api/chat", r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}"#),
    ("POST", "/api/generate", r#"{"model":"m","prompt":"hi","stream":false}"#),
    ("GET", "/api/tags", ""),
    ("GET", "/api/ps", ""),
    ("POST", "/api/show", r#"{"model":"m"}"#),
    ("POST", "/api/embed", r#"{"model":"m","input":"hi"}"#),
    ("GET", "/api/version", ""),
    ("POST", "/api/embeddings", r#"{"model":"m","prompt":"hi"}"#),
    ("POST", "/api/pull", r#"{"model":"m","stream":false}"#),
    ("POST", "/api/create", r#"{"model":"x"}"#),
    ("POST", "/api/copy", r#"{"source":"m","destination":"x"}"#),
    ("DELETE", "/api/delete", r#"{"model":"m"}"#),
    ("POST", "/api/push", r#"{"model":"m"}"#),
    ("POST", "/api/blobs/sha256:x", ""),
    ("GET", "/admin/backends", ""),
    ("GET", "/metrics", ""),
    ("GET", "/healthz", ""),
    ("GET", "/readyz", ""),
    ("GET", "/", ""),
    ("GET", "/agent/v1/connect", ""),
    ("GET", "/admin/agents", ""),
    ("GET", "/admin/agent-tokens", ""),
    ("DELETE", "/admin/agent-tokens/x", ""),
    ("GET", "/admin/retention", ""),
    ("GET", "/v1/conversations", ""),
    ("GET", "/v1/conversations/search", ""),
    ("GET", "/v1/conversations/x", ""),
    ("GET", "/v1/conversations/x/export", ""),
    ("POST", "/v1/conversations/x/messages", r#"{"role":"user","content":"hi"}"#),
    ("GET", "/v1/usage", ""),
    ("GET", "/v1/keys", ""),
    ("DELETE", "/v1/keys/x", ""),
    ("POST", "/auth/login", r#"{"name":"nobody","password":"whatever1"}"#),
    ("POST", "/auth/logout", ""),
    ("GET", "/auth/me", ""),
    ("GET", "/admin/users", ""),
    ("PATCH", "/admin/users/x", r#"{"disabled":true}"#),
    ("GET", "/v1/conversations/x/generations", ""),
    ("POST", "/v1/conversations/x/generations", r#"{"content":"hi","model":"m"}"#),
    ("GET", "/v1/conversations/x/generations/y", ""),
    ("POST", "/v1/conversations/x/generations/y/stop", ""),
    ("GET", "/auth/setup", ""),
    ("POST", "/auth/setup", r#"{"name":"root","password":"password1"}"#),
    ("POST", "/auth/password", r#"{"current":"password1","new":"password2"}"#),
    ("GET", "/assets/x.js", ""),
    ("GET", "/favicon.svg", ""),
    ("GET", "/c/x", ""),
    ("GET", "/login", ""),
    ("GET", "/settings", ""),
    ("GET", "/admin", ""),
    ("POST", "/v1/responses", r#"{"model":"m","input":"hi"}"#),
    ("GET", "/v1/responses/x", ""),
];

/// Sends one request with `headers` (a `Host: localhost` unless given) and reads
/// the answer.
pub(super) async fn send(
    state: &AppState,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req = req.header("host", "localhost:8080");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = app(state.clone()).oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// Sends one request with `key` as a bearer token, if any.
pub(super) async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("authorization", a)).into_iter().collect();
    let (status, _, json) = send(state, method, path, body, &headers).await;
    (status, json)
}

/// The error message of a body in the dialect of `path`, or `None` if it has not
/// that dialect's error shape.
pub(super) fn error_message(path: &str, body: &serde_json::Value) -> Option<String> {
    if path.starts_with("/api/") {
        body["error"].as_str().map(str::to_owned)
    } else {
        let e = &body["error"];
        e["type"].as_str()?;
        e["message"].as_str().map(str::to_owned)
    }
}

#[test]
fn every_route_is_covered() {
    for (pattern, _, _) in routes() {
        let covered = CALLS.iter().any(|(_, path, _)| route_of(path).0 == pattern);
        assert!(covered, "route {pattern} has no line in CALLS");
    }
}

#[tokio::test]
async fn every_route_outside_the_allowlist_needs_a_valid_key() {
    let state = state().await;
    for (method, path, body) in CALLS {
        let public = route_of(path).1 == Access::Public;
        for key in [None, Some("wrong")] {
            let (status, json) = call(&state, method, path, body, key).await;
            if public {
                let message = error_message(path, &json).unwrap_or_default();
                assert!(!message.contains("API key"), "{method} {path} is public: {status} {json}");
                continue;
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            let message =
                error_message(path, &json).unwrap_or_else(|| panic!("{path}: not its dialect: {json}"));
            assert!(message.contains("API key"), "{path}: {message}");
            let want = if key.is_some() { "invalid API key" } else { "missing API key" };
            assert!(message.contains(want), "{path}: {message}");
        }
    }
}

#[tokio::test]
async fn every_route_answers_with_a_valid_key() {
    let state = state().await;
    for (method, path, body) in CALLS {
        let (status, json) = call(&state, method, path, body, Some(KEY)).await;
        match *path {
            // Not a WebSocket upgrade: refused in OpenAI's shape.
            "/agent/v1/connect" => assert_eq!(status, StatusCode::BAD_REQUEST, "{json}"),
            // No such token.
            // No such conversation.
            "/v1/conversations/x" | "/v1/conversations/x/export" | "/v1/conversations/x/messages" => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{json}")
            }
            // `q` is required.
            "/v1/conversations/search" => assert_eq!(status, StatusCode::BAD_REQUEST, "{json}"),
            "/admin/agent-tokens/x" | "/v1/keys/x" | "/admin/users/x" | "/v1/responses/x" => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{json}")
            }
            // No such conversation, generation or file.
            "/v1/conversations/x/generations/y"
            | "/v1/conversations/x/generations/y/stop"
            | "/assets/x.js" => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{json}")
            }
            "/v1/conversations/x/generations" => assert_eq!(status, StatusCode::NOT_FOUND, "{json}"),
            // A key exists: setup is over.
            "/auth/setup" if *method == "POST" => assert_eq!(status, StatusCode::FORBIDDEN, "{json}"),
            // A service key has no password.
            "/auth/password" => assert_eq!(status, StatusCode::BAD_REQUEST, "{json}"),
            // Public, and nobody by that name.
            "/auth/login" => assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}"),
            // Models come from the configuration.
            "/api/create" | "/api/copy" | "/api/delete" | "/api/push" | "/api/blobs/sha256:x" => {
                assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{json}")
            }
            _ => assert!(status.is_success(), "{method} {path}: {status} {json}"),
        }
    }
}

#[tokio::test]
async fn answers_come_from_the_backend_in_each_dialect() {
    let state = state().await;
    let (_, chat) = call(&state, "POST", CALLS[0].1, CALLS[0].2, Some(KEY)).await;
    assert_eq!(chat["choices"][0]["message"]["content"], "ok", "{chat}");
    let (_, ollama) = call(&state, "POST", CALLS[5].1, CALLS[5].2, Some(KEY)).await;
    assert_eq!(ollama["message"]["content"], "ok", "{ollama}");
    let (_, emb) = call(&state, "POST", CALLS[4].1, CALLS[4].2, Some(KEY)).await;
    assert_eq!(emb["data"][0]["embedding"], serde_json::json!([0.5]), "{emb}");
}

/// A response is stored for the service key that asked, read back as it was sent,
/// continued, and deleted; a second delete, a read after it, and a continuation of it
/// are 404s.
#[tokio::test]
async fn a_stored_response_is_read_continued_and_deleted() {
    let state = state().await;
    let (status, first) =
        call(&state, "POST", "/v1/responses", r#"{"model":"m","input":"hi"}"#, Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["store"], true, "{first}");
    let id = first["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");
    let (status, read) = call(&state, "GET", &path, "", Some(KEY)).await;
    assert_eq!((status, &read), (StatusCode::OK, &first), "read back as it was sent");
    let next = format!(r#"{{"model":"m","input":"again","previous_response_id":"{id}"}}"#);
    let (status, second) = call(&state, "POST", "/v1/responses", &next, Some(KEY)).await;
    assert_eq!((status, &second["previous_response_id"]), (StatusCode::OK, &first["id"]), "{second}");
    let (status, deleted) = call(&state, "DELETE", &path, "", Some(KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted, serde_json::json!({"id": id, "object": "response", "deleted": true}));
    for method in ["GET", "DELETE"] {
        let (status, json) = call(&state, method, &path, "", Some(KEY)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} after the delete: {json}");
    }
    let (status, json) = call(&state, "POST", "/v1/responses", &next, Some(KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    assert_eq!(json["error"]["code"], "previous_response_not_found", "{json}");
    assert_eq!(json["error"]["param"], "previous_response_id", "{json}");
    let unstored = r#"{"model":"m","input":"hi","store":false}"#;
    let (status, json) = call(&state, "POST", "/v1/responses", unstored, Some(KEY)).await;
    assert_eq!((status, &json["store"]), (StatusCode::OK, &serde_json::json!(false)), "{json}");
}

/// A response over `[responses] max_stored_bytes` is answered but not stored, and
/// says so; so is one whose context alone is over it.
#[tokio::test]
async fn a_response_over_the_size_cap_is_answered_but_not_stored() {
    let auth = format!("[auth]\napi_key_sha256 = [\"{}\"]\n", hash_key(KEY));
    let state = state_with(&format!("{auth}[responses]\nmax_stored_bytes = 1024\n")).await;
    // The response object alone is most of a KiB; 800 characters of input is over.
    for input in ["x".repeat(800), "x".repeat(2000)] {
        let body = serde_json::json!({"model": "m", "input": input}).to_string();
        let (status, json) = call(&state, "POST", "/v1/responses", &body, Some(KEY)).await;
        assert_eq!((status, &json["store"]), (StatusCode::OK, &serde_json::json!(false)), "{json}");
        let path = format!("/v1/responses/{}", json["id"].as_str().unwrap());
        assert_eq!(call(&state, "GET", &path, "", Some(KEY)).await.0, StatusCode::NOT_FOUND);
    }
    let (_, small) = call(&state, "POST", "/v1/responses", r#"{"model":"m","input":"hi"}"#, Some(KEY)).await;
    assert_eq!(small["store"], true, "a small one is stored: {small}");
}

#[tokio::test]
async fn errors_keep_each_dialects_shape_and_status() {
    let state = state().await;
    let cases = [
        ("POST", "/v1/chat/completions", "{", StatusCode::BAD_REQUEST),
        ("POST", "/api/chat", "{", StatusCode::BAD_REQUEST),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
            StatusCode::NOT_FOUND,
        ),
        ("POST", "/api/generate", r#"{"model":"nope","prompt":"x"}"#, StatusCode::NOT_FOUND),
        ("GET", "/v1/nothing-here", "", StatusCode::NOT_FOUND),
        ("GET", "/api/nothing-here", "", StatusCode::NOT_FOUND),
    ];
    for (method, path, body, want) in cases {
        let (status, json) = call(&state, method, path, body, Some(KEY)).await;
        assert_eq!(status, want, "{method} {path}: {json}");
        assert!(error_message(path, &json).is_some(), "{path}: not its dialect: {json}");
    }
}
