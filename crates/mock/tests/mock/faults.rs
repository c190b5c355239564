//! Injected faults, directives, manual pace, cancellation and shutdown.

use serde_json::{Value, json};
use sluice_mock::{Behavior, MockConfig, Pace};
use tokio::time::timeout;

use crate::support::*;

#[tokio::test]
async fn hang_never_answers_and_counts_cancel_when_client_leaves() {
    let mock = mock(MockConfig { behavior: Behavior::Hang, ..MockConfig::default() }).await;
    let url = format!("{}/chat/completions", mock.openai_base());
    let mut request = tokio::spawn(async move { client().post(url).json(&chat("x", true)).send().await });
    timeout(MUST, mock.stats().wait_started(1)).await.unwrap();
    assert!(timeout(SILENT, &mut request).await.is_err(), "no response head may come");
    request.abort();
    timeout(MUST, mock.stats().wait_cancelled(1)).await.unwrap();
    timeout(MUST, mock.stats().wait_in_flight(0)).await.unwrap();
}

#[tokio::test]
async fn hang_after_goes_silent_and_cancel_is_detected() {
    let mock = mock(MockConfig { behavior: Behavior::HangAfter(2), ..MockConfig::default() }).await;
    let response = post(format!("{}/chat/completions", mock.openai_base()), chat("x", true)).await;
    let mut events = Events::sse(response);
    let seen = [events.expect().await, events.expect().await, events.expect().await];
    assert_eq!(sse_content(&seen), "t0 t1 ");
    assert!(timeout(SILENT, events.next()).await.is_err(), "must stay silent");
    drop(events);
    timeout(MUST, mock.stats().wait_cancelled(1)).await.unwrap();
    assert_eq!(mock.stats().snapshot().streams_completed, 0);
}

#[tokio::test]
async fn status_behavior_uses_each_dialect_error_shape() {
    let mock = mock(MockConfig { behavior: Behavior::Status(429), ..MockConfig::default() }).await;
    let limited = post(format!("{}/chat/completions", mock.openai_base()), chat("x", true)).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let error: Value = limited.json().await.unwrap();
    assert!(error["error"]["message"].is_string());

    let body = json!({"model": "mock-model", "prompt": "[mock mode=status:503]"});
    let failed = post(format!("{}/api/generate", mock.ollama_base()), body).await;
    assert_eq!(failed.status(), 503);
    assert!(failed.json::<Value>().await.unwrap()["error"].is_string());
    let stats = mock.stats().snapshot();
    assert_eq!((stats.requests, stats.streams_started, stats.in_flight), (2, 0, 0));
}

#[tokio::test]
async fn drop_after_truncates_without_done() {
    let mock = mock(MockConfig { behavior: Behavior::DropAfter(2), ..MockConfig::default() }).await;
    let response = post(format!("{}/chat/completions", mock.openai_base()), chat("x", true)).await;
    let mut events = Events::sse(response);
    let mut seen = Vec::new();
    let ended = loop {
        match timeout(MUST, events.next()).await.unwrap() {
            Ok(Some(event)) => seen.push(event),
            other => break other,
        }
    };
    assert!(ended.is_err(), "the transfer must break, not end cleanly");
    assert_eq!(sse_content(&seen), "t0 t1 ");
    assert!(!seen.iter().any(|e| e.contains("[DONE]") || e.contains("finish_reason\":\"stop")));

    let body = json!({"model": "mock-model", "prompt": "[mock mode=drop_after:1]"});
    let response = post(format!("{}/api/generate", mock.ollama_base()), body).await;
    let mut lines = Events::ndjson(response);
    assert!(lines.expect().await.contains("\"t0 \""));
    assert!(timeout(MUST, lines.next()).await.unwrap().is_err());
    let stats = mock.stats().snapshot();
    assert_eq!((stats.streams_completed, stats.streams_cancelled), (0, 0));
}

#[tokio::test]
async fn malformed_after_sends_one_garbage_line() {
    let mock =
        mock(MockConfig { tokens: 3, behavior: Behavior::MalformedAfter(1), ..MockConfig::default() }).await;
    let response = post(format!("{}/chat/completions", mock.openai_base()), chat("x", true)).await;
    let events = Events::sse(response).rest().await;
    assert_eq!(events[2], "data: {not json");
    assert_eq!(events.last().unwrap(), "data: [DONE]");

    let body = json!({"model": "mock-model", "prompt": "x"});
    let lines = Events::ndjson(post(format!("{}/api/generate", mock.ollama_base()), body).await).rest().await;
    assert_eq!(lines[1], "{not json");
}

