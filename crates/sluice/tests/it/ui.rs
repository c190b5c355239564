//! The web UI's gateway side against the mock upstream: first-run setup, generations
//! that outlive their SSE connection (re-attach with `Last-Event-ID`, stop, failures
//! stored with their error), other users' ids as 404, and the embedded bundle.

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sluice_mock::MockConfig;

use crate::util::{Frames, Gateway, SOON, client, mock};

/// A signed-in browser: its session cookie and CSRF token.
struct Browser {
    headers: HeaderMap,
}

impl Browser {
    fn from_login(resp_headers: &HeaderMap, body: &Value) -> Browser {
        let cookie = resp_headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
        headers.insert("x-csrf-token", HeaderValue::from_str(body["csrf_token"].as_str().unwrap()).unwrap());
        Browser { headers }
    }

    async fn send(&self, gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = client()
            .request(method.parse().unwrap(), gw.url(path))
            .headers(self.headers.clone())
            .header("origin", format!("http://{}", gw.addr));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn attach(&self, gw: &Gateway, conv: &str, message: &str, from: usize) -> (u16, Frames) {
        let r = client()
            .get(gw.url(&format!("/v1/conversations/{conv}/generations/{message}")))
            .headers(self.headers.clone())
            .header("last-event-id", from.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), Frames::sse(r))
    }
}

/// One SSE frame: (event, id, data).
fn parse(frame: &str) -> (String, Option<usize>, Value) {
    let (mut event, mut id, mut data) = (String::new(), None, Value::Null);
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
            data = serde_json::from_str(v).unwrap();
        }
    }
    (event, id, data)
}

/// The mock's answer of `n` tokens.
fn script(n: usize) -> String {
    (0..n).map(|i| format!("t{i} ")).collect()
}

