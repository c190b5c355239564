//! Routing against several fault-injecting upstreams: failures before the first byte
//! go to another backend, a hedge or a fallback model; failures after it never do;
//! breakers open and close; admission queues refuse with `Retry-After`.

use std::time::Duration;

use sluice_mock::{Behavior, MockConfig, MockServer, Pace};

use crate::util::*;

/// A `[[backends]]` entry for `mock` serving `models`.
fn entry(name: &str, mock: &MockServer, models: &[&str], extra: &str) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[backends]]\nname = \"{name}\"\nkind = \"openai\"\nurl = \"{}\"\nmodels = [{}]\nhealth = {{ enabled = false }}\n{extra}\n",
        mock.openai_base(),
        models.join(", ")
    )
}

async fn faulty(behavior: Behavior) -> MockServer {
    mock(MockConfig { behavior, ..Default::default() }).await
}

async fn chat(gw: &Gateway, content: &str, stream: bool) -> reqwest::Response {
    let send = client().post(gw.url("/v1/chat/completions")).json(&chat_body(content, stream)).send();
    tokio::time::timeout(SOON, send).await.expect("answered in time").unwrap()
}

async fn metrics(gw: &Gateway) -> String {
    client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

fn requests(m: &MockServer) -> u64 {
    m.stats().snapshot().requests
}

#[tokio::test]
async fn a_backend_failing_every_request_costs_clients_nothing() {
    let (ok1, bad, ok2) = (
        mock(MockConfig::default()).await,
        faulty(Behavior::Status(500)).await,
        mock(MockConfig::default()).await,
    );
    let toml = [
        entry("ok1", &ok1, &["mock-model"], ""),
        entry("bad", &bad, &["mock-model"], ""),
        entry("ok2", &ok2, &["mock-model"], ""),
    ]
    .concat();
    let gw = Gateway::start(&toml).await;
    for i in 0..30 {
        let r = chat(&gw, "x", i % 2 == 0).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert_eq!(requests(&ok1) + requests(&ok2), 30, "every request was answered by a healthy backend");
    let failed = requests(&bad);
    let text = metrics(&gw).await;
    if failed > 0 {
        let line = format!("sluice_retries_total{{model=\"mock-model\",reason=\"error\"}} {failed}");
        assert!(text.contains(&line), "each failure was retried once: {line} not in\n{text}");
    }
}

async fn chat_with(gw: &Gateway, model: &str, content: &str) -> reqwest::Response {
    let mut body = chat_body(content, false);
    body["model"] = model.into();
    let send = client().post(gw.url("/v1/chat/completions")).json(&body).send();
    tokio::time::timeout(SOON, send).await.expect("answered in time").unwrap()
}

async fn admin_backends(gw: &Gateway) -> serde_json::Value {
    client().get(gw.url("/admin/backends")).send().await.unwrap().json().await.unwrap()
}

/// On paused time: the breaker's open periods pass in an instant, and the clock only
/// moves while every task waits (loopback I/O is ready at once, so no deadline fires
/// early). The gateway starts on the real clock: opening the store waits on SQLite's
/// own thread, which paused time would take for idleness and skip past its deadline;
/// usage records (written on that thread too) are off for the same reason.
///
/// The backend answers (with a 500), so it is the model's own breaker that opens: the
/// backend's other model stays in service meanwhile.
#[tokio::test]
async fn a_models_breaker_opens_after_consecutive_failures_and_closes_after_a_good_probe() {
    let models = vec!["mock-model".to_owned(), "other-model".to_owned()];
    let m = mock(MockConfig { models, ..Default::default() }).await;
    let breaker = "breaker = { consecutive_failures = 3, open_base = \"1s\", open_max = \"1s\" }";
    let toml =
        format!("{}\n[usage]\nenabled = false\n", entry("only", &m, &["mock-model", "other-model"], breaker));
    let gw = Gateway::start(&toml).await;
    // Serving (on the real clock) before the clock stops.
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200);
    tokio::time::pause();
    for _ in 0..3 {
        assert_eq!(chat(&gw, "[mock mode=status:500]", false).await.status(), 502);
    }
    let r = chat(&gw, "x", false).await;
    assert_eq!(r.status(), 503, "open: not even sent");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(requests(&m), 3);
    assert_eq!(chat_with(&gw, "other-model", "x").await.status(), 200, "the backend's other model is served");
    assert_eq!(requests(&m), 4);
    let admin = admin_backends(&gw).await;
    assert_eq!(admin["backends"][0]["name"], "only");
    assert_eq!(admin["backends"][0]["breaker"], "closed", "the backend itself answered: {admin}");
    assert_eq!(admin["backends"][0]["model_breakers"]["mock-model"], "open", "{admin}");
    let text = metrics(&gw).await;
    assert!(text.contains("sluice_breaker_state{backend=\"only\"} 0"), "{text}");
    assert!(text.contains("sluice_model_breaker_state{model=\"mock-model\",backend=\"only\"} 2"), "{text}");

    // The open period (jitter only shortens it) ends: the next request is the probe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(chat(&gw, "[mock mode=status:500]", false).await.status(), 502, "failed probe");
    assert_eq!(chat(&gw, "x", false).await.status(), 503, "reopened");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(chat(&gw, "x", false).await.status(), 200, "good probe");
    assert_eq!(chat(&gw, "x", false).await.status(), 200, "closed again");
    let admin = admin_backends(&gw).await;
    assert_eq!(admin["backends"][0]["model_breakers"], serde_json::json!({}), "{admin}");
    assert!(
        metrics(&gw).await.contains("sluice_model_breaker_state{model=\"mock-model\",backend=\"only\"} 0")
    );
}

/// A backend nobody answers at opens its own breaker: every model of it is refused
/// without a connection attempt until the open period ends.
#[tokio::test]
async fn an_unreachable_backend_opens_its_breaker_for_every_model() {
    // A port that was free a moment ago: connections to it are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = format!(
        "[[backends]]\nname = \"gone\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{port}/v1\"\n\
         models = [\"mock-model\", \"other-model\"]\nhealth = {{ enabled = false }}\n\
         breaker = {{ consecutive_failures = 2, open_base = \"60s\", open_max = \"60s\" }}\n\
         [routing.retry]\nmax_attempts = 1\n[usage]\nenabled = false\n"
    );
    let gw = Gateway::start(&toml).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, "x", false).await.status(), 502);
    }
    let admin = admin_backends(&gw).await;
    assert_eq!(admin["backends"][0]["breaker"], "open", "{admin}");
    assert_eq!(
        admin["backends"][0]["model_breakers"],
        serde_json::json!({}),
        "no model is to blame: {admin}"
    );
    assert_eq!(chat_with(&gw, "other-model", "x").await.status(), 503, "the whole backend is held off");
    assert!(metrics(&gw).await.contains("sluice_breaker_state{backend=\"gone\"} 2"));
}

