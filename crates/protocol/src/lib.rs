//! Wire types for the API dialects Sluice speaks and the backends it calls.
//!
//! Only `serde` types live here: no I/O, no policy. Both the ingress APIs and the HTTP
//! backends use them, so a field added here is understood in both directions.
//!
//! # Layout
//! - [`openai`]: OpenAI `/v1` requests, responses, stream chunks and errors.
//! - [`responses`]: OpenAI's Responses API (`/v1/responses`): request, response object, usage.
//! - [`ollama`]: Ollama `/api` requests, responses, NDJSON lines and errors.
//! - [`agent`]: frames between `sluice agent` and the gateway (versioned).
//! - [`common`]: shapes both dialects share (stop sequences, string-or-list inputs).
//! - [`budget`]: a monthly spend budget as the key and user APIs show it.

pub mod agent;
pub mod budget;
pub mod common;
pub mod ollama;
pub mod openai;
pub mod responses;
