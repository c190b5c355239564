//! Every subject's counters on this replica: a sharded map from [`Subject`] to a small
//! `Mutex`-guarded state, so that admissions of different subjects never wait on each
//! other and a map lookup takes only a shard's read lock.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use crate::{clock::Period, config::Subject};

const SHARDS: usize = 64;

/// The two clocks: monotonic ns since the limiter started, and the calendar.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Monotonic, for rates.
    pub ns: u64,
    /// Calendar, for quotas.
    pub unix_ms: u64,
    /// `Period::Day.index(unix_ms)`.
    pub day: u64,
    /// `Period::Month.index(unix_ms)`.
    pub month: u64,
}

impl Now {
    /// The clocks at `ns` (monotonic) and `unix_ms` (calendar).
    pub fn new(ns: u64, unix_ms: u64) -> Now {
        Now { ns, unix_ms, day: Period::Day.index(unix_ms), month: Period::Month.index(unix_ms) }
    }
}

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

impl Counters {
    /// Whether forgetting these counters at `now` changes nothing: no stream, no rate
    /// backlog, no quota use in the current periods.
    fn idle(&self, now: Now) -> bool {
        self.streams == 0
            && self.rpm_tat <= now.ns
            && self.tpm_tat <= now.ns
            && (self.day.period != now.day || self.day.used == 0)
            && (self.month.period != now.month || self.month.used == 0)
    }
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

/// A [`Subject`] hashes itself once, when made; the maps take that hash as is.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called (see `Subject`'s `Hash`); fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<Subject, Arc<SubjectState>, BuildHasherDefault<Prehashed>>;

/// Idle subjects (e.g. client addresses seen once) are dropped when a shard grows
/// past twice its size after the last sweep, and never below this.
const SWEEP_FLOOR: usize = 256;

#[derive(Debug)]
struct ShardMap {
    map: Map,
    sweep_at: usize,
}

impl Default for ShardMap {
    fn default() -> Self {
        ShardMap { map: Map::default(), sweep_at: SWEEP_FLOOR }
    }
}

type Shard = RwLock<ShardMap>;

/// The subjects of this replica.
#[derive(Debug)]
pub(crate) struct Table {
    shards: Box<[Shard]>,
}

impl Default for Table {
    fn default() -> Self {
        Table { shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }
}

impl Table {
    /// The state of `subject`, created empty on first use (which may first sweep
    /// the idle subjects of its shard, amortised over the shard's growth).
    pub fn get(&self, subject: &Subject, now: Now) -> Arc<SubjectState> {
        let shard = self.shard(subject);
        if let Some(state) = read(shard).map.get(subject) {
            return Arc::clone(state);
        }
        let mut guard = write(shard);
        let shard = &mut *guard;
        if shard.map.len() >= shard.sweep_at && !shard.map.contains_key(subject) {
            // Held by no admission (the map's own reference only) and idle.
            shard.map.retain(|_, state| Arc::strong_count(state) > 1 || !state.lock().idle(now));
            shard.sweep_at = (2 * shard.map.len()).max(SWEEP_FLOOR);
        }
        Arc::clone(shard.map.entry(subject.clone()).or_default())
    }

    /// Drops `subject`'s state (admissions in flight keep theirs alive until they end).
    pub fn remove(&self, subject: &Subject) {
        write(self.shard(subject)).map.remove(subject);
    }

    /// How many subjects have state.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).map.len()).sum()
    }

    fn shard(&self, subject: &Subject) -> &Shard {
        // Bits the maps do not use: they index by the low bits and tag by the top seven.
        let h = subject.hash_value() >> 32;
        &self.shards[(h as usize) % self.shards.len()]
    }
}

// The map is only changed by std's insert/remove/retain, none of which panics halfway
// here (the `retain` predicate ignores poison), so a poisoned lock guards a consistent map.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Now = Now { ns: 1_000, unix_ms: 0, day: 0, month: 0 };

    #[test]
    fn same_subject_same_state_until_removed() {
        let t = Table::default();
        let a = t.get(&Subject::key("a"), T0);
        a.lock().streams = 3;
        assert!(Arc::ptr_eq(&a, &t.get(&Subject::key("a"), T0)));
        assert_eq!(t.len(), 1);
        t.remove(&Subject::key("a"));
        assert_eq!(t.get(&Subject::key("a"), T0).lock().streams, 0);
    }

    #[test]
    fn idle_subjects_are_swept_as_shards_grow() {
        let t = Table::default();
        // Busy at `later`: a backlog, a stream, quota use that day, an outside reference.
        let busy = [
            Counters { rpm_tat: 2_000, ..Counters::default() },
            Counters { streams: 1, ..Counters::default() },
            Counters { day: QuotaUse { period: 1, used: 5, seen: 0 }, ..Counters::default() },
        ];
        for (i, c) in busy.iter().enumerate() {
            *t.get(&Subject::key(&format!("busy{i}")), T0).lock() = *c;
        }
        let held = t.get(&Subject::key("held"), T0);
        // Idle: yesterday's quota use, a backlog already drained.
        let idle_day =
            Counters { day: QuotaUse { period: 0, used: 5, seen: 0 }, rpm_tat: 500, ..Counters::default() };
        let later = Now { day: 1, ..T0 };
        for i in 0..20_000 {
            *t.get(&Subject::ip(i), later).lock() = idle_day;
        }
        assert!(t.len() < 20_000 / 2, "swept: {}", t.len());
        for i in 0..busy.len() {
            let s = Subject::key(&format!("busy{i}"));
            assert!(read(t.shard(&s)).map.contains_key(&s), "busy{i} kept");
        }
        assert!(Arc::ptr_eq(&held, &t.get(&Subject::key("held"), later)));
    }

    #[test]
    fn quota_rolls_over() {
        let q = QuotaUse { period: 5, used: 10, seen: 4 };
        assert_eq!(q.rolled(5), q);
        assert_eq!(q.rolled(6), QuotaUse { period: 6, used: 0, seen: 0 });
    }
}
