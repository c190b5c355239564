//! Every error path answers with the right status and the dialect's error shape.

use sluice_mock::{Behavior, MockConfig};
use sluice_server::auth::{generate_key, hash_key};

use crate::util::*;

async fn post_raw(gw: &Gateway, path: &str, body: &'static str) -> (u16, serde_json::Value) {
    let r = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn malformed_and_invalid_input_is_400_naming_the_field() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let (s, v) = post_raw(&gw, "/v1/chat/completions", "{not json").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let (s, v) = post_raw(&gw, "/v1/chat/completions", r#"{"messages":[]}"#).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("model")), "{v}");
    let (s, v) = post_raw(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"mock-model","messages":[{"role":"user","content":"x"}],"top_p":3}"#,
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("top_p")));
    let (s, v) = post_raw(&gw, "/api/chat", "[1,2]").await;
    assert_eq!(s, 400);
    assert!(v["error"].is_string(), "ollama shape: {v}");
    let (s, v) =
        post_raw(&gw, "/api/generate", r#"{"model":"mock-model","prompt":"x","options":{"top_p":"high"}}"#)
            .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("top_p"), "{v}");
    assert_eq!(mock.stats().snapshot().requests, 0, "nothing invalid reached the upstream");
}

#[tokio::test]
async fn unknown_model_is_404_naming_it() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let (s, v) = post_raw(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"gpt-17","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("gpt-17"));
    let (s, v) = post_raw(&gw, "/api/generate", r#"{"model":"gpt-17","prompt":"x"}"#).await;
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("gpt-17"));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::start(&format!(
        "[server]\nbody_limit_bytes = 2048\n{}",
        backend_toml("m", "openai", &mock, "")
    ))
    .await;
    let big = "x".repeat(4096);
    for path in ["/v1/chat/completions", "/api/chat"] {
        let r = client().post(gw.url(path)).json(&chat_body(&big, false)).send().await.unwrap();
        assert_eq!(r.status(), 413, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        if path.starts_with("/v1") {
            assert_eq!(v["error"]["code"], "request_too_large");
        } else {
            assert!(v["error"].as_str().unwrap().contains("too large"));
        }
    }
}

#[tokio::test]
async fn api_keys_are_enforced_except_on_the_allowlist() {
    let mock = mock(MockConfig::default()).await;
    let key = generate_key();
    let toml = format!(
        "[auth]\napi_key_sha256 = [\"{}\"]\n{}",
        hash_key(&key),
        backend_toml("m", "openai", &mock, "")
    );
    let gw = Gateway::start(&toml).await;
    let c = client();
    let r = c.post(gw.url("/v1/chat/completions")).json(&chat_body("x", false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["type"], "authentication_error");
    let r = c
        .post(gw.url("/api/chat"))
        .bearer_auth("wrong")
        .json(&ollama_chat_body("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("invalid"));
    for path in ["/v1/models", "/metrics", "/api/tags", "/nowhere"] {
        assert_eq!(c.get(gw.url(path)).send().await.unwrap().status(), 401, "{path}");
    }
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(c.get(gw.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.url("/api/tags")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn upstream_statuses_map_to_gateway_statuses() {
    let cases = [(429, 429), (500, 502), (503, 503), (400, 400), (401, 502)];
    for (upstream, expected) in cases {
        let mock = mock(MockConfig { behavior: Behavior::Status(upstream), ..Default::default() }).await;
        for kind in ["openai", "ollama"] {
            let gw = Gateway::over(&mock, kind, "").await;
            let r = client()
                .post(gw.url("/v1/chat/completions"))
                .json(&chat_body("x", true))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), expected, "{kind} upstream {upstream}");
            if expected == 429 || expected == 503 {
                assert!(r.headers().contains_key("retry-after"), "{kind} upstream {upstream}");
            }
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(v["error"]["message"].is_string());
            let r =
                client().post(gw.url("/api/chat")).json(&ollama_chat_body("x", true)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), expected, "ollama dialect, {kind} upstream {upstream}");
        }
    }
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_dialect_shape() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let r = client().get(gw.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"]["message"].is_string());
    let r = client().get(gw.url("/api/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
}
