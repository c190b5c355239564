//! `POST /api/chat` and `POST /api/generate`: validate, resolve the [`Plan`], hand it to
//! the shared executor with an [`NdjsonEncoder`]. Ollama streams unless `"stream": false`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use super::ndjson::{Kind, NdjsonEncoder};
use crate::directive::Directive;
use crate::error::{Dialect, MockError};
use crate::plan::{Plan, Shape, count_words};
use crate::reply::execute;
use crate::state::{AppState, typed};

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    stream: Option<bool>,
    options: Option<Options>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: String,
}

#[derive(Debug, Deserialize)]
struct GenerateBody {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: String,
    stream: Option<bool>,
    options: Option<Options>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    /// Negative values mean "no limit" in Ollama.
    num_predict: Option<i64>,
}

impl Options {
    fn limit(options: Option<&Options>) -> Option<u64> {
        options.and_then(|o| o.num_predict).and_then(|n| u64::try_from(n).ok())
    }
}

/// `POST /api/chat`.
pub(crate) async fn chat(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let (json, tracker) = match state.generation(Dialect::Ollama, "/api/chat", &headers, &body) {
        Ok(accepted) => accepted,
        Err(e) => return e.render(Dialect::Ollama),
    };
    let prepared = typed::<ChatBody>(&json).and_then(|req| {
        state.check_model(&req.model)?;
        let last_user = req.messages.iter().rev().find(|m| m.role == "user");
        let directive = match last_user {
            Some(m) => Directive::find(&m.content).map_err(MockError::from)?,
            None => None,
        };
        let words = count_words(req.messages.iter().map(|m| m.content.as_str()));
        let tool_turn = req.messages.last().is_some_and(|m| m.role == "tool");
        let shape =
            Shape::new(directive.as_ref(), tool_turn, req.logprobs.then(|| req.top_logprobs.unwrap_or(0)));
        let plan = Plan::new(state.cfg(), directive, Options::limit(req.options.as_ref()));
        let encoder = NdjsonEncoder::new(Kind::Chat, &req.model, words, shape);
        Ok((plan, encoder, req.stream.unwrap_or(true)))
    });
    match prepared {
        Ok((plan, encoder, stream)) => execute(plan, encoder, tracker, received, stream).await,
        Err(e) => e.render(Dialect::Ollama),
    }
}

/// `POST /api/generate`.
pub(crate) async fn generate(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let (json, tracker) = match state.generation(Dialect::Ollama, "/api/generate", &headers, &body) {
        Ok(accepted) => accepted,
        Err(e) => return e.render(Dialect::Ollama),
    };
    let prepared = typed::<GenerateBody>(&json).and_then(|req| {
        state.check_model(&req.model)?;
        let directive = Directive::find(&req.prompt)?;
        let words = count_words([req.system.as_str(), req.prompt.as_str()]);
        // A prompt has no tools: `call=` is ignored here, as after a tool result.
        let shape = Shape::new(directive.as_ref(), true, req.logprobs.then(|| req.top_logprobs.unwrap_or(0)));
        let plan = Plan::new(state.cfg(), directive, Options::limit(req.options.as_ref()));
        let encoder = NdjsonEncoder::new(Kind::Generate, &req.model, words, shape);
        Ok((plan, encoder, req.stream.unwrap_or(true)))
    });
    match prepared {
        Ok((plan, encoder, stream)) => execute(plan, encoder, tracker, received, stream).await,
        Err(e) => e.render(Dialect::Ollama),
    }
}
