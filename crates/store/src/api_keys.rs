//! Users' API keys: `sk-sluice-` and 32 random bytes (hex), shown once, stored as
//! SHA-256 with a short prefix for lists. A key may be limited to model globs, carry
//! its own limits, and expire.
//!
//! The gateway never reads this table on a request: it loads every key with
//! [`Store::load_api_keys`] and reloads on change (see [`crate::changes`]).

use serde::Serialize;
use sluice_protocol::budget::Budget;
use sqlx::Row as _;

use super::{
    Store, StoreError,
    users::{budget_columns, budget_from_row, new_id, now, sha256_hex},
};

/// How many characters of a key are kept in clear to tell keys apart in lists.
pub const PREFIX_LEN: usize = 14;

/// What a new key is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewApiKey {
    /// The owner.
    pub user_id: String,
    /// A label, e.g. the program using it.
    pub name: String,
    /// Model globs the key may use; `None`: all.
    pub models: Option<Vec<String>>,
    /// The key's limits.
    pub limits: Limits,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<i64>,
}

/// A key's limits; `None`: none of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Concurrent streams.
    pub max_streams: Option<i64>,
    /// Tokens per day.
    pub daily_tokens: Option<i64>,
    /// Tokens per month.
    pub monthly_tokens: Option<i64>,
    /// Monthly spend budget.
    pub budget: Option<Budget>,
}

impl Limits {
    /// Limits as the key API and `sluice key create` take them (amounts above what the
    /// store keeps saturate to no limit, as before).
    pub fn new(
        rpm: Option<u32>,
        tpm: Option<u32>,
        max_streams: Option<u32>,
        daily_tokens: Option<u64>,
        monthly_tokens: Option<u64>,
        budget: Option<Budget>,
    ) -> Limits {
        Limits {
            rpm: rpm.map(i64::from),
            tpm: tpm.map(i64::from),
            max_streams: max_streams.map(i64::from),
            daily_tokens: daily_tokens.and_then(|v| i64::try_from(v).ok()),
            monthly_tokens: monthly_tokens.and_then(|v| i64::try_from(v).ok()),
            budget,
        }
    }
}

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Stable id, used to revoke it.
    pub id: String,
    /// The owner's id.
    pub user_id: String,
    /// The label.
    pub name: String,
    /// The key's first characters.
    pub prefix: String,
    /// Hex SHA-256 of the key (not shown to clients).
    #[serde(skip)]
    pub key_sha256: String,
    /// Model globs; `None`: all.
    pub models: Option<Vec<String>>,
    /// The key's limits.
    #[serde(flatten)]
    pub limits: Limits,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: Option<i64>,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
}

const KEY_COLUMNS: &str = "id, user_id, name, prefix, key_sha256, models, rpm, tpm, max_streams, \
                           daily_tokens, monthly_tokens, expires_at, created_at, last_used_at, revoked_at, \
                           monthly_budget_micros, budget_mode";

fn row_to_key(row: &sqlx::any::AnyRow) -> Result<ApiKey, sqlx::Error> {
    let models: Option<String> = row.try_get("models")?;
    let models =
        models.map(|m| serde_json::from_str(&m).map_err(|e| sqlx::Error::Decode(Box::new(e)))).transpose()?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_sha256: row.try_get("key_sha256")?,
        models,
        limits: Limits {
            rpm: row.try_get("rpm")?,
            tpm: row.try_get("tpm")?,
            max_streams: row.try_get("max_streams")?,
            daily_tokens: row.try_get("daily_tokens")?,
            monthly_tokens: row.try_get("monthly_tokens")?,
            budget: budget_from_row(row)?,
        },
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// A new random key.
pub fn generate_key() -> String {
    format!("sk-sluice-{}", hex::encode(rand::random::<[u8; 32]>()))
}

impl Store {
    /// Creates a key for an existing user; returns its record and the secret (shown
    /// once).
    pub async fn create_api_key(&self, new: &NewApiKey) -> Result<(ApiKey, String), StoreError> {
        let models = new
            .models
            .as_ref()
            .map(|m| serde_json::to_string(m).map_err(|e| StoreError::Invalid(e.to_string())))
            .transpose()?;
        let pool = self.open().await?;
        let secret = generate_key();
        let key = ApiKey {
            id: new_id(),
            user_id: new.user_id.clone(),
            name: new.name.clone(),
            prefix: secret[..PREFIX_LEN].to_owned(),
            key_sha256: sha256_hex(&secret),
            models: new.models.clone(),
            limits: new.limits,
            expires_at: new.expires_at,
            created_at: now(),
            last_used_at: None,
            revoked_at: None,
        };
        let mut tx = pool.begin().await?;
        let owner = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(&key.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if owner.is_none() {
            return Err(StoreError::NotFound(format!("no user with id '{}'", key.user_id)));
        }
        let l = &key.limits;
        let (budget_micros, budget_mode) = budget_columns(l.budget);
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, $14, $15)"
        ))
        .bind(&key.id)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_sha256)
        .bind(models)
        .bind(l.rpm)
        .bind(l.tpm)
        .bind(l.max_streams)
        .bind(l.daily_tokens)
        .bind(l.monthly_tokens)
        .bind(key.expires_at)
        .bind(key.created_at)
        .bind(budget_micros)
        .bind(budget_mode)
        .execute(&mut *tx)
        .await?;
        self.auth_changed(&mut tx).await?;
        tx.commit().await?;
        Ok((key, secret))
    }

    /// The keys of `user_id` (all users' when `None`), revoked ones included, oldest
    /// first.
    pub async fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let pool = self.open().await?;
        let rows = match user_id {
            Some(u) => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at, id"
                ))
                .bind(u)
                .fetch_all(pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"))
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows.iter().map(row_to_key).collect::<Result<_, _>>()?)
    }

    /// The key with id `id`.
    pub async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
        Ok(row.as_ref().map(row_to_key).transpose()?)
    }

    /// Revokes a key (only if it belongs to `owner`, when given); false when no such
    /// unrevoked key exists.
    pub async fn revoke_api_key(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let mut tx = pool.begin().await?;
        let sql = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let done = match owner {
            Some(o) => {
                sqlx::query(&format!("{sql} AND user_id = $3"))
                    .bind(now())
                    .bind(id)
                    .bind(o)
                    .execute(&mut *tx)
                    .await?
            }
            None => sqlx::query(sql).bind(now()).bind(id).execute(&mut *tx).await?,
        };
        self.auth_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every key, revoked ones included (the gateway says "revoked" rather than
    /// "invalid" for those).
    pub async fn load_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.list_api_keys(None).await
    }

    /// Records when keys were last used: `(id, unix seconds)` pairs.
    pub async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        let pool = self.open().await?;
        let mut tx = pool.begin().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
