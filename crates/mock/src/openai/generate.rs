//! `POST /v1/chat/completions` and `POST /v1/completions`: validate, resolve the
//! [`Plan`], hand it to the shared executor with an [`SseEncoder`].

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::sse::{Kind, SseEncoder};
use crate::directive::Directive;
use crate::error::{Dialect, MockError};
use crate::plan::{Plan, Shape, count_words};
use crate::reply::execute;
use crate::state::{AppState, typed, unix_seconds};

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<Message>,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: String,
    #[serde(default)]
    prompt: Value,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    stream_options: Option<StreamOptions>,
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let (json, tracker) = match state.generation(Dialect::OpenAi, "/v1/chat/completions", &headers, &body) {
        Ok(accepted) => accepted,
        Err(e) => return e.render(Dialect::OpenAi),
    };
    let prepared = typed::<ChatBody>(&json).and_then(|req| {
        state.check_model(&req.model)?;
        let last_user = req.messages.iter().rev().find(|m| m.role == "user");
        let directive = match last_user {
            Some(m) => find_directive(text_parts(&m.content))?,
            None => None,
        };
        let words = count_words(req.messages.iter().flat_map(|m| text_parts(&m.content)));
        let limit = req.max_completion_tokens.or(req.max_tokens);
        let tool_turn = req.messages.last().is_some_and(|m| m.role == "tool");
        let logprobs = req.logprobs.then(|| req.top_logprobs.unwrap_or(0));
        let shape = Shape::new(directive.as_ref(), tool_turn, logprobs);
        let plan = Plan::new(state.cfg(), directive, limit);
        let usage = req.stream_options.is_some_and(|o| o.include_usage);
        let encoder =
            SseEncoder::new(Kind::Chat, state.next_id(), unix_seconds(), &req.model, usage, words, shape);
        Ok((plan, encoder, req.stream.unwrap_or(false)))
    });
    match prepared {
        Ok((plan, encoder, stream)) => execute(plan, encoder, tracker, received, stream).await,
        Err(e) => e.render(Dialect::OpenAi),
    }
}

/// `POST /v1/completions`.
pub(crate) async fn completions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let (json, tracker) = match state.generation(Dialect::OpenAi, "/v1/completions", &headers, &body) {
        Ok(accepted) => accepted,
        Err(e) => return e.render(Dialect::OpenAi),
    };
    let prepared = typed::<CompletionBody>(&json).and_then(|req| {
        state.check_model(&req.model)?;
        let prompts = prompt_parts(&req.prompt)?;
        let directive = find_directive(prompts.texts.iter().copied())?;
        let words = count_words(prompts.texts.iter().copied()) + prompts.token_ids;
        let plan = Plan::new(state.cfg(), directive, req.max_tokens);
        let usage = req.stream_options.is_some_and(|o| o.include_usage);
        let encoder = SseEncoder::new(
            Kind::Completion,
            state.next_id(),
            unix_seconds(),
            &req.model,
            usage,
            words,
            Shape::default(),
        );
        Ok((plan, encoder, req.stream.unwrap_or(false)))
    });
    match prepared {
        Ok((plan, encoder, stream)) => execute(plan, encoder, tracker, received, stream).await,
        Err(e) => e.render(Dialect::OpenAi),
    }
}

/// The first directive found in `texts`.
fn find_directive<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Option<Directive>, MockError> {
    for text in texts {
        if let Some(directive) = Directive::find(text)? {
            return Ok(Some(directive));
        }
    }
    Ok(None)
}

/// The text of a message's `content`: a string, or the `text` of each content part.
fn text_parts(content: &Value) -> Vec<&str> {
    match content {
        Value::String(text) => vec![text.as_str()],
        Value::Array(parts) => {
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect()
        }
        _ => Vec::new(),
    }
}

/// A legacy `prompt`: strings and/or pre-tokenized ids.
struct Prompts<'a> {
    texts: Vec<&'a str>,
    token_ids: usize,
}

fn prompt_parts(prompt: &Value) -> Result<Prompts<'_>, MockError> {
    let mut prompts = Prompts { texts: Vec::new(), token_ids: 0 };
    match prompt {
        Value::String(text) => prompts.texts.push(text),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(text) => prompts.texts.push(text),
                    other => prompts.token_ids += token_ids(other)?,
                }
            }
        }
        Value::Null => {}
        other => prompts.token_ids += token_ids(other)?,
    }
    Ok(prompts)
}

/// How many token ids a non-string prompt item holds: one id, or an array of ids.
fn token_ids(item: &Value) -> Result<usize, MockError> {
    match item {
        Value::Number(_) => Ok(1),
        Value::Array(ids) if ids.iter().all(Value::is_u64) => Ok(ids.len()),
        _ => Err(MockError::BadRequest(
            "`prompt` must be a string, an array of strings or token ids".to_owned(),
        )),
    }
}
