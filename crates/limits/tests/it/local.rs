//! Rates, streams, the global cap, all-or-nothing and headers, on one replica with
//! paused time.

use std::time::Duration;

use sluice_limits::{LimitKind, LimitSpec, LimitsConfig, Subject};

use crate::{NOV30_NOON, header, local_limiter, rates};

#[tokio::test(start_paused = true)]
async fn rpm_burst_then_exact_retry_after() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    let spec = rates(Some(60), None);
    let key = Subject::key("a");
    for _ in 0..60 {
        drop(limiter.admit(&[(key.clone(), &spec)], 0).await.expect("within the burst"));
    }
    let refusal = limiter.admit(&[(key.clone(), &spec)], 0).await.expect_err("burst spent");
    assert_eq!(refusal.limit, LimitKind::Rpm);
    assert_eq!(refusal.subject, Some(key.clone()));
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    assert_eq!(refusal.message, "rate limit: 60 requests per minute for this key; retry in 1 s");
    assert_eq!(header(&refusal.headers, "retry-after").as_deref(), Some("1"));
    assert_eq!(header(&refusal.headers, "x-ratelimit-remaining-requests").as_deref(), Some("0"));

    tokio::time::advance(Duration::from_millis(999)).await;
    let again = limiter.admit(&[(key.clone(), &spec)], 0).await.expect_err("1 ms early");
    assert_eq!(again.retry_after, Duration::from_millis(1));
    tokio::time::advance(Duration::from_millis(1)).await;
    drop(limiter.admit(&[(key.clone(), &spec)], 0).await.expect("admitted after retry_after"));
    limiter.admit(&[(key, &spec)], 0).await.expect_err("and only one");
}

#[tokio::test(start_paused = true)]
async fn tpm_charged_by_estimate_corrected_at_completion() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    // 1000 tokens per minute: 60 ms per token.
    let spec = rates(None, Some(1000));
    let key = Subject::key("t");
    let remaining = |a: &sluice_limits::Admission| header(a.headers(), "x-ratelimit-remaining-tokens");

    let a = limiter.admit(&[(key.clone(), &spec)], 600).await.expect("fits");
    assert_eq!(remaining(&a).as_deref(), Some("400"));
    a.complete(300).await; // over-estimated: 300 come back
    let b = limiter.admit(&[(key.clone(), &spec)], 100).await.expect("fits");
    assert_eq!(remaining(&b).as_deref(), Some("600"));
    b.complete(600).await; // under-estimated: 500 more charged, 900 used
    let refusal = limiter.admit(&[(key.clone(), &spec)], 200).await.expect_err("900 + 200 > 1000");
    assert_eq!(refusal.limit, LimitKind::Tpm);
    assert_eq!(refusal.retry_after, Duration::from_millis(100 * 60));

    tokio::time::advance(Duration::from_secs(60)).await;
    let c = limiter.admit(&[(key.clone(), &spec)], 500).await.expect("a minute later");
    drop(c); // no completion: the estimate stands
    let d = limiter.admit(&[(key, &spec)], 0).await.expect("zero cost");
    assert_eq!(remaining(&d).as_deref(), Some("500"));
}

