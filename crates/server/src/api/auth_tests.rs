//! The auth matrix through the whole middleware stack: every route against every kind
//! of caller (none, wrong, revoked, expired, disabled, user, admin, anonymous, session
//! with and without CSRF), model scopes, keyless mode and its Host/Origin checks, and
//! login throttling.

#![allow(clippy::unwrap_used)]

use http::StatusCode;
use serde_json::Value;
use sluice_store::{NewApiKey, api_keys::Limits};

use super::{
    route_of,
    router_tests::{CALLS, call, error_message, send, state_with},
};
use crate::{auth::gate::Access, state::AppState};

/// A user (`admin` or not) with one key (limited to `models`, expiring at
/// `expires_at`); returns the user's id and the key.
pub(super) async fn user_with_key(
    state: &AppState,
    name: &str,
    admin: bool,
    models: Option<&[&str]>,
    expires_at: Option<i64>,
) -> (String, String) {
    let user = state.store.create_user(name, "password123", admin).await.unwrap();
    let new = NewApiKey {
        user_id: user.id.clone(),
        name: "test".into(),
        models: models.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
        limits: Limits::default(),
        expires_at,
    };
    let (_, secret) = state.store.create_api_key(&new).await.unwrap();
    state.directory.reload().await.unwrap();
    (user.id, secret)
}

