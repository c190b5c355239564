//! The OpenAI-compatible dialect under `/v1`: route table, models and embeddings.
//! Chat and legacy completions live in [`generate`], their SSE encoder in [`sse`].

mod generate;
mod sse;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::embed::embedding;
use crate::error::{Dialect, MockError};
use crate::plan::count_words;
use crate::state::{AppState, typed};

/// Routes of the OpenAI dialect, to be nested under `/v1`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat/completions", post(generate::chat))
        .route("/completions", post(generate::completions))
        .route("/embeddings", post(embeddings))
        .route("/models", get(models))
        .route("/models/{*id}", get(model))
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "sluice-mock"})
}

/// `GET /v1/models`.
async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = state.authenticate(&headers) {
        return e.render(Dialect::OpenAi);
    }
    let data: Vec<Value> = state.cfg().models.iter().map(|m| model_object(m)).collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`.
async fn model(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let found = state.authenticate(&headers).and_then(|()| state.check_model(&id));
    match found {
        Ok(()) => Json(model_object(&id)).into_response(),
        Err(e) => e.render(Dialect::OpenAi),
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingsBody {
    model: String,
    input: Value,
}

/// `POST /v1/embeddings`.
async fn embeddings(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = state.intake(Dialect::OpenAi, "/v1/embeddings", &headers, &body).and_then(|json| {
        let req = typed::<EmbeddingsBody>(&json)?;
        state.check_model(&req.model)?;
        let inputs = embedding_inputs(&req.input)?;
        let tokens = count_words(inputs.iter().map(String::as_str));
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embedding(text)}))
            .collect();
        Ok(json!({
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
    });
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.render(Dialect::OpenAi),
    }
}

/// The texts to embed: a string, an array of strings, or token ids (embedded by their
/// decimal text so they stay deterministic).
fn embedding_inputs(input: &Value) -> Result<Vec<String>, MockError> {
    let ids = |ids: &[Value]| -> Option<String> {
        let words: Option<Vec<String>> = ids.iter().map(|id| id.as_u64().map(|n| n.to_string())).collect();
        words.map(|w| w.join(" "))
    };
    let bad = || MockError::BadRequest("`input` must be a string, strings or token ids".to_owned());
    match input {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Ok(items.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        }
        Value::Array(items) if items.iter().all(Value::is_array) => {
            items.iter().map(|item| item.as_array().and_then(|a| ids(a)).ok_or_else(bad)).collect()
        }
        Value::Array(items) => ids(items).map(|text| vec![text]).ok_or_else(bad),
        _ => Err(bad()),
    }
}