/// `first` is preferred (weight 10) so it is always tried first.
async fn pair(first: &MockServer, second: &MockServer, first_extra: &str, routing: &str) -> Gateway {
    let first_extra = format!("weight = 10\n{first_extra}");
    let toml = [
        routing.to_owned(),
        entry("first", first, &["mock-model"], &first_extra),
        entry("second", second, &["mock-model"], ""),
    ]
    .concat();
    Gateway::start(&toml).await
}

#[tokio::test]
async fn faults_before_the_first_token_move_to_another_backend() {
    for behavior in
        [Behavior::Hang, Behavior::DropAfter(0), Behavior::MalformedAfter(0), Behavior::Status(503)]
    {
        let (bad, good) =
            (faulty(behavior).await, mock(MockConfig { tokens: 3, ..Default::default() }).await);
        let gw = pair(&bad, &good, "timeouts = { first_token = \"300ms\" }", "").await;
        let r = chat(&gw, "x", true).await;
        assert_eq!(r.status(), 200, "{behavior:?}");
        let frames = Frames::sse(r).rest().await;
        assert_eq!(frames.last().map(String::as_str), Some("[DONE]"), "{behavior:?}: {frames:?}");
        assert_eq!((requests(&bad), requests(&good)), (1, 1), "{behavior:?}");
        if behavior == Behavior::Hang {
            tokio::time::timeout(SOON, bad.stats().wait_cancelled(1)).await.expect("hung request dropped");
        }
    }
}

#[tokio::test]
async fn nothing_is_retried_after_the_first_token() {
    let (a, b) =
        (mock(MockConfig { tokens: 6, ..Default::default() }).await, mock(MockConfig::default()).await);
    let gw = pair(&a, &b, "", "").await;
    let r = chat(&gw, "[mock mode=drop_after:2]", true).await;
    assert_eq!(r.status(), 200);
    let frames = Frames::sse(r).rest().await;
    let last = json(frames.last().unwrap());
    assert_eq!(last["error"]["code"], "upstream_interrupted", "{frames:?}");
    assert_eq!(requests(&a) + requests(&b), 1, "the stream had started: no second attempt");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (a, b) = (mock(MockConfig::default()).await, mock(MockConfig::default()).await);
    let gw = pair(&a, &b, "", "").await;
    for status in [400, 404, 413, 422] {
        let r = chat(&gw, &format!("[mock mode=status:{status}]"), false).await;
        assert_eq!(r.status(), status);
    }
    assert_eq!((requests(&a), requests(&b)), (4, 0));
}

