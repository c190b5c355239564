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

/// The service key every request here sends.
const KEY: &str = "sk-operator";

async fn state(extra: &str) -> AppState {
    let extra = format!("[auth]\napi_key_sha256 = [\"{}\"]\n{extra}", crate::auth::hash_key(KEY));
    super::router_tests::state_with(&extra).await
}

async fn send_as(state: &AppState, key: &str, path: &str, body: &str) -> http::Response<axum::body::Body> {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_owned()));
    app(state.clone()).oneshot(req.unwrap()).await.unwrap()
}

async fn send(state: &AppState, path: &str, body: &str) -> http::Response<axum::body::Body> {
    send_as(state, KEY, path, body).await
}

const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const OLLAMA_CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn the_gateway_wide_cap_holds_a_generation_until_its_body_is_gone() {
    let state = state("[limits]\nmax_concurrent_generations = 1\n").await;
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

    let metrics = {
        let req =
            Request::get("/metrics").header("authorization", format!("Bearer {KEY}")).body(Body::empty());
        let resp = app(state.clone()).oneshot(req.unwrap()).await.unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    assert!(metrics.contains("sluice_limits_active_generations 1\n"), "{metrics}");
    assert!(metrics.contains("sluice_limits_redis_fallback 0\n"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "still one exposition");

    // Reading the first answer to its end releases the generation.
    let text = first.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("[DONE]"));
    assert_eq!(state.limits.active_generations(), 0);
    assert_eq!(send(&state, "/v1/chat/completions", CHAT).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_leaves_mid_answer_frees_its_generation() {
    let state = state("[limits]\nmax_concurrent_generations = 1\n").await;
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

#[tokio::test]
async fn a_keys_own_rate_limit_refuses_with_the_openai_headers_and_records_usage() {
    let state = state("").await;
    state.start_usage();
    let user = state.store.create_user("ann", "a long password", false).await.unwrap();
    let new = sluice_store::NewApiKey {
        user_id: user.id.clone(),
        name: "one a minute".into(),
        models: None,
        limits: sluice_store::api_keys::Limits { rpm: Some(1), ..Default::default() },
        expires_at: None,
    };
    let (_, secret) = state.store.create_api_key(&new).await.unwrap();
    state.directory.reload().await.unwrap();

    let ok = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-ratelimit-limit-requests"], "1");
    assert_eq!(ok.headers()["x-ratelimit-remaining-requests"], "0");
    ok.into_body().collect().await.unwrap();

    let refused = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("requests per minute"), "{message}");

    // The operator's key is not limited by ann's key.
    assert_eq!(send(&state, "/v1/chat/completions", CHAT).await.status(), StatusCode::OK);

    // Every request was recorded, ann's under her user and key.
    let written = state.usage.drain(std::time::Duration::from_secs(5)).await;
    assert_eq!(written, Some(3), "two of ann's requests and one of the operator's");
    let filter = sluice_store::UsageFilter { user_id: Some(&user.id), ..Default::default() };
    let rows = state.store.usage_records(&filter, 10).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 429]);
}

async fn chat_in(state: &AppState, key: &str, conversation: &str, text: &str) -> http::Response<Body> {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]}).to_string();
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .header("x-sluice-conversation", conversation)
        .body(Body::from(body));
    app(state.clone()).oneshot(req.unwrap()).await.unwrap()
}