#[tokio::test(start_paused = true)]
async fn streams_released_on_drop_cancel_and_panic() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    let spec = LimitSpec { max_streams: Some(2), ..LimitSpec::default() };
    let key = Subject::key("s");
    let admit = || async { limiter.admit(&[(key.clone(), &spec)], 0).await };

    let first = admit().await.expect("1 of 2");
    let second = admit().await.expect("2 of 2");
    let refusal = admit().await.expect_err("third stream");
    assert_eq!(refusal.limit, LimitKind::Streams);
    assert!(refusal.message.contains("2 generations at once for this key"), "{}", refusal.message);
    drop(first);
    let third = admit().await.expect("a stream was released");
    assert_eq!(limiter.active_generations(), 2);

    // A generation whose task is cancelled gives its stream back.
    drop((second, third));
    let held = admit().await.expect("free");
    let task = tokio::spawn(async move {
        let _held = held;
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    assert_eq!(limiter.active_generations(), 1);
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    assert_eq!(limiter.active_generations(), 0);

    // So does one whose task panics.
    let held = admit().await.expect("free");
    let task = tokio::spawn(async move {
        let _held = held;
        panic!("generation failed");
    });
    assert!(task.await.expect_err("panicked").is_panic());
    assert_eq!(limiter.active_generations(), 0);
    let _a = admit().await.expect("both free");
    let _b = admit().await.expect("both free");
}

#[tokio::test(start_paused = true)]
async fn global_cap_and_default_key_streams() {
    let cfg =
        LimitsConfig { max_concurrent_generations: 3, default_key_streams: 2, ..LimitsConfig::default() };
    let (limiter, _) = local_limiter(cfg, NOV30_NOON);
    let open = LimitSpec::default();
    let a1 = limiter.admit(&[(Subject::key("a"), &open)], 0).await.expect("a 1");
    let _a2 = limiter.admit(&[(Subject::key("a"), &open)], 0).await.expect("a 2");
    let own = limiter.admit(&[(Subject::key("a"), &open)], 0).await.expect_err("default cap 2");
    assert_eq!(own.limit, LimitKind::Streams);
    let _b = limiter.admit(&[(Subject::key("b"), &open)], 0).await.expect("b 1");
    let global = limiter.admit(&[(Subject::key("c"), &open)], 0).await.expect_err("gateway full");
    assert_eq!(global.limit, LimitKind::Global);
    assert_eq!(global.subject, None);
    assert!(global.message.contains("limit of 3 concurrent generations"), "{}", global.message);
    drop(a1);
    drop(limiter.admit(&[(Subject::key("c"), &open)], 0).await.expect("a slot was released"));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_consumes_nothing_elsewhere() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    let (key, user) = (Subject::key("k"), Subject::user("u"));
    let key_spec = LimitSpec { rpm: Some(10), tpm: Some(1000), max_streams: Some(5), ..LimitSpec::default() };
    let user_spec = rates(Some(1), None);

    let first =
        limiter.admit(&[(key.clone(), &key_spec), (user.clone(), &user_spec)], 100).await.expect("1st");
    for _ in 0..3 {
        let r = limiter.admit(&[(key.clone(), &key_spec), (user.clone(), &user_spec)], 100).await;
        let r = r.expect_err("user rpm spent");
        assert_eq!((r.limit, r.subject), (LimitKind::Rpm, Some(user.clone())));
    }
    assert_eq!(limiter.active_generations(), 1);
    // The key paid for one request, one stream and 100 tokens: the refusals cost it nothing.
    let alone = limiter.admit(&[(key, &key_spec)], 0).await.expect("key alone");
    assert_eq!(header(alone.headers(), "x-ratelimit-remaining-requests").as_deref(), Some("8"));
    assert_eq!(header(alone.headers(), "x-ratelimit-remaining-tokens").as_deref(), Some("900"));
    assert_eq!(limiter.active_generations(), 2);
    drop(first);
}

#[tokio::test(start_paused = true)]
async fn headers_show_the_most_constraining_subject() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    let key_spec = rates(Some(60), Some(100_000));
    let user_spec = rates(Some(600), Some(1000));
    let a = limiter
        .admit(&[(Subject::key("k"), &key_spec), (Subject::user("u"), &user_spec)], 100)
        .await
        .expect("admitted");
    let h = a.headers();
    // Requests: the key (59 of 60 left, one 1 s interval to drain).
    assert_eq!(header(h, "x-ratelimit-limit-requests").as_deref(), Some("60"));
    assert_eq!(header(h, "x-ratelimit-remaining-requests").as_deref(), Some("59"));
    assert_eq!(header(h, "x-ratelimit-reset-requests").as_deref(), Some("1s"));
    // Tokens: the user (900 of 1000 left, 100 tokens at 60 ms each to drain).
    assert_eq!(header(h, "x-ratelimit-limit-tokens").as_deref(), Some("1000"));
    assert_eq!(header(h, "x-ratelimit-remaining-tokens").as_deref(), Some("900"));
    assert_eq!(header(h, "x-ratelimit-reset-tokens").as_deref(), Some("6s"));
    assert_eq!(header(h, "retry-after"), None);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_subjects_each_limited() {
    let (limiter, _) = local_limiter(LimitsConfig::default(), NOV30_NOON);
    let spec =
        LimitSpec { rpm: Some(2), tpm: Some(10_000), daily_tokens: Some(1_000_000), ..LimitSpec::default() };
    let keys: Vec<Subject> = (0..10_000).map(|i| Subject::key(&i.to_string())).collect();
    for _ in 0..2 {
        for k in &keys {
            limiter.admit(&[(k.clone(), &spec)], 10).await.expect("2 per key").complete(12).await;
        }
    }
    assert_eq!(limiter.subjects(), 10_000);
    for k in keys.iter().step_by(97) {
        assert_eq!(limiter.admit(&[(k.clone(), &spec)], 10).await.expect_err("third").limit, LimitKind::Rpm);
    }
    limiter.forget(&keys[0]).await;
    assert_eq!(limiter.subjects(), 9_999);
    drop(limiter.admit(&[(keys[0].clone(), &spec)], 10).await.expect("forgotten: fresh counters"));
    assert_eq!(limiter.active_generations(), 0);
}
