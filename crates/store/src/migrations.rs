//! The schema migrations, embedded in the binary and run by sqlx's migrator (which
//! records them in `_sqlx_migrations`). The same SQL runs on SQLite and Postgres.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::{
    AnyPool,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

/// (version, description, SQL), in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "agent tokens", include_str!("../migrations/0001_agent_tokens.sql")),
    (2, "users, sessions, api keys", include_str!("../migrations/0002_users.sql")),
];

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(v, d, sql)| {
                    Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false)
                })
                .collect())
        })
    }
}

/// Applies every migration not applied yet.
pub async fn run(pool: &AnyPool) -> Result<(), sqlx::migrate::MigrateError> {
    Migrator::new(Embedded).await?.run(pool).await
}
