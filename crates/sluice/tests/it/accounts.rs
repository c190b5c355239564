//! Users, sessions and API keys in the store, on SQLite and on the real Postgres (in a
//! schema of its own); the directory following changes made elsewhere: another
//! replica on Postgres, another process on a SQLite file.

use std::{sync::Arc, time::Duration};

use sluice_core::context::Principal;
use sluice_protocol::budget::{Budget, BudgetMode};
use sluice_server::auth::directory::{Directory, Refusal};
use sluice_store::{NewApiKey, Store, StoreConfig, StoreError, api_keys::Limits};
use sqlx::Connection as _;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

fn store(url: &str) -> Store {
    Store::new(&StoreConfig { url: Some(url.to_owned()) })
}

/// A Postgres schema of the test's own, dropped by [`PgSchema::drop`].
struct PgSchema {
    admin: sqlx::PgConnection,
    name: String,
    url: String,
}

impl PgSchema {
    async fn new() -> PgSchema {
        let base = std::env::var("SLUICE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&base).await.expect("Postgres for tests is reachable");
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut admin).await.unwrap();
        let url = format!("{base}?options=-c%20search_path%3D{name}");
        PgSchema { admin, name, url }
    }

    async fn drop(mut self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name)).execute(&mut self.admin).await.unwrap();
    }
}

/// Users: create, duplicate, verify, disable, role, password.
async fn user_life_cycle(s: &Store) {
    assert!(!s.any_credential_exists().await.unwrap(), "a fresh store has no credential");
    let ann = s.create_user("ann", "correct horse", true).await.unwrap();
    assert!(ann.admin && !ann.disabled);
    assert!(s.any_credential_exists().await.unwrap());
    assert!(matches!(s.create_user("ann", "another pw", false).await, Err(StoreError::Exists(_))));
    assert!(matches!(s.create_user("bob", "short", false).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.create_user("b b", "long enough", false).await, Err(StoreError::Invalid(_))));
    let bob = s.create_user("bob", "bob's password", false).await.unwrap();

    assert_eq!(s.verify_password("ann", "correct horse").await.unwrap(), Some(ann.clone()));
    assert_eq!(s.verify_password("ann", "wrong horse").await.unwrap(), None);
    assert_eq!(s.verify_password("nobody", "correct horse").await.unwrap(), None);
    let names: Vec<_> = s.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann", "bob"]);

    assert!(s.set_user_disabled(&bob.id, true).await.unwrap());
    assert_eq!(s.verify_password("bob", "bob's password").await.unwrap(), None, "disabled");
    assert!(s.get_user(&bob.id).await.unwrap().unwrap().disabled);
    assert!(s.set_user_disabled(&bob.id, false).await.unwrap());
    assert!(s.set_password(&bob.id, "a new password").await.unwrap());
    assert_eq!(s.verify_password("bob", "bob's password").await.unwrap(), None);
    assert!(s.verify_password("bob", "a new password").await.unwrap().is_some());
    assert!(s.set_user_admin(&bob.id, true).await.unwrap());
    assert!(s.user_by_name("bob").await.unwrap().unwrap().admin);
    assert!(!s.set_user_disabled("no-such-id", true).await.unwrap());

    assert_eq!(bob.budget, None);
    let budget = Budget { monthly_micros: 2_500_000, mode: BudgetMode::Soft };
    assert!(s.set_user_budget(&bob.id, Some(budget)).await.unwrap());
    assert_eq!(s.get_user(&bob.id).await.unwrap().unwrap().budget, Some(budget));
    assert!(s.set_user_budget(&bob.id, None).await.unwrap());
    assert_eq!(s.get_user(&bob.id).await.unwrap().unwrap().budget, None);
    assert!(!s.set_user_budget("no-such-id", Some(budget)).await.unwrap());
}

