//! The in-memory store: a size-bounded moka cache (TinyLFU admission, LRU eviction)
//! whose entries also expire after the TTL.
//!
//! Expiry is checked against tokio's clock on every read, so it is exact and testable
//! with paused time; moka's own time-to-live (wall clock) only reclaims the memory of
//! entries nobody reads again. The entry and byte gauges follow every insert and
//! removal through moka's eviction listener.

use std::{sync::Arc, time::Duration};

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::{entry::Entry, key::Key, store::Found};

/// A stored answer and when it was stored.
struct Stored {
    entry: Entry,
    at: Instant,
    weight: u32,
}

/// Size- and TTL-bounded answers in this process.
pub struct MemoryStore {
    cache: moka::sync::Cache<Key, Arc<Stored>>,
    ttl: Duration,
    entries: Gauge,
    bytes: Gauge,
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of answers for `ttl` each, publishing its
    /// size to `entries` and `bytes`.
    pub fn new(max_bytes: u64, ttl: Duration, entries: Gauge, bytes: Gauge) -> MemoryStore {
        let (gone_entries, gone_bytes) = (entries.clone(), bytes.clone());
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &Key, v: &Arc<Stored>| v.weight)
            .time_to_live(ttl)
            .eviction_listener(move |_k, v: Arc<Stored>, _cause| {
                gone_entries.dec();
                gone_bytes.dec_by(i64::from(v.weight));
            })
            .build();
        MemoryStore { cache, ttl, entries, bytes }
    }

    /// The unexpired answer for `key`, with its age.
    pub fn get(&self, key: &Key) -> Option<Found> {
        let stored = self.cache.get(key)?;
        let age = stored.at.elapsed();
        if age >= self.ttl {
            self.cache.invalidate(key);
            return None;
        }
        Some(Found { entry: stored.entry.clone(), age })
    }

    /// Stores `entry` under `key`, replacing any older answer.
    pub fn put(&self, key: Key, entry: Entry) {
        let weight = entry.weight();
        self.entries.inc();
        self.bytes.inc_by(i64::from(weight));
        self.cache.insert(key, Arc::new(Stored { entry, at: Instant::now(), weight }));
    }

    /// Applies pending evictions now (moka defers them), so gauges and sizes are exact.
    pub fn settle(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cache::entry::sample_answer,
        chat::{ChatRequest, Sampling},
    };

    fn key(n: i64) -> Key {
        Key::of(&ChatRequest {
            sampling: Sampling { seed: Some(n), ..Sampling::default() },
            ..Default::default()
        })
    }

    fn store(max_bytes: u64) -> MemoryStore {
        MemoryStore::new(max_bytes, Duration::from_secs(60), Gauge::default(), Gauge::default())
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let s = store(1 << 20);
        let e = sample_answer(&["a"]);
        s.put(key(1), e.clone());
        tokio::time::advance(Duration::from_secs(59)).await;
        let found = s.get(&key(1)).expect("fresh entry");
        assert_eq!((found.entry, found.age), (e, Duration::from_secs(59)));
        assert!(s.get(&key(2)).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s.get(&key(1)).is_none(), "expired at the TTL");
        s.settle();
        assert_eq!((s.entries.get(), s.bytes.get()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn size_is_bounded_and_gauges_follow() {
        let e = sample_answer(&["0123456789"; 20]);
        let w = u64::from(e.weight());
        let s = store(w * 10);
        s.put(key(0), e.clone());
        s.settle();
        assert_eq!((s.entries.get(), s.bytes.get()), (1, w as i64));
        s.put(key(0), e.clone());
        s.settle();
        assert_eq!(s.entries.get(), 1, "a replaced entry is counted once");
        for n in 1..100 {
            s.put(key(n), e.clone());
            // Reading makes entries frequent enough for TinyLFU to admit newcomers.
            let _ = s.get(&key(n));
        }
        s.settle();
        assert!(s.cache.weighted_size() <= w * 10, "{} > {}", s.cache.weighted_size(), w * 10);
        assert_eq!(s.entries.get() as u64, s.cache.entry_count());
        assert_eq!(s.bytes.get() as u64, s.cache.weighted_size());
    }
}