/// Creates the first admin through the setup route and signs in as them.
async fn setup_admin(gw: &Gateway) -> Browser {
    let r = client().get(gw.url("/auth/setup")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["needed"], true, "a fresh gateway needs setup");
    let r = client()
        .post(gw.url("/auth/setup"))
        .json(&json!({ "name": "root", "password": "password1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");
    Browser::from_login(&headers, &body)
}

/// Reads frames until the end event; returns the text and the end event.
async fn read_to_end(frames: &mut Frames, mut text: String) -> (String, String, Value) {
    loop {
        let frame = frames.next_soon().await.expect("the stream ends with done or error");
        let (event, _, data) = parse(&frame);
        match event.as_str() {
            "delta" => text.push_str(data["text"].as_str().unwrap()),
            "done" | "error" => return (text, event, data),
            other => panic!("unexpected event {other}: {frame}"),
        }
    }
}

#[tokio::test]
async fn setup_makes_one_admin_and_then_closes() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "").await;
    let admin = setup_admin(&gw).await;
    let (status, me) = admin.send(&gw, "GET", "/auth/me", None).await;
    assert_eq!((status, me["user"]["name"].as_str()), (200, Some("root")));
    let r = client().get(gw.url("/auth/setup")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["needed"], false);
    let again = client()
        .post(gw.url("/auth/setup"))
        .json(&json!({ "name": "evil", "password": "password1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403, "setup is over once an account exists");
    // Without a credential, the API is closed now.
    assert_eq!(client().get(gw.url("/v1/models")).send().await.unwrap().status(), 401);
    // Password change: the wrong current password is refused, the right one works.
    let (status, _) =
        admin.send(&gw, "POST", "/auth/password", Some(json!({"current": "nope", "new": "password2"}))).await;
    assert_eq!(status, 400);
    let (status, _) = admin
        .send(&gw, "POST", "/auth/password", Some(json!({"current": "password1", "new": "password2"})))
        .await;
    assert_eq!(status, 200);
    let login = |pw: &'static str| {
        let url = gw.url("/auth/login");
        async move {
            client().post(url).json(&json!({"name": "root", "password": pw})).send().await.unwrap().status()
        }
    };
    assert_eq!(login("password1").await, 401);
    assert_eq!(login("password2").await, 200);
}

#[tokio::test]
async fn a_generation_outlives_its_connection_and_ends_byte_equal() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "").await;
    let b = setup_admin(&gw).await;
    let (status, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({"title": "t"}))).await;
    assert_eq!(status, 201);
    let conv = conv["id"].as_str().unwrap().to_owned();
    let start = json!({"content": "hi [mock tokens=40 delay_ms=15]", "model": "mock-model"});
    let (status, started) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
    assert_eq!(status, 202, "{started}");
    let msg = started["message_id"].as_str().unwrap().to_owned();
    // The user message is stored before the answer starts.
    let (_, stored) = b.send(&gw, "GET", &format!("/v1/conversations/{conv}"), None).await;
    assert_eq!(stored["messages"][0]["id"], msg.as_str());

    // Read a few deltas, then leave (a reload).
    let (status, mut frames) = b.attach(&gw, &conv, &msg, 0).await;
    assert_eq!(status, 200);
    let mut text = String::new();
    let mut offset = 0;
    while text.len() < 12 {
        let (event, id, data) = parse(&frames.next_soon().await.unwrap());
        assert_eq!(event, "delta");
        text.push_str(data["text"].as_str().unwrap());
        offset = id.unwrap();
        assert_eq!(offset, text.len(), "ids count the bytes so far");
    }
    drop(frames);
    // Back: from the last id on, then live, to the end.
    let (_, mut frames) = b.attach(&gw, &conv, &msg, offset).await;
    let (text, event, end) = read_to_end(&mut frames, text).await;
    assert_eq!((event.as_str(), end["finish_reason"].as_str()), ("done", Some("stop")), "{end}");
    assert_eq!(text, script(40), "byte-equal to the mock's script");
    assert_eq!(m.stats().snapshot().requests, 1, "one upstream request for two attachments");
    // A late reader gets everything again; the answer is stored under the user message.
    let (_, mut frames) = b.attach(&gw, &conv, &msg, 0).await;
    assert_eq!(read_to_end(&mut frames, String::new()).await.0, script(40));
    let (_, stored) = b.send(&gw, "GET", &format!("/v1/conversations/{conv}"), None).await;
    let answer = &stored["messages"][1];
    assert_eq!(
        (answer["parent_id"].as_str(), answer["content"].as_str()),
        (Some(msg.as_str()), Some(&*script(40)))
    );
    assert_eq!(answer["id"], end["message_id"]);
    // Regenerate: a second answer to the same message, a sibling of the first.
    let again = json!({"parent_id": msg, "model": "mock-model"});
    let (status, _) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(again)).await;
    assert_eq!(status, 202);
    let (_, mut frames) = b.attach(&gw, &conv, &msg, 0).await;
    assert_eq!(read_to_end(&mut frames, String::new()).await.1, "done");
    let (_, stored) = b.send(&gw, "GET", &format!("/v1/conversations/{conv}"), None).await;
    let answers =
        stored["messages"].as_array().unwrap().iter().filter(|m| m["parent_id"] == msg.as_str()).count();
    assert_eq!(answers, 2);
}

