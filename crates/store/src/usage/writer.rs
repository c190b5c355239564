//! The batched usage writer: request handlers hand records to a [`UsageSink`] without
//! ever waiting; one background task (owned by [`UsageWriter`]) writes them in batches.
//!
//! A batch is written when `max_batch` records are waiting, or `flush_every` after the
//! first unwritten record arrived: the timer is armed only while records wait, so an
//! idle writer sleeps on its channel and nothing wakes it. A full batch also takes the
//! records already queued behind it, up to [`BACKLOG_BATCHES`] batches in one write. A failed write keeps the
//! batch and retries it with capped backoff, so records survive a database outage for
//! as long as the process lives (new records queue up meanwhile, and are dropped once
//! the queue is full).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    sync::{Notify, mpsc, oneshot},
    task::JoinHandle,
    time::{Instant, sleep, sleep_until},
};

use super::UsageRecord;
use crate::{Store, StoreError};

/// First retry delay after a failed batch; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between retries of a failed batch.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// With a backlog (more than a batch already queued when a batch is full), one write
/// takes up to this many batches' worth: one transaction and one disk sync instead of
/// several, so the writer catches up instead of falling behind.
pub const BACKLOG_BATCHES: usize = 8;

/// `[usage]` writer settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageWriterConfig {
    /// Write as soon as this many records wait (default 512).
    pub max_batch: usize,
    /// Write at most this long after the first unwritten record arrived (default 100 ms).
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
    /// Records that may wait; beyond this new records are dropped (default 100,000).
    pub queue: usize,
}

impl Default for UsageWriterConfig {
    fn default() -> Self {
        UsageWriterConfig { max_batch: 512, flush_every: Duration::from_millis(100), queue: 100_000 }
    }
}

/// How stale a key's stored "last used" time may get: the writer records a key's use
/// at most once per this many seconds, so a busy key costs no extra write per batch.
pub const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// Where batches go: the [`Store`], or a stand-in in tests.
pub trait UsageTarget: Send + Sync + 'static {
    /// Writes the whole batch, or nothing.
    fn write_usage(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records when API keys were last used: `(key id, unix seconds)` pairs.
    fn touch_keys(&self, used: &[(String, i64)]) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = used;
        async { Ok(()) }
    }
}

impl UsageTarget for Store {
    fn write_usage(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.insert_usage(batch)
    }

    fn touch_keys(&self, used: &[(String, i64)]) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.touch_api_keys(used)
    }
}

/// The last-use times the writer has stored, per key, to store each key's use at most
/// once per [`LAST_USED_GRANULARITY_SECS`].
#[derive(Debug, Default)]
struct KeyUse {
    stored: std::collections::HashMap<String, i64>,
}

impl KeyUse {
    /// The keys of `batch` whose stored last use is older than the granularity allows,
    /// with their newest use in the batch; noted as stored.
    fn due(&mut self, batch: &[UsageRecord]) -> Vec<(String, i64)> {
        let mut due: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for r in batch {
            // Service keys (`service:…`) live in the configuration, not in the store.
            let Some(key) = r.key_id.as_deref().filter(|k| !k.starts_with("service:")) else { continue };
            let at = r.at.div_euclid(1000);
            let stored = self.stored.get(key).copied().unwrap_or(i64::MIN);
            if at < stored.saturating_add(LAST_USED_GRANULARITY_SECS) {
                continue;
            }
            let t = due.entry(key).or_insert(at);
            *t = (*t).max(at);
        }
        let due: Vec<(String, i64)> = due.into_iter().map(|(k, at)| (k.to_owned(), at)).collect();
        for (k, at) in &due {
            self.stored.insert(k.clone(), *at);
        }
        due
    }
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
    failures: AtomicU64,
    /// A "queue full" warning was logged and no record got through since.
    warned: AtomicBool,
    changed: Notify,
}

/// The writer's counters, shared by the writer and every sink.
#[derive(Debug, Clone, Default)]
pub struct UsageStats(Arc<Counters>);

impl UsageStats {
    /// Records written to the database.
    pub fn written(&self) -> u64 {
        self.0.written.load(Relaxed)
    }

    /// Records refused because the queue was full or the writer had shut down.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Relaxed)
    }

    /// Records accepted and not written yet.
    pub fn pending(&self) -> u64 {
        self.0.pending.load(Relaxed)
    }

    /// Failed batch writes (each is retried).
    pub fn failures(&self) -> u64 {
        self.0.failures.load(Relaxed)
    }

    /// Waits until `done` holds; checked after every write attempt.
    pub async fn wait_until(&self, done: impl Fn(&UsageStats) -> bool) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// Hands records to the writer; cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageRecord>,
    stats: UsageStats,
}

