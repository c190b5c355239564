//! API chats stored on request. A client that sends `x-sluice-conversation: new` (or
//! the id of one of its conversations) with a chat or completion gets the request's
//! last user message stored — durably, before the answer starts — and the answer
//! stored when it ends (text, model, tokens, time to first token, duration, finish
//! reason or error), as a child of that message. Without the header nothing is stored.
//! The response names the conversation in the same header.

use std::sync::Arc;

use sluice_core::{
    chat::{ChatRequest, Input, Role},
    context::RequestContext,
    error::GatewayError,
};
use sluice_store::{NewMessage, Store};
use tokio_util::task::TaskTracker;

use super::owner::owner;
use crate::state::AppState;

/// The request and response header.
pub const HEADER: &str = "x-sluice-conversation";

/// Longest title made from the first message.
const TITLE_CHARS: usize = 80;

/// A chat being stored: where the answer goes once it ends.
pub struct Recording {
    store: Arc<Store>,
    tasks: TaskTracker,
    owner: String,
    /// The conversation's id (sent back in [`HEADER`]).
    pub conversation_id: String,
    /// The stored user message the answer answers.
    parent_id: String,
    /// Told the stored answer's id (`None` when storing failed), for UI generations.
    stored: Option<tokio::sync::oneshot::Sender<Option<String>>>,
}

/// What an answer turned out to be, for its stored message.
pub struct Answer {
    /// The text, as streamed.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Prompt and completion tokens.
    pub tokens: (u64, u64),
    /// Time to the first event, in ms.
    pub ttft_ms: Option<u64>,
    /// Whole duration, in ms.
    pub duration_ms: u64,
    /// Why it ended (`stop`, `length`, …), when it ended well.
    pub finish_reason: Option<String>,
    /// What went wrong, when it did.
    pub error: Option<String>,
}

/// Starts storing `req` when the client asked to (`ctx.conversation`): finds or
/// creates the conversation and stores the last user message. `Ok(None)` when the
/// client did not ask.
pub async fn begin(
    state: &AppState,
    ctx: &RequestContext,
    req: &ChatRequest,
) -> Result<Option<Recording>, GatewayError> {
    let Some(wanted) = ctx.conversation.as_deref() else { return Ok(None) };
    let Some(owner) = owner(ctx) else {
        return Err(GatewayError::Unauthorized("sign in to store conversations".into()));
    };
    if wanted.is_empty() || wanted.len() > 64 {
        return Err(GatewayError::bad_request(
            format!("{HEADER}: expected 'new' or a conversation id"),
            Some(HEADER),
        ));
    }
    let text = last_user_text(req)
        .ok_or_else(|| GatewayError::bad_request("no user message to store", Some("messages")))?;
    let store = &state.store;
    let internal = |e: sluice_store::StoreError| {
        tracing::warn!(error = %e, "storing the conversation failed");
        GatewayError::Unavailable("the conversation store is unavailable; try again".into())
    };
    let (conversation_id, parent) = if wanted == "new" {
        let title: String = text.chars().take(TITLE_CHARS).collect();
        let c = store.create_conversation(&owner.id, title.trim(), &req.model).await.map_err(internal)?;
        (c.id, None)
    } else {
        let last = store.last_message_id(&owner.id, wanted).await.map_err(internal)?;
        let Some(last) = last else {
            return Err(GatewayError::NotFound(format!("no conversation '{wanted}'")));
        };
        (wanted.to_owned(), last)
    };
    let message = NewMessage {
        parent_id: parent,
        role: Role::User.as_str().to_owned(),
        content: text.to_owned(),
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        ttft_ms: None,
        duration_ms: None,
        finish_reason: None,
        error: None,
    };
    let stored = store.append_message(&owner.id, &conversation_id, message).await.map_err(internal)?;
    let Some(stored) = stored else {
        return Err(GatewayError::NotFound(format!("no conversation '{wanted}'")));
    };
    Ok(Some(Recording {
        store: state.store.clone(),
        tasks: state.core.tasks.clone(),
        owner: owner.id,
        conversation_id,
        parent_id: stored.id,
        stored: None,
    }))
}

impl Recording {
    /// Records the answer to `parent_id`, a user message of `owner`'s conversation
    /// that is already stored; `stored` is told the answer's id once it is written.
    pub fn to_message(
        state: &AppState,
        owner: String,
        conversation_id: String,
        parent_id: String,
        stored: tokio::sync::oneshot::Sender<Option<String>>,
    ) -> Recording {
        Recording {
            store: state.store.clone(),
            tasks: state.core.tasks.clone(),
            owner,
            conversation_id,
            parent_id,
            stored: Some(stored),
        }
    }

    /// Stores the answer, off the request path (a tracked task: shutdown waits for it).
    pub fn finish(self, answer: Answer) {
        let Recording { store, tasks, owner, conversation_id, parent_id, stored } = self;
        tasks.spawn(async move {
            let message = NewMessage {
                parent_id: Some(parent_id),
                role: Role::Assistant.as_str().to_owned(),
                content: answer.text,
                model: Some(answer.model),
                prompt_tokens: Some(answer.tokens.0),
                completion_tokens: Some(answer.tokens.1),
                ttft_ms: answer.ttft_ms,
                duration_ms: Some(answer.duration_ms),
                finish_reason: answer.finish_reason,
                error: answer.error,
            };
            let id = match store.append_message(&owner, &conversation_id, message).await {
                Ok(m) => m.map(|m| m.id),
                Err(e) => {
                    tracing::warn!(error = %e, conversation = %conversation_id, "storing an answer failed");
                    None
                }
            };
            if let Some(tell) = stored {
                // The generation may be gone already; the answer is stored either way.
                let _ = tell.send(id);
            }
        });
    }
}

/// The text of the request's last user message (or its prompt).
fn last_user_text(req: &ChatRequest) -> Option<&str> {
    match &req.input {
        Input::Chat(messages) => {
            messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.as_str())
        }
        Input::Text { prompt, .. } => Some(prompt),
    }
}
