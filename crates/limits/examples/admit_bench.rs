//! Cost of one admission and its completion: 10,000 keys each with limits, locally,
//! and the round trip through Redis at 127.0.0.1:6379.
//!
//! `cargo run -p sluice-limits --release --example admit_bench [local|redis] [redis_url]`
//! (both parts by default).

use std::{sync::Arc, time::Instant};

use sluice_limits::{LimitSpec, Limiter, LimitsConfig, Subject, SystemClock};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let part = std::env::args().nth(1).unwrap_or_default();
    let keys_n: usize = std::env::var("BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let redis_url = std::env::args().nth(2).unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    // Generous limits: every admission passes, so the loop measures the full path.
    let key_spec = LimitSpec {
        rpm: Some(1_000_000_000),
        tpm: Some(1_000_000_000_000),
        max_streams: Some(64),
        daily_tokens: Some(u64::MAX / 4),
        monthly_tokens: Some(u64::MAX / 4),
    };
    let user_spec = LimitSpec { rpm: Some(1_000_000_000), ..LimitSpec::default() };
    let keys: Vec<Subject> = (0..keys_n).map(|i| Subject::key(&format!("k{i}"))).collect();
    let users: Vec<Subject> = (0..keys_n.div_ceil(10)).map(|i| Subject::user(&format!("u{i}"))).collect();

    let local = Limiter::new(LimitsConfig::default(), Arc::new(SystemClock)).expect("no Redis");
    for rounds in [1, 3] {
        if part == "redis" {
            break;
        }
        let n = 1_000_000;
        let ns = run(&local, &keys, &users, &key_spec, &user_spec, n, rounds == 3).await;
        let what = if rounds == 3 { "key + user" } else { "key only" };
        println!("local, {keys_n} keys, {what}: {ns:.0} ns per admit+complete ({n} runs)");
    }

    if part == "local" {
        return;
    }
    let prefix = format!("bench:limits:{}:", std::process::id());
    let cfg = LimitsConfig {
        redis_url: Some(redis_url),
        redis_prefix: prefix,
        redis_timeout_ms: 1000,
        ..LimitsConfig::default()
    };
    let shared = Limiter::new(cfg, Arc::new(SystemClock)).expect("Redis URL");
    let n = 20_000;
    let ns = run(&shared, &keys, &users, &key_spec, &user_spec, n, true).await;
    println!(
        "Redis, key + user: {:.1} µs per admit+complete ({n} runs, fallback active: {}, errors: {})",
        ns / 1000.0,
        shared.fallback_active(),
        shared.redis_errors_total()
    );
}

async fn run(
    limiter: &Limiter,
    keys: &[Subject],
    users: &[Subject],
    key_spec: &LimitSpec,
    user_spec: &LimitSpec,
    n: usize,
    with_user: bool,
) -> f64 {
    let (start, cpu_start) = (Instant::now(), cpu_ns());
    for i in 0..n {
        let key = (keys[i % keys.len()].clone(), key_spec);
        let admission = if with_user {
            limiter.admit(&[key, (users[i % users.len()].clone(), user_spec)], 100).await
        } else {
            limiter.admit(&[key], 100).await
        };
        admission.expect("generous limits").complete(120).await;
    }
    let wall = start.elapsed().as_nanos() as f64 / n as f64;
    match (cpu_start, cpu_ns()) {
        (Some(a), Some(b)) => println!("  ({wall:.0} ns wall, {:.0} ns on CPU)", (b - a) as f64 / n as f64),
        _ => println!("  ({wall:.0} ns wall)"),
    }
    wall
}

/// Time this thread spent on a CPU (Linux), so a busy machine does not inflate the numbers.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
