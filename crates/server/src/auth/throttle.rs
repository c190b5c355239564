//! Login throttling, per account name and per client address, in memory.
//!
//! The first [`FREE_FAILURES`] failures cost nothing; each further one locks the
//! account (or address) for twice as long as the last, from one second up to
//! [`MAX_LOCK`]. A success clears the account's and the address's count. Failures
//! older than [`FORGET_AFTER`] are forgotten.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

/// Failures allowed before any lock.
pub const FREE_FAILURES: u32 = 5;
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A count not added to for this long starts again from zero.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Above this many tracked names and addresses, stale ones are pruned.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Name(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    locked_until: Instant,
}

/// Login attempt counts; see the module docs.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    records: Mutex<HashMap<Subject, Record>>,
}

fn lock_for(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(n) => Duration::from_secs(1u64 << n.min(20)).min(MAX_LOCK),
    }
}

impl LoginThrottle {
    fn records(&self) -> MutexGuard<'_, HashMap<Subject, Record>> {
        // The map holds counts only: one torn by a panic is still usable.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subjects(name: &str, addr: Option<IpAddr>) -> impl Iterator<Item = Subject> {
        std::iter::once(Subject::Name(name.to_lowercase())).chain(addr.map(Subject::Addr))
    }

    /// `Err(wait)` while the account or the address is locked.
    pub fn check(&self, name: &str, addr: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let records = self.records();
        let wait = Self::subjects(name, addr)
            .filter_map(|s| records.get(&s))
            .map(|r| r.locked_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed attempt.
    pub fn failed(&self, name: &str, addr: Option<IpAddr>, now: Instant) {
        let mut records = self.records();
        if records.len() > PRUNE_ABOVE {
            records
                .retain(|_, r| now.saturating_duration_since(r.last) < FORGET_AFTER || r.locked_until > now);
        }
        for s in Self::subjects(name, addr) {
            let r = records.entry(s).or_insert(Record { failures: 0, last: now, locked_until: now });
            if now.saturating_duration_since(r.last) >= FORGET_AFTER {
                r.failures = 0;
            }
            r.failures += 1;
            r.last = now;
            r.locked_until = now + lock_for(r.failures);
        }
    }

    /// Clears the counts after a successful login.
    pub fn succeeded(&self, name: &str, addr: Option<IpAddr>) {
        let mut records = self.records();
        for s in Self::subjects(name, addr) {
            records.remove(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn locks_grow_after_five_failures_and_success_clears() {
        let t = LoginThrottle::default();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("ann", ip, Instant::now());
            assert_eq!(t.check("ann", ip, Instant::now()), Ok(()));
        }
        t.failed("ann", ip, Instant::now());
        assert_eq!(t.check("ann", ip, Instant::now()), Err(Duration::from_secs(1)));
        // The account is locked from any address, and the address for any account.
        assert!(t.check("ANN", None, Instant::now()).is_err());
        assert!(t.check("bob", ip, Instant::now()).is_err());
        assert_eq!(t.check("bob", Some(IpAddr::from([10, 0, 0, 2])), Instant::now()), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.check("ann", ip, Instant::now()), Ok(()));
        t.failed("ann", ip, Instant::now());
        assert_eq!(t.check("ann", ip, Instant::now()), Err(Duration::from_secs(2)));
        t.succeeded("ann", ip);
        assert_eq!(t.check("ann", ip, Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn locks_are_capped_and_old_failures_forgotten() {
        let t = LoginThrottle::default();
        for _ in 0..40 {
            t.failed("ann", None, Instant::now());
        }
        assert_eq!(t.check("ann", None, Instant::now()), Err(MAX_LOCK));
        tokio::time::advance(FORGET_AFTER).await;
        t.failed("ann", None, Instant::now());
        assert_eq!(t.check("ann", None, Instant::now()), Ok(()), "the count started again");
    }
}
