//! Where answers are kept: in this process (the default) or in Redis (shared by
//! replicas). Both answer a lookup with the entry and its age.

use std::time::Duration;

use super::{entry::Entry, key::Key, memory::MemoryStore, redis::RedisStore};

/// A stored answer and how long ago it was stored.
#[derive(Debug, Clone)]
pub struct Found {
    /// The answer.
    pub entry: Entry,
    /// Time since it was stored.
    pub age: Duration,
}

/// The configured store.
pub enum Store {
    /// In-process, size- and TTL-bounded.
    Memory(MemoryStore),
    /// Redis, shared between replicas.
    Redis(Box<RedisStore>),
}

impl Store {
    /// The stored answer for `key`, if any (a store failure is a miss).
    pub async fn get(&self, key: &Key) -> Option<Found> {
        match self {
            Store::Memory(m) => m.get(key),
            Store::Redis(r) => r.get(key).await,
        }
    }

    /// Stores `entry` under `key` (a store failure only loses the entry).
    pub async fn put(&self, key: Key, entry: Entry) {
        match self {
            Store::Memory(m) => m.put(key, entry),
            Store::Redis(r) => r.put(&key, &entry).await,
        }
    }
}
