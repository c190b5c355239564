//! Login sessions: a random token in the `sluice_session` cookie, stored as SHA-256,
//! with a CSRF token for cookie-authenticated state changes and a fixed expiry.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row as _;

use super::{
    Store, StoreError,
    users::{new_id, now, sha256_hex},
};

/// A stored session (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Stable id.
    pub id: String,
    /// The signed-in user.
    pub user_id: String,
    /// Sent back in `x-csrf-token` on cookie-authenticated state changes. Not a
    /// credential on its own: it is useless without the cookie.
    pub csrf_token: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the session is refused from then on.
    pub expires_at: i64,
}

fn row_to_session(row: &sqlx::any::AnyRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Opens a session for `user_id` lasting `ttl`; returns it and its token (the
    /// cookie value). Expired sessions are deleted on the way, so the table holds only
    /// live sessions plus those expired since the last login.
    pub async fn create_session(
        &self,
        user_id: &str,
        ttl: Duration,
    ) -> Result<(Session, String), StoreError> {
        let pool = self.open().await?;
        let token = hex::encode(rand::random::<[u8; 32]>());
        let at = now();
        let session = Session {
            id: new_id(),
            user_id: user_id.to_owned(),
            csrf_token: hex::encode(rand::random::<[u8; 16]>()),
            created_at: at,
            expires_at: at.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        sqlx::query(
            "INSERT INTO sessions (id, token_sha256, user_id, csrf_token, created_at, expires_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $5)",
        )
        .bind(&session.id)
        .bind(sha256_hex(&token))
        .bind(&session.user_id)
        .bind(&session.csrf_token)
        .bind(at)
        .bind(session.expires_at)
        .execute(pool)
        .await?;
        self.expire_sessions().await?;
        Ok((session, token))
    }

    /// The unexpired session whose cookie value is `token`.
    pub async fn session_by_token(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(
            "SELECT id, user_id, csrf_token, created_at, expires_at FROM sessions \
             WHERE token_sha256 = $1 AND expires_at > $2",
        )
        .bind(sha256_hex(token))
        .bind(now())
        .fetch_optional(pool)
        .await?;
        Ok(row.as_ref().map(row_to_session).transpose()?)
    }

    /// Ends the session whose cookie value is `token` (logout); false if none.
    pub async fn delete_session(&self, token: &str) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(sha256_hex(token))
            .execute(pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session of a user (password change, disable).
    pub async fn delete_user_sessions(&self, user_id: &str) -> Result<u64, StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(pool).await?;
        Ok(done.rows_affected())
    }

    /// Deletes expired sessions; returns how many.
    pub async fn expire_sessions(&self) -> Result<u64, StoreError> {
        let pool = self.open().await?;
        let done =
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now()).execute(pool).await?;
        Ok(done.rows_affected())
    }
}
