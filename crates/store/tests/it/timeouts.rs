//! No statement holds a connection for long: Postgres connections run with a
//! statement timeout, SQLite ones with a busy timeout.

use sqlx::Row as _;

use crate::db::TestDb;

#[tokio::test]
async fn postgres_statements_have_a_deadline() {
    let db = TestDb::new(sluice_store::Engine::Postgres).await;
    let pool = db.store.open().await.unwrap();
    let row = sqlx::query("SHOW statement_timeout").fetch_one(pool).await.unwrap();
    assert_eq!(row.get::<String, _>(0), "15s");
    db.finish().await;
}

#[tokio::test]
async fn sqlite_waits_a_bounded_time_for_a_lock() {
    let db = TestDb::new(sluice_store::Engine::Sqlite).await;
    let pool = db.store.open().await.unwrap();
    let row = sqlx::query("PRAGMA busy_timeout").fetch_one(pool).await.unwrap();
    assert_eq!(row.get::<i64, _>(0), 5000);
    db.finish().await;
}
