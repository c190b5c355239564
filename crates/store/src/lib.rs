//! Persistent storage: SQLite (WAL, one file, the default) or Postgres (for several
//! gateway replicas), through sqlx's `Any` driver so both run the same migrations and
//! the same queries.
//!
//! The pool is opened, and migrations run, on first use: a gateway that never touches
//! stored data never creates a database file. `sluice serve` calls [`Store::open`]
//! at start so a broken store is reported before the port is bound.
//!
//! # Layout
//! - [`agent_tokens`]: per-agent tokens (hashed at rest).
//! - [`users`]: users, roles, argon2id passwords.
//! - [`sessions`]: login sessions (cookie tokens, hashed at rest).
//! - [`api_keys`]: users' API keys (hashed at rest), model scopes and limits.
//! - [`changes`]: waking a gateway when users or keys change, from any process.
//! - [`usage`]: one record per request, written in batches by a background writer.
//! - [`conversations`]: saved chats with branching messages and full-text search.
//! - [`responses`]: stored Responses API responses, each with a time to live.
//! - `migrations`: the embedded migration list (shared SQL, or one text per engine).
//!
//! # Durability
//! A SQLite write is durable before it is acknowledged: WAL with `synchronous = FULL`
//! syncs the log on every commit. `NORMAL` would be faster but lets the last commits
//! vanish on power loss, and a saved chat message must not. Batching (the usage writer)
//! pays one sync per batch, not per record.

pub mod agent_tokens;
pub mod api_keys;
pub mod changes;
pub mod conversations;
mod migrations;
pub mod responses;
pub mod sessions;
pub mod usage;
pub mod users;

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Executor as _, any::AnyPoolOptions};
use tokio::sync::OnceCell;

pub use agent_tokens::AgentToken;
pub use api_keys::{ApiKey, NewApiKey};
pub use changes::AuthChanges;
pub use conversations::{
    BadCursor, Conversation, ConversationCursor, ConversationExport, ConversationWithMessages, Message,
    MessageUpdate, NewMessage, Page, SearchHit,
};
pub use responses::StoredResponse;
pub use sessions::Session;
pub use usage::{
    UsageFilter, UsageGroup, UsageRecord, UsageRow, UsageSeriesRow, UsageSink, UsageStats, UsageTarget,
    UsageWriter, UsageWriterConfig,
};
pub use users::User;

/// `[store]`: where persistent data lives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH`, `sqlite::memory:` or `postgres://…`; unset means a SQLite file
    /// in the user's data directory (`~/.local/share/sluice/sluice.db` on Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl StoreConfig {
    /// The database URL to use.
    pub fn resolved_url(&self) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", default_path().display()),
        }
    }

    /// Adds what is wrong with these settings to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        let url = self.resolved_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            problems.push(format!("store.url: '{url}' is neither sqlite: nor postgres://"));
        }
    }
}

fn default_path() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("sluice").join("sluice.db")
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the store at {url}: {cause}")]
    Open {
        /// The URL (never with a password: passwords go in PGPASSWORD).
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// The input is not acceptable (a short password, a bad name).
    #[error("{0}")]
    Invalid(String),
    /// The thing to create exists already.
    #[error("{0}")]
    Exists(String),
    /// The thing referred to does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl StoreError {
    /// Whether the database server could not be reached at all (no connection within
    /// [`ACQUIRE_TIMEOUT`], or a connection refused or broken), as opposed to a query
    /// it refused.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Query(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)))
    }
}

/// Which database engine a store runs on; a few statements (full-text search, ids)
/// differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite (a file or `:memory:`).
    Sqlite,
    /// Postgres.
    Postgres,
}

impl Engine {
    /// The engine a database URL names (anything not `sqlite:` is Postgres, the only
    /// other URL [`StoreConfig::check`] accepts).
    pub fn of_url(url: &str) -> Engine {
        if url.starts_with("sqlite:") { Engine::Sqlite } else { Engine::Postgres }
    }
}

/// The database, opened on first use.
pub struct Store {
    url: String,
    engine: Engine,
    pool: OnceCell<AnyPool>,
}

impl Store {
    /// A store for `cfg`; nothing is opened yet.
    pub fn new(cfg: &StoreConfig) -> Store {
        let url = cfg.resolved_url();
        Store { engine: Engine::of_url(&url), url, pool: OnceCell::new() }
    }

    /// The database URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The engine behind the URL.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// True for a Postgres store.
    pub fn is_postgres(&self) -> bool {
        self.engine == Engine::Postgres
    }

    /// The URL without a password, for messages.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// True for an in-memory SQLite store not opened yet: it holds nothing, and
    /// nobody else can write to it.
    pub fn is_unopened_memory(&self) -> bool {
        !self.is_postgres() && self.sqlite_path().is_none() && !self.pool.initialized()
    }

    /// The database file of a SQLite store (none in memory or on Postgres).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.url.strip_prefix("sqlite:")?;
        if rest.contains(":memory:") || rest.contains("mode=memory") {
            return None;
        }
        let path = rest.trim_start_matches("//");
        Some(PathBuf::from(path.split('?').next().unwrap_or(path)))
    }

    /// Whether the database was opened (by any use so far).
    pub fn is_opened(&self) -> bool {
        self.pool.initialized()
    }

    /// Opens the database and runs pending migrations (once).
    pub async fn open(&self) -> Result<&AnyPool, StoreError> {
        self.pool.get_or_try_init(|| connect(&self.url, self.engine)).await
    }
}

/// Longest wait for a connection (a server that is down fails the query after this).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a Postgres statement may run (SQLite waits at most 5 s for a lock).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

const STATEMENT_TIMEOUT_SQL: &str = "SET statement_timeout = 15000";

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

async fn connect(url: &str, engine: Engine) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let fail = |cause: String| StoreError::Open { url: redact(url), cause };
    let sqlite = engine == Engine::Sqlite;
    let memory = sqlite && url.contains(":memory:");
    let mut url = url.to_owned();
    if sqlite && !memory {
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let path = PathBuf::from(path.split('?').next().unwrap_or(path));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        if !url.contains('?') {
            url.push_str("?mode=rwc");
        }
    }
    let mut options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
    if memory {
        // Every connection to :memory: is its own database: keep exactly one, forever.
        options = options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA foreign_keys = ON;").await?;
                    Ok(())
                })
            });
    } else if sqlite {
        options = options.max_connections(4).after_connect(|conn, _| {
            Box::pin(async move {
                // See "Durability" above for why FULL. The page cache stays at SQLite's
                // default, 2 MB per connection: at 16 MB it grew with the usage table for
                // as long as the gateway ran (+21 MB in the soak's second half hour), while
                // batch writes were as fast at 2 MB (docs/benchmarks.md, store section).
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -2000;",
                )
                .await?;
                Ok(())
            })
        });
    } else {
        // No query may hold a connection for long: a stuck statement fails instead of
        // starving the pool (SQLite's counterpart is its busy timeout above).
        options = options.max_connections(8).after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(STATEMENT_TIMEOUT_SQL).await?;
                Ok(())
            })
        });
    }
    let pool = options.connect(&url).await.map_err(|e| fail(e.to_string()))?;
    migrations::run(&pool, engine).await.map_err(|e| fail(format!("migrations failed: {e}")))?;
    Ok(pool)
}

/// The URL without a password.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