#[tokio::test]
async fn stop_cancels_upstream_also_after_reattaching_and_failures_are_stored() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "").await;
    let b = setup_admin(&gw).await;
    let (_, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    let start = json!({"content": "[mock tokens=100000 delay_ms=10]", "model": "mock-model"});
    let (_, started) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
    let msg = started["message_id"].as_str().unwrap().to_owned();
    let (_, frames) = b.attach(&gw, &conv, &msg, 0).await;
    drop(frames);
    let (_, mut frames) = b.attach(&gw, &conv, &msg, 0).await;
    assert_eq!(parse(&frames.next_soon().await.unwrap()).0, "delta");
    let (status, _) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations/{msg}/stop"), None).await;
    assert_eq!(status, 200);
    let (_, event, end) = read_to_end(&mut frames, String::new()).await;
    assert_eq!((event.as_str(), end["finish_reason"].as_str()), ("done", Some("stopped")));
    tokio::time::timeout(SOON, m.stats().wait_cancelled(1)).await.expect("the upstream request is cancelled");
    let (_, stored) = b.send(&gw, "GET", &format!("/v1/conversations/{conv}"), None).await;
    assert_eq!(stored["messages"][1]["error"], "stopped");

    // A failing backend: the error event names it, and the stored answer carries it.
    let start = json!({"parent_id": msg, "content": "[mock mode=status:500]", "model": "mock-model"});
    let (_, started) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
    let failing = started["message_id"].as_str().unwrap().to_owned();
    let (_, mut frames) = b.attach(&gw, &conv, &failing, 0).await;
    let (_, event, end) = read_to_end(&mut frames, String::new()).await;
    assert_eq!(event, "error", "{end}");
    assert_eq!(end["status"], 502, "{end}");
    let (_, stored) = b.send(&gw, "GET", &format!("/v1/conversations/{conv}"), None).await;
    let answer =
        stored["messages"].as_array().unwrap().iter().find(|m| m["parent_id"] == failing.as_str()).cloned();
    let answer = answer.expect("the failed answer is stored");
    assert_eq!(answer["error"], end["message"], "{answer}");
}