/// Keys: create (shown once, hashed), list per user, revoke only one's own.
async fn key_life_cycle(s: &Store) {
    let ann = s.user_by_name("ann").await.unwrap().unwrap();
    let bob = s.user_by_name("bob").await.unwrap().unwrap();
    let new = NewApiKey {
        user_id: ann.id.clone(),
        name: "laptop".into(),
        models: Some(vec!["llama*".into()]),
        limits: Limits {
            rpm: Some(60),
            budget: Some(Budget { monthly_micros: 10_000_000, mode: BudgetMode::Hard }),
            ..Limits::default()
        },
        expires_at: Some(4_000_000_000),
    };
    let (k, secret) = s.create_api_key(&new).await.unwrap();
    assert!(secret.starts_with("sk-sluice-") && secret.len() == 10 + 64, "{secret}");
    assert!(secret.starts_with(&k.prefix) && k.key_sha256 != secret);
    assert_eq!(k.models.as_deref(), Some(&["llama*".to_owned()][..]));
    let (bk, _) =
        s.create_api_key(&NewApiKey { user_id: bob.id.clone(), ..NewApiKey::default() }).await.unwrap();
    assert!(matches!(
        s.create_api_key(&NewApiKey { user_id: "nobody".into(), ..NewApiKey::default() }).await,
        Err(StoreError::NotFound(_))
    ));
    let anns = s.list_api_keys(Some(&ann.id)).await.unwrap();
    assert_eq!(anns, vec![k.clone()]);
    assert_eq!(s.load_api_keys().await.unwrap().len(), 2);

    assert!(!s.revoke_api_key(&bk.id, Some(&ann.id)).await.unwrap(), "not ann's key");
    assert!(s.revoke_api_key(&bk.id, Some(&bob.id)).await.unwrap());
    assert!(!s.revoke_api_key(&bk.id, None).await.unwrap(), "already revoked");
    assert!(s.get_api_key(&bk.id).await.unwrap().unwrap().revoked_at.is_some());
    s.touch_api_keys(&[(k.id.clone(), 1234)]).await.unwrap();
    assert_eq!(s.get_api_key(&k.id).await.unwrap().unwrap().last_used_at, Some(1234));
    s.touch_api_keys(&[(k.id.clone(), 1000)]).await.unwrap();
    assert_eq!(s.get_api_key(&k.id).await.unwrap().unwrap().last_used_at, Some(1234), "never back");
}

/// Sessions: create, look up by token, delete, expire.
async fn session_life_cycle(s: &Store) {
    let ann = s.user_by_name("ann").await.unwrap().unwrap();
    let (session, token) = s.create_session(&ann.id, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(s.session_by_token(&token).await.unwrap(), Some(session.clone()));
    assert_eq!(s.session_by_token("not-a-token").await.unwrap(), None);
    assert!(s.delete_session(&token).await.unwrap());
    assert_eq!(s.session_by_token(&token).await.unwrap(), None);
    let (_, gone) = s.create_session(&ann.id, Duration::ZERO).await.unwrap();
    assert_eq!(s.session_by_token(&gone).await.unwrap(), None, "expired at once");
    assert_eq!(s.expire_sessions().await.unwrap(), 0, "a login deletes expired sessions");
    let (_, t) = s.create_session(&ann.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.delete_user_sessions(&ann.id).await.unwrap(), 1);
    assert_eq!(s.session_by_token(&t).await.unwrap(), None);
}

async fn everything(s: &Store) {
    user_life_cycle(s).await;
    key_life_cycle(s).await;
    session_life_cycle(s).await;
}

#[tokio::test]
async fn sqlite_accounts() {
    everything(&store("sqlite::memory:")).await;
}

#[tokio::test]
async fn postgres_accounts() {
    let schema = PgSchema::new().await;
    everything(&store(&schema.url)).await;
    schema.drop().await;
}

/// Waits until `directory` has reloaded after `seen` reloads, within `limit`.
async fn reloaded(directory: &Directory, seen: u64, limit: Duration) {
    let mut reloads = directory.reloads();
    tokio::time::timeout(limit, reloads.wait_for(|n| *n > seen)).await.expect("reloaded in time").unwrap();
}

async fn two_directories_agree(url_a: &str, url_b: &str, limit: Duration) {
    let (a, b) = (Arc::new(store(url_a)), Arc::new(store(url_b)));
    let ann = a.create_user("ann", "correct horse", false).await.unwrap();
    let (key, secret) =
        a.create_api_key(&NewApiKey { user_id: ann.id.clone(), ..NewApiKey::default() }).await.unwrap();
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let directory = Arc::new(Directory::new(b.clone()));
    directory.start(&tasks, shutdown.clone()).await.unwrap();
    assert!(matches!(directory.key(&secret), Some(Ok(Principal::User(_)))));

    // Revoked through the other store: refused here, woken by the change itself.
    let seen = *directory.reloads().borrow();
    assert!(a.revoke_api_key(&key.id, None).await.unwrap());
    reloaded(&directory, seen, limit).await;
    assert_eq!(directory.key(&secret), Some(Err(Refusal::Revoked)));

    // A disabled user's sessions stop too.
    let (_, other) =
        a.create_api_key(&NewApiKey { user_id: ann.id.clone(), ..NewApiKey::default() }).await.unwrap();
    let seen = *directory.reloads().borrow();
    a.set_user_disabled(&ann.id, true).await.unwrap();
    let mut reloads = directory.reloads();
    tokio::time::timeout(
        limit,
        reloads.wait_for(|n| *n > seen && directory.key(&other).is_some_and(|r| r.is_err())),
    )
    .await
    .expect("the disable arrived in time")
    .unwrap();
    assert_eq!(directory.key(&other), Some(Err(Refusal::UserDisabled)));
    assert_eq!(directory.user(&ann.id), Some(Err(Refusal::UserDisabled)));
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

#[tokio::test]
async fn a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second() {
    let schema = PgSchema::new().await;
    two_directories_agree(&schema.url, &schema.url, Duration::from_secs(1)).await;
    schema.drop().await;
}

#[tokio::test]
async fn changes_by_another_process_reach_a_gateway_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
    two_directories_agree(&url, &url, Duration::from_secs(1)).await;
}

/// Runs `sluice ARGS --config CONFIG` with `stdin`; returns its standard output.
async fn sluice(config: &std::path::Path, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "sluice {args:?} failed: {stderr}");
    stdout.into_owned()
}

