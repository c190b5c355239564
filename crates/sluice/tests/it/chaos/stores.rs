//! The stores behind the gateway fail: Redis (the shared cache) dies and comes back
//! under load; the Postgres store is down when the gateway starts, then comes back.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use sluice_mock::MockConfig;
use sluice_store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

use super::{harness::*, postgres::PrivatePostgres};
use crate::util::*;

/// What the load saw.
#[derive(Debug, Default)]
struct Seen {
    hits: u64,
    misses: u64,
    failures: Vec<String>,
}

/// One cacheable request (temperature 0) out of eight, whole or streamed; every
/// answer must be complete and right.
async fn ask(base: &str, i: u64, seen: &Mutex<Seen>) {
    let content = format!("question {}", i % 8);
    let streamed = i % 2 == 1;
    let body = json!({"model": "mock-model", "messages": [{"role": "user", "content": content}], "temperature": 0, "stream": streamed});
    let send = client().post(format!("{base}/v1/chat/completions")).json(&body).send();
    let result = match tokio::time::timeout(SOON, send).await {
        Err(_) => Err("no answer in time".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(resp)) if resp.status() != 200 => Err(format!("status {}", resp.status())),
        Ok(Ok(resp)) => {
            let cache = resp.headers().get("x-sluice-cache").map(|v| v.to_str().unwrap().to_owned());
            let text = tokio::time::timeout(SOON, resp.text()).await.map_err(|_| "body in time".to_owned());
            match text.and_then(|t| t.map_err(|e| e.to_string())) {
                Ok(t) if streamed && !(t.contains("t3 ") && t.trim_end().ends_with("data: [DONE]")) => {
                    Err(format!("incomplete stream: {t}"))
                }
                Ok(t) if !streamed && json_text(&t) != "t0 t1 t2 t3 " => Err(format!("wrong answer: {t}")),
                Ok(_) => Ok(cache),
                Err(e) => Err(e),
            }
        }
    };
    let mut seen = seen.lock().unwrap();
    match result {
        Ok(Some(c)) if c == "hit" => seen.hits += 1,
        Ok(_) => seen.misses += 1,
        Err(e) => seen.failures.push(e),
    }
}

fn json_text(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned()
}

/// Redis, the gateway's cache store, is SIGKILLed while four clients keep asking
/// cacheable questions, then started again on its port (empty). Throughout, every
/// answer is complete and right: Redis down costs cache misses (counted as store
/// errors), never a client error; once it is back, answers are replayed from it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_costs_cache_misses_only() {
    let upstream = mock(MockConfig { tokens: 4, ..Default::default() }).await;
    let redis = PrivateRedis::start(0).await;
    let port = redis.port;
    let toml = format!(
        "[cache]\nredis_url = \"redis://127.0.0.1:{port}\"\nredis_timeout = \"200ms\"\n[store]\nurl = \"sqlite::memory:\"\n{}",
        backend_toml("mock", "openai", &upstream, "")
    );
    let gw = ServeProc::start(&toml).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = CancellationToken::new();
    let load: Vec<_> = (0..4u64)
        .map(|client| {
            let (base, seen, stop) = (gw.base.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = client;
                while !stop.is_cancelled() {
                    ask(&base, i, &seen).await;
                    i += 4;
                }
            })
        })
        .collect();
    let hits = || seen.lock().unwrap().hits;
    let misses = || seen.lock().unwrap().misses;
    until("answers are replayed from Redis", START, || async { hits() > 0 }).await;

    redis.proc.kill().await;
    let before = misses();
    until("the gateway counts Redis failing", SOON, || async {
        gw.metric("sluice_cache_store_errors_total", None).await > 0.0
    })
    .await;
    until("the load goes on while Redis is down", SOON, || async { misses() >= before + 20 }).await;

    let _redis = PrivateRedis::start(port).await;
    let hits_before = hits();
    until("answers are replayed from Redis again", Duration::from_secs(15), || async {
        hits() > hits_before
    })
    .await;
    stop.cancel();
    for task in load {
        task.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(seen.failures.is_empty(), "client errors: {:?}", seen.failures);
}

/// The store (Postgres) is down when the gateway starts: the gateway serves its local
/// backend meanwhile (with the configured service key), an agent is refused with the
/// retryable `unavailable` and keeps trying; once Postgres is back, the agent connects
/// and its model is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_at_start_leaves_local_backends_serving_and_agents_retrying() {
    let pg = match PrivatePostgres::init() {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("SKIPPED: no private Postgres cluster can be made here: {why}");
            return;
        }
    };
    // The agent's token is made while the store is up.
    pg.start();
    let store = Store::new(&StoreConfig { url: Some(pg.url()) });
    let (_, token) = store.create_agent_token("chaos").await.unwrap();
    drop(store);
    pg.stop();

    let local = mock(MockConfig::default()).await;
    let remote = mock(MockConfig { models: vec!["agent-model".into()], ..Default::default() }).await;
    let key = "sk-chaos-service-key";
    let toml = format!(
        "[auth]\napi_key_sha256 = [\"{}\"]\n[store]\nurl = \"{}\"\n[agents]\nheartbeat = \"200ms\"\ndead_after = \"1s\"\n{}",
        sluice_server::auth::hash_key(key),
        pg.url(),
        backend_toml("local", "openai", &local, "")
    );
    let gw = ServeProc::start(&toml).await;
    let s = Stream::open(&gw.base, Dialect::OpenAi, "while the store is down", Some(key)).await;
    assert_eq!(s.outcome(SOON).await, Outcome::Complete);

    let mut agent = agent(&gw.base, &token, &format!("openai={}", remote.openai_base()));
    until("the agent is refused as unavailable", Duration::from_secs(20), || async {
        gw.metric("sluice_agent_refused_total{code=\"unavailable\"}", Some(key)).await > 0.0
    })
    .await;
    assert!(agent.running(), "a retryable refusal: the agent keeps trying");
    let s = Stream::open(&gw.base, Dialect::Ollama, "still serving", Some(key)).await;
    assert_eq!(s.outcome(SOON).await, Outcome::Complete);

    pg.start();
    until("the agent connects once the store is back", Duration::from_secs(30), || async {
        gw.metric("sluice_agents_connected", Some(key)).await == 1.0
    })
    .await;
    let body = json!({"model": "agent-model", "messages": [{"role": "user", "content": "hi"}]});
    let resp =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    agent.kill().await;
}
