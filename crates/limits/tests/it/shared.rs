//! Limits shared through Redis: the server at 127.0.0.1:6379 (each test under its own
//! key prefix), and private `redis-server` instances this file starts and kills to
//! test the fallback. Real time: Redis' `TIME` cannot be paused, so the rates used
//! here take seconds to drain while each test takes milliseconds.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sluice_limits::{LimitKind, LimitSpec, Limiter, LimitsConfig, ManualClock, Subject, SystemClock};

use crate::{NOV30_NOON, header};

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A prefix no other test (or earlier run) uses.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("test:limits:{test}:{}:{nanos}:", std::process::id())
}

fn shared_config(url: &str, prefix: &str) -> LimitsConfig {
    LimitsConfig {
        redis_url: Some(url.to_owned()),
        redis_prefix: prefix.to_owned(),
        // Generous: the machine is shared with other builds; a timeout would fall back.
        redis_timeout_ms: 2000,
        ..LimitsConfig::default()
    }
}

async fn delete_prefix(prefix: &str) {
    let client = redis::Client::open(SHARED_REDIS).expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis at 127.0.0.1:6379");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.expect("DEL");
    }
}

#[tokio::test]
async fn two_replicas_share_rates_and_quotas() {
    let prefix = unique_prefix("share");
    let a = Limiter::new(shared_config(SHARED_REDIS, &prefix), Arc::new(SystemClock)).expect("url");
    let b = Limiter::new(shared_config(SHARED_REDIS, &prefix), Arc::new(SystemClock)).expect("url");
    let key = Subject::key("shared");
    let spec = LimitSpec { rpm: Some(4), daily_tokens: Some(100), ..LimitSpec::default() };

    let first = a.admit(&[(key.clone(), &spec)], 60).await.expect("1 of 4");
    assert_eq!(header(first.headers(), "x-ratelimit-remaining-requests").as_deref(), Some("3"));
    let quota = b.admit(&[(key.clone(), &spec)], 60).await.expect_err("60 + 60 > 100 tokens today");
    assert_eq!(quota.limit, LimitKind::DailyTokens);
    first.complete(30).await; // 30 used, on both replicas
    let second = b.admit(&[(key.clone(), &spec)], 60).await.expect("30 + 60 <= 100; 2 of 4");
    assert_eq!(header(second.headers(), "x-ratelimit-remaining-requests").as_deref(), Some("2"));
    drop(a.admit(&[(key.clone(), &spec)], 0).await.expect("3 of 4"));
    drop(b.admit(&[(key.clone(), &spec)], 0).await.expect("4 of 4"));
    for l in [&a, &b] {
        let r = l.admit(&[(key.clone(), &spec)], 0).await.expect_err("budget shared and spent");
        assert_eq!(r.limit, LimitKind::Rpm);
        // One request per 15 s; a few ms have passed.
        assert!(r.retry_after > Duration::from_secs(14) && r.retry_after <= Duration::from_secs(15), "{r:?}");
        assert_eq!(header(&r.headers, "retry-after").as_deref(), Some("15"));
    }

    // Usage seeded on one replica (after a restart) counts on the other.
    let seeded = Subject::key("seeded");
    a.seed_usage(&seeded, 90, 90).await;
    let r = b.admit(&[(seeded.clone(), &spec)], 20).await.expect_err("90 + 20 > 100");
    assert_eq!(r.limit, LimitKind::DailyTokens);
    drop(b.admit(&[(seeded, &spec)], 10).await.expect("90 + 10 <= 100"));

    assert!(!a.fallback_active() && !b.fallback_active());
    assert_eq!(a.redis_errors_total() + b.redis_errors_total(), 0);
    delete_prefix(&prefix).await;
}

/// A `redis-server` of this test's own, on `port`, killed on drop.
struct PrivateRedis(Child);

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server on PATH");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        loop {
            let line = lines.next().expect("redis-server exited before it was ready").expect("utf-8 log");
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        PrivateRedis(child)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

