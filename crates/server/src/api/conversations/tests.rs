//! Router tests of `/v1/conversations*` on SQLite and Postgres: the whole flow for one
//! owner, and another owner's conversation answering 404 on every route.

#![allow(clippy::unwrap_used)]

use http::StatusCode;
use serde_json::Value;

use crate::api::data_tests::{A, B, call, drop_schema, postgres_schema, state};
use crate::state::AppState;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Create, list in pages, append (with a branch), get, rename, search, export, delete.
async fn flow(s: &AppState) {
    let first = call(s, "POST", "/v1/conversations", A, r#"{"title":" Trip to Lyon ","model":"m"}"#).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert_eq!(first.json()["title"], "Trip to Lyon");
    let first = id(&first.json());
    let untitled = call(s, "POST", "/v1/conversations", A, "").await;
    assert_eq!(untitled.status, StatusCode::CREATED);
    assert_eq!(untitled.json()["title"], "");
    let second = id(&untitled.json());

    let q = call(
        s,
        "POST",
        &format!("/v1/conversations/{first}/messages"),
        A,
        r#"{"role":"user","content":"best croissant in Lyon?"}"#,
    )
    .await;
    assert_eq!(q.status, StatusCode::CREATED, "{}", q.text());
    let q = id(&q.json());
    for answer in ["Try the old town bakery.", "Regenerated: the market hall."] {
        let body = format!(r#"{{"role":"assistant","content":"{answer}","parent_id":"{q}","model":"m"}}"#);
        let a = call(s, "POST", &format!("/v1/conversations/{first}/messages"), A, &body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        assert_eq!(a.json()["parent_id"], q.as_str());
    }
    let bad_role = call(
        s,
        "POST",
        &format!("/v1/conversations/{first}/messages"),
        A,
        r#"{"role":"robot","content":"x"}"#,
    )
    .await;
    assert_eq!((bad_role.status, bad_role.param()), (StatusCode::BAD_REQUEST, "role".into()));
    let foreign_parent = format!(r#"{{"role":"user","content":"x","parent_id":"{q}"}}"#);
    let r = call(s, "POST", &format!("/v1/conversations/{second}/messages"), A, &foreign_parent).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a parent from another conversation");

    // The conversation with messages moved to the top; pages of one follow the cursor.
    let page = call(s, "GET", "/v1/conversations?limit=1", A, "").await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], first.as_str());
    let next = page["next"].as_str().unwrap().to_owned();
    let page = call(s, "GET", &format!("/v1/conversations?limit=1&before={next}"), A, "").await.json();
    assert_eq!(page["data"][0]["id"], second.as_str());
    assert!(page["next"].is_null(), "{page}");
    for (path, param) in [
        ("/v1/conversations?before=garbage", "before"),
        ("/v1/conversations?limit=0", "limit"),
        ("/v1/conversations?limit=101", "limit"),
        ("/v1/conversations?limit=x", "query"),
    ] {
        let r = call(s, "GET", path, A, "").await;
        assert_eq!((r.status, r.param()), (StatusCode::BAD_REQUEST, param.into()), "{path}: {}", r.text());
    }

    let got = call(s, "GET", &format!("/v1/conversations/{first}"), A, "").await.json();
    assert_eq!(got["conversation"]["title"], "Trip to Lyon");
    let messages = got["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "both branches are kept");
    assert_eq!(messages[2]["content"], "Regenerated: the market hall.");

    let renamed =
        call(s, "PATCH", &format!("/v1/conversations/{second}"), A, r#"{"title":"Lyon, day 2"}"#).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());
    let long = format!(r#"{{"title":"{}"}}"#, "é".repeat(201));
    let r = call(s, "PATCH", &format!("/v1/conversations/{second}"), A, &long).await;
    assert_eq!((r.status, r.param()), (StatusCode::BAD_REQUEST, "title".into()));
    let listed = call(s, "GET", "/v1/conversations", A, "").await.json();
    assert_eq!(listed["data"][1]["title"], "Lyon, day 2");

    let hits = call(s, "GET", "/v1/conversations/search?q=croissant%20Lyon", A, "").await;
    assert_eq!(hits.status, StatusCode::OK, "{}", hits.text());
    let hits = hits.json();
    assert_eq!(hits["data"].as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits["data"][0]["message_id"], q.as_str());
    assert!(hits["data"][0]["snippet"].as_str().unwrap().contains("**croissant**"), "{hits}");
    let too_long = format!("/v1/conversations/search?q={}", "a".repeat(201));
    for path in ["/v1/conversations/search?q=%20", too_long.as_str(), "/v1/conversations/search"] {
        let r = call(s, "GET", path, A, "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
    }

    let export = call(s, "GET", &format!("/v1/conversations/{first}/export"), A, "").await;
    assert_eq!(export.status, StatusCode::OK);
    let disposition = export.headers["content-disposition"].to_str().unwrap();
    assert_eq!(disposition, format!("attachment; filename=\"conversation-{first}.json\""));
    assert_eq!(export.json()["format"], "sluice.conversation.v1");
    assert_eq!(export.json()["messages"].as_array().unwrap().len(), 3);

    let gone = call(s, "DELETE", &format!("/v1/conversations/{first}"), A, "").await;
    assert_eq!(gone.json()["deleted"], true);
    for (method, path) in
        [("GET", format!("/v1/conversations/{first}")), ("DELETE", format!("/v1/conversations/{first}"))]
    {
        assert_eq!(call(s, method, &path, A, "").await.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let hits = call(s, "GET", "/v1/conversations/search?q=croissant", A, "").await.json();
    assert_eq!(hits["data"], serde_json::json!([]), "messages went with their conversation");
}

/// B sees none of A's conversations, and every route on one is a 404 like a missing id.
async fn other_owner_gets_404(s: &AppState) {
    let c = id(&call(s, "POST", "/v1/conversations", A, r#"{"title":"private"}"#).await.json());
    let m = call(
        s,
        "POST",
        &format!("/v1/conversations/{c}/messages"),
        A,
        r#"{"role":"user","content":"secret plans"}"#,
    )
    .await;
    assert_eq!(m.status, StatusCode::CREATED);
    let append = r#"{"role":"user","content":"x"}"#;
    let cases = [
        ("GET", format!("/v1/conversations/{c}"), ""),
        ("PATCH", format!("/v1/conversations/{c}"), r#"{"title":"mine now"}"#),
        ("DELETE", format!("/v1/conversations/{c}"), ""),
        ("GET", format!("/v1/conversations/{c}/export"), ""),
        ("POST", format!("/v1/conversations/{c}/messages"), append),
    ];
    for (method, path, body) in &cases {
        let theirs = call(s, method, path, B, body).await;
        let missing =
            call(s, method, &path.replace(&c, "00000000-0000-7000-8000-000000000000"), B, body).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(theirs.json()["error"]["type"], missing.json()["error"]["type"]);
    }
    assert_eq!(call(s, "GET", "/v1/conversations", B, "").await.json()["data"], serde_json::json!([]));
    assert_eq!(
        call(s, "GET", "/v1/conversations/search?q=secret", B, "").await.json()["data"],
        serde_json::json!([])
    );
    // A's conversation is untouched.
    let kept = call(s, "GET", &format!("/v1/conversations/{c}"), A, "").await.json();
    assert_eq!(kept["conversation"]["title"], "private");
    assert_eq!(kept["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_flow() {
    flow(&state("sqlite::memory:")).await;
}

#[tokio::test]
async fn sqlite_other_owner_gets_404() {
    other_owner_gets_404(&state("sqlite::memory:")).await;
}

#[tokio::test]
async fn postgres_flow_and_isolation() {
    let (url, schema) = postgres_schema().await;
    let s = state(&url);
    flow(&s).await;
    other_owner_gets_404(&s).await;
    drop_schema(&schema).await;
}
