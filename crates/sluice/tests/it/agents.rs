//! Agents: a gateway and several in-process agents on loopback, each agent in front of
//! the mock upstream. Raw WebSocket clients play broken or silent agents.

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use sluice_agent::{Agent, AgentError, AgentOptions, AgentStatus, session::SessionError};
use sluice_config::{Config, Overrides};
use sluice_mock::{Behavior, MockConfig, MockServer, Pace};
use sluice_protocol::agent::{Hello, PROTOCOL_VERSION, RefuseCode, ToAgent, ToGateway};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::util::*;

/// Gateway settings for agent tests: in-memory store, fast heartbeats.
const GATEWAY: &str =
    "[store]\nurl = \"sqlite::memory:\"\n[agents]\nheartbeat = \"100ms\"\ndead_after = \"400ms\"\n";

async fn gateway(extra: &str) -> Gateway {
    Gateway::start(&format!("{GATEWAY}{extra}")).await
}

async fn token(gw: &Gateway) -> String {
    gw.state.store.create_agent_token("test").await.unwrap().1
}

/// An agent running in this process.
struct TestAgent {
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
    shutdown: CancellationToken,
    status: watch::Receiver<AgentStatus>,
}

impl TestAgent {
    /// Starts an agent with `slots` slots in front of `mock`.
    async fn start(gw: &Gateway, token: &str, id: &str, slots: u32, mock: &MockServer) -> TestAgent {
        let options = AgentOptions { agent_id: id.into(), slots, ..options(&gw.url(""), token) };
        TestAgent::with_options(options, mock).await
    }

    async fn with_options(options: AgentOptions, mock: &MockServer) -> TestAgent {
        let cfg =
            Config::from_toml(&backend_toml("local", "openai", mock, ""), &Overrides::default()).unwrap();
        let agent = Agent::new(options, local_registry(cfg).await).await.unwrap();
        assert_eq!(agent.models(), ["mock-model"]);
        let shutdown = CancellationToken::new();
        let status = agent.status();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { agent.run(stop).await });
        TestAgent { task, shutdown, status }
    }

    /// Waits until the agent is welcomed.
    async fn connected(&mut self) {
        tokio::time::timeout(SOON, self.status.wait_for(|s| *s == AgentStatus::Connected))
            .await
            .expect("agent connects")
            .unwrap();
    }

    /// Kills the agent: its tasks stop and its socket closes without a goodbye.
    fn kill(self) {
        self.task.abort();
    }

    /// What `run` returned.
    async fn result(self) -> Result<(), AgentError> {
        tokio::time::timeout(SOON, self.task).await.expect("agent stops").unwrap()
    }
}

fn options(gateway: &str, token: &str) -> AgentOptions {
    AgentOptions {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..AgentOptions::new(gateway, token).unwrap()
    }
}

/// Waits until `n` agents are connected to `gw`.
async fn agents_connected(gw: &Gateway, n: usize) {
    let mut w = gw.state.agents.watch();
    tokio::time::timeout(SOON, w.wait_for(|c| *c == n)).await.expect("agent count reached").unwrap();
}

/// Waits, without sleeping, until `cond` holds (bounded by SOON).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(SOON, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

async fn admin_agents(gw: &Gateway) -> serde_json::Value {
    client().get(gw.url("/admin/agents")).send().await.unwrap().json().await.unwrap()
}

fn stream_chat(
    gw: &Gateway,
    content: &str,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    client().post(gw.url("/v1/chat/completions")).json(&chat_body(content, true)).send()
}

#[tokio::test]
async fn tokens_are_pushed_and_streamed_through_an_agent() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 4, pace, ..Default::default() }).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "gpu-1", 2, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;

    let req = stream_chat(&gw, "x");
    gate.add_permits(1);
    let mut frames = Frames::sse(tokio::time::timeout(SOON, req).await.unwrap().unwrap());
    // Token k reaches the client before the upstream may even produce token k+1.
    for k in 0..4 {
        let f = frames.next_soon().await.expect("a token");
        assert!(f.contains(&format!("t{k} ")), "expected token {k}, got {f}");
        gate.add_permits(1);
    }
    let rest = frames.rest().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");

    // Other dialects and non-streamed answers take the same path.
    gate.close();
    let r = client().post(gw.url("/api/chat")).json(&ollama_chat_body("y", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["message"]["content"], "t0 t1 t2 t3 ");

    let a = admin_agents(&gw).await;
    let a = &a["agents"][0];
    assert_eq!(
        (a["id"].as_str(), a["slots"].as_u64(), a["jobs_in_flight"].as_u64()),
        (Some("gpu-1"), Some(2), Some(0))
    );
    assert_eq!(a["models"], serde_json::json!(["mock-model"]));
    assert_eq!(a["tokens_served"], 8);
    assert!(a["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{a}");
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "sluice_agents_connected 1",
        "sluice_agent_slots{backend=\"agent:gpu-1\"} 2",
        "sluice_agent_tokens_served_total{backend=\"agent:gpu-1\"} 8",
        "sluice_agent_last_heartbeat_timestamp_seconds{backend=\"agent:gpu-1\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} not in metrics");
    }
}

