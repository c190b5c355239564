//! Store benchmarks: usage-writer throughput (SQLite file and Postgres) and
//! conversation list/search latency over 1,000,000 messages in a SQLite file.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-store cargo run -p sluice-store --release --example store_bench -- \
//!     [usage|conversations|all] [--records N] [--postgres URL]
//! ```
//! Bounded loops only: N records, then 500 queries of each kind.

#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop loudly

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use sluice_store::{Page, Store, StoreConfig, UsageRecord, UsageWriter, UsageWriterConfig};
use sqlx::Connection as _;

const USERS: usize = 1_000;
const CONVERSATIONS_PER_USER: usize = 100;
const MESSAGES_PER_CONVERSATION: usize = 10;
const VOCABULARY: usize = 20_000;
const QUERIES: usize = 500;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let records: usize = flag("--records").map_or(200_000, |n| n.parse().unwrap());
    let postgres = flag("--postgres").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    if matches!(what, "usage" | "all") {
        usage_sqlite(records).await;
        usage_postgres(records, &postgres).await;
    }
    if matches!(what, "conversations" | "all") {
        conversations().await;
    }
}

fn store(url: &str) -> Arc<Store> {
    Arc::new(Store::new(&StoreConfig { url: Some(url.to_owned()) }))
}

fn usage_record(i: usize) -> UsageRecord {
    UsageRecord {
        at: 1_796_000_000_000 + i as i64,
        user_id: Some(format!("user-{}", i % USERS)),
        key_id: Some(format!("key-{}", i % 37)),
        model: "smollm2".to_owned(),
        backend: "local".to_owned(),
        dialect: "openai".to_owned(),
        prompt_tokens: 120,
        completion_tokens: 300,
        cached: i.is_multiple_of(10),
        ttft_ms: Some(45),
        duration_ms: 900,
        status: 200,
        spend: 0.0004,
    }
}

/// Pushes `n` records through a sink and times until `shutdown` returns.
async fn usage_run(label: &str, store: Arc<Store>, n: usize) {
    store.open().await.unwrap();
    // The queue holds all N so this measures the writer, not the drop policy.
    let cfg = UsageWriterConfig { queue: n, ..Default::default() };
    let started = Instant::now();
    let (sink, writer) = UsageWriter::start(store.clone(), cfg);
    for i in 0..n {
        sink.record(usage_record(i));
    }
    let pushed = started.elapsed();
    let written = writer.shutdown().await;
    let total = started.elapsed();
    println!(
        "usage writer, {label}: {written} of {n} records written ({} dropped) in {:.2} s = {:.0} records/s \
         (pushing took {:.0} ms)",
        sink.stats().dropped(),
        total.as_secs_f64(),
        written as f64 / total.as_secs_f64(),
        pushed.as_secs_f64() * 1e3,
    );
}

async fn usage_sqlite(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    usage_run("SQLite file (WAL, synchronous=FULL)", store(&url), n).await;
}

async fn usage_postgres(n: usize, base: &str) {
    let Ok(mut admin) = sqlx::PgConnection::connect(base).await else {
        println!("usage writer, Postgres: skipped, {base} is not reachable");
        return;
    };
    let schema = format!("sluice_bench_{}", std::process::id());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    let url = format!("{base}?options=-c%20search_path%3D{schema}");
    usage_run("Postgres", store(&url), n).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
}

/// Word `i` of a made-up vocabulary: `i` written in base 16 with syllables for digits.
fn word(mut i: usize) -> String {
    const SYLLABLES: [&str; 16] =
        ["ka", "lo", "mi", "ren", "tu", "sa", "vo", "ne", "di", "por", "gel", "fi", "zu", "ba", "sho", "te"];
    let mut w = String::new();
    loop {
        w.push_str(SYLLABLES[i % 16]);
        i /= 16;
        if i == 0 {
            return w;
        }
    }
}

/// A word index, log-uniform (Zipf-like): a few words are everywhere, most are rare.
fn word_index(rng: &mut StdRng) -> usize {
    ((VOCABULARY as f64).powf(rng.random::<f64>()) as usize).saturating_sub(1).min(VOCABULARY - 1)
}

fn sentence(rng: &mut StdRng, words: &[String]) -> String {
    let n = rng.random_range(5..40);
    (0..n).map(|_| words[word_index(rng)].as_str()).collect::<Vec<_>>().join(" ")
}