impl UsageSink {
    /// Queues `record` for writing without waiting. When the queue is full (or the
    /// writer has shut down) the record is dropped and counted in
    /// [`UsageStats::dropped`]; one warning is logged per burst of drops, not per record.
    pub fn record(&self, record: UsageRecord) {
        let c = &self.stats.0;
        c.pending.fetch_add(1, Relaxed);
        match self.tx.try_send(record) {
            Ok(()) => {
                if c.warned.load(Relaxed) {
                    c.warned.store(false, Relaxed);
                }
            }
            Err(e) => {
                c.pending.fetch_sub(1, Relaxed);
                c.dropped.fetch_add(1, Relaxed);
                if !c.warned.swap(true, Relaxed) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the usage queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the usage writer has shut down",
                    };
                    tracing::warn!(dropped_so_far = c.dropped.load(Relaxed), "usage record dropped: {why}");
                }
            }
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }
}

/// The background task writing usage batches; [`UsageWriter::shutdown`] drains it.
#[derive(Debug)]
pub struct UsageWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stats: UsageStats,
}

impl UsageWriter {
    /// Starts a writer into `store`.
    pub fn start(store: Arc<Store>, cfg: UsageWriterConfig) -> (UsageSink, UsageWriter) {
        UsageWriter::start_with(store, cfg)
    }

    /// Starts a writer into any [`UsageTarget`].
    pub fn start_with<T: UsageTarget>(target: Arc<T>, cfg: UsageWriterConfig) -> (UsageSink, UsageWriter) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (stop, stopped) = oneshot::channel();
        let stats = UsageStats::default();
        let task = tokio::spawn(run(target, rx, stopped, cfg, stats.clone()));
        (UsageSink { tx, stats: stats.clone() }, UsageWriter { stop, task, stats })
    }

    /// The counters.
    pub fn stats(&self) -> &UsageStats {
        &self.stats
    }

    /// Stops accepting records, writes everything already queued and returns how many
    /// records this writer wrote in all. While the database fails this keeps retrying:
    /// bound it with a timeout if exit must not wait for the database.
    pub async fn shutdown(self) -> u64 {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the usage writer task failed");
        }
        self.stats.written()
    }
}

/// The writer task. Dropping the [`UsageWriter`] without `shutdown` stops it the same way.
async fn run<T: UsageTarget>(
    target: Arc<T>,
    mut rx: mpsc::Receiver<UsageRecord>,
    mut stop: oneshot::Receiver<()>,
    cfg: UsageWriterConfig,
    stats: UsageStats,
) {
    let max = cfg.max_batch.max(1);
    let mut batch = Vec::with_capacity(max);
    let mut deadline: Option<Instant> = None;
    let mut stopping = false;
    let mut keys = KeyUse::default();
    loop {
        let room = max - batch.len();
        tokio::select! {
            biased;
            _ = &mut stop, if !stopping => {
                // Senders now fail; what is queued is still received, then `None`.
                stopping = true;
                rx.close();
            }
            got = rx.recv_many(&mut batch, room), if room > 0 => {
                if got == 0 {
                    write(&*target, &mut batch, &stats, &mut keys).await;
                    return;
                }
                deadline.get_or_insert_with(|| Instant::now() + cfg.flush_every);
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                write(&*target, &mut batch, &stats, &mut keys).await;
                deadline = None;
            }
        }
        if batch.len() >= max {
            // Records already queued join this write (no waiting: only what is there).
            while batch.len() < max * BACKLOG_BATCHES {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            write(&*target, &mut batch, &stats, &mut keys).await;
            deadline = None;
        }
    }
}

/// Writes `batch` (retrying until it succeeds), stores the keys' last use when due
/// (best effort: a failure is logged, the times are stored with a later batch) and
/// empties it.
async fn write<T: UsageTarget>(
    target: &T,
    batch: &mut Vec<UsageRecord>,
    stats: &UsageStats,
    keys: &mut KeyUse,
) {
    if batch.is_empty() {
        return;
    }
    let due = keys.due(batch);
    if !due.is_empty()
        && let Err(e) = target.touch_keys(&due).await
    {
        tracing::warn!(error = %e, keys = due.len(), "last use of API keys not stored");
        for (k, _) in &due {
            keys.stored.remove(k);
        }
    }
    let c = &stats.0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match target.write_usage(batch).await {
            Ok(()) => {
                let n = batch.len() as u64;
                c.written.fetch_add(n, Relaxed);
                c.pending.fetch_sub(n, Relaxed);
                batch.clear();
                c.changed.notify_waiters();
                return;
            }
            Err(e) => {
                c.failures.fetch_add(1, Relaxed);
                c.changed.notify_waiters();
                tracing::warn!(error = %e, records = batch.len(), retry_in = ?backoff, "usage batch not written");
                sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
