//! Keyset pagination of a user's conversation list: the cursor and the page request.

use std::{fmt, str::FromStr};

/// Where a page of [`crate::Store::list_conversations`] continues: after this conversation.
/// On the wire it is `UPDATED_AT:ID` ([`fmt::Display`] and [`FromStr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCursor {
    /// The `updated_at` of the last conversation shown.
    pub updated_at: i64,
    /// Its id.
    pub id: String,
}

impl fmt::Display for ConversationCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.updated_at, self.id)
    }
}

/// A cursor that is not `UPDATED_AT:ID`.
#[derive(Debug, thiserror::Error)]
#[error("a conversation cursor is UPDATED_AT:ID")]
pub struct BadCursor;

impl FromStr for ConversationCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let (at, id) = s.split_once(':').ok_or(BadCursor)?;
        let updated_at = at.parse().map_err(|_| BadCursor)?;
        if id.is_empty() {
            return Err(BadCursor);
        }
        Ok(ConversationCursor { updated_at, id: id.to_owned() })
    }
}

/// One page request of [`crate::Store::list_conversations`].
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Continue after this cursor; `None` starts at the newest.
    pub before: Option<ConversationCursor>,
    /// Conversations per page (1 to [`Page::MAX_LIMIT`]).
    pub limit: u32,
}

impl Page {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;
}
