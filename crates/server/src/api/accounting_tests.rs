//! Limits on the request path, through the whole router: the gateway-wide cap on
//! concurrent generations holds a stream for as long as its body lives, and a refusal
//! is a 429 in the dialect's shape with `Retry-After`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sluice_config::{Config, Overrides};
use sluice_core::{
    config::{BackendConfig, BackendKind, ModelEntry},
    registry::BackendSlot,
};
use tower::ServiceExt;

use super::{app, router_tests::Echo};
use crate::state::AppState;

fn state(extra: &str) -> AppState {
    let toml = format!("[cache]\nenabled = false\n{extra}");
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let mut cfg = BackendConfig::new("echo", BackendKind::Openai, "http://127.0.0.1:1/v1");
    cfg.models = vec![ModelEntry::Name("m".into())];
    cfg.health.enabled = false;
    AppState::with_slots(config, vec![Arc::new(BackendSlot::new(Arc::new(Echo), &cfg))])
}

async fn send(state: &AppState, path: &str, body: &str) -> http::Response<axum::body::Body> {
    let req =
        Request::post(path).header("content-type", "application/json").body(Body::from(body.to_owned()));
    app(state.clone()).oneshot(req.unwrap()).await.unwrap()
}

const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const OLLAMA_CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn the_gateway_wide_cap_holds_a_generation_until_its_body_is_gone() {
    let state = state("[limits]\nmax_concurrent_generations = 1\n");
    let first = send(&state, "/v1/chat/completions", CHAT).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(state.limits.active_generations(), 1, "the open body holds its generation");

    let refused = send(&state, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("concurrent"), "the message names the limit: {message}");

    // Ollama's shape, same status.
    let refused = send(&state, "/api/chat", OLLAMA_CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(body["error"].as_str().is_some(), "{body}");

    // Reading the first answer to its end releases the generation.
    let text = first.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("[DONE]"));
    assert_eq!(state.limits.active_generations(), 0);
    assert_eq!(send(&state, "/v1/chat/completions", CHAT).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_leaves_mid_answer_frees_its_generation() {
    let state = state("[limits]\nmax_concurrent_generations = 1\n");
    let first = send(&state, "/v1/chat/completions", CHAT).await;
    assert_eq!(state.limits.active_generations(), 1);
    drop(first);
    assert_eq!(state.limits.active_generations(), 0);
    assert_eq!(send(&state, "/v1/chat/completions", CHAT).await.status(), StatusCode::OK);
}

/// A gateway with the cache on and two service keys, `a` and `b`, configured by
/// `cache` (the `[cache]` table's extra lines).
fn cached_state(cache: &str) -> AppState {
    let toml = format!(
        "[auth]\napi_key_sha256 = [\"{}\", \"{}\"]\n[cache]\nenabled = true\n{cache}\n[store]\nurl = \"sqlite::memory:\"\n",
        crate::auth::hash_key("a"),
        crate::auth::hash_key("b"),
    );
    let config = Config::from_toml(&toml, &Overrides::default()).unwrap();
    let mut cfg = BackendConfig::new("echo", BackendKind::Openai, "http://127.0.0.1:1/v1");
    cfg.models = vec![ModelEntry::Name("m".into())];
    cfg.health.enabled = false;
    AppState::with_slots(config, vec![Arc::new(BackendSlot::new(Arc::new(Echo), &cfg))])
}

/// The `x-sluice-cache` header of a deterministic chat sent with `key`.
async fn cache_status(state: &AppState, key: &str) -> String {
    let body = r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"same prompt"}]}"#;
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body));
    let resp = app(state.clone()).oneshot(req.unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let status = resp.headers()["x-sluice-cache"].to_str().unwrap().to_owned();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn one_tenants_answer_is_never_replayed_to_another() {
    let state = cached_state("");
    assert_eq!(cache_status(&state, "a").await, "miss");
    assert_eq!(cache_status(&state, "a").await, "hit", "the same tenant is served from the cache");
    assert_eq!(cache_status(&state, "b").await, "miss", "another tenant does not see a's entry");
    assert_eq!(cache_status(&state, "b").await, "hit");
}

#[tokio::test]
async fn a_global_cache_is_shared_on_purpose() {
    let state = cached_state("scope = \"global\"");
    assert_eq!(cache_status(&state, "a").await, "miss");
    assert_eq!(cache_status(&state, "b").await, "hit");
}
