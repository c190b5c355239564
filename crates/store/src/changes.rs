//! Telling a running gateway that users, keys or sessions changed, from whichever
//! process changed them.
//!
//! - Postgres: every change sends `NOTIFY sluice_auth` in its own transaction, so a
//!   replica's [`AuthChanges`] wakes when the change commits. When the listening
//!   connection drops, notifications may have been missed: that counts as a change.
//! - SQLite file: an inotify watch on the database's directory wakes on writes to the
//!   file or its WAL (by `sluice user …` in another process, say); then the auth
//!   version, bumped by every change, tells auth changes from other writes.
//! - SQLite in memory: only this process can change it; nothing to watch.

use std::{path::PathBuf, time::Duration};

use notify::{RecursiveMode, Watcher as _};
use sqlx::{Row as _, postgres::PgListener};
use tokio::sync::mpsc;

use super::{Store, StoreError};

/// The Postgres notification channel.
pub const CHANNEL: &str = "sluice_auth";

/// How long file events are gathered before the version is read once for all.
const SETTLE: Duration = Duration::from_millis(50);

/// A feed of "the auth tables may have changed" wake-ups.
pub struct AuthChanges {
    source: Source,
}

enum Source {
    Postgres(Box<PgListener>),
    File {
        // Dropping the watcher ends the watch.
        _watcher: notify::RecommendedWatcher,
        events: mpsc::Receiver<()>,
        version: i64,
    },
    Nothing,
}

impl Store {
    /// The current auth version (bumped by every change to users, keys, sessions).
    pub async fn auth_version(&self) -> Result<i64, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query("SELECT version FROM auth_version WHERE id = 1").fetch_one(pool).await?;
        Ok(row.try_get("version")?)
    }

    /// Starts watching for auth changes made by any process.
    pub async fn watch_auth(&self) -> Result<AuthChanges, StoreError> {
        let fail = |cause: String| StoreError::Open { url: self.redacted_url(), cause };
        if self.is_postgres() {
            // sqlx's own `PgListener::connect` waits up to 30 s for a server that is
            // down; the listener's pool waits as long as the store's.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .acquire_timeout(crate::ACQUIRE_TIMEOUT)
                .connect(self.url())
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            return Ok(AuthChanges { source: Source::Postgres(Box::new(listener)) });
        }
        let Some(path) = self.sqlite_path() else { return Ok(AuthChanges { source: Source::Nothing }) };
        let version = self.auth_version().await?;
        let (tx, events) = mpsc::channel(1);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let ours = event.is_ok_and(|e| {
                (e.kind.is_modify() || e.kind.is_create())
                    && e.paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&name)))
            });
            if ours {
                // Full means a wake-up is pending already.
                let _ = tx.try_send(());
            }
        })
        .map_err(|e| fail(format!("cannot watch the database file: {e}")))?;
        let dir = path.parent().map_or_else(|| PathBuf::from("."), PathBuf::from);
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| fail(format!("cannot watch {}: {e}", dir.display())))?;
        Ok(AuthChanges { source: Source::File { _watcher: watcher, events, version } })
    }
}

impl AuthChanges {
    /// Waits until the auth tables may have changed. An error means the feed is
    /// broken: reload, then watch again later.
    pub async fn changed(&mut self, store: &Store) -> Result<(), StoreError> {
        match &mut self.source {
            Source::Postgres(listener) => {
                // `None`: the connection dropped (and reconnects); a change may be lost.
                listener.try_recv().await?;
                Ok(())
            }
            Source::File { events, version, .. } => loop {
                if events.recv().await.is_none() {
                    return Err(StoreError::Invalid("the database file watch ended".into()));
                }
                tokio::time::sleep(SETTLE).await;
                while events.try_recv().is_ok() {}
                let now = store.auth_version().await?;
                if now != *version {
                    *version = now;
                    return Ok(());
                }
            },
            Source::Nothing => std::future::pending().await,
        }
    }
}