#[tokio::test]
async fn work_is_spread_across_agents_and_never_exceeds_slots() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 2, pace, ..Default::default() }).await;
    let gw = gateway("").await;
    let t = token(&gw).await;
    let mut a = TestAgent::start(&gw, &t, "a", 2, &mock).await;
    let mut b = TestAgent::start(&gw, &t, "b", 2, &mock).await;
    a.connected().await;
    b.connected().await;
    agents_connected(&gw, 2).await;

    let requests: Vec<_> = (0..6).map(|i| tokio::spawn(stream_chat(&gw, &format!("q{i}")))).collect();
    // Four reach the upstream (two per agent); the other two wait at the gateway.
    tokio::time::timeout(SOON, mock.stats().wait_started(4)).await.expect("four jobs run");
    let agents = gw.state.agents.list();
    eventually("six requests outstanding", || {
        agents.iter().map(|(_, s)| s.outstanding.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>() == 6
    })
    .await;
    for (conn, slot) in &agents {
        assert_eq!(conn.jobs_in_flight(), 2, "{}: jobs beyond its slots", conn.info.id);
        assert_eq!(
            slot.outstanding.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "{}: unfair",
            conn.info.id
        );
    }
    assert_eq!(mock.stats().snapshot().requests, 4);

    gate.close();
    for r in requests {
        let resp = tokio::time::timeout(SOON, r).await.unwrap().unwrap().unwrap();
        let frames = Frames::sse(resp).rest().await;
        assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    }
    assert_eq!(mock.stats().snapshot().streams_completed, 6);
}