fn is_refusal(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// Every non-public route refuses `key` with `want`, with a message containing
/// `words`, in the route's dialect.
async fn refused_everywhere(state: &AppState, key: &str, want: StatusCode, words: &str) {
    for (method, path, body) in CALLS {
        if route_of(path).1 == Access::Public {
            continue;
        }
        let (status, json) = call(state, method, path, body, Some(key)).await;
        assert_eq!(status, want, "{method} {path}: {json}");
        let message = error_message(path, &json).unwrap_or_else(|| panic!("{path}: not its dialect: {json}"));
        assert!(message.contains(words), "{path}: {message}");
    }
}

#[tokio::test]
async fn revoked_expired_and_disabled_keys_are_refused_on_every_route() {
    let state = state_with("").await;
    let (_, revoked) = user_with_key(&state, "rev", false, None, None).await;
    let id = state.store.list_api_keys(None).await.unwrap()[0].id.clone();
    state.store.revoke_api_key(&id, None).await.unwrap();
    state.directory.reload().await.unwrap();
    refused_everywhere(&state, &revoked, StatusCode::UNAUTHORIZED, "revoked").await;

    let (_, expired) = user_with_key(&state, "exp", false, None, Some(1)).await;
    refused_everywhere(&state, &expired, StatusCode::UNAUTHORIZED, "expired").await;

    let (uid, disabled) = user_with_key(&state, "dis", false, None, None).await;
    let (status, _) = call(&state, "GET", "/v1/models", "", Some(&disabled)).await;
    assert_eq!(status, StatusCode::OK, "works before the disable");
    state.store.set_user_disabled(&uid, true).await.unwrap();
    state.directory.reload().await.unwrap();
    refused_everywhere(&state, &disabled, StatusCode::UNAUTHORIZED, "disabled").await;
}

#[tokio::test]
async fn user_keys_use_user_routes_and_get_403_on_admin_routes() {
    let state = state_with("").await;
    let (_, user) = user_with_key(&state, "ann", false, None, None).await;
    let (_, admin) = user_with_key(&state, "root", true, None, None).await;
    for (method, path, body) in CALLS {
        let access = route_of(path).1;
        let (status, json) = call(&state, method, path, body, Some(&user)).await;
        match access {
            Access::Admin => {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {json}");
                let message = error_message(path, &json).unwrap();
                assert!(message.contains("admin"), "{message}");
            }
            // Setup is over once accounts exist: refused to everyone.
            _ => assert!(
                !is_refusal(status) || ["/auth/login", "/auth/setup"].contains(path),
                "{method} {path}: {status} {json}"
            ),
        }
        let (status, json) = call(&state, method, path, body, Some(&admin)).await;
        assert!(
            !is_refusal(status) || ["/auth/login", "/auth/setup"].contains(path),
            "admin: {method} {path}: {status} {json}"
        );
    }
}

#[tokio::test]
async fn a_key_limited_to_models_gets_403_for_others_and_sees_only_its_own() {
    let state = state_with("").await;
    let (_, key) = user_with_key(&state, "ann", false, Some(&["llama*"]), None).await;
    let chat = |m: &str| {
        format!(r#"{{"model":"{m}","messages":[{{"role":"user","content":"hi"}}],"stream":false}}"#)
    };
    for path in ["/v1/chat/completions", "/api/chat"] {
        let (status, json) = call(&state, "POST", path, &chat("m"), Some(&key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {json}");
        assert!(error_message(path, &json).unwrap().contains("'m'"), "{json}");
        let (status, json) = call(&state, "POST", path, &chat("llama3"), Some(&key)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {json}");
    }
    for (path, body) in [
        ("/v1/completions", r#"{"model":"m","prompt":"hi"}"#),
        ("/api/generate", r#"{"model":"m","prompt":"hi","stream":false}"#),
        ("/v1/embeddings", r#"{"model":"m","input":"hi"}"#),
        ("/api/embed", r#"{"model":"m","input":"hi"}"#),
        ("/api/show", r#"{"model":"m"}"#),
    ] {
        let (status, json) = call(&state, "POST", path, body, Some(&key)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {json}");
    }
    let (status, _) = call(&state, "GET", "/v1/models/m", "", Some(&key)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, models) = call(&state, "GET", "/v1/models", "", Some(&key)).await;
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["llama3"]);
    let (_, tags) = call(&state, "GET", "/api/tags", "", Some(&key)).await;
    let names: Vec<&str> =
        tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["llama3:latest"]);
}

/// Logs in; returns the cookie header value and the CSRF token.
async fn login(state: &AppState, name: &str, password: &str) -> (String, String) {
    let body = format!(r#"{{"name":"{name}","password":"{password}"}}"#);
    let (status, headers, json) = send(state, "POST", "/auth/login", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let set = headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    (cookie, json["csrf_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn sessions_work_and_state_changes_need_the_csrf_token() {
    let state = state_with("").await;
    let (uid, _) = user_with_key(&state, "ann", false, None, None).await;
    let (cookie, csrf) = login(&state, "ann", "password123").await;
    let (status, _, me) = send(&state, "GET", "/auth/me", "", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((me["user"]["name"].as_str(), me["csrf_token"].as_str()), (Some("ann"), Some(csrf.as_str())));

    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    for csrf_header in [None, Some("wrong")] {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(csrf_header.map(|c| ("x-csrf-token", c)));
        let (status, _, json) = send(&state, "POST", "/v1/chat/completions", body, &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
        assert!(error_message("/v1", &json).unwrap().contains("x-csrf-token"), "{json}");
    }
    let headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, _, json) = send(&state, "POST", "/v1/chat/completions", body, &headers).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, _, _) = send(&state, "GET", "/admin/users", "", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a user's session is no admin");

    // Disabling the user ends the session at once.
    state.store.set_user_disabled(&uid, true).await.unwrap();
    state.directory.reload().await.unwrap();
    let (status, _, _) = send(&state, "GET", "/auth/me", "", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    state.store.set_user_disabled(&uid, false).await.unwrap();
    state.directory.reload().await.unwrap();

    // Logout ends it too.
    let (cookie, csrf) = login(&state, "ann", "password123").await;
    let headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, _, _) = send(&state, "POST", "/auth/logout", "", &headers).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, json) = send(&state, "GET", "/auth/me", "", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
}

#[tokio::test]
async fn keys_are_managed_by_their_owner_and_another_users_key_is_a_404() {
    let state = state_with("").await;
    let (_, ann) = user_with_key(&state, "ann", false, None, None).await;
    let (_, bob) = user_with_key(&state, "bob", false, None, None).await;
    let (_, root) = user_with_key(&state, "root", true, None, None).await;
    let (status, created) =
        call(&state, "POST", "/v1/keys", r#"{"name":"ci","models":["m"]}"#, Some(&ann)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let new_key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = call(&state, "GET", "/v1/models", "", Some(&new_key)).await;
    assert_eq!(status, StatusCode::OK, "usable at once");
    let (_, listed) = call(&state, "GET", "/v1/keys", "", Some(&ann)).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "{listed}");
    assert!(!listed.to_string().contains(&new_key), "secrets are never listed: {listed}");

    let (status, _) = call(&state, "DELETE", &format!("/v1/keys/{id}"), "", Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob may not even learn the key exists");
    let (status, _) = call(&state, "GET", "/v1/keys?user=ann", "", Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, anns) = call(&state, "GET", "/v1/keys?user=ann", "", Some(&root)).await;
    assert_eq!(anns["keys"].as_array().unwrap().len(), 2);
    let (status, _) = call(&state, "DELETE", &format!("/v1/keys/{id}"), "", Some(&ann)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json) = call(&state, "GET", "/v1/models", "", Some(&new_key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once: {json}");
}

#[tokio::test]
async fn admins_manage_users() {
    let state = state_with("").await;
    let (_, root) = user_with_key(&state, "root", true, None, None).await;
    let (status, user) =
        call(&state, "POST", "/admin/users", r#"{"name":"cat","password":"meow meow"}"#, Some(&root)).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, _) =
        call(&state, "POST", "/admin/users", r#"{"name":"cat","password":"meow meow"}"#, Some(&root)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the name is taken");
    let path = format!("/admin/users/{}", user["id"].as_str().unwrap());
    let (status, changed) =
        call(&state, "PATCH", &path, r#"{"role":"admin","disabled":true}"#, Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((changed["admin"].as_bool(), changed["disabled"].as_bool()), (Some(true), Some(true)));
    let (status, _) = call(&state, "PATCH", &path, r#"{"role":"god"}"#, Some(&root)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, list) = call(&state, "GET", "/admin/users", "", Some(&root)).await;
    assert_eq!(list["users"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("argon2"), "no password hashes: {list}");
}

#[tokio::test]
async fn keyless_mode_only_on_loopback_for_local_hosts_and_until_a_user_exists() {
    let state = state_with("").await;
    let (status, json) = call(&state, "GET", "/admin/users", "", None).await;
    assert_eq!(status, StatusCode::OK, "the implicit admin: {json}");
    let (status, _) = call(&state, "GET", "/v1/models", "", Some("sk-any-dummy")).await;
    assert_eq!(status, StatusCode::OK, "clients that must send some key still work");
    for host in ["127.0.0.1:8080", "[::1]:1", "localhost"] {
        let (status, _, _) = send(&state, "GET", "/v1/models", "", &[("host", host)]).await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
    // DNS rebinding: a foreign name pointing at 127.0.0.1.
    let (status, _, json) = send(&state, "GET", "/v1/models", "", &[("host", "evil.example:8080")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert!(error_message("/v1", &json).unwrap().contains("localhost"), "{json}");
    // A cross-site POST from a page elsewhere.
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, _, json) =
        send(&state, "POST", "/v1/chat/completions", body, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    let (status, _, _) =
        send(&state, "POST", "/v1/chat/completions", body, &[("origin", "http://localhost:3000")]).await;
    assert_eq!(status, StatusCode::OK);

    // Once a user exists, loopback is no credential.
    state.store.create_user("ann", "password123", true).await.unwrap();
    state.directory.reload().await.unwrap();
    let (status, json) = call(&state, "GET", "/v1/models", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");

    // And a gateway listening beyond loopback never is keyless.
    let open = state_with("[server]\nlisten = \"0.0.0.0:8080\"\n").await;
    let (status, _) = call(&open, "GET", "/v1/models", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn anonymous_callers_are_users_never_admins() {
    let state = state_with("[server]\nlisten = \"0.0.0.0:8080\"\n[auth]\nallow_anonymous = true\n").await;
    for (method, path, body) in CALLS {
        let (status, json) = call(&state, method, path, body, None).await;
        match route_of(path).1 {
            Access::Admin => assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {json}"),
            _ => assert!(
                // Keys, conversations, stored responses and usage belong to accounts: an
                // anonymous caller has none (its responses are answered, not stored).
                !is_refusal(status)
                    || *path == "/auth/login"
                    || *path == "/auth/setup"
                    || path.starts_with("/v1/keys")
                    || path.starts_with("/v1/conversations")
                    || path.starts_with("/v1/responses/")
                    || path == &"/v1/usage",
                "{path}: {status} {json}"
            ),
        }
    }
    let (_, answer) = call(&state, "POST", "/v1/responses", r#"{"model":"m","input":"hi"}"#, None).await;
    assert_eq!(answer["store"], Value::from(false), "nobody to store it for: {answer}");
    let (_, me) = call(&state, "GET", "/auth/me", "", None).await;
    assert_eq!(me["user"]["kind"], Value::from("anonymous"));
    assert_eq!(me["user"]["role"], Value::from("user"));
}

/// Through the router; the lock's growth and expiry are tested with paused time in
/// `auth::throttle` (paused time and the store's worker threads do not mix).
#[tokio::test]
async fn logins_are_throttled_per_account() {
    let state = state_with("").await;
    state.store.create_user("ann", "password123", false).await.unwrap();
    let attempt = |password: &'static str| {
        let state = state.clone();
        async move {
            let body = format!(r#"{{"name":"ann","password":"{password}"}}"#);
            send(&state, "POST", "/auth/login", &body, &[]).await
        }
    };
    for _ in 0..5 {
        let (status, _, json) = attempt("wrong-pass").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
        assert_eq!(error_message("/auth", &json).unwrap(), "wrong name or password");
    }
    // Locked now, even with the right password.
    let (status, headers, _) = attempt("password123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    // An unknown name answers exactly as a wrong password.
    let (status, _, json) =
        send(&state, "POST", "/auth/login", r#"{"name":"nobody","password":"x"}"#, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_message("/auth", &json).unwrap(), "wrong name or password");
}

/// A login from `addr`: the status.
async fn login_from(state: &AppState, addr: [u8; 4], name: &str, password: &str) -> StatusCode {
    let body = serde_json::json!({ "name": name, "password": password }).to_string();
    let mut req = http::Request::post("/auth/login")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let peer = std::net::SocketAddr::from((addr, 40000));
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    tower::ServiceExt::oneshot(super::app(state.clone()), req).await.unwrap().status()
}

/// One address guessing across many accounts is locked out by its own count, and
/// only that address is.
#[tokio::test]
async fn logins_are_throttled_per_address() {
    let state = state_with("").await;
    state.store.create_user("bea", "password123", false).await.unwrap();
    let guesser = [203, 0, 113, 7];
    for i in 0..5 {
        let status = login_from(&state, guesser, &format!("user{i}"), "guess-1234").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A sixth account, never tried: the address is locked, whatever the name.
    assert_eq!(login_from(&state, guesser, "bea", "password123").await, StatusCode::TOO_MANY_REQUESTS);
    // Another address logs in to that account at once.
    assert_eq!(login_from(&state, [198, 51, 100, 2], "bea", "password123").await, StatusCode::OK);
}