/// `GET /v1/models` with `key`: the status.
async fn models_status(gw: &crate::util::Gateway, key: Option<&str>) -> u16 {
    let mut req = crate::util::client().get(gw.url("/v1/models"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Waits (on the directory's reloads, within 10 s: the wait is woken by the reloads
/// themselves, so the bound only matters on a machine too busy to run the watch task
/// for seconds) until `/v1/models` with `key` answers `want`.
async fn soon(gw: &crate::util::Gateway, want: u16, key: Option<&str>) {
    let mut reloads = gw.state.directory.reloads();
    let wait = async {
        while models_status(gw, key).await != want {
            reloads.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("not {want} in time"));
}

/// The CLI and a running gateway on one SQLite file: users and keys made by
/// `sluice user`/`sluice key` work at once; a revoke is refused at once.
#[tokio::test]
async fn cli_changes_reach_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let mock = crate::util::mock(sluice_mock::MockConfig::default()).await;
    let toml = crate::util::backend_toml("mock", "openai", &mock, &format!("[store]\nurl = \"{db}\"\n"));
    std::fs::write(&config, &toml).unwrap();
    let gw = crate::util::Gateway::start(&toml).await;
    assert_eq!(models_status(&gw, None).await, 200, "keyless on a fresh install");

    let created = sluice(&config, &["user", "create", "--name", "ann"], "correct horse\n").await;
    assert!(created.contains("created ann"), "{created}");
    let out = sluice(&config, &["key", "create", "--user", "ann", "--models", "mock*"], "").await;
    let key = out.lines().find_map(|l| l.strip_prefix("key:")).unwrap().trim().to_owned();
    let id = out.lines().find_map(|l| l.strip_prefix("id:")).unwrap().trim().to_owned();
    let listed = sluice(&config, &["key", "list", "--user", "ann"], "").await;
    assert!(listed.contains(&id) && !listed.contains(&key), "{listed}");

    // The gateway learns of both from the file.
    soon(&gw, 401, None).await;
    soon(&gw, 200, Some(&key)).await;
    let users = sluice(&config, &["user", "list"], "").await;
    assert!(users.contains("ann") && users.contains("user"), "{users}");

    sluice(&config, &["key", "revoke", &id], "").await;
    soon(&gw, 401, Some(&key)).await;
    gw.state.core.shutdown.cancel();
}

/// `sluice key list | head`: when the reader closes the pipe early, the command ends
/// quietly and successfully instead of panicking. The list (1,000 keys, ~130 KB) is
/// bigger than a pipe's buffer, so the write fails however the two processes race.
#[tokio::test]
async fn a_list_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    std::fs::write(&config, format!("[store]\nurl = \"{db}\"\n")).unwrap();
    let s = store(&db);
    let ann = s.create_user("ann", "correct horse", false).await.unwrap();
    for i in 0..1000 {
        let new = NewApiKey { user_id: ann.id.clone(), name: format!("k{i}"), ..NewApiKey::default() };
        s.create_api_key(&new).await.unwrap();
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["key", "list", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "nothing said: {}", String::from_utf8_lossy(&out.stderr));
}