#[tokio::test]
async fn a_long_retry_after_goes_to_the_fallback_model() {
    let (limited, backup) = (
        mock(MockConfig {
            behavior: Behavior::Status(429),
            models: vec!["primary".into()],
            ..Default::default()
        })
        .await,
        mock(MockConfig { models: vec!["backup".into()], ..Default::default() }).await,
    );
    // The mock's Retry-After is 1s: longer than we are willing to wait.
    let toml = [
        "[routing]\nretry = { max_retry_after = \"100ms\" }\n".to_owned(),
        "[[models]]\nname = \"primary\"\nfallbacks = [\"backup\"]\n".to_owned(),
        entry("limited", &limited, &["primary"], ""),
        entry("backup", &backup, &["backup"], ""),
    ]
    .concat();
    let gw = Gateway::start(&toml).await;
    let body = serde_json::json!({"model": "primary", "messages": [{"role": "user", "content": "x"}]});
    for _ in 0..2 {
        let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["model"], "primary");
    }
    // The second request did not knock on the throttled backend again.
    assert_eq!((requests(&limited), requests(&backup)), (1, 2));
    let text = metrics(&gw).await;
    assert!(text.contains("sluice_fallbacks_total{model=\"primary\",fallback=\"backup\"} 2"), "{text}");
}

#[tokio::test]
async fn fallbacks_only_on_their_conditions() {
    let (broken, backup) = (
        mock(MockConfig {
            behavior: Behavior::Status(500),
            models: vec!["primary".into()],
            ..Default::default()
        })
        .await,
        mock(MockConfig { models: vec!["backup".into()], ..Default::default() }).await,
    );
    let toml = [
        "[[models]]\nname = \"primary\"\nfallbacks = [\"backup\"]\nfallback_on = [\"timeout\"]\n".to_owned(),
        entry("broken", &broken, &["primary"], ""),
        entry("backup", &backup, &["backup"], ""),
    ]
    .concat();
    let gw = Gateway::start(&toml).await;
    let body = serde_json::json!({"model": "primary", "messages": [{"role": "user", "content": "x"}]});
    let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(requests(&backup), 0);
}