/// Agents and local backends share a model by outstanding work relative to slots (a
/// backend without a slot limit counts as one slot); a full agent gets nothing more.
#[tokio::test]
async fn agents_and_local_backends_share_by_load_per_slot() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 2, pace, ..Default::default() }).await;
    let gw = gateway(&backend_toml("local", "openai", &mock, "")).await;
    // A configured backend serves the model: only a token bound to it may serve it too.
    let models = Some(vec!["mock-*".to_owned()]);
    let token = gw.state.store.create_agent_token_scoped("shared", models, None).await.unwrap().1;
    let mut agent = TestAgent::start(&gw, &token, "a", 2, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    let slots = gw.state.core.registry.slots();
    let load =
        || slots.iter().map(|s| s.outstanding.load(std::sync::atomic::Ordering::Relaxed)).collect::<Vec<_>>();
    let mut requests = Vec::new();
    // The cost of one more job is (outstanding + 1) / slots: local 1/1 > agent 1/2 →
    // agent; local 1/1 = agent 2/2 → local (the earlier); local 2/1 > agent 2/2 → agent;
    // agent full → local.
    for (i, expected) in [[0, 1], [1, 1], [1, 2], [2, 2]].into_iter().enumerate() {
        requests.push(tokio::spawn(stream_chat(&gw, &format!("q{i}"))));
        eventually("request routed", || load().iter().sum::<u64>() == i as u64 + 1).await;
        assert_eq!(load(), expected, "after request {i}");
    }
    gate.close();
    for r in requests {
        let resp = tokio::time::timeout(SOON, r).await.unwrap().unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// The connection's reader hands chunks over without waiting for clients, so a client
/// that reads nothing holds up no other job on the same agent.
#[tokio::test]
async fn a_client_that_reads_nothing_never_stalls_other_jobs() {
    let mock = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "a", 2, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    // About 2.4 MB of text, never read by its client.
    let stalled = stream_chat(&gw, "[mock tokens=300000]").await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), mock.stats().wait_completed(1))
        .await
        .expect("the agent relayed the whole answer");
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("y", true)).send().await.unwrap();
    let frames = Frames::sse(r).rest().await;
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"), "{frames:?}");
    assert!(frames.iter().any(|f| f.contains("t7 ")), "{frames:?}");
    // The stalled client still gets every token when it finally reads.
    let text = tokio::time::timeout(Duration::from_secs(60), stalled.text()).await.unwrap().unwrap();
    assert!(text.contains("t299999 ") && text.trim_end().ends_with("[DONE]"));
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_job_on_the_agent() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 100, pace, ..Default::default() }).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "a", 1, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    gate.add_permits(2);
    let mut frames = Frames::sse(stream_chat(&gw, "x").await.unwrap());
    frames.next_soon().await.unwrap();
    let left = std::time::Instant::now();
    drop(frames);
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(1)).await.expect("agent dropped the upstream");
    let took = left.elapsed();
    // Event-driven all the way (no timer involved); generous bound for a noisy machine.
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    let (conn, _) = &gw.state.agents.list()[0];
    eventually("job released at the gateway", || conn.jobs_in_flight() == 0).await;
    // The freed slot takes the next job.
    gate.close();
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("y", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_agent_killed_mid_stream_ends_its_stream_with_an_error_event() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 10, pace, ..Default::default() }).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "a", 1, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    gate.add_permits(2);
    let mut frames = Frames::sse(stream_chat(&gw, "x").await.unwrap());
    frames.next_soon().await.unwrap();
    agent.kill();
    let rest = frames.rest().await;
    let last = json(rest.last().expect("an error event"));
    assert!(last["error"]["message"].as_str().unwrap().contains("lost"), "{rest:?}");
    assert!(!rest.iter().any(|f| f == "[DONE]"), "{rest:?}");
    agents_connected(&gw, 0).await;
    // The model is gone with its only agent.
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("y", false)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_job_without_tokens_on_a_dead_agent_runs_elsewhere() {
    let stuck = mock(MockConfig { behavior: Behavior::Hang, ..Default::default() }).await;
    let healthy = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let t = token(&gw).await;
    let mut a = TestAgent::start(&gw, &t, "a-stuck", 1, &stuck).await;
    a.connected().await;
    agents_connected(&gw, 1).await;
    let mut b = TestAgent::start(&gw, &t, "b-healthy", 1, &healthy).await;
    b.connected().await;
    agents_connected(&gw, 2).await;
    // Both idle: the first route (agent a) gets it, and it hangs before any token.
    let req = tokio::spawn(client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", false)).send());
    tokio::time::timeout(SOON, stuck.stats().wait_requests(1)).await.unwrap();
    a.kill();
    let resp = tokio::time::timeout(SOON, req).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(healthy.stats().snapshot().streams_completed, 1);
}

#[tokio::test]
async fn a_silent_agent_is_declared_dead_and_its_waiting_job_fails_over_or_errors() {
    let gw = gateway("").await;
    let (mut ws, welcome) = raw_agent(&gw, hello(&token(&gw).await, "silent")).await;
    assert!(matches!(welcome, ToAgent::Welcome { protocol: PROTOCOL_VERSION, .. }), "{welcome:?}");
    agents_connected(&gw, 1).await;
    // It answers pings until a job is pushed to it, then goes silent (a frozen machine).
    let req = tokio::spawn(client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send());
    loop {
        match next_frame(&mut ws).await {
            ToAgent::Ping { nonce } => {
                let pong = serde_json::to_string(&ToGateway::Pong { nonce }).unwrap();
                ws.send(Message::Text(pong.into())).await.unwrap();
            }
            ToAgent::Job { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    agents_connected(&gw, 0).await;
    let resp = tokio::time::timeout(SOON, req).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 502, "no token yet and no other backend: a retryable 502");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("unreachable"), "{body}");
}

#[tokio::test]
async fn agents_reconnect_after_losing_the_connection() {
    let mock = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "a", 1, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    let (first, _) = gw.state.agents.list().remove(0);
    first.close("test"); // the gateway drops the connection
    eventually("the agent came back on a new connection", || {
        gw.state.agents.list().first().is_some_and(|(c, _)| !Arc::ptr_eq(c, &first))
    })
    .await;
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("y", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bad_and_revoked_tokens_are_refused_with_a_reason() {
    let mock = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let bad = TestAgent::start(&gw, "sat-wrong", "a", 1, &mock).await;
    let err = bad.result().await.unwrap_err();
    let AgentError::Refused(SessionError::Refused { code, reason }) = err else { panic!("{err:?}") };
    assert_eq!(code, RefuseCode::Unauthorized);
    assert!(reason.contains("unknown or revoked"), "{reason}");

    // Revoked through the admin API: the connected agent is dropped and refused on return.
    let created: serde_json::Value = client()
        .post(gw.url("/admin/agent-tokens"))
        .json(&serde_json::json!({"name": "box"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["token"].as_str().unwrap();
    let mut good = TestAgent::start(&gw, secret, "b", 1, &mock).await;
    good.connected().await;
    let list: serde_json::Value =
        client().get(gw.url("/admin/agent-tokens")).send().await.unwrap().json().await.unwrap();
    assert!(!list.to_string().contains(secret), "secrets are never listed");
    let id = created["id"].as_str().unwrap();
    let r = client().delete(gw.url(&format!("/admin/agent-tokens/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let err = good.result().await.unwrap_err();
    assert!(
        matches!(err, AgentError::Refused(SessionError::Refused { code: RefuseCode::Unauthorized, .. })),
        "{err:?}"
    );
    let r = client().delete(gw.url(&format!("/admin/agent-tokens/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sluice_agent_refused_total{code=\"unauthorized\"} 2"), "{metrics}");
}

#[tokio::test]
async fn a_malformed_frame_closes_only_that_connection() {
    let mock = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let t = token(&gw).await;
    let mut good = TestAgent::start(&gw, &t, "good", 1, &mock).await;
    good.connected().await;
    let (mut ws, _) = raw_agent(&gw, hello(&t, "broken")).await;
    agents_connected(&gw, 2).await;
    ws.send(Message::Text(r#"{"type":"chunk","job":"#.into())).await.unwrap();
    let reason = close_reason(&mut ws).await;
    assert!(reason.contains("malformed frame"), "{reason}");
    agents_connected(&gw, 1).await;
    let r = client().post(gw.url("/v1/chat/completions")).json(&chat_body("y", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_protocol_version_mismatch_is_refused() {
    let gw = gateway("").await;
    let mut h = hello(&token(&gw).await, "future");
    h.protocol = PROTOCOL_VERSION + 1;
    let (mut ws, answer) = raw_agent(&gw, h).await;
    let ToAgent::Refused { code, reason } = answer else { panic!("{answer:?}") };
    assert_eq!(code, RefuseCode::VersionMismatch);
    assert!(reason.contains(&format!("agent {}", PROTOCOL_VERSION + 1)), "{reason}");
    assert!(close_reason(&mut ws).await.contains("version mismatch"));
    // A Hello of another shape, from a newer agent, gets the same clear answer.
    let (mut ws, _) = raw_socket(&gw).await;
    ws.send(Message::Text(r#"{"type":"hello","protocol":99,"capabilities":[]}"#.into())).await.unwrap();
    let answer = next_frame(&mut ws).await;
    assert!(matches!(answer, ToAgent::Refused { code: RefuseCode::VersionMismatch, .. }), "{answer:?}");
}

/// Protocol 2 carries tools, tool calls and reasoning both ways: the upstream behind
/// the agent gets the tools, the client gets the calls and the reasoning as streamed.
#[tokio::test]
async fn tools_and_reasoning_cross_the_agent_link() {
    let mock = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "tools", 1, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    let tools = serde_json::json!([{"type": "function", "function": {
        "name": "lookup", "description": "Finds a thing",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
    let mut body = chat_body("find it [mock tokens=4 reasoning=1 call=lookup]", true);
    body["tools"] = tools.clone();
    body["tool_choice"] = "auto".into();
    let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let chunks: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let deltas: Vec<&serde_json::Value> =
        chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["delta"]).collect();
    assert!(deltas.iter().any(|d| d["reasoning_content"].is_string()), "{text}");
    let calls: Vec<&serde_json::Value> = deltas.iter().filter_map(|d| d["tool_calls"].get(0)).collect();
    assert_eq!(calls.first().map(|c| &c["function"]["name"]), Some(&serde_json::json!("lookup")), "{text}");
    let finish = chunks.iter().filter_map(|c| c["choices"].get(0)).find_map(|c| c["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"), "{text}");
    let sent = mock.stats().last().unwrap().body;
    assert_eq!(
        sent["tools"][0]["function"]["name"], "lookup",
        "the tools reached the agent's upstream: {sent}"
    );
    assert_eq!(sent["tool_choice"], "auto", "{sent}");

    // The tool's result goes back through the agent as a `tool` message.
    let mut body = chat_body("x", false);
    body["tools"] = tools;
    body["messages"] = serde_json::json!([
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": "{\"q\":\"it\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"}]);
    let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sent = mock.stats().last().unwrap().body;
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_1", "{sent}");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_1", "{sent}");
}

/// An agent of protocol 1 is still welcomed, in its own version, and serves text; a
/// request it could not express goes nowhere near it: with no other backend, a 400
/// names the field, and nothing is pushed to the agent.
#[tokio::test]
async fn a_protocol_1_agent_serves_text_and_never_gets_what_it_cannot_carry() {
    let gw = gateway("").await;
    let mut h = hello(&token(&gw).await, "old");
    h.protocol = 1;
    let (mut ws, welcome) = raw_agent(&gw, h).await;
    assert!(matches!(welcome, ToAgent::Welcome { protocol: 1, .. }), "{welcome:?}");
    agents_connected(&gw, 1).await;

    let mut body = chat_body("x", false);
    body["tools"] = serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["error"]["param"], "tools", "{err}");

    // Plain text still works: the job arrives in version 1's shape, and is answered.
    let req =
        tokio::spawn(client().post(gw.url("/v1/chat/completions")).json(&chat_body("hi", false)).send());
    let job = loop {
        match next_frame(&mut ws).await {
            ToAgent::Ping { nonce } => {
                let pong = serde_json::to_string(&ToGateway::Pong { nonce }).unwrap();
                ws.send(Message::Text(pong.into())).await.unwrap();
            }
            ToAgent::Job { job, request } => {
                assert!(request.tools.is_none() && request.response_format.is_none());
                break job;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    for frame in [
        ToGateway::Chunk { job, delta: "hello".into() },
        ToGateway::Done { job, finish_reason: "stop".into(), usage: None, details: None },
    ] {
        ws.send(Message::Text(serde_json::to_string(&frame).unwrap().into())).await.unwrap();
    }
    let resp = tokio::time::timeout(SOON, req).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello");
}

#[tokio::test]
async fn a_draining_agent_finishes_its_jobs_then_leaves() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 3, pace, ..Default::default() }).await;
    let gw = gateway("").await;
    let mut agent = TestAgent::start(&gw, &token(&gw).await, "a", 1, &mock).await;
    agent.connected().await;
    agents_connected(&gw, 1).await;
    gate.add_permits(1);
    let mut frames = Frames::sse(stream_chat(&gw, "x").await.unwrap());
    frames.next_soon().await.unwrap();
    agent.shutdown.cancel(); // SIGTERM
    eventually("agent marked draining", || gw.state.core.registry.table().routes("mock-model").is_none())
        .await;
    gate.close();
    let rest = frames.rest().await;
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "the running job finished: {rest:?}");
    agent.result().await.unwrap();
    agents_connected(&gw, 0).await;
}

#[tokio::test]
async fn a_reconnecting_agent_replaces_its_old_connection() {
    let gw = gateway("").await;
    let t = token(&gw).await;
    let (mut old, _) = raw_agent(&gw, hello(&t, "same")).await;
    agents_connected(&gw, 1).await;
    let (_new, welcome) = raw_agent(&gw, hello(&t, "same")).await;
    assert!(matches!(welcome, ToAgent::Welcome { .. }), "{welcome:?}");
    assert!(close_reason(&mut old).await.contains("replaced by a newer connection"));
    let list = admin_agents(&gw).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1, "{list}");
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sluice_agents_connected 1"), "{metrics}");
    assert!(metrics.contains("sluice_agent_slots{backend=\"agent:same\"} 1"), "{metrics}");
}

// ---- raw protocol clients ----

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test]
async fn an_agent_may_announce_only_the_models_its_token_allows() {
    let gw = gateway("").await;
    let models = Some(vec!["llama*".to_owned()]);
    let scoped = gw.state.store.create_agent_token_scoped("llamas", models, None).await.unwrap().1;
    let (_, answer) = raw_agent(&gw, hello(&scoped, "x")).await;
    let ToAgent::Refused { code, reason } = answer else { panic!("{answer:?}") };
    assert_eq!(code, RefuseCode::ModelNotAllowed);
    assert!(reason.contains("mock-model"), "{reason}");

    // Without globs, a token may not take over a name a configured backend serves.
    let mock = mock(MockConfig::default()).await;
    let gw = gateway(&backend_toml("local", "openai", &mock, "")).await;
    let (_, answer) = raw_agent(&gw, hello(&token(&gw).await, "y")).await;
    assert!(matches!(answer, ToAgent::Refused { code: RefuseCode::ModelNotAllowed, .. }), "{answer:?}");
}

#[tokio::test]
async fn an_agent_id_is_bound_to_its_token_and_expired_tokens_are_refused() {
    let gw = gateway("").await;
    let (first, second) = (token(&gw).await, token(&gw).await);
    let (mut held, answer) = raw_agent(&gw, hello(&first, "box")).await;
    assert!(matches!(answer, ToAgent::Welcome { .. }), "{answer:?}");
    let (_, answer) = raw_agent(&gw, hello(&second, "box")).await;
    let ToAgent::Refused { code, .. } = answer else { panic!("{answer:?}") };
    assert_eq!(code, RefuseCode::AgentIdTaken, "another token cannot replace the connection");
    // The same token may (a reconnecting agent).
    let (_, answer) = raw_agent(&gw, hello(&first, "box")).await;
    assert!(matches!(answer, ToAgent::Welcome { .. }), "{answer:?}");
    assert!(close_reason(&mut held).await.contains("replaced"));

    let expired = gw.state.store.create_agent_token_scoped("old", None, Some(1)).await.unwrap().1;
    let (_, answer) = raw_agent(&gw, hello(&expired, "late")).await;
    assert!(matches!(answer, ToAgent::Refused { code: RefuseCode::Unauthorized, .. }), "{answer:?}");
}

#[tokio::test]
async fn a_token_revoked_in_the_store_disconnects_its_agent_within_a_heartbeat() {
    let mock = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let (token, secret) = gw.state.store.create_agent_token("box").await.unwrap();
    let mut agent = TestAgent::start(&gw, &secret, "box", 1, &mock).await;
    agent.connected().await;
    // Revoked behind this gateway's back (another replica, or the CLI): the heartbeat
    // check ends the connection, and the agent is refused when it comes back.
    assert!(gw.state.store.revoke_agent_token(&token.id).await.unwrap());
    let err = agent.result().await.unwrap_err();
    assert!(
        matches!(err, AgentError::Refused(SessionError::Refused { code: RefuseCode::Unauthorized, .. })),
        "{err:?}"
    );
}

fn hello(token: &str, id: &str) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        token: token.into(),
        agent_id: id.into(),
        version: "test".into(),
        models: vec!["mock-model".into()],
        slots: 1,
        capabilities: Default::default(),
    }
}

async fn raw_socket(gw: &Gateway) -> (Ws, ()) {
    let url = format!("ws://{}{}", gw.addr, sluice_protocol::agent::CONNECT_PATH);
    let (ws, _) = tokio::time::timeout(SOON, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    (ws, ())
}

/// Connects, sends `hello`, returns the socket and the gateway's answer.
async fn raw_agent(gw: &Gateway, hello: Hello) -> (Ws, ToAgent) {
    let (mut ws, ()) = raw_socket(gw).await;
    ws.send(Message::Text(serde_json::to_string(&ToGateway::Hello(hello)).unwrap().into())).await.unwrap();
    let answer = next_frame(&mut ws).await;
    (ws, answer)
}

async fn next_frame(ws: &mut Ws) -> ToAgent {
    match tokio::time::timeout(SOON, ws.next()).await.expect("a frame").expect("open").unwrap() {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Reads until the close frame; returns its reason.
async fn close_reason(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(SOON, ws.next()).await.expect("a close frame") {
            Some(Ok(Message::Close(Some(c)))) => return c.reason.to_string(),
            Some(Ok(Message::Close(None))) | None => return String::new(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket failed: {e}"),
        }
    }
}

/// The gateway owns the attempt policy: a job the agent's backend refuses is tried
/// once by the agent and reported, and only the gateway decides whether to try again.
/// Every upstream request is then one gateway attempt (no agent-side retries that
/// would multiply them).
#[tokio::test]
async fn an_agent_runs_each_job_once_and_the_gateway_counts_the_attempts() {
    let m = mock(MockConfig::default()).await;
    let gw = gateway("").await;
    let t = token(&gw).await;
    let mut agent = TestAgent::start(&gw, &t, "a1", 2, &m).await;
    agent.connected().await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock mode=status:500]", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "the upstream's failure, reported through the agent");
    let text = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let retries: u64 = text
        .lines()
        .filter(|l| l.starts_with("sluice_retries_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let upstream = m.stats().snapshot().requests;
    assert_eq!(
        upstream,
        1 + retries,
        "one upstream request per gateway attempt: {upstream} vs 1 + {retries}"
    );
    agent.shutdown.cancel();
    agent.result().await.unwrap();
}

/// Before its Hello is verified a connection holds a place at the handshake gate:
/// past `agents.max_handshakes` unverified sockets, the upgrade itself is refused with
/// 503; a refused Hello frees its place; past `agents.attempts_per_minute` from one
/// address, 429. A Hello longer than 64 KiB is refused unread.
#[tokio::test]
async fn strangers_are_bounded_before_their_hello_is_verified() {
    let gw = gateway("max_handshakes = 2\nattempts_per_minute = 6\n").await;
    let url = format!("ws://{}{}", gw.addr, sluice_protocol::agent::CONNECT_PATH);
    let connect = || tokio::time::timeout(SOON, tokio_tungstenite::connect_async(url.clone()));
    let (mut first, _) = connect().await.unwrap().unwrap();
    let (_second, _) = connect().await.unwrap().unwrap();
    match connect().await.unwrap() {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("a third unverified socket must be refused: {other:?}"),
    }
    // A Hello over 64 KiB: refused without being parsed, and the place is free again.
    let mut big = hello("t", "big");
    big.version = "v".repeat(70 << 10);
    first.send(Message::Text(serde_json::to_string(&ToGateway::Hello(big)).unwrap().into())).await.unwrap();
    let answer = next_frame(&mut first).await;
    let ToAgent::Refused { code, reason } = answer else { panic!("{answer:?}") };
    assert_eq!(code, RefuseCode::BadHello);
    assert!(reason.contains("longer than 65536 bytes"), "{reason}");
    let mut third = loop {
        // The gateway frees the place right after answering; the close may race it.
        if let Ok((ws, _)) = connect().await.unwrap() {
            break ws;
        }
    };
    // Hello fields are bounded: a model name with a newline is refused.
    let mut bad = hello("t", "bad");
    bad.models = vec!["a\nb".into()];
    third.send(Message::Text(serde_json::to_string(&ToGateway::Hello(bad)).unwrap().into())).await.unwrap();
    let answer = next_frame(&mut third).await;
    assert!(
        matches!(&answer, ToAgent::Refused { code: RefuseCode::BadHello, reason } if reason.contains("control")),
        "{answer:?}"
    );
    // Six attempts this minute from 127.0.0.1 (some may have raced above): then 429.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        match connect().await.unwrap() {
            Ok(_) => statuses.push(101),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => statuses.push(resp.status().as_u16()),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

/// Until its Hello is verified, a connection may send only a Hello's worth of bytes:
/// a frame announced as 1 MiB (within `agents.max_frame_bytes`) is cut off after
/// about 64 KiB, and the connection closed, long before the Hello timeout. Without
/// the cap the gateway would keep reading (and holding) the whole frame.
#[tokio::test]
async fn a_stranger_may_send_only_a_hellos_worth_before_its_hello_is_verified() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::MaybeTlsStream;

    let gw = gateway("hello_timeout = \"60s\"\n").await;
    let (mut ws, ()) = raw_socket(&gw).await;
    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else { panic!("plain TCP") };
    // A masked text frame (mask key 0: the payload goes as is) of 1 MiB - 64 bytes.
    let announced: u64 = (1 << 20) - 64;
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&announced.to_be_bytes());
    head.extend_from_slice(&[0; 4]);
    let write = async {
        tcp.write_all(&head).await?;
        let chunk = vec![b'a'; 16 << 10];
        for _ in 0..32 {
            tcp.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    // The gateway may close mid-way (the write then fails): that is the point.
    let _ = tokio::time::timeout(SOON, write).await.expect("the gateway reads or closes");
    let closed = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(SOON, closed)
        .await
        .expect("the gateway closes a connection that sends more than a Hello before it");
}