#[tokio::test]
async fn falls_back_to_local_shares_and_returns_to_redis() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = PrivateRedis::start(port);
    let cfg = LimitsConfig { replicas: 2, ..shared_config(&url, &unique_prefix("fallback")) };
    let clock = Arc::new(ManualClock::new(NOV30_NOON));
    let limiter = Limiter::new(cfg, clock.clone()).expect("url");
    let key = Subject::key("fb");
    let spec = LimitSpec { rpm: Some(4), ..LimitSpec::default() };

    drop(limiter.admit(&[(key.clone(), &spec)], 0).await.expect("through Redis"));
    assert!(!limiter.fallback_active());
    drop(server);

    // Redis gone: this replica enforces half of 4 per minute alone.
    drop(limiter.admit(&[(key.clone(), &spec)], 0).await.expect("local 1 of 2"));
    assert!(limiter.fallback_active());
    assert_eq!((limiter.fallbacks_total(), limiter.redis_errors_total()), (1, 1));
    drop(limiter.admit(&[(key.clone(), &spec)], 0).await.expect("local 2 of 2"));
    let r = limiter.admit(&[(key.clone(), &spec)], 0).await.expect_err("local share spent");
    assert_eq!(r.limit, LimitKind::Rpm);
    assert!(r.message.contains("2 requests per minute"), "{}", r.message);
    assert_eq!(limiter.redis_errors_total(), 1, "Redis is not retried within a second");

    // Back, but not retried until a second has passed on the clock.
    let _server = PrivateRedis::start(port);
    limiter.admit(&[(key.clone(), &spec)], 0).await.expect_err("still local");
    assert!(limiter.fallback_active());
    let mut tries = 0;
    while limiter.fallback_active() {
        tries += 1;
        assert!(tries <= 5, "Redis not used again after {tries} retries");
        clock.set(NOV30_NOON + tries * 1000);
        // The fresh Redis has no state for the key: admitted there.
        let _ = limiter.admit(&[(key.clone(), &spec)], 0).await;
    }
    assert_eq!(limiter.fallbacks_total(), 1);
    let shared = limiter.admit(&[(key.clone(), &spec)], 0).await.expect("Redis again");
    assert_eq!(header(shared.headers(), "x-ratelimit-limit-requests").as_deref(), Some("4"));
}

#[tokio::test]
async fn unreachable_redis_from_the_start() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let cfg = LimitsConfig { replicas: 3, redis_timeout_ms: 200, ..shared_config(&url, "unused:") };
    let limiter = Limiter::new(cfg, Arc::new(ManualClock::new(NOV30_NOON))).expect("url");
    // A third of 6 per minute: 2; streams are per replica anyway.
    let spec = LimitSpec { rpm: Some(6), max_streams: Some(1), ..LimitSpec::default() };
    let held = limiter.admit(&[(Subject::ip("10.0.0.1"), &spec)], 0).await.expect("local 1 of 2");
    assert!(limiter.fallback_active());
    assert_eq!(limiter.fallbacks_total(), 1);
    let r = limiter.admit(&[(Subject::ip("10.0.0.2"), &spec)], 0).await.expect("another address");
    drop(r);
    let streams = limiter.admit(&[(Subject::ip("10.0.0.1"), &spec)], 0).await.expect_err("stream held");
    assert_eq!(streams.limit, LimitKind::Streams);
    drop(held);
    drop(limiter.admit(&[(Subject::ip("10.0.0.1"), &spec)], 0).await.expect("local 2 of 2"));
    let rate = limiter.admit(&[(Subject::ip("10.0.0.1"), &spec)], 0).await.expect_err("2 per minute alone");
    assert_eq!(rate.limit, LimitKind::Rpm);
    assert!(rate.message.contains("for this address"), "{}", rate.message);
}

#[test]
fn bad_url_is_an_error() {
    let cfg = LimitsConfig { redis_url: Some("not a url".to_owned()), ..LimitsConfig::default() };
    let err = Limiter::new(cfg, Arc::new(SystemClock)).expect_err("bad url");
    assert!(err.to_string().contains("limits.redis_url"), "{err}");
}

#[tokio::test]
async fn cancelled_while_waiting_for_redis_releases_streams() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://{}", silent.local_addr().expect("addr"));
    let limiter = Limiter::new(shared_config(&url, "unused:"), Arc::new(SystemClock)).expect("url");
    let spec = LimitSpec { rpm: Some(10), ..LimitSpec::default() };
    let checks = [(Subject::key("c"), &spec)];
    let mut admit = Box::pin(limiter.admit(&checks, 0));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(admit.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "Redis never answers");
    assert_eq!(limiter.active_generations(), 1, "the stream is taken before Redis is asked");
    drop(admit);
    assert_eq!(limiter.active_generations(), 0);
    drop(silent);
}
