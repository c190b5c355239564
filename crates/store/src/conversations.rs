//! Saved conversations: each belongs to one user and holds messages that form a tree
//! (an edited and resent message gets a sibling with the same parent), searchable by
//! full text (see [`search`]).
//!
//! Every call takes the owner's `user_id` and treats another user's conversation
//! exactly like a missing one: `None` or `false`, never an error that would reveal it
//! exists. Writes are committed before they return (see "Durability" in the crate doc).

mod page;
pub mod search;

use serde::{Deserialize, Serialize};
use sqlx::{Row as _, any::AnyRow};

pub use page::{BadCursor, ConversationCursor, Page};
pub use search::{ConversationExport, SearchHit};

use crate::{Store, StoreError, now_ms};

/// A conversation, without its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// uuid v7.
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// Shown in the list.
    pub title: String,
    /// The model it was started with.
    pub model: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last message (or creation).
    pub updated_at: i64,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// uuid v7.
    pub id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// The message it answers or follows; siblings share a parent.
    pub parent_id: Option<String>,
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text.
    pub content: String,
    /// The model that wrote it (assistant messages).
    pub model: Option<String>,
    /// Prompt tokens of the request that produced it.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens it took.
    pub completion_tokens: Option<u64>,
    /// Time to its first token.
    pub ttft_ms: Option<u64>,
    /// Time to produce it.
    pub duration_ms: Option<u64>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// What went wrong, when generation failed.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
}

/// A message to append; `role` and `content` are required, the rest may come later
/// through [`Store::update_message`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NewMessage {
    /// The message it follows (must be in the same conversation).
    pub parent_id: Option<String>,
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text (empty for an answer about to be streamed).
    pub content: String,
    /// The model that writes it.
    pub model: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    pub completion_tokens: Option<u64>,
    /// Time to first token.
    pub ttft_ms: Option<u64>,
    /// Duration.
    pub duration_ms: Option<u64>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Changes to a message; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MessageUpdate {
    /// The text (the finished answer).
    pub content: Option<String>,
    /// The model that wrote it.
    pub model: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    pub completion_tokens: Option<u64>,
    /// Time to first token.
    pub ttft_ms: Option<u64>,
    /// Duration.
    pub duration_ms: Option<u64>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// A conversation with all its messages, oldest first (every branch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationWithMessages {
    /// The conversation.
    pub conversation: Conversation,
    /// Its messages, by creation time.
    pub messages: Vec<Message>,
}

const CONVERSATION_COLUMNS: &str = "id, user_id, title, model, created_at, updated_at";
const MESSAGE_COLUMNS: &str = "id, conversation_id, parent_id, role, content, model, prompt_tokens, \
     completion_tokens, ttft_ms, duration_ms, finish_reason, error, created_at";

fn opt_u64(row: &AnyRow, col: &str) -> Result<Option<u64>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.and_then(|n| u64::try_from(n).ok()))
}

