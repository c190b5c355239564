//! The store against both databases: SQLite (memory and file) and the real Postgres at
//! `SLUICE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`), each
//! Postgres test in a schema of its own.

use sluice_store::{Store, StoreConfig};
use sqlx::Connection as _;

fn store(url: &str) -> Store {
    Store::new(&StoreConfig { url: Some(url.to_owned()) })
}

/// Create, verify, list, revoke: the whole token life cycle.
async fn token_life_cycle(store: &Store) {
    let (a, secret_a) = store.create_agent_token("box-a").await.unwrap();
    let (b, secret_b) = store.create_agent_token("box-b").await.unwrap();
    assert_ne!(secret_a, secret_b);
    assert!(secret_a.starts_with("sat-") && secret_a.len() == 4 + 64, "{secret_a}");
    assert_eq!(store.verify_agent_token(&secret_a).await.unwrap(), Some(a.clone()));
    assert_eq!(store.verify_agent_token("sat-nope").await.unwrap(), None);
    assert_eq!(store.verify_agent_token(&secret_a[..secret_a.len() - 1]).await.unwrap(), None);
    let mut names: Vec<_> = store.list_agent_tokens().await.unwrap().into_iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(names, ["box-a", "box-b"]);

    assert!(store.revoke_agent_token(&a.id).await.unwrap());
    assert!(!store.revoke_agent_token(&a.id).await.unwrap(), "already revoked");
    assert!(!store.revoke_agent_token("no-such-id").await.unwrap());
    assert_eq!(store.verify_agent_token(&secret_a).await.unwrap(), None);
    assert_eq!(store.verify_agent_token(&secret_b).await.unwrap(), Some(b.clone()));
    let listed = store.list_agent_tokens().await.unwrap();
    let revoked = |id: &str| listed.iter().find(|t| t.id == id).unwrap().revoked_at.is_some();
    assert!(revoked(&a.id) && !revoked(&b.id));
}

#[tokio::test]
async fn sqlite_in_memory() {
    token_life_cycle(&store("sqlite::memory:")).await;
}

#[tokio::test]
async fn sqlite_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/sluice.db").display());
    let secret = {
        let s = store(&url);
        token_life_cycle(&s).await;
        s.create_agent_token("kept").await.unwrap().1
    };
    let reopened = store(&url);
    assert_eq!(reopened.verify_agent_token(&secret).await.unwrap().unwrap().name, "kept");
    assert_eq!(reopened.list_agent_tokens().await.unwrap().len(), 3);
}

#[tokio::test]
async fn postgres() {
    let base = std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("Postgres for tests is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
    let url = format!("{base}?options=-c%20search_path%3D{schema}");
    let s = store(&url);
    token_life_cycle(&s).await;
    // Migrations are recorded: opening again applies nothing and keeps the data.
    assert_eq!(store(&url).list_agent_tokens().await.unwrap().len(), 2);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
}
