//! What dies under a stream: the upstream process, or the agent process serving it.

use std::time::Duration;

use sluice_mock::MockConfig;
use sluice_store::{Store, StoreConfig};

use super::harness::*;
use crate::util::*;

/// A reply that outlasts the test: 1,000 tokens, 20 ms apart.
const LONG: &str = "tell me everything [mock tokens=1000 delay_ms=20]";

/// Health probes every 200 ms, so a restarted upstream is seen at once.
fn upstream_toml(url: &str) -> String {
    format!(
        "[[backends]]\nname = \"mock\"\nkind = \"openai\"\nurl = \"{url}\"\nmodels = [\"mock-model\"]\nhealth = {{ interval = \"200ms\" }}\n[store]\nurl = \"sqlite::memory:\"\n"
    )
}

/// The upstream process is SIGKILLed while two clients (one per dialect) stream from
/// it: each gets its dialect's error event at once, not a hang and not a silent end.
/// The gateway stays healthy: a request while the upstream is down gets a prompt
/// error, and once the upstream is back on its port the next requests are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_killed_mid_stream_ends_each_stream_with_an_error_event() {
    let mock = MockProc::start(0).await;
    let gw = ServeProc::start(&upstream_toml(&mock.openai())).await;
    let mut streams = Vec::new();
    for dialect in [Dialect::OpenAi, Dialect::Ollama] {
        let mut s = Stream::open(&gw.base, dialect, LONG, None).await;
        s.first().await;
        streams.push(s);
    }
    let port = mock.port;
    mock.proc.kill().await;
    for s in streams {
        let outcome = s.outcome(SOON).await;
        assert!(matches!(outcome, Outcome::Error(_)), "an explicit error event: {outcome:?}");
    }

    // Down: a prompt, explicit refusal.
    let down = client().post(gw.url("/v1/chat/completions")).json(&chat_body("hi", false)).send();
    let down = tokio::time::timeout(SOON, down).await.expect("no hang while the upstream is down").unwrap();
    assert!(down.status().is_server_error(), "{}", down.status());
    let body: serde_json::Value = down.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");

    // Back: the gateway serves again, streams included.
    let _mock = MockProc::start(port).await;
    until("a request is answered again", Duration::from_secs(15), || {
        let req = client().post(gw.url("/v1/chat/completions")).json(&chat_body("hi", false)).send();
        async move { req.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let s = Stream::open(&gw.base, Dialect::Ollama, "again", None).await;
    assert_eq!(s.outcome(SOON).await, Outcome::Complete);
    let health = client().get(gw.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
}

/// The agent process is SIGKILLed while a client streams through it: the client gets
/// an error event (the job had tokens already, so it is not retried elsewhere), the
/// gateway counts the agent gone, and a request for its model is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_stream_ends_the_stream_with_an_error_event() {
    let upstream = mock(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let (_, token) =
        Store::new(&StoreConfig { url: Some(url.clone()) }).create_agent_token("chaos").await.unwrap();
    let toml = format!("[store]\nurl = \"{url}\"\n[agents]\nheartbeat = \"200ms\"\ndead_after = \"1s\"\n");
    let gw = ServeProc::start_in(dir, &toml).await;
    let agent = agent(&gw.base, &token, &format!("openai={}", upstream.openai_base()));
    until("the agent is connected", START, || async {
        gw.metric("sluice_agents_connected", None).await == 1.0
    })
    .await;

    let mut s = Stream::open(&gw.base, Dialect::OpenAi, LONG, None).await;
    s.first().await;
    agent.kill().await;
    let outcome = s.outcome(SOON).await;
    assert!(matches!(outcome, Outcome::Error(_)), "an explicit error event: {outcome:?}");
    until("the gateway counts the agent gone", SOON, || async {
        gw.metric("sluice_agents_connected", None).await == 0.0
    })
    .await;
    let req = client().post(gw.url("/v1/chat/completions")).json(&chat_body("hi", false)).send();
    let resp = tokio::time::timeout(SOON, req).await.expect("refused at once, not queued").unwrap();
    assert!(resp.status().is_client_error() || resp.status().is_server_error(), "{}", resp.status());
}