fn opt_i64(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn row_to_conversation(row: &AnyRow) -> Result<Conversation, sqlx::Error> {
    Ok(Conversation {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        model: row.try_get("model")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn row_to_message(row: &AnyRow) -> Result<Message, sqlx::Error> {
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        parent_id: row.try_get("parent_id")?,
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        model: row.try_get("model")?,
        prompt_tokens: opt_u64(row, "prompt_tokens")?,
        completion_tokens: opt_u64(row, "completion_tokens")?,
        ttft_ms: opt_u64(row, "ttft_ms")?,
        duration_ms: opt_u64(row, "duration_ms")?,
        finish_reason: row.try_get("finish_reason")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Moves `updated_at` forward (never back, should the clock step back).
const BUMP: &str = "UPDATE conversations SET updated_at = CASE WHEN updated_at < $1 THEN $1 ELSE updated_at END \
                    WHERE id = $2";

impl Store {
    /// Starts an empty conversation owned by `user_id`.
    pub async fn create_conversation(
        &self,
        user_id: &str,
        title: &str,
        model: &str,
    ) -> Result<Conversation, StoreError> {
        let pool = self.open().await?;
        let now = now_ms();
        let c = Conversation {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            title: title.to_owned(),
            model: model.to_owned(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&c.id)
        .bind(&c.user_id)
        .bind(&c.title)
        .bind(&c.model)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(pool)
        .await?;
        Ok(c)
    }

    /// A page of `user_id`'s conversations, most recently updated first (ties: newest
    /// id first), and the cursor
    /// of the next page (`None` on the last). Keyset pagination: the cost of a page does
    /// not grow with how far down it is.
    pub async fn list_conversations(
        &self,
        user_id: &str,
        page: &Page,
    ) -> Result<(Vec<Conversation>, Option<ConversationCursor>), StoreError> {
        let pool = self.open().await?;
        let limit = page.limit.clamp(1, Page::MAX_LIMIT);
        let rows = match &page.before {
            None => {
                let sql = format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE user_id = $1 \
                     ORDER BY updated_at DESC, id DESC LIMIT $2"
                );
                sqlx::query(&sql).bind(user_id).bind(i64::from(limit) + 1).fetch_all(pool).await?
            }
            Some(c) => {
                // `updated_at <= $2` keeps the index range tight; the OR breaks ties by id.
                let sql = format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE user_id = $1 \
                     AND updated_at <= $2 AND (updated_at < $2 OR id < $3) \
                     ORDER BY updated_at DESC, id DESC LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(user_id)
                    .bind(c.updated_at)
                    .bind(&c.id)
                    .bind(i64::from(limit) + 1)
                    .fetch_all(pool)
                    .await?
            }
        };
        let mut list = rows.iter().map(row_to_conversation).collect::<Result<Vec<_>, _>>()?;
        let more = list.len() > limit as usize;
        list.truncate(limit as usize);
        let next = more
            .then(|| list.last().map(|c| ConversationCursor { updated_at: c.updated_at, id: c.id.clone() }))
            .flatten();
        Ok((list, next))
    }

    /// True when `user_id` has a conversation `id` (one indexed lookup; no messages
    /// read).
    pub async fn conversation_exists(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query("SELECT 1 AS one FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
        Ok(row.is_some())
    }

    /// `user_id`'s conversation `id` with every message, oldest first.
    pub async fn get_conversation(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<ConversationWithMessages>, StoreError> {
        let pool = self.open().await?;
        let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 AND user_id = $2");
        let Some(row) = sqlx::query(&sql).bind(id).bind(user_id).fetch_optional(pool).await? else {
            return Ok(None);
        };
        let conversation = row_to_conversation(&row)?;
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(pool).await?;
        let messages = rows.iter().map(row_to_message).collect::<Result<_, _>>()?;
        Ok(Some(ConversationWithMessages { conversation, messages }))
    }

    /// The id of the newest message of `user_id`'s conversation `id` (`Some(None)`
    /// when it has none yet; `None` when there is no such conversation of that user),
    /// without reading the others: an API chat continues from it.
    pub async fn last_message_id(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let pool = self.open().await?;
        let owned = sqlx::query("SELECT id FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
        if owned.is_none() {
            return Ok(None);
        }
        let last = sqlx::query(
            "SELECT id FROM messages WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        Ok(Some(last.map(|r| r.try_get("id")).transpose()?))
    }

    /// Renames `user_id`'s conversation (its place in the list stays); false if missing.
    pub async fn rename_conversation(
        &self,
        user_id: &str,
        id: &str,
        title: &str,
    ) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query("UPDATE conversations SET title = $1 WHERE id = $2 AND user_id = $3")
            .bind(title)
            .bind(id)
            .bind(user_id)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes `user_id`'s conversation and its messages; false if missing.
    pub async fn delete_conversation(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Appends a message to `user_id`'s conversation and moves the conversation to the
    /// top of the list; committed when it returns. `None` when the conversation is not
    /// the user's, or the parent is not a message of that conversation.
    pub async fn append_message(
        &self,
        user_id: &str,
        conversation_id: &str,
        m: NewMessage,
    ) -> Result<Option<Message>, StoreError> {
        let pool = self.open().await?;
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        // Write first (ownership and parent checked in the same statement), so a SQLite
        // transaction never has to upgrade a read lock.
        let sql = "INSERT INTO messages (id, conversation_id, user_id, parent_id, role, content, model, \
             prompt_tokens, completion_tokens, ttft_ms, duration_ms, finish_reason, error, created_at) \
             SELECT $1, c.id, c.user_id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 \
             FROM conversations c WHERE c.id = $2 AND c.user_id = $3 AND ($4 IS NULL OR EXISTS \
             (SELECT 1 FROM messages p WHERE p.id = $4 AND p.conversation_id = c.id))";
        let mut tx = pool.begin().await?;
        let done = sqlx::query(sql)
            .bind(&id)
            .bind(conversation_id)
            .bind(user_id)
            .bind(m.parent_id.as_deref())
            .bind(&m.role)
            .bind(&m.content)
            .bind(m.model.as_deref())
            .bind(opt_i64(m.prompt_tokens))
            .bind(opt_i64(m.completion_tokens))
            .bind(opt_i64(m.ttft_ms))
            .bind(opt_i64(m.duration_ms))
            .bind(m.finish_reason.as_deref())
            .bind(m.error.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            // Roll back now: a dropped transaction would keep SQLite's write lock until
            // its connection is next used, and the next writer would find it busy.
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(BUMP).bind(now).bind(conversation_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(Message {
            id,
            conversation_id: conversation_id.to_owned(),
            parent_id: m.parent_id,
            role: m.role,
            content: m.content,
            model: m.model,
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            ttft_ms: m.ttft_ms,
            duration_ms: m.duration_ms,
            finish_reason: m.finish_reason,
            error: m.error,
            created_at: now,
        }))
    }

    /// Stores what became known after a message was appended (the finished answer, its
    /// timing, an error); returns the message as stored, `None` if it is not the user's.
    pub async fn update_message(
        &self,
        user_id: &str,
        message_id: &str,
        u: MessageUpdate,
    ) -> Result<Option<Message>, StoreError> {
        let pool = self.open().await?;
        let now = now_ms();
        let mut tx = pool.begin().await?;
        let done = sqlx::query(
            "UPDATE messages SET content = COALESCE($1, content), model = COALESCE($2, model), \
             prompt_tokens = COALESCE($3, prompt_tokens), completion_tokens = COALESCE($4, completion_tokens), \
             ttft_ms = COALESCE($5, ttft_ms), duration_ms = COALESCE($6, duration_ms), \
             finish_reason = COALESCE($7, finish_reason), error = COALESCE($8, error) \
             WHERE id = $9 AND user_id = $10",
        )
        .bind(u.content.as_deref())
        .bind(u.model.as_deref())
        .bind(opt_i64(u.prompt_tokens))
        .bind(opt_i64(u.completion_tokens))
        .bind(opt_i64(u.ttft_ms))
        .bind(opt_i64(u.duration_ms))
        .bind(u.finish_reason.as_deref())
        .bind(u.error.as_deref())
        .bind(message_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Roll back now: a dropped transaction would keep SQLite's write lock until
            // its connection is next used, and the next writer would find it busy.
            tx.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"))
            .bind(message_id)
            .fetch_one(&mut *tx)
            .await?;
        let message = row_to_message(&row)?;
        sqlx::query(BUMP).bind(now).bind(&message.conversation_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(message))
    }

    /// Deletes every conversation (with its messages) not updated since `before_ms`
    /// (retention); returns how many conversations.
    pub async fn delete_conversations_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let pool = self.open().await?;
        let done = sqlx::query("DELETE FROM conversations WHERE updated_at < $1")
            .bind(before_ms)
            .execute(pool)
            .await?;
        Ok(done.rows_affected())
    }
}
