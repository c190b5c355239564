//! Streaming behaviour: per-token flushing, cancellation, mid-stream failures and
//! independence of concurrent streams.

use sluice_mock::{MockConfig, Pace};

use crate::util::*;

/// The client holds token k before the upstream has even been allowed to produce k+1.
#[tokio::test]
async fn every_token_is_flushed_before_the_next_exists() {
    for (kind, path) in [
        ("openai", "/v1/chat/completions"),
        ("ollama", "/api/chat"),
        ("openai", "/api/chat"),
        ("ollama", "/v1/chat/completions"),
    ] {
        let (pace, gate) = Pace::manual();
        let mock = mock(MockConfig { tokens: 4, pace, ..Default::default() }).await;
        let gw = Gateway::over(&mock, kind, "").await;
        let body = if path.starts_with("/v1") { chat_body("x", true) } else { ollama_chat_body("x", true) };
        let req = client().post(gw.url(path)).json(&body).send();
        gate.add_permits(1); // token 0 may exist; the response head waits for it
        let resp = req.await.unwrap();
        let mut frames = if path.starts_with("/v1") { Frames::sse(resp) } else { Frames::ndjson(resp) };
        for k in 0..4 {
            let f = frames
                .next_soon()
                .await
                .unwrap_or_else(|| panic!("{kind}{path}: stream ended before token {k}"));
            assert!(f.contains(&format!("t{k} ")), "{kind}{path}: expected token {k}, got {f}");
            gate.add_permits(1);
        }
        let rest = frames.rest().await;
        assert!(!rest.iter().any(|f| f.contains("\"t4 ")), "{rest:?}");
    }
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream() {
    for kind in ["openai", "ollama"] {
        let (pace, gate) = Pace::manual();
        let mock = mock(MockConfig { tokens: 100, pace, ..Default::default() }).await;
        let gw = Gateway::over(&mock, kind, "").await;
        gate.add_permits(2);
        let resp =
            client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
        let mut frames = Frames::sse(resp);
        frames.next_soon().await.unwrap();
        drop(frames);
        tokio::time::timeout(SOON, mock.stats().wait_cancelled(1)).await.expect("upstream stream dropped");
        let s = mock.stats().snapshot();
        assert_eq!((s.streams_cancelled, s.streams_completed), (1, 0), "{kind}");
        tokio::time::timeout(SOON, async {
            while gw.state.core.metrics.active_streams.get() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("gateway released the stream");
    }
}

/// Even before any token exists (upstream silent), a client that leaves ends the
/// upstream request.
#[tokio::test]
async fn disconnect_while_waiting_for_first_token_cancels_upstream() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let req =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("[mock first_ms=600000]", true)).send();
    let handle = tokio::spawn(req);
    tokio::time::timeout(SOON, mock.stats().wait_started(1)).await.expect("upstream got the request");
    handle.abort();
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(1)).await.expect("upstream request dropped");
}

#[tokio::test]
async fn mid_stream_failures_become_error_events() {
    let mock = mock(MockConfig { tokens: 5, ..Default::default() }).await;
    for kind in ["openai", "ollama"] {
        let gw = Gateway::over(&mock, kind, "").await;
        for mode in ["drop_after:2", "malformed_after:2"] {
            let content = format!("[mock mode={mode}]");
            // OpenAI dialect: an error event, and no [DONE].
            let resp = client()
                .post(gw.url("/v1/chat/completions"))
                .json(&chat_body(&content, true))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let frames = Frames::sse(resp).rest().await;
            let last = json(frames.last().unwrap());
            assert!(last["error"]["message"].is_string(), "{kind} {mode}: {frames:?}");
            assert_eq!(last["error"]["type"], "server_error");
            assert!(!frames.iter().any(|f| f == "[DONE]"), "{kind} {mode}: {frames:?}");
            assert_eq!(frames.iter().filter(|f| f.contains("\"delta\"")).count(), 2, "{frames:?}");
            // Ollama dialect: an {"error": ...} line, and no done:true.
            let resp = client()
                .post(gw.url("/api/chat"))
                .json(&ollama_chat_body(&content, true))
                .send()
                .await
                .unwrap();
            let lines = Frames::ndjson(resp).rest().await;
            let last = json(lines.last().unwrap());
            assert!(last["error"].is_string(), "{kind} {mode}: {lines:?}");
            assert!(!lines.iter().any(|l| json(l)["done"] == true));
        }
    }
}

#[tokio::test]
async fn a_stuck_request_never_blocks_another() {
    let mock = mock(MockConfig { tokens: 3, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let c = client();
    let stuck = tokio::spawn(
        c.post(gw.url("/v1/chat/completions")).json(&chat_body("[mock mode=hang]", true)).send(),
    );
    tokio::time::timeout(SOON, mock.stats().wait_requests(1)).await.unwrap();
    // 50 more requests, concurrently, all finish while the first is still stuck.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        let url = gw.url("/v1/chat/completions");
        set.spawn(async move {
            let r = c.post(url).json(&chat_body(&format!("q{i}"), i % 2 == 0)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        });
    }
    let done = tokio::time::timeout(SOON, set.join_all()).await.expect("no head-of-line blocking");
    assert!(done.iter().all(|t| t.contains("t2 ")));
    assert!(!stuck.is_finished());
    stuck.abort();
}
