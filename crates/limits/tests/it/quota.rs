//! Daily and monthly quotas on a manual UTC calendar.

use std::time::Duration;

use sluice_limits::{LimitKind, LimitSpec, LimitsConfig, Subject};

use crate::{NOV30_NOON, local_limiter};

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

#[tokio::test(start_paused = true)]
async fn daily_quota_resets_at_utc_midnight() {
    let last_minute = NOV30_NOON + 12 * 60 * MINUTE_MS - MINUTE_MS; // 23:59:00Z
    let (limiter, clock) = local_limiter(LimitsConfig::default(), last_minute);
    let spec = LimitSpec { daily_tokens: Some(1000), ..LimitSpec::default() };
    let key = Subject::key("q");
    limiter.admit(&[(key.clone(), &spec)], 600).await.expect("600 of 1000").complete(700).await;
    let refusal = limiter.admit(&[(key.clone(), &spec)], 400).await.expect_err("700 + 400 > 1000");
    assert_eq!(refusal.limit, LimitKind::DailyTokens);
    assert_eq!(refusal.retry_after, Duration::from_secs(60));
    assert_eq!(refusal.message, "quota: 1000 tokens per day for this key; resets in 60 s");
    drop(limiter.admit(&[(key.clone(), &spec)], 300).await.expect("exactly the rest"));
    clock.set(last_minute + MINUTE_MS - 1);
    limiter.admit(&[(key.clone(), &spec)], 1).await.expect_err("still 30 November");
    clock.set(last_minute + MINUTE_MS);
    drop(limiter.admit(&[(key, &spec)], 1000).await.expect("1 December: a new day"));
}

#[tokio::test(start_paused = true)]
async fn monthly_quota_resets_on_the_first() {
    let nov_15 = NOV30_NOON - 15 * DAY_MS;
    let (limiter, clock) = local_limiter(LimitsConfig::default(), nov_15);
    let spec = LimitSpec { monthly_tokens: Some(5000), ..LimitSpec::default() };
    let user = Subject::user("m");
    drop(limiter.admit(&[(user.clone(), &spec)], 5000).await.expect("all of it"));
    let refusal = limiter.admit(&[(user.clone(), &spec)], 1).await.expect_err("spent");
    assert_eq!(refusal.limit, LimitKind::MonthlyTokens);
    // From 15 November noon to 1 December 00:00: 15.5 days.
    assert_eq!(refusal.retry_after, Duration::from_millis(15 * DAY_MS + DAY_MS / 2));
    clock.set(NOV30_NOON + DAY_MS / 2 - 1);
    limiter.admit(&[(user.clone(), &spec)], 1).await.expect_err("30 November 23:59:59.999");
    clock.set(NOV30_NOON + DAY_MS / 2);
    drop(limiter.admit(&[(user, &spec)], 1).await.expect("December"));
}

#[tokio::test(start_paused = true)]
async fn seeded_usage_counts() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    let spec = LimitSpec { daily_tokens: Some(1000), monthly_tokens: Some(10_000), ..LimitSpec::default() };
    let key = Subject::key("seeded");
    limiter.seed_usage(&key, 900, 9_950).await;
    let refusal = limiter.admit(&[(key.clone(), &spec)], 100).await.expect_err("9950 + 100 > 10000");
    assert_eq!(refusal.limit, LimitKind::MonthlyTokens);
    drop(limiter.admit(&[(key.clone(), &spec)], 50).await.expect("950 today, 10000 this month"));
    assert_eq!(
        limiter.admit(&[(key, &spec)], 1).await.expect_err("month spent").limit,
        LimitKind::MonthlyTokens
    );
}

#[tokio::test(start_paused = true)]
async fn quotas_split_between_replicas_when_alone() {
    let cfg = LimitsConfig { replicas: 4, ..LimitsConfig::default() };
    let (limiter, _) = local_limiter(cfg, NOV30_NOON);
    let spec = LimitSpec { daily_tokens: Some(1000), rpm: Some(8), ..LimitSpec::default() };
    let key = Subject::key("r");
    // 200 were used before (seeded); this replica may use a quarter of the 800 left.
    limiter.seed_usage(&key, 200, 200).await;
    drop(limiter.admit(&[(key.clone(), &spec)], 200).await.expect("200 of its 200"));
    let refusal = limiter.admit(&[(key.clone(), &spec)], 1).await.expect_err("share spent");
    assert_eq!(refusal.limit, LimitKind::DailyTokens);
    // And a quarter of the rate: 2 per minute.
    drop(
        limiter
            .admit(&[(key.clone(), &LimitSpec { rpm: Some(8), ..LimitSpec::default() })], 0)
            .await
            .expect("2nd"),
    );
    let rpm = limiter.admit(&[(key, &LimitSpec { rpm: Some(8), ..LimitSpec::default() })], 0).await;
    assert_eq!(rpm.expect_err("3rd").limit, LimitKind::Rpm);
}
