//! Two replicas, one truth: two gateways (each with its own listener, directory and
//! limiter, in this process) share one Postgres schema and one private Redis. A key
//! revoked through one is refused by the other within a second; a key's rate limit is
//! one budget across both; with Redis killed, both fall back to their share of the
//! limits and say so in `/metrics`.

use std::{process::Stdio, time::Duration};

use sluice_store::{NewApiKey, api_keys::Limits};
use sqlx::Connection as _;

use crate::util::*;

/// A `redis-server` of the test's own on a free port, killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        let up = async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(SOON, up).await.expect("redis-server listens");
        PrivateRedis { child, port }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chat_with(gw: &Gateway, key: &str) -> u16 {
    let send =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(key).json(&chat_body("hi", false)).send();
    let resp = tokio::time::timeout(SOON, send).await.expect("answered in time").unwrap();
    resp.status().as_u16()
}

/// Waits (within `limit`) until `gw` answers a chat with `key` by `want`, checking
/// again at each reload of its directory.
async fn until_status(gw: &Gateway, key: &str, want: u16, limit: Duration) {
    let mut reloads = gw.state.directory.reloads();
    let wait = async {
        while chat_with(gw, key).await != want {
            reloads.changed().await.unwrap();
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| panic!("not {want} within {limit:?}"));
}

async fn metrics(gw: &Gateway, key: &str) -> String {
    client().get(gw.url("/metrics")).bearer_auth(key).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn two_replicas_share_revocations_and_limits_and_fall_back_together() {
    let base = std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("Postgres for tests is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    let pg = format!("{base}?options=-c%20search_path%3D{schema}");
    let redis = PrivateRedis::start().await;
    let mock = mock(sluice_mock::MockConfig::default()).await;
    let extra = format!(
        "[store]\nurl = \"{pg}\"\n[limits]\nredis_url = \"redis://127.0.0.1:{}\"\nreplicas = 2\n",
        redis.port
    );
    let toml = backend_toml("mock", "openai", &mock, &extra);
    let (a, b) = (Gateway::start(&toml).await, Gateway::start(&toml).await);

    // A key made on A, with 3 requests a minute, works on B as soon as B hears of it.
    let ann = a.state.store.create_user("ann", "a long password", false).await.unwrap();
    let new = |name: &str, rpm| NewApiKey {
        user_id: ann.id.clone(),
        name: name.into(),
        models: None,
        limits: Limits { rpm: Some(rpm), ..Default::default() },
        expires_at: None,
    };
    let (key, secret) = a.state.store.create_api_key(&new("shared", 3)).await.unwrap();
    a.state.directory.reload().await.unwrap();
    until_status(&b, &secret, 200, Duration::from_secs(1)).await;
    // That was one of the 3; two more anywhere, then both refuse.
    assert_eq!(chat_with(&a, &secret).await, 200);
    assert_eq!(chat_with(&b, &secret).await, 200);
    assert_eq!(chat_with(&a, &secret).await, 429, "one budget across both replicas");
    assert_eq!(chat_with(&b, &secret).await, 429);

    // Revoked through A: B refuses it within a second (Postgres NOTIFY, no polling).
    assert!(a.state.store.revoke_api_key(&key.id, None).await.unwrap());
    until_status(&b, &secret, 401, Duration::from_secs(1)).await;

    // Redis dies: each replica enforces half of a 4-a-minute key on its own, and says so.
    let (_, other) = a.state.store.create_api_key(&new("after", 4)).await.unwrap();
    a.state.directory.reload().await.unwrap();
    until_status(&b, &other, 200, Duration::from_secs(1)).await;
    drop(redis);
    assert_eq!(chat_with(&a, &other).await, 200);
    assert_eq!(chat_with(&b, &other).await, 200);
    for gw in [&a, &b] {
        let text = metrics(gw, &other).await;
        assert!(text.contains("sluice_limits_redis_fallback 1\n"), "{text}");
    }
    assert_eq!(chat_with(&a, &other).await, 200, "A's share: 2");
    assert_eq!(chat_with(&a, &other).await, 429, "A alone allows 4 / 2 replicas");
    assert_eq!(chat_with(&b, &other).await, 200, "B's share: 2");
    assert_eq!(chat_with(&b, &other).await, 429);

    // Both stop (their usage writers drain) before the schema goes.
    for gw in [a, b] {
        gw.state.core.shutdown.cancel();
        let _ = tokio::time::timeout(SOON, gw.task).await.expect("the gateway stops");
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
}
