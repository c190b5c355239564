//! Test databases: a SQLite file or a fresh Postgres schema, and raw SQL on them.

use std::sync::Arc;

use sluice_store::{Engine, Store, StoreConfig};
use sqlx::{Connection as _, Row as _};

/// A store on a database of its own.
pub struct TestDb {
    pub store: Arc<Store>,
    url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(sqlx::PgConnection, String)>,
}

impl TestDb {
    pub async fn new(engine: Engine) -> TestDb {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
                TestDb { store: Arc::new(store(&url)), url, _dir: Some(dir), schema: None }
            }
            Engine::Postgres => {
                let base = std::env::var("SLUICE_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
                let schema = format!("sluice_store_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin =
                    sqlx::PgConnection::connect(&base).await.expect("Postgres for tests is reachable");
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.unwrap();
                let url = format!("{base}?options=-c%20search_path%3D{schema}");
                TestDb { store: Arc::new(store(&url)), url, _dir: None, schema: Some((admin, schema)) }
            }
        }
    }

    /// A second, independent store on the same database (as after a restart).
    pub fn reopen(&self) -> Store {
        store(&self.url)
    }

    /// Runs `sql` (no result).
    pub async fn exec(&self, sql: &str) {
        let pool = self.store.open().await.unwrap();
        sqlx::raw_sql(sql).execute(pool).await.unwrap();
    }

    /// The single integer `sql` returns.
    pub async fn count(&self, sql: &str) -> i64 {
        let pool = self.store.open().await.unwrap();
        sqlx::query(sql).fetch_one(pool).await.unwrap().get::<i64, _>(0)
    }

    /// Drops the Postgres schema.
    pub async fn finish(self) {
        if let Some((mut admin, schema)) = self.schema {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.unwrap();
        }
    }
}

fn store(url: &str) -> Store {
    Store::new(&StoreConfig { url: Some(url.to_owned()) })
}

/// `#[tokio::test]`s `NAME::sqlite` and `NAME::postgres`, each running
/// `NAME(&TestDb)` on a fresh database.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = $crate::db::TestDb::new(sluice_store::Engine::Sqlite).await;
                super::$name(&db).await;
                db.finish().await;
            }
            #[tokio::test]
            async fn postgres() {
                let db = $crate::db::TestDb::new(sluice_store::Engine::Postgres).await;
                super::$name(&db).await;
                db.finish().await;
            }
        }
    )*};
}
pub(crate) use both_engines;
