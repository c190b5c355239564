//! The schema migrations, embedded in the binary and run by sqlx's migrator (which
//! records them in `_sqlx_migrations`). Most SQL runs unchanged on SQLite and Postgres;
//! a migration that cannot (full-text search, auto-increment ids) carries one text per
//! engine. There is one list, in order, for both.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::{
    AnyPool,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

use crate::Engine;

/// The SQL of one migration.
enum Sql {
    /// The same text for every engine.
    Shared(&'static str),
    /// One text per engine.
    PerEngine { sqlite: &'static str, postgres: &'static str },
}

impl Sql {
    fn for_engine(&self, engine: Engine) -> &'static str {
        match (self, engine) {
            (Sql::Shared(sql), _) => sql,
            (Sql::PerEngine { sqlite, .. }, Engine::Sqlite) => sqlite,
            (Sql::PerEngine { postgres, .. }, Engine::Postgres) => postgres,
        }
    }
}

/// (version, description, SQL), in order. 0001 is applied in the field: never edit it
/// (its checksum is recorded).
const MIGRATIONS: &[(i64, &str, Sql)] = &[
    (1, "agent tokens", Sql::Shared(include_str!("../migrations/0001_agent_tokens.sql"))),
    (2, "users, sessions, api keys", Sql::Shared(include_str!("../migrations/0002_users.sql"))),
    (
        3,
        "usage records",
        Sql::PerEngine {
            sqlite: include_str!("../migrations/0003_usage.sqlite.sql"),
            postgres: include_str!("../migrations/0003_usage.postgres.sql"),
        },
    ),
    (
        4,
        "conversations",
        Sql::PerEngine {
            sqlite: include_str!("../migrations/0004_conversations.sqlite.sql"),
            postgres: include_str!("../migrations/0004_conversations.postgres.sql"),
        },
    ),
    (5, "agent token scope", Sql::Shared(include_str!("../migrations/0005_agent_token_scope.sql"))),
    (6, "spend budgets", Sql::Shared(include_str!("../migrations/0006_budgets.sql"))),
    (7, "stored responses", Sql::Shared(include_str!("../migrations/0007_responses.sql"))),
];

#[derive(Debug)]
struct Embedded(Engine);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(v, d, sql)| {
                    let sql = sql.for_engine(self.0);
                    Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(sql), false)
                })
                .collect())
        })
    }
}

/// Applies every migration not applied yet, in the SQL of `engine`.
pub async fn run(pool: &AnyPool, engine: Engine) -> Result<(), sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(engine)).await?.run(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_each_engine_gets_its_own_text() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        let fts = &MIGRATIONS.iter().find(|m| m.0 == 4).expect("0004 exists").2;
        assert!(fts.for_engine(Engine::Sqlite).contains("fts5"));
        assert!(fts.for_engine(Engine::Postgres).contains("tsvector"));
    }
}
