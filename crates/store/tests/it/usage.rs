//! Usage records on both engines: nothing lost across shutdown, summaries, filters,
//! quotas, retention, and a database outage survived.

use std::time::Duration;

use sluice_store::{
    Engine, UsageFilter, UsageGroup, UsageRecord, UsageRow, UsageSeriesRow, UsageWriter, UsageWriterConfig,
};

use crate::db::{TestDb, both_engines};

const DAY: i64 = 86_400_000;
/// 2026-11-30 00:00 UTC.
const NOV_30: i64 = 1_796_083_200_000 - DAY;

fn record(at: i64, user: Option<&str>, key: Option<&str>, model: &str, tokens: (u64, u64)) -> UsageRecord {
    UsageRecord {
        at,
        user_id: user.map(str::to_owned),
        key_id: key.map(str::to_owned),
        model: model.to_owned(),
        backend: "local".to_owned(),
        dialect: "openai".to_owned(),
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        cached: false,
        ttft_ms: Some(12),
        duration_ms: 340,
        status: 200,
        spend: 0.25,
    }
}

/// 10,000 records through the sink are all there after `shutdown`, seen by a fresh store.
async fn count_in_is_count_out(db: &TestDb) {
    let (sink, writer) = UsageWriter::start(db.store.clone(), UsageWriterConfig::default());
    for i in 0..10_000 {
        sink.record(record(NOV_30 + i, Some("u1"), None, "m", (1, 2)));
    }
    assert_eq!(writer.shutdown().await, 10_000);
    assert_eq!(sink.stats().dropped(), 0);
    assert_eq!(sink.stats().pending(), 0);

    let fresh = db.reopen();
    let all = fresh.usage_records(&UsageFilter::default(), 20_000).await.unwrap();
    assert_eq!(all.len(), 10_000);
    assert!(all.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    assert_eq!(all[0], record(NOV_30, Some("u1"), None, "m", (1, 2)));
    let total = fresh.tokens_since_by(UsageGroup::User, 0).await.unwrap();
    assert_eq!(total.get("u1"), Some(&30_000));
    // A record sent after shutdown is refused and counted, not lost silently.
    sink.record(record(NOV_30, None, None, "m", (1, 1)));
    assert_eq!(sink.stats().dropped(), 1);
}

/// Grouping by day, model, key and user; filters never leak another user's rows.
async fn summaries_group_and_filter(db: &TestDb) {
    let mut cached = record(NOV_30 + 2 * DAY + 5, Some("bob"), None, "big", (100, 0));
    cached.cached = true;
    cached.spend = 0.0;
    let records = vec![
        record(NOV_30 + 10, Some("ann"), Some("k1"), "small", (10, 20)),
        record(NOV_30 + DAY - 1, Some("ann"), Some("k2"), "big", (1, 2)),
        record(NOV_30 + DAY, Some("bob"), Some("k3"), "small", (5, 5)),
        record(NOV_30 + DAY + 1, None, None, "small", (7, 0)),
        cached,
    ];
    db.store.insert_usage(&records).await.unwrap();
    let s = &db.store;
    let row = |group: Option<&str>, requests, p, c, cached, spend| UsageRow {
        group: group.map(str::to_owned),
        requests,
        prompt_tokens: p,
        completion_tokens: c,
        cached,
        spend,
    };
    let all = UsageFilter::default();
    assert_eq!(
        s.usage_summary(&all, UsageGroup::Day).await.unwrap(),
        [
            row(Some("2026-11-30"), 2, 11, 22, 0, 0.5),
            row(Some("2026-12-01"), 2, 12, 5, 0, 0.5),
            row(Some("2026-12-02"), 1, 100, 0, 1, 0.0),
        ]
    );
    assert_eq!(
        s.usage_summary(&all, UsageGroup::Model).await.unwrap(),
        [row(Some("big"), 2, 101, 2, 1, 0.25), row(Some("small"), 3, 22, 25, 0, 0.75)]
    );
    let point = |day: &str, group: Option<&str>, requests, p, c, cached, spend| UsageSeriesRow {
        day: day.to_owned(),
        group: group.map(str::to_owned),
        requests,
        prompt_tokens: p,
        completion_tokens: c,
        cached,
        spend,
    };
    assert_eq!(
        s.usage_series(&all, UsageGroup::Model).await.unwrap(),
        [
            point("2026-11-30", Some("big"), 1, 1, 2, 0, 0.25),
            point("2026-11-30", Some("small"), 1, 10, 20, 0, 0.25),
            point("2026-12-01", Some("small"), 2, 12, 5, 0, 0.5),
            point("2026-12-02", Some("big"), 1, 100, 0, 1, 0.0),
        ]
    );
    // Records without a user come last within their day, on both engines.
    assert_eq!(
        s.usage_series(&all, UsageGroup::User).await.unwrap(),
        [
            point("2026-11-30", Some("ann"), 2, 11, 22, 0, 0.5),
            point("2026-12-01", Some("bob"), 1, 5, 5, 0, 0.25),
            point("2026-12-01", None, 1, 7, 0, 0, 0.25),
            point("2026-12-02", Some("bob"), 1, 100, 0, 1, 0.0),
        ]
    );
    let ann_only = UsageFilter { user_id: Some("ann"), ..Default::default() };
    assert_eq!(
        s.usage_series(&ann_only, UsageGroup::Key).await.unwrap(),
        [
            point("2026-11-30", Some("k1"), 1, 10, 20, 0, 0.25),
            point("2026-11-30", Some("k2"), 1, 1, 2, 0, 0.25)
        ]
    );
    assert!(s.usage_series(&all, UsageGroup::Day).await.is_err(), "days are not split by days");
    let by_user = s.usage_summary(&all, UsageGroup::User).await.unwrap();
    assert_eq!(by_user.len(), 3);
    assert!(by_user.contains(&row(None, 1, 7, 0, 0, 0.25)), "{by_user:?}");
    assert!(by_user.contains(&row(Some("ann"), 2, 11, 22, 0, 0.5)), "{by_user:?}");
    let ann = UsageFilter { user_id: Some("ann"), ..Default::default() };
    assert_eq!(
        s.usage_summary(&ann, UsageGroup::Key).await.unwrap(),
        [row(Some("k1"), 1, 10, 20, 0, 0.25), row(Some("k2"), 1, 1, 2, 0, 0.25)]
    );
    let anns = s.usage_records(&ann, 100).await.unwrap();
    assert_eq!(anns, records[..2]);
    let bob_day_two = UsageFilter {
        user_id: Some("bob"),
        from_ms: Some(NOV_30 + DAY),
        to_ms: Some(NOV_30 + 2 * DAY),
        ..Default::default()
    };
    assert_eq!(s.usage_records(&bob_day_two, 100).await.unwrap(), records[2..3]);
    let nobody = UsageFilter { user_id: Some("carol"), ..Default::default() };
    assert!(s.usage_summary(&nobody, UsageGroup::Day).await.unwrap().is_empty());
    assert!(s.usage_records(&nobody, 100).await.unwrap().is_empty());

    let by_key = s.tokens_since_by(UsageGroup::Key, 0).await.unwrap();
    assert_eq!(by_key.get("k1"), Some(&30));
    assert_eq!(by_key.get("nope"), None);
    let by_user = s.tokens_since_by(UsageGroup::User, NOV_30 + DAY + 1).await.unwrap();
    assert_eq!(by_user.get("bob"), Some(&100));

    assert_eq!(s.delete_usage_before(NOV_30 + DAY).await.unwrap(), 2);
    assert_eq!(s.usage_records(&all, 100).await.unwrap(), records[2..]);
}

/// The table disappears under the writer: it keeps the batch, retries, and writes it
/// once the table is back.
async fn an_outage_loses_nothing(db: &TestDb) {
    db.store.open().await.unwrap();
    db.exec("DROP TABLE usage_records").await;
    let cfg = UsageWriterConfig { flush_every: Duration::from_millis(1), ..Default::default() };
    let (sink, writer) = UsageWriter::start(db.store.clone(), cfg);
    for i in 0..5 {
        sink.record(record(NOV_30 + i, Some("u"), None, "m", (1, 1)));
    }
    let stats = writer.stats().clone();
    within(stats.wait_until(|s| s.failures() >= 1)).await;
    assert_eq!((stats.written(), stats.pending()), (0, 5));
    db.exec(match db.store.engine() {
        Engine::Sqlite => include_str!("../../migrations/0003_usage.sqlite.sql"),
        Engine::Postgres => include_str!("../../migrations/0003_usage.postgres.sql"),
    })
    .await;
    within(stats.wait_until(|s| s.written() == 5)).await;
    assert_eq!(writer.shutdown().await, 5);
    assert_eq!(db.count("SELECT COUNT(*) FROM usage_records").await, 5);
}

/// A bound on real waits, so a broken writer fails the test instead of hanging it.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("finished within 30 s")
}

both_engines!(count_in_is_count_out, summaries_group_and_filter, an_outage_loses_nothing);
