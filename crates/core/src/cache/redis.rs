//! The Redis store, for several gateway replicas sharing one cache.
//!
//! One multiplexed connection (redis' `ConnectionManager`, which reconnects by itself),
//! opened on first use. Values are the versioned bytes of [`Entry`], with Redis' own
//! expiry (`PX`) as the TTL. Every call runs under the configured deadline, and Redis
//! can only ever make a request slower by that much: a failure or a timeout is a cache
//! miss (or an answer not stored), counted in `sluice_cache_store_errors_total` and
//! logged, and Redis is then left alone for [`PAUSE_AFTER_FAILURE`] so that a dead
//! Redis costs nothing per request.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::metrics::{counter::Counter, family::Family};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::{sync::OnceCell, time::Instant};

use super::{entry::Entry, key::Key, store::Found};
use crate::metrics::CacheStoreErrorLabels;

/// How long Redis is skipped after a failed call.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Answers kept in Redis.
pub struct RedisStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    paused_until: Mutex<Option<Instant>>,
    errors: Family<CacheStoreErrorLabels, Counter>,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

impl RedisStore {
    /// A store at `url` (not contacted until first use).
    pub fn new(
        url: &str,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
        errors: Family<CacheStoreErrorLabels, Counter>,
    ) -> redis::RedisResult<RedisStore> {
        Ok(RedisStore {
            client: redis::Client::open(url)?,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
            ttl,
            timeout,
            paused_until: Mutex::new(None),
            errors,
        })
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    /// The stored answer for `key`, with its age; `None` on a miss or any failure.
    pub async fn get(&self, key: &Key) -> Option<Found> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        let bytes = self.call::<Option<Vec<u8>>>("get", cmd).await??;
        let Some((entry, at)) = Entry::from_bytes(&bytes) else {
            tracing::warn!(key = %self.redis_key(key), "cache value in Redis is unreadable; ignored");
            return None;
        };
        Some(Found { entry, age: Duration::from_millis(unix_ms().saturating_sub(at)) })
    }

    /// Stores `entry` under `key` for the TTL; a failure only loses the entry.
    pub async fn put(&self, key: &Key, entry: &Entry) {
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key)).arg(entry.to_bytes(unix_ms())).arg("PX").arg(ttl_ms);
        let _: Option<()> = self.call("put", cmd).await;
    }

    /// Runs `cmd` under the deadline; `None` when Redis is paused, failed or was slow.
    async fn call<T: redis::FromRedisValue>(&self, op: &'static str, cmd: redis::Cmd) -> Option<T> {
        if self.paused() {
            self.count(op, "skipped");
            return None;
        }
        let attempt = async {
            let conn = self
                .conn
                .get_or_try_init(|| async {
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_number_of_retries(1);
                    ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
                })
                .await?;
            cmd.query_async::<T>(&mut conn.clone()).await
        };
        let (kind, detail) = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => ("error", e.to_string()),
            Err(_) => ("timeout", format!("no answer within {:?}", self.timeout)),
        };
        self.count(op, kind);
        self.pause();
        tracing::warn!(op, error = %detail, pause = ?PAUSE_AFTER_FAILURE, "Redis cache unavailable; answering without it");
        None
    }

    fn count(&self, op: &'static str, kind: &'static str) {
        self.errors.get_or_create(&CacheStoreErrorLabels { op: op.to_owned(), kind: kind.to_owned() }).inc();
    }

    fn paused(&self) -> bool {
        let guard = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some_and(|until| Instant::now() < until)
    }

    fn pause(&self) {
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + PAUSE_AFTER_FAILURE);
    }
}
