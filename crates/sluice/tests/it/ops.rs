//! Health, readiness, metrics, request ids, compression and graceful shutdown.

use std::io::Read as _;

use sluice_mock::{MockConfig, Pace};

use crate::util::*;

#[tokio::test]
async fn metrics_cover_requests_latency_tokens_and_errors() {
    let mock = mock(MockConfig { tokens: 4, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let c = client();
    let r = c.post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
    r.text().await.unwrap();
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock mode=status:500]", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let text = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "sluice_requests_total{route=\"/v1/chat/completions\",model=\"mock-model\",backend=\"mock\",status=\"200\"} 1",
        "sluice_requests_total{route=\"/v1/chat/completions\",model=\"\",backend=\"\",status=\"502\"} 1",
        "sluice_time_to_first_token_seconds_count{model=\"mock-model\",backend=\"mock\"} 1",
        "sluice_inter_token_latency_seconds_count{model=\"mock-model\",backend=\"mock\"} 3",
        "sluice_request_duration_seconds_count{model=\"mock-model\",backend=\"mock\"} 1",
        "sluice_completion_tokens_total{model=\"mock-model\",backend=\"mock\"} 4",
        "sluice_upstream_errors_total{backend=\"mock\",kind=\"status_5xx\"} 1",
        "sluice_active_streams 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn health_and_request_ids() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let c = client();
    assert_eq!(c.get(gw.url("/healthz")).send().await.unwrap().text().await.unwrap(), "ok");
    let r = c.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let a = c.get(gw.url("/v1/models")).send().await.unwrap();
    let b = c.get(gw.url("/v1/models")).send().await.unwrap();
    assert_ne!(a.headers()["x-request-id"], b.headers()["x-request-id"]);
    let r = c.get(gw.url("/v1/models")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn whole_answers_are_compressed_streams_never() {
    let mock = mock(MockConfig { tokens: 200, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let c = reqwest::Client::builder().no_proxy().no_gzip().build().unwrap();
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header("accept-encoding", "gzip")
        .json(&chat_body("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    assert!(json(&text)["choices"][0]["message"]["content"].as_str().unwrap().contains("t199"));
    for (path, body) in
        [("/v1/chat/completions", chat_body("x", true)), ("/api/chat", ollama_chat_body("x", true))]
    {
        let r = c.post(gw.url(path)).header("accept-encoding", "gzip, br").json(&body).send().await.unwrap();
        assert!(!r.headers().contains_key("content-encoding"), "{path} stream must not be compressed");
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish_and_refuses_new_ones() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 3, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    gate.add_permits(1);
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
    let mut frames = Frames::sse(resp);
    assert!(frames.next_soon().await.unwrap().contains("t0"));
    gw.state.core.shutdown.cancel();
    // New connections are refused once the listener is closed.
    tokio::time::timeout(SOON, async {
        loop {
            if tokio::net::TcpStream::connect(gw.addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("listener closes");
    gate.add_permits(10);
    let rest = frames.rest().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "the in-flight stream finished: {rest:?}");
    tokio::time::timeout(SOON, gw.task).await.expect("server stops").unwrap().unwrap();
}
