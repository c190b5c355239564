//! What a request may ask of the output besides its text: a format (any JSON, or JSON
//! matching a schema), log probabilities, and reasoning from models that think first.

use serde::{Deserialize, Serialize};

/// The format the answer must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Any JSON object (OpenAI `json_object`, Ollama `"json"`).
    JsonObject,
    /// JSON matching a schema (OpenAI `json_schema`, Ollama's schema `format`).
    JsonSchema {
        /// The schema's name (OpenAI requires one; Ollama has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// What the output is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The JSON Schema.
        schema: serde_json::Value,
        /// Whether the output must follow the schema exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// Whether a thinking model should think (Ollama's `think`; OpenAI's
/// `reasoning_effort` carries the levels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Think {
    /// Do not think.
    Off,
    /// Think.
    On,
    /// Think this hard (`low`, `medium`, `high`).
    Level(String),
}

/// One output token's log probability and its likeliest alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// Its bytes (a token may be part of a UTF-8 character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// The likeliest tokens at this position, likeliest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopLogprob>,
}

/// An alternative token at one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// Its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
}
