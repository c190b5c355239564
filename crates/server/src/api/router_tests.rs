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

use super::{UNAUTHENTICATED_ROUTES, app, routes};
use crate::{auth::hash_key, state::AppState};

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
            Ok(Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None }),
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

fn state() -> AppState {
    let toml = format!(
        "[auth]\napi_key_sha256 = [\"{}\"]\n[cache]\nenabled = false\n[store]\nurl = \"sqlite::memory:\"\n",
        hash_key(KEY)
    );
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let mut cfg = BackendConfig::new("echo", BackendKind::Openai, "http://127.0.0.1:1/v1");
    cfg.models = vec![ModelEntry::Name("m".into())];
    cfg.health.enabled = false;
    AppState::with_slots(config, vec![Arc::new(BackendSlot::new(Arc::new(Echo), &cfg))])
}

/// Every route of the table with a method it serves and a valid body. A route added
/// to the table without a line here fails `every_route_is_covered`.
const CALLS: &[(&str, &str, &str)] = &[
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
];

async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = app(state.clone()).oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// The error message of a body in the dialect of `path`, or `None` if it has not
/// that dialect's error shape.
fn error_message(path: &str, body: &serde_json::Value) -> Option<String> {
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
    for (pattern, _) in routes() {
        let covered = CALLS.iter().any(|(_, path, _)| super::route_label(path) == pattern);
        assert!(covered, "route {pattern} has no line in CALLS");
    }
}

#[tokio::test]
async fn every_route_outside_the_allowlist_needs_a_valid_key() {
    let state = state();
    for (method, path, body) in CALLS {
        let public = UNAUTHENTICATED_ROUTES.contains(path);
        for key in [None, Some("wrong")] {
            let (status, json) = call(&state, method, path, body, key).await;
            if public {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} is public");
                continue;
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            let message =
                error_message(path, &json).unwrap_or_else(|| panic!("{path}: not its dialect: {json}"));
            assert!(message.contains("API key"), "{path}: {message}");
        }
    }
}

#[tokio::test]
async fn every_route_answers_with_a_valid_key() {
    let state = state();
    for (method, path, body) in CALLS {
        let (status, json) = call(&state, method, path, body, Some(KEY)).await;
        match *path {
            // Not a WebSocket upgrade: refused in OpenAI's shape.
            "/agent/v1/connect" => assert_eq!(status, StatusCode::BAD_REQUEST, "{json}"),
            // No such token.
            "/admin/agent-tokens/x" => assert_eq!(status, StatusCode::NOT_FOUND, "{json}"),
            // No such conversation.
            "/v1/conversations/x" | "/v1/conversations/x/export" | "/v1/conversations/x/messages" => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{json}")
            }
            // `q` is required.
            "/v1/conversations/search" => assert_eq!(status, StatusCode::BAD_REQUEST, "{json}"),
            _ => assert!(status.is_success(), "{method} {path}: {status} {json}"),
        }
    }
}

#[tokio::test]
async fn answers_come_from_the_backend_in_each_dialect() {
    let state = state();
    let (_, chat) = call(&state, "POST", CALLS[0].1, CALLS[0].2, Some(KEY)).await;
    assert_eq!(chat["choices"][0]["message"]["content"], "ok", "{chat}");
    let (_, ollama) = call(&state, "POST", CALLS[5].1, CALLS[5].2, Some(KEY)).await;
    assert_eq!(ollama["message"]["content"], "ok", "{ollama}");
    let (_, emb) = call(&state, "POST", CALLS[4].1, CALLS[4].2, Some(KEY)).await;
    assert_eq!(emb["data"][0]["embedding"], serde_json::json!([0.5]), "{emb}");
}

#[tokio::test]
async fn errors_keep_each_dialects_shape_and_status() {
    let state = state();
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
