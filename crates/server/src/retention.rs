//! Retention: a tracked background task deletes conversations and usage records older
//! than their configured number of days (`[retention]`), and stored Responses API
//! responses past their time to live (`[responses] ttl`), once at start and then every
//! hour. Admins change the numbers at runtime (`PUT /admin/retention`); the change is
//! kept in memory only (a restart goes back to the configuration) and applied at once.

use std::{
    future::Future,
    sync::atomic::{AtomicU32, Ordering::Relaxed},
    time::Duration,
};

use sluice_config::RetentionConfig;
use sluice_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// How often expired rows are deleted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

const MS_PER_DAY: i64 = 86_400_000;

/// The retention settings in force, changeable at runtime.
#[derive(Debug, Default)]
pub struct Retention {
    conversations_days: AtomicU32,
    usage_days: AtomicU32,
    changed: Notify,
}

impl Retention {
    /// Settings starting from the configuration.
    pub fn new(cfg: RetentionConfig) -> Retention {
        Retention {
            conversations_days: AtomicU32::new(cfg.conversations_days),
            usage_days: AtomicU32::new(cfg.usage_days),
            changed: Notify::new(),
        }
    }

    /// The settings in force.
    pub fn get(&self) -> RetentionConfig {
        RetentionConfig {
            conversations_days: self.conversations_days.load(Relaxed),
            usage_days: self.usage_days.load(Relaxed),
        }
    }

    /// Replaces the settings; the task sweeps with them at once.
    pub fn set(&self, cfg: RetentionConfig) {
        self.conversations_days.store(cfg.conversations_days, Relaxed);
        self.usage_days.store(cfg.usage_days, Relaxed);
        // A stored permit: a change made while a sweep runs is not lost.
        self.changed.notify_one();
    }
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Conversations (with their messages).
    pub conversations: u64,
    /// Usage records.
    pub usage_records: u64,
    /// Stored responses past their time to live.
    pub responses: u64,
}

/// Deletes what `cfg` says has expired at `now_ms` (a setting of 0 keeps everything
/// and does not touch the database), and the stored responses whose time is up (only
/// once the database is open: a gateway that stored nothing does not open it for this).
pub async fn sweep(store: &Store, cfg: RetentionConfig, now_ms: i64) -> Result<Swept, StoreError> {
    let cutoff = |days: u32| now_ms - i64::from(days) * MS_PER_DAY;
    let mut swept = Swept::default();
    if cfg.conversations_days > 0 {
        swept.conversations = store.delete_conversations_before(cutoff(cfg.conversations_days)).await?;
    }
    if cfg.usage_days > 0 {
        swept.usage_records = store.delete_usage_before(cutoff(cfg.usage_days)).await?;
    }
    if store.is_opened() {
        swept.responses = store.delete_expired_responses(now_ms).await?;
    }
    Ok(swept)
}

/// One sweep at `now`, logged; a failure is retried at the next sweep.
pub async fn sweep_logged(store: &Store, cfg: RetentionConfig) {
    match sweep(store, cfg, now_ms()).await {
        Ok(s) if s != Swept::default() => tracing::info!(
            conversations = s.conversations,
            usage_records = s.usage_records,
            responses = s.responses,
            "retention: expired rows deleted"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "retention sweep failed; retrying at the next one"),
    }
}

/// Calls `sweep` now, then every [`SWEEP_EVERY`] and whenever the settings change,
/// until `shutdown`.
pub async fn run<F, Fut>(retention: &Retention, shutdown: &CancellationToken, mut sweep: F)
where
    F: FnMut(RetentionConfig) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sweep(retention.get()) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = retention.changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use sluice_store::{StoreConfig, UsageFilter, UsageGroup, UsageRecord};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sweeps_at_start_every_hour_and_on_change() {
        let retention = Arc::new(Retention::new(RetentionConfig { conversations_days: 7, usage_days: 0 }));
        let shutdown = CancellationToken::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (retention, shutdown, seen) = (retention.clone(), shutdown.clone(), seen.clone());
            async move {
                run(&retention, &shutdown, |cfg| {
                    seen.lock().unwrap().push(cfg);
                    async {}
                })
                .await;
            }
        });
        let count = || seen.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(count(), 1, "one sweep at start");
        tokio::time::sleep(SWEEP_EVERY - Duration::from_secs(2)).await;
        assert_eq!(count(), 1, "nothing before the hour");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count(), 2, "one sweep after the hour");
        let changed = RetentionConfig { conversations_days: 1, usage_days: 2 };
        retention.set(changed);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(count(), 3, "a change sweeps at once");
        assert_eq!(seen.lock().unwrap()[2], changed);
        shutdown.cancel();
        task.await.unwrap();
    }

    fn record(at: i64) -> UsageRecord {
        UsageRecord {
            at,
            user_id: Some("u".into()),
            key_id: None,
            model: "m".into(),
            backend: "b".into(),
            dialect: "openai".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
            cached: false,
            ttft_ms: None,
            duration_ms: 1,
            status: 200,
            spend: 0.0,
        }
    }

    #[tokio::test]
    async fn sweep_deletes_only_what_expired() {
        let store = Store::new(&StoreConfig { url: Some("sqlite::memory:".into()) });
        let now = now_ms();
        store.insert_usage(&[record(now - 3 * MS_PER_DAY), record(now - MS_PER_DAY / 2)]).await.unwrap();
        store.create_conversation("u", "kept", "m").await.unwrap();
        let response = sluice_store::StoredResponse {
            id: "resp_1".into(),
            user_id: "u".into(),
            input: "[]".into(),
            response: "{}".into(),
            created_at: now,
            expires_at: now + MS_PER_DAY,
        };
        store.put_response(&response).await.unwrap();
        let keep_all = sweep(&store, RetentionConfig::default(), now).await.unwrap();
        assert_eq!(keep_all, Swept::default());
        let cfg = RetentionConfig { conversations_days: 1, usage_days: 1 };
        let swept = sweep(&store, cfg, now).await.unwrap();
        assert_eq!(swept, Swept { conversations: 0, usage_records: 1, responses: 0 });
        let left = store.usage_summary(&UsageFilter::default(), UsageGroup::Model).await.unwrap();
        assert_eq!(left[0].requests, 1);
        // Two days later the conversation has expired too, and the response's day is up.
        let later = sweep(&store, cfg, now + 2 * MS_PER_DAY).await.unwrap();
        assert_eq!(later, Swept { conversations: 1, usage_records: 1, responses: 1 });
    }
}