#[tokio::test]
async fn full_queue_is_429_and_a_long_wait_503_both_with_retry_after() {
    let (pace, gate) = Pace::manual();
    let m = mock(MockConfig { pace, ..Default::default() }).await;
    let toml = [
        "[[models]]\nname = \"mock-model\"\nmax_concurrency = 1\nmax_queue = 1\nmax_queue_wait = \"300ms\"\n"
            .to_owned(),
        entry("paced", &m, &["mock-model"], ""),
    ]
    .concat();
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/v1/chat/completions");
    let send = |url: String| {
        tokio::spawn(async move { client().post(url).json(&chat_body("x", true)).send().await })
    };
    let running = send(url.clone());
    tokio::time::timeout(SOON, m.stats().wait_started(1)).await.expect("first request reaches the mock");
    let (b, c) = (send(url.clone()), send(url.clone()));
    let (b, c) = tokio::time::timeout(SOON, async { (b.await, c.await) }).await.expect("both refused");
    let mut statuses: Vec<(u16, bool)> = [b, c]
        .into_iter()
        .map(|r| {
            let r = r.unwrap().unwrap();
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, [(429, true), (503, true)], "one found the queue full, one waited too long");
    assert_eq!(requests(&m), 1, "refused requests never reached the upstream");

    gate.close();
    let r = tokio::time::timeout(SOON, running).await.expect("released").unwrap().unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    assert_eq!(chat(&gw, "x", false).await.status(), 200, "the slot was given back");
    let text = metrics(&gw).await;
    for needle in [
        "sluice_rejections_total{model=\"mock-model\",reason=\"queue_full\"} 1",
        "sluice_rejections_total{model=\"mock-model\",reason=\"queue_timeout\"} 1",
        "sluice_queue_wait_seconds_count{model=\"mock-model\"} 1",
        "sluice_queue_depth{model=\"mock-model\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn a_slow_first_token_is_hedged_and_the_loser_cancelled() {
    let slow = mock(MockConfig { first_token_delay: Duration::from_secs(60), ..Default::default() }).await;
    let fast = mock(MockConfig::default()).await;
    let routing = "[routing]\nhedge = { enabled = true, cold_delay = \"100ms\" }\n";
    let gw = pair(&slow, &fast, "", routing).await;
    let r = chat(&gw, "x", true).await;
    assert_eq!(r.status(), 200);
    let frames = Frames::sse(r).rest().await;
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    assert_eq!((requests(&slow), requests(&fast)), (1, 1));
    tokio::time::timeout(SOON, slow.stats().wait_cancelled(1)).await.expect("the slow attempt was dropped");
    assert!(metrics(&gw).await.contains("sluice_hedges_total{model=\"mock-model\"} 1"));
}

#[tokio::test]
async fn sticky_routing_keeps_a_conversation_on_one_backend() {
    let mocks = [
        mock(MockConfig::default()).await,
        mock(MockConfig::default()).await,
        mock(MockConfig::default()).await,
    ];
    let toml = ["[routing]\nsticky = true\n".to_owned()]
        .into_iter()
        .chain(mocks.iter().enumerate().map(|(i, m)| entry(&format!("b{i}"), m, &["mock-model"], "")))
        .collect::<String>();
    let gw = Gateway::start(&toml).await;
    let mut messages = vec![serde_json::json!({"role": "user", "content": "tell me about rivers"})];
    for turn in 0..8 {
        let body = serde_json::json!({"model": "mock-model", "messages": messages});
        let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
        messages.push(serde_json::json!({"role": "assistant", "content": format!("answer {turn}")}));
        messages.push(serde_json::json!({"role": "user", "content": format!("and then {turn}?")}));
    }
    let counts: Vec<u64> = mocks.iter().map(requests).collect();
    assert!(counts.contains(&8), "all turns on one backend: {counts:?}");
}

/// Waits (within [`SOON`]) until `/metrics`, read with API key `key`, shows `needle`.
async fn metrics_show(gw: &Gateway, key: &str, needle: &str) {
    let read = || async {
        let r = client().get(gw.url("/metrics")).bearer_auth(key).send().await.unwrap();
        r.text().await.unwrap()
    };
    let wait = async {
        while !read().await.contains(needle) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(SOON, wait).await.unwrap_or_else(|_| panic!("metrics never showed {needle}"));
}

#[tokio::test]
async fn an_interactive_key_overtakes_a_batch_key_in_the_queue() {
    let (interactive, batch) = ("key-interactive", "key-batch");
    let hash = sluice_server::auth::hash_key;
    let (pace, gate) = Pace::manual();
    let m = mock(MockConfig { pace, ..Default::default() }).await;
    let toml = [
        format!(
            "[auth]\napi_key_sha256 = [\"{}\", \"{}\"]\n[routing.priority]\nclasses = [\"interactive\", \"batch\"]\ndefault_class = \"interactive\"\nkeys = {{ \"{}\" = \"batch\" }}\n",
            hash(interactive),
            hash(batch),
            hash(batch)
        ),
        "[[models]]\nname = \"mock-model\"\nmax_concurrency = 1\nmax_queue = 8\nmax_queue_wait = \"30s\"\n"
            .to_owned(),
        entry("paced", &m, &["mock-model"], ""),
    ]
    .concat();
    let gw = Gateway::start(&toml).await;
    let send = |key: &'static str, content: &'static str| {
        let url = gw.url("/v1/chat/completions");
        tokio::spawn(async move {
            let r =
                client().post(url).bearer_auth(key).json(&chat_body(content, false)).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let running = send(interactive, "first");
    tokio::time::timeout(SOON, m.stats().wait_started(1)).await.expect("the first request holds the slot");
    let queued_batch = send(batch, "batch");
    metrics_show(&gw, interactive, "sluice_queue_depth{model=\"mock-model\"} 1").await;
    let queued_interactive = send(interactive, "interactive");
    metrics_show(&gw, interactive, "sluice_queue_depth{model=\"mock-model\"} 2").await;
    // The admin page sees the same queue, and no tokens yet.
    let admin: serde_json::Value = client()
        .get(gw.url("/admin/backends"))
        .bearer_auth(interactive)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["admission"], serde_json::json!([{"model": "mock-model", "running": 1, "queued": 2}]));
    assert_eq!(admin["backends"][0]["completion_tokens"], 0, "{admin}");
    assert_eq!(
        admin["backends"][0]["queued"],
        serde_json::Value::Null,
        "an HTTP upstream's queue is not visible"
    );

    // One slot: whoever gets it next reaches the upstream next, so the batch request,
    // queued first, must be the last request the upstream sees.
    gate.close();
    let mut tokens = 0;
    for task in [running, queued_interactive, queued_batch] {
        let (status, body) = tokio::time::timeout(SOON, task).await.expect("answered").unwrap();
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        tokens += body["usage"]["completion_tokens"].as_u64().expect("usage in the answer");
    }
    let admin: serde_json::Value = client()
        .get(gw.url("/admin/backends"))
        .bearer_auth(interactive)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens > 0);
    assert_eq!(admin["backends"][0]["completion_tokens"], tokens, "every answered token counted: {admin}");
    assert_eq!(admin["admission"][0]["queued"], 0);
    let last = m.stats().last().expect("the mock saw requests").body;
    assert_eq!(last["messages"][0]["content"], "batch", "the batch request went last: {last}");
    assert_eq!(requests(&m), 3);
}
