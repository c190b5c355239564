//! What a caller asks of the engine (`GenerateRequest`) and what it gets back: a
//! `Generation`, a stream of `GenEvent`s that ends with a `Summary` or an error.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;

use crate::EngineError;
use crate::logprobs::{MAX_TOP_LOGPROBS, TokenLogprob};

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The conversation or raw text to continue.
    pub prompt: Prompt,
    /// How to pick tokens and when to stop.
    pub sampling: Sampling,
    /// Functions the model may call, OpenAI-shaped (`{"type": "function", "function":
    /// {"name", "description", "parameters"}}`), handed to the chat template as
    /// `tools`, as `transformers` does. Empty: the template sees no `tools`.
    pub tools: Vec<serde_json::Value>,
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

/// One message of a conversation, as chat templates read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool` or whatever else the template understands.
    pub role: String,
    /// The message text.
    pub content: String,
    /// An assistant message's calls, in `transformers`' shape: `{"id", "type":
    /// "function", "function": {"name", "arguments"}}` with the arguments as a JSON
    /// object. Absent from the template's view when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// The call a `tool` message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The function a `tool` message answers for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
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
    /// `Some(n)`: report each generated token's log probability and its `n` likeliest
    /// alternatives (`n` at most [`MAX_TOP_LOGPROBS`]) in [`GenEvent::Logprobs`] events.
    /// `None` computes nothing.
    pub logprobs: Option<u8>,
}

/// A constraint on the generated text.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object.
    Json,
    /// JSON matching this JSON Schema.
    JsonSchema(serde_json::Value),
    /// One call of one of these functions, in the Hermes/Qwen convention:
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, the arguments
    /// matching the function's schema ([`crate::tool_call_grammar`]).
    ToolCall(Vec<ToolSchema>),
}

/// A function a constrained tool call may name, with its arguments' JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSchema {
    /// The function's name.
    pub name: String,
    /// JSON Schema of its arguments; `None`: any JSON object.
    pub parameters: Option<serde_json::Value>,
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
            logprobs: None,
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
        if self.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return bad("top_logprobs must be within 0..=20");
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
    /// Log probabilities of the tokens whose text comes next (in the following
    /// `Token` events), in order; only when [`Sampling::logprobs`] asked for them.
    /// Tokens that only made up a matched stop string, and the end-of-generation
    /// token, are not reported.
    Logprobs(Vec<TokenLogprob>),
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
        let mut logprobs = Vec::new();
        while let Some(event) = self.events.recv().await {
            match event {
                GenEvent::Token(piece) => text.push_str(&piece),
                GenEvent::Logprobs(more) => logprobs.extend(more),
                GenEvent::Done(summary) => return Ok(Completion { text, logprobs, summary }),
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
    /// Every token's log probabilities, when asked for.
    pub logprobs: Vec<TokenLogprob>,
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
            Sampling { logprobs: Some(21), ..Sampling::default() },
        ];
        for sampling in invalid {
            assert!(matches!(sampling.validate(), Err(EngineError::InvalidRequest(_))), "{sampling:?}");
        }
    }
}
