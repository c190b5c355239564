//! The usage writer's batching, backoff and queue limit, on paused time against an
//! in-memory target (no database thread for the clock to race).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sluice_store::{StoreError, UsageRecord, UsageTarget, UsageWriter, UsageWriterConfig};
use tokio::time::{Instant, sleep};

/// Keeps the size of every batch written; fails the first `fail_first` writes.
#[derive(Default)]
struct Batches {
    sizes: Mutex<Vec<usize>>,
    fail_first: Mutex<u32>,
    touched: Mutex<Vec<(String, i64)>>,
}

impl Batches {
    fn sizes(&self) -> Vec<usize> {
        self.sizes.lock().unwrap().clone()
    }
}

impl UsageTarget for Batches {
    async fn write_usage(&self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        let mut fail = self.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(StoreError::Query(sqlx::Error::PoolTimedOut));
        }
        self.sizes.lock().unwrap().push(batch.len());
        Ok(())
    }

    async fn touch_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        let mut used = used.to_vec();
        used.sort();
        self.touched.lock().unwrap().extend(used);
        Ok(())
    }
}

fn record(i: i64) -> UsageRecord {
    UsageRecord {
        at: i,
        user_id: None,
        key_id: None,
        model: "m".to_owned(),
        backend: "b".to_owned(),
        dialect: "openai".to_owned(),
        prompt_tokens: 1,
        completion_tokens: 1,
        cached: false,
        ttft_ms: None,
        duration_ms: 1,
        status: 200,
        spend: 0.0,
    }
}

fn cfg(max_batch: usize, flush_every_ms: u64, queue: usize) -> UsageWriterConfig {
    UsageWriterConfig { max_batch, flush_every: Duration::from_millis(flush_every_ms), queue }
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_written_flush_every_after_its_first_record() {
    let target = Arc::new(Batches::default());
    let (sink, writer) = UsageWriter::start_with(target.clone(), cfg(512, 100, 1000));
    let start = Instant::now();
    for i in 0..3 {
        sink.record(record(i));
    }
    sleep(Duration::from_millis(99)).await;
    assert_eq!(target.sizes(), Vec::<usize>::new(), "nothing before 100 ms");
    assert_eq!((writer.stats().written(), writer.stats().pending()), (0, 3));
    writer.stats().wait_until(|s| s.written() == 3).await;
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(target.sizes(), [3]);
    // Idle: nothing is armed, so an hour passes without a write.
    sleep(Duration::from_secs(3600)).await;
    assert_eq!(target.sizes(), [3]);
    assert_eq!(writer.shutdown().await, 3);
}

#[tokio::test(start_paused = true)]
async fn full_batches_are_written_at_once_and_shutdown_drains_the_rest() {
    let target = Arc::new(Batches::default());
    let (sink, writer) = UsageWriter::start_with(target.clone(), cfg(4, 3_600_000, 1000));
    let start = Instant::now();
    for i in 0..3 {
        sink.record(record(i));
    }
    tokio::task::yield_now().await;
    assert_eq!(writer.stats().pending(), 3, "not full: waits for the timer");
    sink.record(record(3));
    writer.stats().wait_until(|s| s.written() == 4).await;
    assert_eq!(target.sizes(), [4], "full: written at once");
    // A backlog: everything queued behind a full batch goes in the same write, up to
    // BACKLOG_BATCHES batches.
    let backlog = 4 * sluice_store::usage::writer::BACKLOG_BATCHES + 2;
    for i in 0..backlog {
        sink.record(record(i64::try_from(i).unwrap()));
    }
    writer.stats().wait_until(|s| s.written() == 4 + backlog as u64 - 2).await;
    assert_eq!(target.sizes(), [4, backlog - 2]);
    assert_eq!(writer.shutdown().await, 4 + backlog as u64);
    assert_eq!(target.sizes(), [4, backlog - 2, 2], "shutdown drains the rest");
    assert_eq!(start.elapsed(), Duration::ZERO, "no timer was waited for");
}

#[tokio::test(start_paused = true)]
async fn a_failing_target_keeps_the_batch_and_backs_off() {
    let target = Arc::new(Batches { fail_first: Mutex::new(3), ..Default::default() });
    let (sink, writer) = UsageWriter::start_with(target.clone(), cfg(512, 10, 1000));
    let start = Instant::now();
    for i in 0..5 {
        sink.record(record(i));
    }
    let stats = writer.stats().clone();
    assert_eq!(writer.shutdown().await, 5);
    assert_eq!(target.sizes(), [5]);
    assert_eq!((stats.failures(), stats.pending()), (3, 0));
    // Shutdown writes at once; then 100 + 200 + 400 ms of backoff.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let target = Arc::new(Batches::default());
    let (sink, writer) = UsageWriter::start_with(target.clone(), cfg(512, 100, 2));
    // The writer task has not run yet: the queue holds two.
    for i in 0..5 {
        sink.record(record(i));
    }
    assert_eq!((sink.stats().pending(), sink.stats().dropped()), (2, 3));
    assert_eq!(writer.shutdown().await, 2);
    assert_eq!(target.sizes(), [2]);
}

#[tokio::test(start_paused = true)]
async fn a_keys_last_use_is_stored_at_most_once_a_minute() {
    let target = Arc::new(Batches::default());
    let (sink, writer) = UsageWriter::start_with(target.clone(), cfg(3, 100, 100));
    let used = |key: &str, secs: i64| UsageRecord { key_id: Some(key.to_owned()), ..record(secs * 1000) };
    // One batch: two uses of `a` (the newer is stored), one of `b`.
    sink.record(used("a", 100));
    sink.record(used("a", 130));
    sink.record(used("b", 101));
    sink.stats().wait_until(|s| s.written() == 3).await;
    // `a` again within the minute: not stored again; `a` a minute after its stored use,
    // and a service key (not in the store): only the former.
    sink.record(used("a", 150));
    sink.record(used("a", 190));
    sink.record(used("service:0011", 190));
    sink.stats().wait_until(|s| s.written() == 6).await;
    writer.shutdown().await;
    let touched = target.touched.lock().unwrap().clone();
    assert_eq!(touched, vec![("a".to_owned(), 130), ("b".to_owned(), 101), ("a".to_owned(), 190)]);
}