async fn get_json(state: &AppState, key: &str, path: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::get(path).header("authorization", format!("Bearer {key}")).body(Body::empty());
    let resp = app(state.clone()).oneshot(req.unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn api_chats_are_stored_only_when_asked_and_only_for_their_owner() {
    let other = "sk-other";
    let extra = format!(
        "[auth]\napi_key_sha256 = [\"{}\", \"{}\"]\n",
        crate::auth::hash_key(KEY),
        crate::auth::hash_key(other)
    );
    let state = super::router_tests::state_with(&extra).await;

    let first = chat_in(&state, KEY, "new", "What is a sluice?").await;
    assert_eq!(first.status(), StatusCode::OK);
    let id = first.headers()["x-sluice-conversation"].to_str().unwrap().to_owned();
    first.into_body().collect().await.unwrap();
    let second = chat_in(&state, KEY, &id, "And a weir?").await;
    assert_eq!(second.status(), StatusCode::OK);
    second.into_body().collect().await.unwrap();
    // Answers are stored by tracked tasks once each answer ends.
    state.core.tasks.close();
    state.core.tasks.wait().await;

    let (status, c) = get_json(&state, KEY, &format!("/v1/conversations/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let messages = c["messages"].as_array().unwrap();
    let turns: Vec<(&str, &str)> =
        messages.iter().map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
    assert_eq!(
        turns,
        [("user", "What is a sluice?"), ("assistant", "ok"), ("user", "And a weir?"), ("assistant", "ok")]
    );
    for pair in messages.windows(2) {
        assert_eq!(pair[1]["parent_id"], pair[0]["id"], "each message answers the one before");
    }
    assert_eq!(messages[1]["finish_reason"], "stop");
    assert_eq!(c["conversation"]["title"], "What is a sluice?", "{c}");

    // Another owner can neither read it nor write into it; a chat without the header
    // stores nothing.
    assert_eq!(get_json(&state, other, &format!("/v1/conversations/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(chat_in(&state, other, &id, "mine now").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(send(&state, "/v1/chat/completions", CHAT).await.status(), StatusCode::OK);
    let (_, list) = get_json(&state, KEY, "/v1/conversations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn a_daily_quota_counts_what_was_used_before_a_restart() {
    let state = state("").await;
    let user = state.store.create_user("bo", "a long password", false).await.unwrap();
    let new = sluice_store::NewApiKey {
        user_id: user.id.clone(),
        name: "quota".into(),
        models: None,
        limits: sluice_store::api_keys::Limits { daily_tokens: Some(1000), ..Default::default() },
        expires_at: None,
    };
    let (key, secret) = state.store.create_api_key(&new).await.unwrap();
    state.directory.reload().await.unwrap();
    // What an earlier run of the gateway recorded today: the whole quota.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let record = sluice_store::UsageRecord {
        at: i64::try_from(now).unwrap(),
        user_id: Some(user.id.clone()),
        key_id: Some(key.id.clone()),
        model: "m".into(),
        backend: "echo".into(),
        dialect: "openai".into(),
        prompt_tokens: 400,
        completion_tokens: 600,
        cached: false,
        ttft_ms: None,
        duration_ms: 1,
        status: 200,
        spend: 0.0,
    };
    state.store.insert_usage(&[record]).await.unwrap();

    assert_eq!(crate::tenancy::seed_quotas(&state.store, &state.limits).await.unwrap(), 1);
    let refused = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("tokens per day"), "{body}");
}

async fn metrics_text(state: &AppState) -> String {
    let req = Request::get("/metrics").header("authorization", format!("Bearer {KEY}")).body(Body::empty());
    let resp = app(state.clone()).oneshot(req.unwrap()).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn per_key_counters_appear_in_metrics_only_when_enabled() {
    for enabled in [false, true] {
        let state = state(&format!("[usage]\nper_key_metrics = {enabled}\n")).await;
        let user = state.store.create_user("cy", "a long password", false).await.unwrap();
        let new = sluice_store::NewApiKey {
            user_id: user.id.clone(),
            name: "k".into(),
            models: None,
            limits: Default::default(),
            expires_at: None,
        };
        let (key, secret) = state.store.create_api_key(&new).await.unwrap();
        state.directory.reload().await.unwrap();
        let resp = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
        resp.into_body().collect().await.unwrap();
        let text = metrics_text(&state).await;
        let series = format!("sluice_key_requests_total{{user=\"{}\",key=\"{}\"}} 1\n", user.id, key.id);
        assert_eq!(text.contains(&series), enabled, "{text}");
        assert_eq!(text.contains("sluice_key_requests"), enabled, "no per-key series unless asked");
    }
}

/// A user `name` with one key carrying `budget`; returns the user's id and the secret.
async fn user_with_key(
    state: &AppState,
    name: &str,
    budget: Option<sluice_protocol::budget::Budget>,
) -> (String, String) {
    let user = state.store.create_user(name, "a long password", false).await.unwrap();
    let new = sluice_store::NewApiKey {
        user_id: user.id.clone(),
        name: "k".into(),
        models: None,
        limits: sluice_store::api_keys::Limits { budget, ..Default::default() },
        expires_at: None,
    };
    let (_, secret) = state.store.create_api_key(&new).await.unwrap();
    state.directory.reload().await.unwrap();
    (user.id, secret)
}

/// Model `m` costs a dollar a token, so one answer spends a few dollars.
const PRICED: &str =
    "[[models]]\nname = \"m\"\nprice = { input_per_mtok = 1000000, output_per_mtok = 1000000 }\n";

#[tokio::test]
async fn a_spent_hard_budget_refuses_in_both_dialects_until_raised() {
    use sluice_protocol::budget::{Budget, BudgetMode};
    let state = state(PRICED).await;
    let (user_id, secret) = user_with_key(&state, "di", Budget::from_usd(1.0, BudgetMode::Hard)).await;
    let first = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
    assert_eq!(first.status(), StatusCode::OK, "nothing spent yet");
    first.into_body().collect().await.unwrap();
    let spent = state.budgets.user_spend(&user_id);
    assert!(spent >= 1_000_000, "prompt and answer cost dollars: {spent}");

    let refused = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"), "renews next month");
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("monthly budget of this API key"));

    let refused = send_as(&state, &secret, "/api/chat", OLLAMA_CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("budget"), "{body}");
    assert!(metrics_text(&state).await.contains("sluice_budget_refusals_total 2\n"));

    // The operator's service key has no budget.
    assert_eq!(send(&state, "/v1/chat/completions", CHAT).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_spent_soft_budget_of_the_user_lets_requests_through_and_counts_them() {
    use sluice_protocol::budget::{Budget, BudgetMode};
    let state = state(PRICED).await;
    let (user_id, secret) = user_with_key(&state, "ed", None).await;
    let soft = Budget::from_usd(0.5, BudgetMode::Soft);
    assert!(state.store.set_user_budget(&user_id, soft).await.unwrap());
    state.directory.reload().await.unwrap();
    for _ in 0..3 {
        let resp = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    }
    assert!(metrics_text(&state).await.contains("sluice_budget_soft_overruns_total 2\n"));
}

#[tokio::test]
async fn this_months_stored_spend_counts_after_a_restart() {
    use sluice_protocol::budget::{Budget, BudgetMode};
    let state = state(PRICED).await;
    let (user_id, secret) = user_with_key(&state, "fi", Budget::from_usd(5.0, BudgetMode::Hard)).await;
    let key_id = state.store.list_api_keys(Some(&user_id)).await.unwrap()[0].id.clone();
    let record = sluice_store::UsageRecord {
        at: crate::clock::now_ms(),
        user_id: Some(user_id.clone()),
        key_id: Some(key_id),
        model: "m".into(),
        backend: "echo".into(),
        dialect: "openai".into(),
        prompt_tokens: 3,
        completion_tokens: 3,
        cached: false,
        ttft_ms: None,
        duration_ms: 1,
        status: 200,
        spend: 6.0,
    };
    state.store.insert_usage(&[record]).await.unwrap();
    state.start_auth().await.unwrap();
    assert_eq!(state.budgets.user_spend(&user_id), 6_000_000);
    let refused = send_as(&state, &secret, "/v1/chat/completions", CHAT).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn budgets_are_set_through_the_apis() {
    let state = state("").await;
    let (user_id, secret) = user_with_key(&state, "gu", None).await;
    // A user sets a budget on a new key of their own.
    let body = r#"{"name":"capped","budget":{"monthly_usd":7.5,"mode":"soft"}}"#;
    let resp = send_as(&state, &secret, "/v1/keys", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let key: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(key["budget"], serde_json::json!({"monthly_usd": 7.5, "mode": "soft"}));
    let bad = send_as(&state, &secret, "/v1/keys", r#"{"budget":{"monthly_usd":-1}}"#).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // An admin sets and removes a user's budget.
    let patch = |body: &'static str| {
        let req = Request::patch(format!("/admin/users/{user_id}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(body));
        app(state.clone()).oneshot(req.unwrap())
    };
    let resp = patch(r#"{"budget":{"monthly_usd":3}}"#).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let user: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(user["budget"], serde_json::json!({"monthly_usd": 3.0, "mode": "hard"}));
    let resp = patch(r#"{"disabled":false}"#).await.unwrap();
    let user: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(user["budget"]["monthly_usd"], 3.0, "a patch without the field keeps it");
    let resp = patch(r#"{"budget":null}"#).await.unwrap();
    let user: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(user["budget"].is_null(), "{user}");
}
