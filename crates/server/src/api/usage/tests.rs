//! `/v1/usage` through the router on SQLite and Postgres (records inserted with
//! `Store::insert_usage`), and [`scope`] for a non-admin owner.

#![allow(clippy::unwrap_used)]

use http::StatusCode;
use serde_json::json;
use sluice_store::UsageRecord;

use super::{Scope, filter, scope};
use crate::api::{
    data_error::DataError,
    data_tests::{A, B, call, drop_schema, owner_id, postgres_schema, state},
    owner::{OwnRecords, Owner},
};
use crate::state::AppState;

/// 2026-11-29T00:00:00Z.
const NOV29: i64 = 1_796_083_200_000 - 2 * 86_400_000;
const HOUR: i64 = 3_600_000;

/// A record attributed as `tenancy::usage_owner` does: a service key's carries only
/// its key id; a signed-in user's, its user id.
fn record(at: i64, owner: &str, model: &str, prompt: u64, cached: bool) -> UsageRecord {
    let by_key = owner.starts_with("service:");
    UsageRecord {
        at,
        user_id: (!by_key).then(|| owner.to_owned()),
        key_id: by_key.then(|| owner.to_owned()),
        model: model.to_owned(),
        backend: "b".into(),
        dialect: "openai".into(),
        prompt_tokens: prompt,
        completion_tokens: 10,
        cached,
        ttft_ms: cached.then_some(5),
        duration_ms: 100,
        status: 200,
        spend: 0.25,
    }
}

/// Key A: two on the 29th (llama, qwen), one on the 30th (llama); key B: one on the
/// 30th; user u7 (no key): one on the 29th.
async fn seed(s: &AppState) -> (String, String) {
    let (a, b) = (owner_id(A), owner_id(B));
    let records = [
        record(NOV29 + HOUR, &a, "llama", 1, false),
        record(NOV29 + 2 * HOUR, &a, "qwen", 2, true),
        record(NOV29 + 25 * HOUR, &a, "llama", 4, false),
        record(NOV29 + 26 * HOUR, &b, "llama", 8, false),
        record(NOV29 + 3 * HOUR, "u7", "llama", 16, false),
    ];
    s.store.insert_usage(&records).await.unwrap();
    (a, b)
}

const RANGE: &str = "from=2026-11-29&to=2026-11-30";

async fn reports(s: &AppState) {
    let (a, b) = seed(s).await;
    let by_day = call(s, "GET", &format!("/v1/usage?{RANGE}"), A, "").await;
    assert_eq!(by_day.status, StatusCode::OK, "{}", by_day.text());
    let j = by_day.json();
    assert_eq!(j["from"], "2026-11-29T00:00:00.000Z");
    assert_eq!(j["to"], "2026-12-01T00:00:00.000Z", "a bare `to` date covers that day");
    assert_eq!(j["group_by"], "day");
    let days: Vec<_> = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].clone(), r["requests"].clone(), r["prompt_tokens"].clone()))
        .collect();
    assert_eq!(days, [(json!("2026-11-29"), json!(2), json!(3)), (json!("2026-11-30"), json!(1), json!(4))]);

    // Only the 29th, by model, as CSV.
    let csv = call(
        s,
        "GET",
        "/v1/usage?from=2026-11-29T00:00:00Z&to=2026-11-30T00:00:00Z&group_by=model&format=csv",
        A,
        "",
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text());
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(
        csv.text(),
        "model,requests,prompt_tokens,completion_tokens,cached,spend\nllama,1,1,10,0,0.25\nqwen,1,2,10,1,0.25\n"
    );

    // Raw records, oldest first.
    let raw = call(s, "GET", &format!("/v1/usage?{RANGE}&group_by=none&format=csv"), A, "").await;
    let lines: Vec<_> = raw.text().lines().collect();
    assert_eq!(lines.len(), 4, "{}", raw.text());
    assert!(lines[0].starts_with("at,user_id,key_id,model"));
    assert_eq!(lines[2], format!("2026-11-29T02:00:00.000Z,,{a},qwen,b,openai,2,10,true,5,100,200,0.25"));
    let raw = call(s, "GET", &format!("/v1/usage?{RANGE}&records=true"), A, "").await.json();
    assert_eq!((raw["truncated"].clone(), raw["data"].as_array().unwrap().len()), (json!(false), 3));

    // Admins: everyone, by key or by user, or one user.
    let groups = |v: serde_json::Value| -> Vec<(Option<String>, u64)> {
        let mut g: Vec<_> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["group"].as_str().map(str::to_owned), r["requests"].as_u64().unwrap()))
            .collect();
        g.sort();
        g
    };
    let by_key = call(s, "GET", &format!("/v1/usage?{RANGE}&all=true&group_by=key"), A, "").await.json();
    let mut want = vec![(None, 1), (Some(a.clone()), 3), (Some(b.clone()), 1)];
    want.sort();
    assert_eq!(groups(by_key), want);
    let by_user = call(s, "GET", &format!("/v1/usage?{RANGE}&all=true&group_by=user"), A, "").await.json();
    assert_eq!(groups(by_user), [(None, 4), (Some("u7".to_owned()), 1)]);
    let theirs = call(s, "GET", &format!("/v1/usage?{RANGE}&user=u7&group_by=model"), A, "").await.json();
    assert_eq!(
        theirs["data"],
        json!([{"group": "llama", "requests": 1, "prompt_tokens": 16, "completion_tokens": 10, "cached": 0, "spend": 0.25}])
    );
    // Days split by model or by user: the series of a stacked chart.
    let series = call(s, "GET", &format!("/v1/usage?{RANGE}&all=true&split=model"), A, "").await;
    assert_eq!(series.status, StatusCode::OK, "{}", series.text());
    let j = series.json();
    assert_eq!((j["object"].clone(), j["split"].clone()), (json!("usage.series"), json!("model")));
    let points: Vec<_> = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["day"].as_str().unwrap().to_owned(), r["group"].clone(), r["prompt_tokens"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        points,
        [
            ("2026-11-29".to_owned(), json!("llama"), 17),
            ("2026-11-29".to_owned(), json!("qwen"), 2),
            ("2026-11-30".to_owned(), json!("llama"), 12),
        ]
    );
    let csv = call(s, "GET", &format!("/v1/usage?{RANGE}&user=u7&split=user&format=csv"), A, "").await;
    assert_eq!(
        csv.text(),
        "day,user,requests,prompt_tokens,completion_tokens,cached,spend\n2026-11-29,u7,1,16,10,0,0.25\n"
    );
    let mine = call(s, "GET", &format!("/v1/usage?{RANGE}&split=model"), B, "").await.json();
    assert_eq!(mine["data"].as_array().unwrap().len(), 1, "B's own series: {mine}");

    // B sees only B's own.
    let own = call(s, "GET", &format!("/v1/usage?{RANGE}&group_by=model"), B, "").await.json();
    assert_eq!(own["data"].as_array().unwrap().len(), 1);
    assert_eq!(own["data"][0]["prompt_tokens"], 8);

    for (query, param) in [
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-11-30&to=2026-11-29", "from"),
        ("group_by=week", "group_by"),
        ("format=xml", "format"),
        ("all=true&user=x", "user"),
        ("all=maybe", "query"),
        ("split=week", "split"),
        ("group_by=model&split=user", "split"),
    ] {
        let r = call(s, "GET", &format!("/v1/usage?{query}"), A, "").await;
        assert_eq!(
            (r.status, r.param()),
            (StatusCode::BAD_REQUEST, param.to_owned()),
            "{query}: {}",
            r.text()
        );
    }
}

