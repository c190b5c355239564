//! Every subject's counters on this replica: a sharded map from [`Subject`] to a small
//! `Mutex`-guarded state, so that admissions of different subjects never wait on each
//! other and a map lookup takes only a shard's read lock.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use crate::config::Subject;

const SHARDS: usize = 64;

/// One quota's usage within its period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QuotaUse {
    /// The period the numbers belong to (`clock::Period::index`).
    pub period: u64,
    /// Tokens used, as this replica knows it.
    pub used: u64,
    /// The shared usage last read from Redis (or seeded): while this replica counts
    /// alone, it may use only its share of what remained above this.
    pub seen: u64,
}

impl QuotaUse {
    /// The usage in `period`, starting from zero when a new period has begun.
    pub fn rolled(self, period: u64) -> QuotaUse {
        if self.period == period { self } else { QuotaUse { period, used: 0, seen: 0 } }
    }
}

/// One subject's numbers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    /// GCRA theoretical arrival time of requests (ns since the limiter's start).
    pub rpm_tat: u64,
    /// GCRA theoretical arrival time of tokens.
    pub tpm_tat: u64,
    /// Generations in flight on this replica.
    pub streams: u32,
    /// Tokens today.
    pub day: QuotaUse,
    /// Tokens this month.
    pub month: QuotaUse,
}

/// A subject's state; admissions hold an `Arc` to it so a forgotten subject's
/// streams are still released into the state they were taken from.
#[derive(Debug, Default)]
pub(crate) struct SubjectState {
    counters: Mutex<Counters>,
}

impl SubjectState {
    /// Locks the counters. A panic while they were held cannot leave them half
    /// written (every update is one assignment of a copy), so poison is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Shard = RwLock<HashMap<Subject, Arc<SubjectState>>>;

/// The subjects of this replica.
#[derive(Debug)]
pub(crate) struct Table {
    hasher: RandomState,
    shards: Box<[Shard]>,
}

impl Default for Table {
    fn default() -> Self {
        Table { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }
}

impl Table {
    /// The state of `subject`, created empty on first use.
    pub fn get(&self, subject: &Subject) -> Arc<SubjectState> {
        let shard = self.shard(subject);
        if let Some(state) = read(shard).get(subject) {
            return Arc::clone(state);
        }
        Arc::clone(write(shard).entry(subject.clone()).or_default())
    }

    /// Drops `subject`'s state (admissions in flight keep theirs alive until they end).
    pub fn remove(&self, subject: &Subject) {
        write(self.shard(subject)).remove(subject);
    }

    /// How many subjects have state.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    fn shard(&self, subject: &Subject) -> &Shard {
        let h = self.hasher.hash_one(subject);
        &self.shards[(h as usize) % self.shards.len()]
    }
}

// The map is only ever changed by single insert/remove calls, so a poisoned lock still
// guards a consistent map.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_subject_same_state_until_removed() {
        let t = Table::default();
        let a = t.get(&Subject::key("a"));
        a.lock().streams = 3;
        assert!(Arc::ptr_eq(&a, &t.get(&Subject::key("a"))));
        assert_eq!(t.len(), 1);
        t.remove(&Subject::key("a"));
        assert_eq!(t.get(&Subject::key("a")).lock().streams, 0);
    }

    #[test]
    fn quota_rolls_over() {
        let q = QuotaUse { period: 5, used: 10, seen: 4 };
        assert_eq!(q.rolled(5), q);
        assert_eq!(q.rolled(6), QuotaUse { period: 6, used: 0, seen: 0 });
    }
}
