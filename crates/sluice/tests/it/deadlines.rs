//! Every deadline ends a hung upstream with a clear answer: 504 before the stream
//! starts, an error event after.

use sluice_mock::{Behavior, MockConfig};

use crate::util::*;

const SHORT: &str =
    "timeouts = { connect = \"1s\", first_token = \"300ms\", idle = \"300ms\", total = \"5s\" }";

#[tokio::test]
async fn first_token_deadline_gives_504_in_both_dialects() {
    let mock = mock(MockConfig { behavior: Behavior::Hang, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", SHORT).await;
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(v["error"]["message"].as_str().unwrap().contains("first_token"));
    let r = client().post(gw.url("/api/chat")).json(&ollama_chat_body("x", false)).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    // The hung upstream requests were abandoned, not left running.
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(2)).await.expect("upstream requests dropped");
}

#[tokio::test]
async fn slow_first_token_also_504() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "ollama", SHORT).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock first_ms=600000]", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn idle_deadline_mid_stream_is_an_error_event() {
    let mock = mock(MockConfig { tokens: 10, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", SHORT).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock mode=hang_after:2]", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let frames = Frames::sse(r).rest().await;
    let last = json(frames.last().unwrap());
    assert_eq!(last["error"]["code"], "upstream_timeout", "{frames:?}");
    assert!(last["error"]["message"].as_str().unwrap().contains("idle"));
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(1)).await.expect("upstream dropped");
}

#[tokio::test]
async fn total_deadline_cuts_a_slow_but_steady_stream() {
    let mock = mock(MockConfig {
        tokens: 1000,
        token_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let extra = "timeouts = { first_token = \"5s\", idle = \"5s\", total = \"400ms\" }";
    let gw = Gateway::over(&mock, "ollama", extra).await;
    let r = client().post(gw.url("/api/chat")).json(&ollama_chat_body("x", true)).send().await.unwrap();
    let lines = Frames::ndjson(r).rest().await;
    let last = json(lines.last().unwrap());
    assert!(last["error"].as_str().unwrap().contains("total"), "{last}");
    assert!(lines.len() > 2 && lines.len() < 1000);
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let toml = format!(
        "[[backends]]\nname = \"dead\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{port}/v1\"\nmodels = [\"mock-model\"]\n"
    );
    let gw = Gateway::start(&toml).await;
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unreachable");
    assert!(!v["error"]["message"].as_str().unwrap().contains("127.0.0.1"), "no internals leak: {v}");
    let r = client().get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn model_of_an_unreachable_discovering_backend_is_503_not_404() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let toml =
        format!("[[backends]]\nname = \"later\"\nkind = \"ollama\"\nurl = \"http://127.0.0.1:{port}\"\n");
    let gw = Gateway::start(&toml).await;
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", false)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("later"), "{v}");
}