#[tokio::test]
async fn another_users_generation_is_not_found() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "").await;
    let admin = setup_admin(&gw).await;
    let (status, _) = admin
        .send(
            &gw,
            "POST",
            "/admin/users",
            Some(json!({"name": "eve", "password": "password1", "role": "user"})),
        )
        .await;
    assert_eq!(status, 201);
    let r = client()
        .post(gw.url("/auth/login"))
        .json(&json!({"name": "eve", "password": "password1"}))
        .send()
        .await
        .unwrap();
    let headers = r.headers().clone();
    let eve = Browser::from_login(&headers, &r.json().await.unwrap());

    let (_, conv) = admin.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    let start = json!({"content": "[mock tokens=100000 delay_ms=10]", "model": "mock-model"});
    let (_, started) =
        admin.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
    let msg = started["message_id"].as_str().unwrap().to_owned();
    let (status, _) = eve.attach(&gw, &conv, &msg, 0).await;
    assert_eq!(status, 404);
    let (status, _) =
        eve.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations/{msg}/stop"), None).await;
    assert_eq!(status, 404);
    let (status, _) = eve
        .send(
            &gw,
            "POST",
            &format!("/v1/conversations/{conv}/generations"),
            Some(json!({"parent_id": msg, "model": "mock-model"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = eve.send(&gw, "GET", &format!("/v1/conversations/{conv}/generations"), None).await;
    assert_eq!(status, 404, "another user's conversation does not exist for eve");
    // Still running for its owner.
    let (_, list) = admin.send(&gw, "GET", &format!("/v1/conversations/{conv}/generations"), None).await;
    assert_eq!(list["data"][0]["running"], true);
    admin.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations/{msg}/stop"), None).await;
    tokio::time::timeout(SOON, m.stats().wait_cancelled(1)).await.unwrap();
}

#[tokio::test]
async fn the_ui_is_served_with_its_headers() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "").await;
    let c = client();
    let api = c.get(gw.url("/")).send().await.unwrap();
    assert_eq!(api.text().await.unwrap(), "Sluice is running", "API clients keep the old answer");
    for path in ["/", "/c/anything", "/settings", "/admin", "/login"] {
        let r = c
            .get(gw.url(path))
            .header("accept", "text/html")
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
        assert!(!h["content-security-policy"].to_str().unwrap().contains("unsafe-inline"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["content-encoding"], "br");
    }
    let html = c.get(gw.url("/")).header("accept", "text/html").send().await.unwrap().text().await.unwrap();
    let script = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_owned();
    assert!(script.starts_with("/assets/index-"), "{script}");
    let r = c.get(gw.url(&script)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let plain = c.get(gw.url(&script)).header("accept-encoding", "identity").send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.unwrap().len() > 1000);
    assert_eq!(c.get(gw.url("/assets/nope.js")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn ui_generations_are_limited_like_api_requests() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "[limits]\nuser = { rpm = 1 }\n").await;
    let b = setup_admin(&gw).await;
    let (_, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    let mut ends = Vec::new();
    let mut parent = Value::Null;
    for text in ["one [mock tokens=2]", "two [mock tokens=2]"] {
        let start = json!({"parent_id": parent, "content": text, "model": "mock-model"});
        let (status, started) =
            b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
        assert_eq!(status, 202);
        let msg = started["message_id"].as_str().unwrap().to_owned();
        let (_, mut frames) = b.attach(&gw, &conv, &msg, 0).await;
        let (_, event, end) = read_to_end(&mut frames, String::new()).await;
        parent = end["message_id"].clone();
        ends.push((event, end));
    }
    assert_eq!(ends[0].0, "done", "{:?}", ends[0].1);
    assert_eq!((ends[1].0.as_str(), &ends[1].1["status"]), ("error", &json!(429)), "{:?}", ends[1].1);
    assert!(ends[1].1["message"].as_str().unwrap().contains("per minute"), "{:?}", ends[1].1);
    assert_eq!(m.stats().snapshot().requests, 1, "the refused one never reached the upstream");
}

#[tokio::test]
async fn two_models_answer_one_message_side_by_side() {
    let m = mock(MockConfig::default()).await;
    let toml = format!(
        "[[backends]]\nname = \"mock\"\nkind = \"openai\"\nurl = \"{}\"\nmodels = [\"mock-model\", {{ name = \"other\", upstream = \"mock-model\" }}]\n",
        m.openai_base()
    );
    let gw = Gateway::start(&toml).await;
    let b = setup_admin(&gw).await;
    let (_, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/conversations/{conv}/generations");
    let first = json!({"content": "compare [mock tokens=30 delay_ms=10]", "model": "mock-model"});
    let (_, started) = b.send(&gw, "POST", &path, Some(first)).await;
    let msg = started["message_id"].as_str().unwrap().to_owned();
    let (status, _) = b.send(&gw, "POST", &path, Some(json!({"parent_id": msg, "model": "other"}))).await;
    assert_eq!(status, 202, "a second model may answer the same message at once");
    let (status, _) = b.send(&gw, "POST", &path, Some(json!({"parent_id": msg, "model": "other"}))).await;
    assert_eq!(status, 400, "but not the same model twice");
    for model in ["mock-model", "other"] {
        let r = client()
            .get(gw.url(&format!("{path}/{msg}?model={model}")))
            .headers(b.headers.clone())
            .send()
            .await
            .unwrap();
        let (text, event, _) = read_to_end(&mut Frames::sse(r), String::new()).await;
        assert_eq!((event.as_str(), text), ("done", script(30)), "{model}");
    }
    let (_, stored) = b.send(&gw, "GET", &format!("/v1/conversations/{conv}"), None).await;
    let mut models: Vec<_> = stored["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["parent_id"] == msg.as_str())
        .map(|m| m["model"].as_str().unwrap_or("").to_owned())
        .collect();
    models.sort();
    assert_eq!(models, ["mock-model", "other"]);
}

#[tokio::test]
async fn shutdown_lets_an_answer_run_for_the_grace_period_then_stores_it_cut() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "[server]\nshutdown_grace = \"300ms\"\n").await;
    let b = setup_admin(&gw).await;
    let (_, me) = b.send(&gw, "GET", "/auth/me", None).await;
    let owner = me["user"]["id"].as_str().unwrap().to_owned();
    let (_, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    let start = json!({"content": "[mock tokens=100000 delay_ms=10]", "model": "mock-model"});
    let (_, started) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
    let msg = started["message_id"].as_str().unwrap().to_owned();
    let run = gw.state.runs.get(&owner, &msg, None).unwrap();
    let mut progress = run.subscribe();
    progress.wait_for(|p| !p.text.is_empty()).await.unwrap();
    gw.state.core.shutdown.cancel();
    let ended = tokio::time::timeout(SOON, progress.wait_for(|p| p.end.is_some())).await.unwrap().unwrap();
    let (end, answer_id) = ended.end.clone().unwrap();
    drop(ended);
    assert!(
        matches!(&end, sluice_server::runs::End::Failed { status: 503, message } if message.contains("shut down")),
        "{end:?}"
    );
    tokio::time::timeout(SOON, m.stats().wait_cancelled(1)).await.unwrap();
    let stored = gw.state.store.get_conversation(&owner, &conv).await.unwrap().unwrap();
    let answer =
        stored.messages.iter().find(|m| Some(&m.id) == answer_id.as_ref()).expect("the cut answer is stored");
    assert!(answer.error.as_deref().is_some_and(|e| e.contains("shut down")) && !answer.content.is_empty());
}

#[tokio::test]
async fn shutdown_before_the_first_token_stores_why_there_is_no_answer() {
    let m = mock(MockConfig::default()).await;
    let gw = Gateway::over(&m, "openai", "[server]\nshutdown_grace = \"200ms\"\n").await;
    let b = setup_admin(&gw).await;
    let (_, me) = b.send(&gw, "GET", "/auth/me", None).await;
    let owner = me["user"]["id"].as_str().unwrap().to_owned();
    let (_, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let conv = conv["id"].as_str().unwrap().to_owned();
    // The first token would come after a minute: the grace period ends long before.
    let start = json!({"content": "[mock first_ms=60000]", "model": "mock-model"});
    let (_, started) =
        b.send(&gw, "POST", &format!("/v1/conversations/{conv}/generations"), Some(start)).await;
    let msg = started["message_id"].as_str().unwrap().to_owned();
    tokio::time::timeout(SOON, m.stats().wait_started(1)).await.expect("the upstream was asked");
    let run = gw.state.runs.get(&owner, &msg, None).unwrap();
    let mut progress = run.subscribe();
    gw.state.core.shutdown.cancel();
    let ended = tokio::time::timeout(SOON, progress.wait_for(|p| p.end.is_some())).await.unwrap().unwrap();
    let (end, answer_id) = ended.end.clone().unwrap();
    drop(ended);
    assert!(matches!(&end, sluice_server::runs::End::Failed { status: 503, .. }), "{end:?}");
    let stored = gw.state.store.get_conversation(&owner, &conv).await.unwrap().unwrap();
    let answer = stored
        .messages
        .iter()
        .find(|m| Some(&m.id) == answer_id.as_ref())
        .expect("an answer row says why there is no answer");
    assert_eq!(answer.parent_id.as_deref(), Some(msg.as_str()));
    assert!(answer.content.is_empty());
    assert!(answer.error.as_deref().is_some_and(|e| e.contains("shut down")), "{:?}", answer.error);
}

#[tokio::test]
async fn ui_bounds_come_from_the_ui_section() {
    let m = mock(MockConfig::default()).await;
    let ui = "[ui]\ngenerations_per_user = 1\nmax_message_bytes = 1024\n";
    let gw = Gateway::over(&m, "openai", ui).await;
    let b = setup_admin(&gw).await;
    let (_, conv) = b.send(&gw, "POST", "/v1/conversations", Some(json!({}))).await;
    let path = format!("/v1/conversations/{}/generations", conv["id"].as_str().unwrap());
    let long = json!({"content": "x".repeat(1025), "model": "mock-model"});
    let (status, refused) = b.send(&gw, "POST", &path, Some(long)).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("1 to 1024 bytes"), "{refused}");
    let slow = json!({"content": "[mock tokens=1000 delay_ms=20]", "model": "mock-model"});
    let (status, first) = b.send(&gw, "POST", &path, Some(slow)).await;
    assert_eq!(status, 202, "{first}");
    let (status, second) =
        b.send(&gw, "POST", &path, Some(json!({"content": "and this?", "model": "mock-model"}))).await;
    assert_eq!(status, 429, "one answer at a time for this user: {second}");
    let stop = format!("{path}/{}/stop", first["message_id"].as_str().unwrap());
    assert_eq!(b.send(&gw, "POST", &stop, None).await.0, 200);
}
