//! Agent tokens: `sluice agent-token create|list|revoke` and the admin API manage them;
//! agents present them once per connection.
//!
//! A token is 32 random bytes shown once (`sat-` + hex); only its SHA-256 is stored. A
//! presented token is looked up by its hash (which tells an observer nothing: the token
//! is random, so its hash cannot be guessed), then compared in constant time.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row as _;
use subtle::ConstantTimeEq;

use super::{Store, StoreError};

/// A stored token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentToken {
    /// Stable id, used to revoke it.
    pub id: String,
    /// Who or what it is for.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
    /// The model names (globs) its agents may serve; `None`: any name that no
    /// configured backend serves.
    pub models: Option<Vec<String>>,
    /// Unix seconds after which the token is refused.
    pub expires_at: Option<i64>,
}

fn now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const COLUMNS: &str = "id, name, created_at, revoked_at, models, expires_at";

fn row_to_token(row: &sqlx::any::AnyRow) -> Result<AgentToken, sqlx::Error> {
    let models: Option<String> = row.try_get("models")?;
    Ok(AgentToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        models: models.and_then(|m| serde_json::from_str(&m).ok()),
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Creates a token named `name` for any model no configured backend serves, with no
    /// expiry; returns its record and the secret (shown once).
    pub async fn create_agent_token(&self, name: &str) -> Result<(AgentToken, String), StoreError> {
        self.create_agent_token_scoped(name, None, None).await
    }

    /// Creates a token named `name` whose agents may serve only `models` (globs; `None`:
    /// any name no configured backend serves), refused after `expires_at` (unix
    /// seconds); returns its record and the secret (shown once).
    pub async fn create_agent_token_scoped(
        &self,
        name: &str,
        models: Option<Vec<String>>,
        expires_at: Option<i64>,
    ) -> Result<(AgentToken, String), StoreError> {
        let pool = self.open().await?;
        let secret = format!("sat-{}", hex::encode(rand::random::<[u8; 32]>()));
        let token = AgentToken {
            id: hex::encode(rand::random::<[u8; 8]>()),
            name: name.to_owned(),
            created_at: now(),
            revoked_at: None,
            models,
            expires_at,
        };
        let models_json = token.models.as_ref().map(|m| serde_json::Value::from(m.clone()).to_string());
        sqlx::query(
            "INSERT INTO agent_tokens (id, name, token_sha256, created_at, models, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(hash(&secret))
        .bind(token.created_at)
        .bind(models_json)
        .bind(token.expires_at)
        .execute(pool)
        .await?;
        Ok((token, secret))
    }

    /// Every token, revoked ones included, oldest first.
    pub async fn list_agent_tokens(&self) -> Result<Vec<AgentToken>, StoreError> {
        let pool = self.open().await?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM agent_tokens ORDER BY created_at, id"))
            .fetch_all(pool)
            .await?;
        Ok(rows.iter().map(row_to_token).collect::<Result<_, _>>()?)
    }

    /// Revokes a token; returns false when no unrevoked token has this id.
    pub async fn revoke_agent_token(&self, id: &str) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let done =
            sqlx::query("UPDATE agent_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The token with this id if it is still good (not revoked, not expired): a
    /// connected agent's token is checked again at every heartbeat.
    pub async fn agent_token_in_force(&self, id: &str) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(
            "SELECT id FROM agent_tokens WHERE id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(id)
        .bind(now())
        .fetch_optional(pool)
        .await?;
        Ok(row.is_some())
    }

    /// The unrevoked, unexpired token matching `secret`, if any.
    pub async fn verify_agent_token(&self, secret: &str) -> Result<Option<AgentToken>, StoreError> {
        let pool = self.open().await?;
        let presented = hash(secret);
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, token_sha256 FROM agent_tokens \
             WHERE token_sha256 = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(&presented)
        .bind(now())
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("token_sha256")?;
        if !bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
            return Ok(None);
        }
        Ok(Some(row_to_token(&row)?))
    }
}
