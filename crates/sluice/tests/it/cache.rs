//! Response cache and single-flight: which requests are cached, replays in every
//! format, `x-sluice-cache`, identical requests in flight sharing one upstream
//! generation, cancellation, and the Redis store against the real Redis on
//! 127.0.0.1:6379.

use serde_json::{Value, json};
use sluice_mock::{MockConfig, Pace};

use crate::util::*;

/// `f`, which must finish within [`SOON`].
async fn soon<F: IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(SOON, f.into_future()).await.expect("should finish at once")
}

/// An OpenAI chat body for `content` with `extra` fields merged in.
fn oa_chat(content: &str, stream: bool, extra: Value) -> Value {
    let mut body = chat_body(content, stream);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// An Ollama chat body for `content` with `options`.
fn ol_chat(content: &str, stream: bool, options: Value) -> Value {
    let mut body = ollama_chat_body(content, stream);
    body["options"] = options;
    body
}

async fn post(gw: &Gateway, path: &str, body: &Value, cache_control: Option<&str>) -> reqwest::Response {
    let mut req = client().post(gw.url(path)).json(body);
    if let Some(cc) = cache_control {
        req = req.header("cache-control", cc);
    }
    tokio::time::timeout(SOON, req.send()).await.expect("response head").unwrap()
}

fn cache_header(r: &reqwest::Response) -> String {
    r.headers().get("x-sluice-cache").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The answer text of an OpenAI chat response, streamed or whole; a stream must end
/// with `[DONE]`.
async fn oa_text(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    if resp.headers()["content-type"] == "text/event-stream" {
        let frames = Frames::sse(resp).rest().await;
        assert_eq!(frames.last().map(String::as_str), Some("[DONE]"), "{frames:?}");
        frames
            .iter()
            .filter(|f| *f != "[DONE]")
            .filter_map(|f| json(f)["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
            .collect()
    } else {
        let v: Value = soon(resp.json()).await.unwrap();
        v["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
    }
}

/// Posts an OpenAI chat and returns (x-sluice-cache, answer text).
async fn ask(gw: &Gateway, body: &Value, cache_control: Option<&str>) -> (String, String) {
    let resp = post(gw, "/v1/chat/completions", body, cache_control).await;
    (cache_header(&resp), oa_text(resp).await)
}

fn upstream_requests(mock: &sluice_mock::MockServer) -> u64 {
    mock.stats().snapshot().requests
}

async fn metrics(gw: &Gateway) -> String {
    soon(async { client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap() }).await
}

#[tokio::test]
async fn a_deterministic_answer_is_stored_once_and_replayed_in_every_format() {
    let mock = mock(MockConfig { tokens: 5, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let full = "t0 t1 t2 t3 t4 ";
    let t0 = json!({"temperature": 0});

    // Streamed first: a miss that goes upstream and is stored.
    let resp = post(&gw, "/v1/chat/completions", &oa_chat("q", true, t0.clone()), None).await;
    assert_eq!(cache_header(&resp), "miss");
    assert_eq!(oa_text(resp).await, full);

    // The same request, whole: replayed, with the stored usage.
    let resp = post(&gw, "/v1/chat/completions", &oa_chat("q", false, t0.clone()), None).await;
    assert_eq!(cache_header(&resp), "hit");
    let v: Value = soon(resp.json()).await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], full);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 5);

    // Streamed again, with usage: every chunk as a live stream has it.
    let resp = post(&gw, "/v1/chat/completions", &oa_chat("q", true, t0.clone()), None).await;
    assert_eq!(cache_header(&resp), "hit");
    let frames = Frames::sse(resp).rest().await;
    assert_eq!(frames.len(), 5 + 3, "5 deltas, finish, usage, [DONE]: {frames:?}");
    assert_eq!(json(&frames[0])["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(json(&frames[6])["usage"]["total_tokens"], 6);

    // The Ollama dialect gets the stored answer as NDJSON, and whole.
    let resp = post(&gw, "/api/chat", &ol_chat("q", true, t0.clone()), None).await;
    assert_eq!(cache_header(&resp), "hit");
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = Frames::ndjson(resp).rest().await.iter().map(|l| json(l)).collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    let text: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert_eq!(text, full);
    assert_eq!((lines[5]["done"].clone(), lines[5]["eval_count"].clone()), (json!(true), json!(5)));
    let resp = post(&gw, "/api/chat", &ol_chat("q", false, t0.clone()), None).await;
    assert_eq!(cache_header(&resp), "hit");
    let v: Value = soon(resp.json()).await.unwrap();
    assert_eq!(v["message"]["content"], full);

    assert_eq!(upstream_requests(&mock), 1, "one upstream request for five answers");

    // A prompt completion is another request than a chat with the same text.
    let body = json!({"model": "mock-model", "prompt": "q", "temperature": 0});
    let resp = post(&gw, "/v1/completions", &body, None).await;
    assert_eq!(cache_header(&resp), "miss");
    soon(resp.text()).await.unwrap();
    // Ollama's generate is templated unless raw; raw, it is the same request.
    let generate = |raw: bool| json!({"model": "mock-model", "prompt": "q", "raw": raw, "stream": false, "options": {"temperature": 0}});
    let resp = post(&gw, "/api/generate", &generate(false), None).await;
    assert_eq!(cache_header(&resp), "miss");
    soon(resp.text()).await.unwrap();
    let resp = post(&gw, "/api/generate", &generate(true), None).await;
    assert_eq!(cache_header(&resp), "hit");
    assert_eq!(soon(resp.json::<Value>()).await.unwrap()["response"], full);
    assert_eq!(upstream_requests(&mock), 3);

    let m = metrics(&gw).await;
    for needle in [
        "sluice_cache_requests_total{result=\"hit\"} 5",
        "sluice_cache_requests_total{result=\"miss\"} 3",
        "sluice_cache_entries 3",
        "sluice_requests_total{route=\"/v1/chat/completions\",model=\"mock-model\",backend=\"cache\",status=\"200\"} 2",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

#[tokio::test]
async fn sampling_requests_are_cached_only_when_the_client_opts_in() {
    let mock = mock(MockConfig { tokens: 3, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let warm = oa_chat("q", true, json!({"temperature": 0.7}));
    assert_eq!(ask(&gw, &warm, None).await.0, "bypass");
    assert_eq!(ask(&gw, &warm, None).await.0, "bypass");
    assert_eq!(ask(&gw, &chat_body("q", false), None).await.0, "bypass", "no temperature: backend default");
    assert_eq!(upstream_requests(&mock), 3);

    assert_eq!(ask(&gw, &warm, Some("max-age=60")).await.0, "miss");
    assert_eq!(ask(&gw, &warm, Some("max-age=60")).await, ("hit".into(), "t0 t1 t2 ".into()));
    assert_eq!(ask(&gw, &warm, None).await.0, "bypass", "without the opt-in it still goes upstream");
    assert_eq!(upstream_requests(&mock), 5);

    let seeded = oa_chat("q", false, json!({"temperature": 0.9, "seed": 5}));
    assert_eq!(ask(&gw, &seeded, None).await.0, "miss");
    assert_eq!(ask(&gw, &seeded, None).await.0, "hit");
    let other_seed = oa_chat("q", false, json!({"temperature": 0.9, "seed": 6}));
    assert_eq!(ask(&gw, &other_seed, None).await.0, "miss");
    assert_eq!(upstream_requests(&mock), 7);
}

#[tokio::test]
async fn no_cache_generates_afresh_and_no_store_keeps_nothing() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let a = oa_chat("a", false, json!({"temperature": 0}));
    assert_eq!(ask(&gw, &a, None).await.0, "miss");
    assert_eq!(ask(&gw, &a, Some("no-cache")).await.0, "miss");
    assert_eq!(ask(&gw, &a, Some("max-age=0")).await.0, "miss");
    assert_eq!(ask(&gw, &a, None).await.0, "hit");
    assert_eq!(upstream_requests(&mock), 3);

    let b = oa_chat("b", false, json!({"temperature": 0}));
    assert_eq!(ask(&gw, &b, Some("no-store")).await.0, "miss");
    assert_eq!(ask(&gw, &b, None).await.0, "miss", "no-store kept nothing");
    assert_eq!(ask(&gw, &b, Some("no-store")).await.0, "hit", "no-store still reads");
    assert_eq!(upstream_requests(&mock), 5);

    let c = oa_chat("c", false, json!({"temperature": 0}));
    assert_eq!(ask(&gw, &c, Some("no-cache, no-store")).await.0, "bypass");
    assert_eq!(ask(&gw, &c, None).await.0, "miss");
    assert_eq!(upstream_requests(&mock), 7);
}

#[tokio::test]
async fn failures_are_never_cached() {
    let mock = mock(MockConfig { tokens: 5, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let refused = oa_chat("[mock mode=status:500]", false, json!({"temperature": 0}));
    for n in 1..=2 {
        let resp = post(&gw, "/v1/chat/completions", &refused, None).await;
        assert_eq!(resp.status(), 502);
        assert_eq!(upstream_requests(&mock), n);
    }
    let cut = oa_chat("[mock mode=drop_after:2]", true, json!({"temperature": 0}));
    for n in 3..=4 {
        let resp = post(&gw, "/v1/chat/completions", &cut, None).await;
        assert_eq!(cache_header(&resp), "miss");
        let frames = Frames::sse(resp).rest().await;
        assert!(json(frames.last().unwrap())["error"]["message"].is_string(), "{frames:?}");
        assert_eq!(upstream_requests(&mock), n, "a cut answer is asked for again");
    }
    let m = metrics(&gw).await;
    assert!(m.contains("sluice_cache_entries 0"), "{m}");
}

#[tokio::test]
async fn a_disabled_cache_sends_everything_upstream() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "[cache]\nenabled = false\n").await;
    let body = oa_chat("q", false, json!({"temperature": 0}));
    assert_eq!(ask(&gw, &body, Some("max-age=60")).await.0, "bypass");
    assert_eq!(ask(&gw, &body, None).await.0, "bypass");
    assert_eq!(upstream_requests(&mock), 2);
}

/// 100 identical requests in flight at once, in both dialects, streamed and whole:
/// one upstream generation, and every client gets the whole answer from its start.
#[tokio::test]
async fn identical_requests_in_flight_share_one_upstream_generation() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 8, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let full = "t0 t1 t2 t3 t4 t5 t6 t7 ";
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (path, body, url) = match i % 4 {
            0 => ("sse", oa_chat("same", true, json!({"temperature": 0})), gw.url("/v1/chat/completions")),
            1 => ("json", oa_chat("same", false, json!({"temperature": 0})), gw.url("/v1/chat/completions")),
            2 => ("ndjson", ol_chat("same", true, json!({"temperature": 0})), gw.url("/api/chat")),
            _ => ("ollama-json", ol_chat("same", false, json!({"temperature": 0})), gw.url("/api/chat")),
        };
        set.spawn(async move {
            let resp = client().post(url).json(&body).send().await.unwrap();
            let status = cache_header(&resp);
            let text = match path {
                "sse" | "json" => oa_text(resp).await,
                "ndjson" => {
                    let lines = Frames::ndjson(resp).rest().await;
                    assert_eq!(json(lines.last().unwrap())["done"], true);
                    lines
                        .iter()
                        .filter_map(|l| json(l)["message"]["content"].as_str().map(str::to_owned))
                        .collect()
                }
                _ => soon(resp.json::<Value>()).await.unwrap()["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            };
            (status, text)
        });
    }
    // Every request waits on the first token, which the upstream may not produce yet.
    tokio::time::timeout(SOON, gw.state.core.cache.flights.wait_joined(99))
        .await
        .expect("99 requests joined");
    assert_eq!(upstream_requests(&mock), 1);
    gate.close(); // release every token
    let answers = tokio::time::timeout(SOON, set.join_all()).await.expect("every client finishes");
    assert!(answers.iter().all(|(_, text)| text == full), "{answers:?}");
    let count = |s: &str| answers.iter().filter(|(status, _)| status == s).count();
    assert_eq!((count("miss"), count("shared")), (1, 99));
    let s = mock.stats().snapshot();
    assert_eq!((s.requests, s.streams_completed, s.streams_cancelled), (1, 1, 0));
    // Stored too: the next one is a hit.
    let body = oa_chat("same", false, json!({"temperature": 0}));
    assert_eq!(ask(&gw, &body, None).await, ("hit".into(), full.into()));
    assert!(metrics(&gw).await.contains("sluice_cache_requests_total{result=\"shared\"} 99"));
}

/// A request that joins a generation already streaming gets it from its first token,
/// then live.
#[tokio::test]
async fn a_late_joiner_gets_the_answer_from_its_start() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 4, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = oa_chat("q", true, json!({"temperature": 0}));
    gate.add_permits(2);
    let first = post(&gw, "/v1/chat/completions", &body, None).await;
    let mut first = Frames::sse(first);
    assert!(first.next_soon().await.unwrap().contains("t0 "));
    assert!(first.next_soon().await.unwrap().contains("t1 "));

    let late = post(&gw, "/v1/chat/completions", &body, None).await;
    assert_eq!(cache_header(&late), "shared");
    let mut late = Frames::sse(late);
    for k in 0..2 {
        let f = late.next_soon().await.unwrap();
        assert!(f.contains(&format!("t{k} ")), "replayed token {k}: {f}");
    }
    for k in 2..4 {
        gate.add_permits(1);
        for frames in [&mut first, &mut late] {
            let f = frames.next_soon().await.unwrap();
            assert!(f.contains(&format!("t{k} ")), "live token {k}: {f}");
        }
    }
    let (a, b) = (first.rest().await, late.rest().await);
    assert_eq!(a.len(), 3, "finish, usage, [DONE]: {a:?}");
    assert_eq!(b.len(), 3, "{b:?}");
    assert_eq!(upstream_requests(&mock), 1);
}

/// The client that started a shared generation leaves; the one that joined it still
/// gets every token, and the upstream is not cancelled.
#[tokio::test]
async fn a_client_leaving_a_shared_generation_leaves_the_others_alone() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 4, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = oa_chat("q", true, json!({"temperature": 0}));
    let leader = tokio::spawn(client().post(gw.url("/v1/chat/completions")).json(&body).send());
    tokio::time::timeout(SOON, mock.stats().wait_started(1)).await.unwrap();
    let follower = tokio::spawn(client().post(gw.url("/v1/chat/completions")).json(&body).send());
    tokio::time::timeout(SOON, gw.state.core.cache.flights.wait_joined(1))
        .await
        .expect("second request joined");
    gate.add_permits(1);
    let leader = tokio::time::timeout(SOON, leader).await.unwrap().unwrap().unwrap();
    let follower = tokio::time::timeout(SOON, follower).await.unwrap().unwrap().unwrap();
    assert_eq!((cache_header(&leader), cache_header(&follower)), ("miss".into(), "shared".into()));
    let mut leader = Frames::sse(leader);
    let mut follower = Frames::sse(follower);
    assert!(leader.next_soon().await.unwrap().contains("t0 "));
    assert!(follower.next_soon().await.unwrap().contains("t0 "));
    drop(leader);
    gate.add_permits(3);
    let rest = follower.rest().await;
    let text: String = rest
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "t1 t2 t3 ");
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"));
    tokio::time::timeout(SOON, mock.stats().wait_completed(1)).await.unwrap();
    assert_eq!(mock.stats().snapshot().streams_cancelled, 0);
}

/// When every client of a shared generation has left, before or after the first token,
/// the upstream request is cancelled, and the next identical request starts afresh.
#[tokio::test]
async fn when_every_client_leaves_the_upstream_request_is_cancelled() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 4, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = oa_chat("q", true, json!({"temperature": 0}));
    let send = || tokio::spawn(client().post(gw.url("/v1/chat/completions")).json(&body).send());

    // Both leave while waiting for the first token.
    let (a, b) = (send(), send());
    tokio::time::timeout(SOON, gw.state.core.cache.flights.wait_joined(1)).await.unwrap();
    a.abort();
    b.abort();
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(1)).await.expect("upstream cancelled");

    // Both leave mid-answer.
    let (a, b) = (send(), send());
    tokio::time::timeout(SOON, gw.state.core.cache.flights.wait_joined(2)).await.unwrap();
    gate.add_permits(1);
    let mut a = Frames::sse(tokio::time::timeout(SOON, a).await.unwrap().unwrap().unwrap());
    let mut b = Frames::sse(tokio::time::timeout(SOON, b).await.unwrap().unwrap().unwrap());
    assert!(a.next_soon().await.unwrap().contains("t0 "));
    assert!(b.next_soon().await.unwrap().contains("t0 "));
    drop(a);
    gate.add_permits(1);
    assert!(b.next_soon().await.unwrap().contains("t1 "), "one client left: the upstream goes on");
    drop(b);
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(2)).await.expect("upstream cancelled");

    // Nothing was stored and no flight is left open: the next request starts afresh.
    gate.close();
    assert_eq!(ask(&gw, &body, None).await, ("miss".into(), "t0 t1 t2 t3 ".into()));
    assert_eq!(upstream_requests(&mock), 3);
}

/// A per-run key prefix, so runs never see each other's entries; the entries expire by
/// themselves, and the test deletes them.
fn redis_toml(url: &str) -> (String, String) {
    let prefix = format!("sluice-test:{}:", uuid::Uuid::new_v4().simple());
    let toml = format!(
        "[cache]\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\nttl = \"30s\"\nredis_timeout = \"2s\"\n"
    );
    (prefix, toml)
}

async fn redis_keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    soon(redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(conn)).await.unwrap()
}

#[tokio::test]
async fn the_redis_store_shares_answers_between_gateways() {
    let url = "redis://127.0.0.1:6379";
    let mut conn =
        tokio::time::timeout(SOON, redis::Client::open(url).unwrap().get_multiplexed_async_connection())
            .await
            .expect("Redis answers on 127.0.0.1:6379")
            .expect("Redis runs on 127.0.0.1:6379");
    let mock = mock(MockConfig { tokens: 3, ..Default::default() }).await;
    let (prefix, toml) = redis_toml(url);
    let one = Gateway::over(&mock, "openai", &toml).await;
    let two = Gateway::over(&mock, "ollama", &toml).await;
    let body = oa_chat("shared between replicas", true, json!({"seed": 1}));
    assert_eq!(ask(&one, &body, None).await, ("miss".into(), "t0 t1 t2 ".into()));

    let keys = redis_keys(&mut conn, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl_ms: i64 = soon(redis::cmd("PTTL").arg(&keys[0]).query_async(&mut conn)).await.unwrap();
    assert!((1..=30_000).contains(&ttl_ms), "expires with the TTL: {ttl_ms}");

    // The other replica replays it, in its clients' format.
    assert_eq!(
        ask(&two, &oa_chat("shared between replicas", false, json!({"seed": 1})), None).await.0,
        "hit"
    );
    let resp =
        post(&two, "/api/chat", &ol_chat("shared between replicas", true, json!({"seed": 1})), None).await;
    assert_eq!(cache_header(&resp), "hit");
    let lines = Frames::ndjson(resp).rest().await;
    assert_eq!(lines.len(), 4);
    assert_eq!(upstream_requests(&mock), 1);

    // A value Sluice cannot read is a miss, never an error.
    let _: () = soon(redis::cmd("SET").arg(&keys[0]).arg("garbage").query_async(&mut conn)).await.unwrap();
    assert_eq!(ask(&two, &body, None).await.0, "miss");
    assert_eq!(upstream_requests(&mock), 2);

    let ours = redis_keys(&mut conn, &prefix).await;
    let _: () = soon(redis::cmd("DEL").arg(ours).query_async(&mut conn)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_a_miss_not_a_failure() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    // Nothing listens on port 1: every connection is refused at once.
    let (_, toml) = redis_toml("redis://127.0.0.1:1");
    let gw = Gateway::over(&mock, "openai", &toml).await;
    let body = oa_chat("q", true, json!({"temperature": 0}));
    assert_eq!(ask(&gw, &body, None).await, ("miss".into(), "t0 t1 ".into()));
    assert_eq!(ask(&gw, &body, None).await, ("miss".into(), "t0 t1 ".into()));
    assert_eq!(upstream_requests(&mock), 2);
    let m = metrics(&gw).await;
    assert!(m.contains("sluice_cache_store_errors_total{op=\"get\",kind=\"error\"}"), "{m}");
}