#[tokio::test]
async fn sqlite_reports() {
    reports(&state("sqlite::memory:")).await;
}

#[tokio::test]
async fn postgres_reports() {
    let (url, schema) = postgres_schema().await;
    reports(&state(&url)).await;
    drop_schema(&schema).await;
}

/// No principal is a non-admin owner until users land; the rule is tested on [`scope`],
/// which the handler calls for every request.
#[test]
fn a_non_admin_sees_only_its_own_usage() {
    let user = Owner { id: "u1".into(), admin: false, records: OwnRecords::ByUserId };
    assert_eq!(scope(&user, None, false, false).unwrap(), Scope::Own);
    assert_eq!(scope(&user, Some("u1"), false, false).unwrap(), Scope::Own);
    // `split=user` is a per-user breakdown too: the handler passes `by_user` for it.
    for (other, all, by_user) in [(Some("u2"), false, false), (None, true, false), (None, false, true)] {
        let refused = scope(&user, other, all, by_user).unwrap_err();
        assert!(matches!(refused, DataError::Forbidden(_)), "{other:?} {all} {by_user}: {refused:?}");
        assert_eq!(refused.status_code(), StatusCode::FORBIDDEN);
    }
    let own = filter(&user, &Scope::Own, 1, 2);
    assert_eq!((own.user_id, own.key_id, own.from_ms, own.to_ms), (Some("u1"), None, Some(1), Some(2)));
    let admin = Owner { id: "service:ab".into(), admin: true, records: OwnRecords::ByKeyId };
    assert_eq!(scope(&admin, Some("u2"), false, false).unwrap(), Scope::User("u2".into()));
    assert_eq!(scope(&admin, None, true, true).unwrap(), Scope::All);
    let own = filter(&admin, &Scope::Own, 1, 2);
    assert_eq!((own.user_id, own.key_id), (None, Some("service:ab")));
    let local = Owner { id: "local".into(), admin: true, records: OwnRecords::Every };
    let own = filter(&local, &Scope::Own, 1, 2);
    assert_eq!((own.user_id, own.key_id), (None, None), "keyless mode: every record is the one user's");
}

#[tokio::test]
async fn retention_is_admin_settable_at_runtime() {
    let s = state("sqlite::memory:");
    let r = call(&s, "PUT", "/admin/retention", A, r#"{"usage_days": 90}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"conversations_days": 0, "usage_days": 90, "persisted": false}));
    assert_eq!(s.retention.get().usage_days, 90);
    let got = call(&s, "GET", "/admin/retention", B, "").await.json();
    assert_eq!(got["usage_days"], 90);
    let r = call(&s, "PUT", "/admin/retention", A, r#"{"usage_days": -1}"#).await;
    assert_eq!((r.status, r.param()), (StatusCode::BAD_REQUEST, "usage_days".into()), "{}", r.text());
}

#[tokio::test]
async fn writer_counters_are_in_metrics() {
    let s = state("sqlite::memory:");
    let before = call(&s, "GET", "/metrics", A, "").await;
    assert!(!before.text().contains("sluice_usage_records"), "no writer, no counters");
    s.start_usage();
    s.usage.sink().unwrap().record(record(NOV29, "u", "m", 1, false));
    s.usage.sink().unwrap().stats().wait_until(|st| st.written() == 1).await;
    let text = call(&s, "GET", "/metrics", A, "").await;
    let text = text.text();
    assert!(text.contains("sluice_usage_records_written_total 1\n"), "{text}");
    assert!(text.contains("sluice_usage_records_dropped_total 0\n"), "{text}");
    assert!(text.contains("sluice_usage_records_pending 0\n"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
}
