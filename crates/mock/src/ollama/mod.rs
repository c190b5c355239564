//! The Ollama dialect under `/api` (and `GET /`): route table, model listing, show,
//! embeddings, version. Chat and generate live in [`generate`], their NDJSON encoder in
//! [`ndjson`].

mod generate;
mod ndjson;

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::embed::{DIMENSIONS, embedding, fnv1a};
use crate::error::{Dialect, MockError};
use crate::plan::count_words;
use crate::state::{AppState, typed};

/// Version reported by `GET /api/version`.
const VERSION: &str = "0.11.0";

/// Routes of the Ollama dialect, paths included.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route("/api/chat", post(generate::chat))
        .route("/api/generate", post(generate::generate))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embeddings_legacy))
        .route("/api/show", post(show))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/version", get(|| async { Json(json!({ "version": VERSION })) }))
}

/// Ollama lists every model with its tag.
fn tagged(name: &str) -> String {
    if name.contains(':') { name.to_owned() } else { format!("{name}:latest") }
}

fn details() -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "mock",
        "families": ["mock"],
        "parameter_size": "1M",
        "quantization_level": "Q4_0",
    })
}

fn model_entry(name: &str) -> Value {
    let name = tagged(name);
    let hash = fnv1a(name.as_bytes());
    json!({
        "name": name,
        "model": name,
        "modified_at": ndjson::rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        "size": 1_000_000,
        "digest": format!("{hash:016x}{:016x}{:016x}{:016x}", !hash, hash.rotate_left(17), hash.rotate_left(41)),
        "details": details(),
    })
}

/// `GET /api/tags`.
async fn tags(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state.cfg().models.iter().map(|m| model_entry(m)).collect();
    Json(json!({ "models": models }))
}

/// `GET /api/ps`: every model counts as loaded.
async fn ps(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .cfg()
        .models
        .iter()
        .map(|m| {
            let mut entry = model_entry(m);
            entry["expires_at"] = json!("2999-01-01T00:00:00Z");
            entry["size_vram"] = json!(0);
            entry
        })
        .collect();
    Json(json!({ "models": models }))
}

#[derive(Debug, Deserialize)]
struct ShowBody {
    model: Option<String>,
    /// Older clients send `name`.
    name: Option<String>,
}

/// `POST /api/show`.
async fn show(State(state): State<AppState>, body: Bytes) -> Response {
    // Metadata, like `/api/tags`: not recorded, so request counts stay those of
    // generations and embeddings (gateways ask for it at every discovery).
    let parsed = serde_json::from_slice::<Value>(&body).map_err(|e| MockError::BadRequest(e.to_string()));
    let answer = parsed.and_then(|json| {
        let req = typed::<ShowBody>(&json)?;
        let model =
            req.model.or(req.name).ok_or_else(|| MockError::BadRequest("model is required".to_owned()))?;
        state.check_model(&model)?;
        Ok(json!({
            "modelfile": format!("FROM {model}\n"),
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(),
            "model_info": {
                "general.architecture": "mock",
                "mock.context_length": 8192,
                "mock.embedding_length": DIMENSIONS,
            },
            "capabilities": ["completion", "embedding", "tools", "vision", "thinking"],
        }))
    });
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.render(Dialect::Ollama),
    }
}

#[derive(Debug, Deserialize)]
struct EmbedBody {
    model: String,
    input: Value,
}

/// `POST /api/embed`.
async fn embed(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = state.intake(Dialect::Ollama, "/api/embed", &headers, &body).and_then(|json| {
        let req = typed::<EmbedBody>(&json)?;
        state.check_model(&req.model)?;
        let inputs: Vec<&str> = match &req.input {
            Value::String(text) => vec![text],
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().ok_or_else(|| MockError::BadRequest("input must be strings".to_owned()))
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(MockError::BadRequest("input must be a string or strings".to_owned()));
            }
        };
        let embeddings: Vec<Vec<f32>> = inputs.iter().map(|text| embedding(text)).collect();
        Ok(json!({
            "model": req.model,
            "embeddings": embeddings,
            "total_duration": 1,
            "load_duration": 0,
            "prompt_eval_count": count_words(inputs.iter().copied()),
        }))
    });
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.render(Dialect::Ollama),
    }
}

#[derive(Debug, Deserialize)]
struct LegacyEmbedBody {
    model: String,
    #[serde(default)]
    prompt: String,
}

/// `POST /api/embeddings`, the older single-prompt form.
async fn embeddings_legacy(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = state.intake(Dialect::Ollama, "/api/embeddings", &headers, &body).and_then(|json| {
        let req = typed::<LegacyEmbedBody>(&json)?;
        state.check_model(&req.model)?;
        Ok(json!({ "embedding": embedding(&req.prompt) }))
    });
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.render(Dialect::Ollama),
    }
}
