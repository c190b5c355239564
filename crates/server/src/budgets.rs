//! Monthly spend budgets of API keys and users: what each has spent this UTC month,
//! kept in memory, checked before a request starts and charged when it ends.
//!
//! Spend is what the usage records say (`[[models]] price` × tokens). Every user's and
//! key's spend is counted, whether or not it has a budget today, so a budget set in
//! the middle of the month applies to the whole month. At start the counts are seeded
//! from the stored usage records; with several replicas (`[limits] replicas > 1`) they
//! are refreshed from the store every [`REFRESH_EVERY`], so each replica sees the
//! others' spend with at most that delay (plus the usage writer's flush).
//!
//! A budget is checked against what was spent before the request: the request that
//! crosses it is served in full, the next one is refused (hard) or counted (soft).
//! A hard budget of 0 refuses every request.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use sluice_core::{context::Principal, error::GatewayError};
use sluice_limits::Period;
use sluice_protocol::budget::{BudgetMode, micros_to_usd};

/// How often replicas re-read the month's spend from the shared store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// This month's spend per key and per user.
#[derive(Debug, Default)]
pub struct Budgets {
    month: Mutex<Month>,
    refused: AtomicU64,
    soft_overruns: AtomicU64,
}

#[derive(Debug, Default)]
struct Month {
    /// Start of the month counted, unix ms.
    start_ms: u64,
    keys: HashMap<String, u64>,
    users: HashMap<String, u64>,
    /// Soft budgets already logged as spent this month (`key:ID`, `user:ID`).
    warned: HashSet<String>,
}

impl Month {
    /// Starts a new month's counts when `now_ms` lies past the one counted.
    fn roll(&mut self, now_ms: u64) {
        let start = Period::Month.start(now_ms);
        if start != self.start_ms {
            *self = Month { start_ms: start, ..Month::default() };
        }
    }
}

/// Whose budget a check found spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Key,
    User,
}

