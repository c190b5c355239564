//! Stored Responses API responses: what `previous_response_id` continues from and
//! `GET`/`DELETE /v1/responses/{id}` read. Each row belongs to one owner and lives
//! until its `expires_at`; the store keeps the JSON as text and never looks inside.
//!
//! As with conversations, another owner's response and an expired one are exactly like
//! a missing one (`None`, `false`): nothing tells a caller that an id exists.

use sqlx::{Row as _, any::AnyRow};

use crate::{Store, StoreError, now_ms};

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// `resp_…`, as the client got it.
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// The context it answered, as a JSON array of input items (the chain before it,
    /// then its own input; instructions excluded).
    pub input: String,
    /// The response object, as JSON.
    pub response: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms after which it is gone.
    pub expires_at: i64,
}

const COLUMNS: &str = "id, user_id, input, response, created_at, expires_at";

fn row_to_response(row: &AnyRow) -> Result<StoredResponse, sqlx::Error> {
    Ok(StoredResponse {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        input: row.try_get("input")?,
        response: row.try_get("response")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Stores `r`; committed when it returns. An id that exists already is an
    /// [`StoreError::Exists`] (ids are random: it means a bug, never an overwrite).
    pub async fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query(&format!(
            "INSERT INTO responses ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&r.id)
        .bind(&r.user_id)
        .bind(&r.input)
        .bind(&r.response)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Exists(format!("a response '{}' is stored already", r.id)));
        }
        Ok(())
    }

    /// `user_id`'s response `id`, unless it expired.
    pub async fn get_response(&self, user_id: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM responses WHERE id = $1 AND user_id = $2 AND expires_at > $3"
        ))
        .bind(id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(pool)
        .await?;
        Ok(row.as_ref().map(row_to_response).transpose()?)
    }

    /// Deletes `user_id`'s response `id`; false when there is none (or it expired).
    pub async fn delete_response(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND user_id = $2 AND expires_at > $3")
            .bind(id)
            .bind(user_id)
            .bind(now_ms())
            .execute(pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every response that expired at `now_ms`; returns how many.
    pub async fn delete_expired_responses(&self, now_ms: i64) -> Result<u64, StoreError> {
        let pool = self.open().await?;
        let done =
            sqlx::query("DELETE FROM responses WHERE expires_at <= $1").bind(now_ms).execute(pool).await?;
        Ok(done.rows_affected())
    }
}