async fn conversations() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conversations.db").display());
    let s = store(&url);
    let pool = s.open().await.unwrap();
    let words: Vec<String> = (0..VOCABULARY).map(word).collect();
    let mut rng = StdRng::seed_from_u64(7);
    let now = 1_796_000_000_000_i64;

    let started = Instant::now();
    let mut messages = 0usize;
    for user in 0..USERS {
        let user_id = format!("user-{user:04}");
        let mut tx = pool.begin().await.unwrap();
        let mut convs = Vec::new();
        for _ in 0..CONVERSATIONS_PER_USER {
            let id = uuid::Uuid::now_v7().to_string();
            let updated = now - rng.random_range(0..90 * 86_400_000_i64);
            convs.push((id, updated));
        }
        let sql = format!(
            "INSERT INTO conversations (id, user_id, title, model, created_at, updated_at) VALUES {}",
            placeholders(convs.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for (id, updated) in &convs {
            let title = sentence(&mut rng, &words);
            q = q
                .bind(id.as_str())
                .bind(user_id.as_str())
                .bind(title)
                .bind("m")
                .bind(*updated)
                .bind(*updated);
        }
        q.execute(&mut *tx).await.unwrap();
        // All of a user's messages in one INSERT (7,000 binds); parents chained.
        let sql = format!(
            "INSERT INTO messages (id, conversation_id, user_id, parent_id, role, content, created_at) VALUES {}",
            placeholders(convs.len() * MESSAGES_PER_CONVERSATION, 7)
        );
        let mut q = sqlx::query(&sql);
        for (conv, updated) in &convs {
            let ids: Vec<String> =
                (0..MESSAGES_PER_CONVERSATION).map(|_| uuid::Uuid::now_v7().to_string()).collect();
            for (i, id) in ids.iter().enumerate() {
                let parent = (i > 0).then(|| ids[i - 1].clone());
                let role = if i.is_multiple_of(2) { "user" } else { "assistant" };
                let at = updated - (MESSAGES_PER_CONVERSATION - i) as i64 * 1000;
                q = q
                    .bind(id.clone())
                    .bind(conv.clone())
                    .bind(user_id.clone())
                    .bind(parent)
                    .bind(role)
                    .bind(sentence(&mut rng, &words))
                    .bind(at);
            }
            messages += MESSAGES_PER_CONVERSATION;
        }
        q.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    let load = started.elapsed();
    let size = std::fs::metadata(dir.path().join("conversations.db")).map(|m| m.len()).unwrap_or(0);
    println!(
        "conversations: loaded {messages} messages, {} conversations, {USERS} users into a SQLite file in {:.1} s \
         ({:.0} messages/s; file {} MB)",
        USERS * CONVERSATIONS_PER_USER,
        load.as_secs_f64(),
        messages as f64 / load.as_secs_f64(),
        size / 1_000_000
    );

    let mut list = Vec::with_capacity(QUERIES);
    let mut list2 = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let user = format!("user-{:04}", rng.random_range(0..USERS));
        let t = Instant::now();
        let (page, next) = s.list_conversations(&user, &Page { before: None, limit: 50 }).await.unwrap();
        list.push(t.elapsed());
        assert_eq!(page.len(), 50);
        let t = Instant::now();
        let (page, _) = s.list_conversations(&user, &Page { before: next, limit: 50 }).await.unwrap();
        list2.push(t.elapsed());
        assert_eq!(page.len(), 50);
    }
    report("list_conversations, first page of 50", &mut list);
    report("list_conversations, second page of 50 (cursor)", &mut list2);

    let mut search = Vec::with_capacity(QUERIES);
    let mut hits = 0;
    for _ in 0..QUERIES {
        let user = format!("user-{:04}", rng.random_range(0..USERS));
        let w = &words[word_index(&mut rng)];
        let t = Instant::now();
        hits += s.search_messages(&user, w, 20).await.unwrap().len();
        search.push(t.elapsed());
    }
    report(
        &format!("search_messages, one word, limit 20 ({:.1} hits on average)", hits as f64 / QUERIES as f64),
        &mut search,
    );
}

/// `(?, …), (?, …), …`: `rows` rows of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        // Anonymous: SQLite binds named placeholders in quadratic time.
        .map(|_| format!("({})", vec!["?"; cols].join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label}: {} queries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}
