//! Two replicas, one truth: two `sluice serve` processes share one Postgres schema and
//! one private Redis. A key revoked through the store is refused by both within a
//! second; a key's rate limit is one budget across both; with Redis killed, both fall
//! back to their share of the limits and say so in `/metrics`.

use std::{process::Stdio, time::Duration};

use sluice_store::{NewApiKey, Store, StoreConfig, api_keys::Limits};
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

/// A `sluice serve` process on a free port, killed on drop.
struct Replica {
    child: tokio::process::Child,
    base: String,
}

impl Replica {
    async fn start(config: &std::path::Path) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(config)
            .env("SLUICE_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let up = async {
            while client().get(format!("{base}/healthz")).send().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), up).await.expect("sluice serve listens");
        Replica { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits for the graceful exit (usage drained).
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(status.expect("the replica exits").unwrap().success(), "a clean exit");
    }
}

async fn chat_with(gw: &Replica, key: &str) -> u16 {
    let send =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(key).json(&chat_body("hi", false)).send();
    let resp = tokio::time::timeout(SOON, send).await.expect("answered in time").unwrap();
    resp.status().as_u16()
}

/// Checks, until `limit` has passed, whether `gw` answers a chat with `key` by `want`
/// (another process: nothing to wait on but its answers).
async fn until_status(gw: &Replica, key: &str, want: u16, limit: Duration) {
    let wait = async {
        while chat_with(gw, key).await != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| panic!("not {want} within {limit:?}"));
}

async fn metrics(gw: &Replica, key: &str) -> String {
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
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, backend_toml("mock", "openai", &mock, &extra)).unwrap();
    // The store the admin works on: the same schema, from this process.
    let store = Store::new(&StoreConfig { url: Some(pg.clone()) });
    let ann = store.create_user("ann", "a long password", false).await.unwrap();
    let (a, b) = (Replica::start(&config).await, Replica::start(&config).await);

    // A key made in the store, with 3 requests a minute, works on both once they hear.
    let new = |name: &str, rpm| NewApiKey {
        user_id: ann.id.clone(),
        name: name.into(),
        models: None,
        limits: Limits { rpm: Some(rpm), ..Default::default() },
        expires_at: None,
    };
    let (key, secret) = store.create_api_key(&new("shared", 3)).await.unwrap();
    until_status(&a, &secret, 200, Duration::from_secs(1)).await;
    // That was one of the 3 (B hears of the key as fast: its first 200 is the second).
    until_status(&b, &secret, 200, Duration::from_secs(1)).await;
    assert_eq!(chat_with(&a, &secret).await, 200, "the third");
    assert_eq!(chat_with(&a, &secret).await, 429, "one budget across both replicas");
    assert_eq!(chat_with(&b, &secret).await, 429);

    // Revoked in the store: both refuse it within a second (Postgres NOTIFY).
    assert!(store.revoke_api_key(&key.id, None).await.unwrap());
    until_status(&a, &secret, 401, Duration::from_secs(1)).await;
    until_status(&b, &secret, 401, Duration::from_secs(1)).await;

    // A disabled user is refused by both within a second too.
    let bob = store.create_user("bob", "a long password", false).await.unwrap();
    let (_, bobs) =
        store.create_api_key(&NewApiKey { user_id: bob.id.clone(), ..new("bob", 100) }).await.unwrap();
    until_status(&b, &bobs, 200, Duration::from_secs(1)).await;
    assert!(store.set_user_disabled(&bob.id, true).await.unwrap());
    until_status(&a, &bobs, 401, Duration::from_secs(1)).await;
    until_status(&b, &bobs, 401, Duration::from_secs(1)).await;

    // Redis dies: each replica enforces half of a 4-a-minute key on its own, and says so.
    let (_, other) = store.create_api_key(&new("after", 4)).await.unwrap();
    until_status(&a, &other, 200, Duration::from_secs(1)).await;
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
    a.stop().await;
    b.stop().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
}