impl Budgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Month> {
        self.month.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a request of `principal` whose key's or user's hard budget is spent;
    /// counts (and logs once a month) one whose soft budget is spent. Principals
    /// without a budget pass without taking the lock.
    pub fn check(&self, principal: &Principal, now_ms: u64) -> Result<(), GatewayError> {
        let Principal::User(u) = principal else { return Ok(()) };
        let key = u.key.as_ref().and_then(|k| Some((k.id.as_str(), k.limits.budget?)));
        if key.is_none() && u.budget.is_none() {
            return Ok(());
        }
        let mut month = self.lock();
        month.roll(now_ms);
        let checks =
            [key.map(|(id, b)| (Owner::Key, id, b)), u.budget.map(|b| (Owner::User, &*u.user_id, b))];
        for (owner, id, budget) in checks.into_iter().flatten() {
            let map = match owner {
                Owner::Key => &month.keys,
                Owner::User => &month.users,
            };
            let spent = map.get(id).copied().unwrap_or(0);
            if spent < budget.monthly_micros {
                continue;
            }
            let whose = match owner {
                Owner::Key => "this API key",
                Owner::User => "this user",
            };
            match budget.mode {
                BudgetMode::Hard => {
                    self.refused.fetch_add(1, Relaxed);
                    let renews = Duration::from_millis(Period::Month.ms_until_next(now_ms));
                    return Err(GatewayError::QuotaExceeded {
                        message: format!(
                            "the monthly budget of {whose} is spent (${:.2} of ${:.2}); it renews at the start of the next UTC month",
                            micros_to_usd(spent),
                            budget.monthly_usd(),
                        ),
                        retry_after: Some(renews),
                    });
                }
                BudgetMode::Soft => {
                    self.soft_overruns.fetch_add(1, Relaxed);
                    let tag = match owner {
                        Owner::Key => format!("key:{id}"),
                        Owner::User => format!("user:{id}"),
                    };
                    if month.warned.insert(tag) {
                        tracing::warn!(
                            owner = whose,
                            id,
                            spent_usd = micros_to_usd(spent),
                            budget_usd = budget.monthly_usd(),
                            "soft monthly budget spent; requests go on"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds `micros` of spend to `user_id` and `key_id` (either may be absent).
    pub fn charge(&self, user_id: Option<&str>, key_id: Option<&str>, micros: u64, now_ms: u64) {
        if micros == 0 || (user_id.is_none() && key_id.is_none()) {
            return;
        }
        let mut month = self.lock();
        month.roll(now_ms);
        if let Some(k) = key_id {
            add(&mut month.keys, k, micros);
        }
        if let Some(u) = user_id {
            add(&mut month.users, u, micros);
        }
    }

    /// Takes this month's spend as the store counts it (all replicas' flushed
    /// records), never lowering a count (this replica's newest records may not be
    /// flushed yet). `since_ms` is the month start the store's figures begin at.
    pub fn seed(&self, keys: Vec<(String, u64)>, users: Vec<(String, u64)>, since_ms: u64, now_ms: u64) {
        let mut month = self.lock();
        month.roll(now_ms);
        if month.start_ms != Period::Month.start(since_ms) {
            return; // figures of a month that has ended
        }
        let month = &mut *month;
        for (map, figures) in [(&mut month.keys, keys), (&mut month.users, users)] {
            for (id, micros) in figures {
                let v = map.entry(id).or_insert(0);
                *v = (*v).max(micros);
            }
        }
    }

    /// What `key_id` spent this month, in micro-dollars.
    pub fn key_spend(&self, key_id: &str) -> u64 {
        self.lock().keys.get(key_id).copied().unwrap_or(0)
    }

    /// What `user_id` spent this month, in micro-dollars.
    pub fn user_spend(&self, user_id: &str) -> u64 {
        self.lock().users.get(user_id).copied().unwrap_or(0)
    }

    /// Appends the budget counters to a Prometheus exposition (before its `# EOF`).
    pub fn render_into(&self, text: String) -> String {
        let (refused, soft) = (self.refused.load(Relaxed), self.soft_overruns.load(Relaxed));
        crate::exposition::append(text, |out| {
            // Writing into a String cannot fail.
            let _ = write!(
                out,
                "# HELP sluice_budget_refusals Requests refused because a hard monthly budget was spent.\n\
                 # TYPE sluice_budget_refusals counter\n\
                 sluice_budget_refusals_total {refused}\n\
                 # HELP sluice_budget_soft_overruns Requests served although a soft monthly budget was spent.\n\
                 # TYPE sluice_budget_soft_overruns counter\n\
                 sluice_budget_soft_overruns_total {soft}\n"
            );
        })
    }
}

fn add(map: &mut HashMap<String, u64>, id: &str, micros: u64) {
    match map.get_mut(id) {
        Some(v) => *v = v.saturating_add(micros),
        None => {
            map.insert(id.to_owned(), micros);
        }
    }
}

/// Seeds `budgets` with this month's spend from the store.
pub async fn seed_from_store(
    store: &sluice_store::Store,
    budgets: &Budgets,
    now_ms: u64,
) -> Result<(), sluice_store::StoreError> {
    use sluice_store::UsageGroup;
    let since = Period::Month.start(now_ms);
    let since_i = i64::try_from(since).unwrap_or(i64::MAX);
    let keys = store.spend_since(UsageGroup::Key, since_i).await?;
    let users = store.spend_since(UsageGroup::User, since_i).await?;
    budgets.seed(keys, users, since, now_ms);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use sluice_core::context::{KeyInfo, KeyLimits, Role, UserPrincipal};
    use sluice_protocol::budget::Budget;

    use super::*;

    /// 2026-11-30 12:00 UTC and 2026-12-01 00:00 UTC.
    const NOV_30: u64 = 1_796_040_000_000;
    const DEC_1: u64 = 1_796_083_200_000;

    fn user(user_budget: Option<Budget>, key_budget: Option<Budget>) -> Principal {
        let key = key_budget.map(|b| KeyInfo {
            id: "k1".into(),
            sha256: [0; 32],
            models: None,
            limits: KeyLimits { budget: Some(b), ..KeyLimits::default() },
            expires_at: None,
        });
        Principal::User(Arc::new(UserPrincipal {
            user_id: "u1".into(),
            name: "ann".into(),
            role: Role::User,
            key,
            budget: user_budget,
        }))
    }

    fn budget(usd: f64, mode: BudgetMode) -> Option<Budget> {
        Budget::from_usd(usd, mode)
    }

    #[test]
    fn a_hard_budget_refuses_once_spent_until_the_month_ends() {
        let b = Budgets::default();
        let p = user(None, budget(1.0, BudgetMode::Hard));
        assert!(b.check(&p, NOV_30).is_ok());
        b.charge(Some("u1"), Some("k1"), 999_999, NOV_30);
        assert!(b.check(&p, NOV_30).is_ok(), "a micro-dollar left");
        b.charge(Some("u1"), Some("k1"), 1, NOV_30);
        let err = b.check(&p, NOV_30).unwrap_err();
        assert_eq!(err.status_code(), 429);
        assert_eq!(err.error_type(), "insufficient_quota");
        assert!(err.to_string().contains("$1.00 of $1.00"), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_millis(DEC_1 - NOV_30)));
        assert!(b.check(&p, DEC_1).is_ok(), "a new month");
        assert_eq!(b.key_spend("k1"), 0);
        let text = b.render_into("# EOF\n".into());
        assert!(text.contains("sluice_budget_refusals_total 1\n"), "{text}");
    }

    #[test]
    fn a_soft_budget_counts_and_lets_requests_through() {
        let b = Budgets::default();
        let p = user(budget(0.5, BudgetMode::Soft), None);
        b.charge(Some("u1"), None, 600_000, NOV_30);
        for _ in 0..3 {
            assert!(b.check(&p, NOV_30).is_ok());
        }
        assert!(b.render_into("# EOF\n".into()).contains("sluice_budget_soft_overruns_total 3\n"));
    }

    #[test]
    fn the_user_budget_covers_all_keys_and_the_key_budget_its_own() {
        let b = Budgets::default();
        // Another key of the same user spent $2: the user's $2 budget is spent, this
        // key's own $5 is not.
        b.charge(Some("u1"), Some("k2"), 2_000_000, NOV_30);
        assert!(b.check(&user(None, budget(5.0, BudgetMode::Hard)), NOV_30).is_ok());
        let err = b.check(&user(budget(2.0, BudgetMode::Hard), budget(5.0, BudgetMode::Hard)), NOV_30);
        assert!(err.unwrap_err().to_string().contains("this user"));
        assert!(b.check(&Principal::Local, NOV_30).is_ok(), "operators have no budget");
    }

    #[test]
    fn seeding_never_lowers_a_count_nor_brings_back_last_month() {
        let b = Budgets::default();
        b.charge(Some("u1"), Some("k1"), 300, NOV_30);
        b.seed(vec![("k1".into(), 100), ("k9".into(), 50)], vec![("u1".into(), 900)], NOV_30, NOV_30);
        assert_eq!((b.key_spend("k1"), b.key_spend("k9"), b.user_spend("u1")), (300, 50, 900));
        b.seed(vec![("k1".into(), 10_000)], vec![], NOV_30, DEC_1);
        assert_eq!(b.key_spend("k1"), 0, "November's figures do not count in December");
    }
}