#[tokio::test]
async fn directive_in_last_user_message_overrides_config() {
    let mock = mock(MockConfig::default()).await;
    let body = json!({"model": "mock-model", "stream": false, "messages": [
        {"role": "user", "content": "[mock tokens=1]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "now [mock tokens=5 delay_ms=1 first_ms=2]"}]},
    ]});
    let reply: Value =
        post(format!("{}/chat/completions", mock.openai_base()), body).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "t0 t1 t2 t3 t4 ");

    let body = json!({"model": "mock-model", "messages": [{"role": "user", "content": "[mock mode=hang_after:1 tokens=3]"}]});
    let mut lines = Events::ndjson(post(format!("{}/api/chat", mock.ollama_base()), body).await);
    assert!(lines.expect().await.contains("t0 "));
    assert!(timeout(SILENT, lines.next()).await.is_err());

    let bad = post(format!("{}/chat/completions", mock.openai_base()), chat("[mock mode=boom]", true)).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn manual_pace_releases_one_token_per_permit() {
    let (pace, permits) = Pace::manual();
    let mock = mock(MockConfig { tokens: 4, pace, ..MockConfig::default() }).await;
    let body = json!({"model": "mock-model", "messages": [{"role": "user", "content": "x"}]});
    let mut lines = Events::ndjson(post(format!("{}/api/chat", mock.ollama_base()), body).await);
    for i in 0..4 {
        assert!(timeout(SILENT, lines.next()).await.is_err(), "token {i} before its permit");
        permits.add_permits(1);
        let line: Value = serde_json::from_str(&lines.expect().await).unwrap();
        assert_eq!(line["message"]["content"], format!("t{i} "));
        assert_eq!(permits.available_permits(), 0);
    }
    let done: Value = serde_json::from_str(&lines.expect().await).unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(lines.rest().await.len(), 0);
}

#[tokio::test]
async fn client_dropping_mid_stream_counts_as_cancelled() {
    let (pace, permits) = Pace::manual();
    let mock = mock(MockConfig { pace, ..MockConfig::default() }).await;
    permits.add_permits(2);
    let response = post(format!("{}/chat/completions", mock.openai_base()), chat("x", true)).await;
    let mut events = Events::sse(response);
    events.expect().await;
    events.expect().await;
    assert_eq!(mock.stats().snapshot().in_flight, 1);
    drop(events);
    timeout(MUST, mock.stats().wait_cancelled(1)).await.unwrap();
    timeout(MUST, mock.stats().wait_in_flight(0)).await.unwrap();
    assert_eq!(mock.stats().snapshot().streams_completed, 0);
}

#[tokio::test]
async fn shutdown_aborts_hung_connections() {
    let mock = mock(MockConfig { behavior: Behavior::HangAfter(0), ..MockConfig::default() }).await;
    let response = post(format!("{}/chat/completions", mock.openai_base()), chat("x", true)).await;
    let mut events = Events::sse(response);
    let stats = std::sync::Arc::clone(mock.stats());
    timeout(MUST, mock.shutdown()).await.unwrap();
    assert!(timeout(MUST, events.next()).await.unwrap().is_err());
    timeout(MUST, stats.wait_in_flight(0)).await.unwrap();
}

#[tokio::test]
async fn non_stream_replies_honour_faults() {
    let mock = mock(MockConfig::default()).await;
    let url = format!("{}/chat/completions", mock.openai_base());
    let broken = async {
        let body = chat("[mock mode=drop_after:2]", false);
        client().post(url.clone()).json(&body).send().await?.bytes().await
    };
    assert!(timeout(MUST, broken).await.unwrap().is_err());

    let garbage = post(url.clone(), chat("[mock mode=malformed_after:0]", false)).await;
    assert_eq!(garbage.status(), 200);
    assert_eq!(garbage.text().await.unwrap(), "{not json");

    let body = chat("[mock mode=hang_after:3]", false);
    let mut request = tokio::spawn(client().post(url).json(&body).send());
    timeout(MUST, mock.stats().wait_requests(3)).await.unwrap();
    timeout(MUST, mock.stats().wait_started(3)).await.unwrap();
    assert!(timeout(SILENT, &mut request).await.is_err(), "no reply may come");
    request.abort();
    timeout(MUST, mock.stats().wait_cancelled(1)).await.unwrap();
    let stats = mock.stats().snapshot();
    assert_eq!((stats.streams_completed, stats.in_flight), (1, 0));
}
