//! What a caller asks of the engine (`GenerateRequest`) and what it gets back: a
//! `Generation`, a stream of `GenEvent`s that ends with a `Summary` or an error.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;

use crate::EngineError;

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The conversation or raw text to continue.
    pub prompt: Prompt,
    /// How to pick tokens and when to stop.
    pub sampling: Sampling,
}

/// The input of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A conversation, rendered with the model's own chat template (generation prompt added).
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized as is (the model's BOS token is added if it wants one).
    Text(String),
    /// Token ids of an earlier exchange (Ollama's `context`), read as they are, then
    /// `then` tokenized after them without a second BOS token.
    Continue {
        /// Ids of the model's vocabulary (checked: an unknown one is a 400 naming it).
        context: Vec<u32>,
        /// What follows them.
        then: Box<Prompt>,
    },
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or whatever else the template understands.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
}

/// Sampling parameters and stop conditions, llama.cpp's defaults unless set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; `0` (or less) means greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling mass; `1.0` disables it.
    pub top_p: f32,
    /// Keep only the `k` likeliest tokens; `0` disables it.
    pub top_k: u32,
    /// Drop tokens less likely than `min_p` times the likeliest one; `0` disables it.
    pub min_p: f32,
    /// Penalty for tokens among the last 64 (prompt included); `1.0` disables it.
    pub repeat_penalty: f32,
    /// Seed of the sampler's RNG; `None` draws a random one. Only the low 32 bits
    /// matter to llama.cpp (the high half is folded in).
    pub seed: Option<u64>,
    /// Most tokens to generate; `None` runs until end of generation or the context is full.
    pub max_tokens: Option<u32>,
    /// Strings that end the generation; they are never emitted, not even in part.
    pub stop: Vec<String>,
    /// A shape the output must have, enforced token by token inside the sampler.
    pub format: Option<OutputFormat>,
}

/// A constraint on the generated text.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object.
    Json,
    /// JSON matching this JSON Schema.
    JsonSchema(serde_json::Value),
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 40,
            min_p: 0.05,
            repeat_penalty: 1.0,
            seed: None,
            max_tokens: None,
            stop: Vec::new(),
            format: None,
        }
    }
}

impl Sampling {
    /// Greedy decoding: always the likeliest token, fully deterministic.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        let bad = |what: &str| Err(EngineError::InvalidRequest(what.to_owned()));
        if !self.temperature.is_finite() {
            return bad("temperature must be finite");
        }
        if !(0.0..=1.0).contains(&self.top_p) || !(0.0..=1.0).contains(&self.min_p) {
            return bad("top_p and min_p must be within 0..=1");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat_penalty must be positive");
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop strings must not be empty");
        }
        if self.max_tokens == Some(0) {
            return bad("max_tokens must be at least 1");
        }
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token or a stop string matched.
    Stop,
    /// `max_tokens` was reached or the sequence's context window filled up.
    Length,
}

/// Counts and timings of a finished generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens in the prompt (reused from the cache or evaluated).
    pub prompt_tokens: usize,
    /// Tokens sampled, not counting an end-of-generation token.
    pub completion_tokens: usize,
    /// From admission to a sequence slot until the first token was sampled.
    pub prompt_eval: Duration,
    /// From the first sampled token to the end.
    pub eval: Duration,
}

/// One item of a [`Generation`] stream.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// The next piece of text; always whole UTF-8 characters, never part of a stop string.
    Token(String),
    /// The generation ended normally; the stream ends after this.
    Done(Summary),
    /// The generation failed; the stream ends after this.
    Error(EngineError),
}

/// The streamed result of [`crate::Engine::generate`].
///
/// Dropping it cancels the sequence: the engine notices at its next step, frees the
/// slot and removes the sequence's KV cells.
#[derive(Debug)]
pub struct Generation {
    events: mpsc::UnboundedReceiver<GenEvent>,
    prompt_tokens: usize,
}

impl Generation {
    pub(crate) fn new(events: mpsc::UnboundedReceiver<GenEvent>, prompt_tokens: usize) -> Self {
        Self { events, prompt_tokens }
    }

    /// Tokens in the prompt, known before the first event.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next_event(&mut self) -> Option<GenEvent> {
        self.events.recv().await
    }

    /// Waits for the whole generation and returns its text and summary.
    pub async fn collect(mut self) -> Result<Completion, EngineError> {
        let mut text = String::new();
        while let Some(event) = self.events.recv().await {
            match event {
                GenEvent::Token(piece) => text.push_str(&piece),
                GenEvent::Done(summary) => return Ok(Completion { text, summary }),
                GenEvent::Error(err) => return Err(err),
            }
        }
        Err(EngineError::Closed)
    }
}

impl Stream for Generation {
    type Item = GenEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        self.events.poll_recv(cx)
    }
}

/// A whole generation, as returned by [`Generation::collect`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// All text pieces joined.
    pub text: String,
    /// How it ended.
    pub summary: Summary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_validation_rejects_nonsense() {
        assert!(Sampling::default().validate().is_ok());
        assert!(Sampling::greedy().validate().is_ok());
        let invalid = [
            Sampling { top_p: 1.5, ..Sampling::default() },
            Sampling { repeat_penalty: 0.0, ..Sampling::default() },
            Sampling { temperature: f32::NAN, ..Sampling::default() },
            Sampling { stop: vec![String::new()], ..Sampling::default() },
            Sampling { max_tokens: Some(0), ..Sampling::default() },
        ];
        for sampling in invalid {
            assert!(matches!(sampling.validate(), Err(EngineError::InvalidRequest(_))), "{sampling:?}");
        }
    }
}
