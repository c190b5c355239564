//! OpenAI Responses API (`POST /v1/responses`) wire types: the request, the `response`
//! object with its output items, and the usage block.
//!
//! Input items, tools and `tool_choice` stay JSON values here: their unions are wide
//! and open-ended, and the gateway reads them field by field so that each refusal can
//! name the exact path (`input[2].content[0].type`). The streamed events are written by
//! the gateway directly (their per-token lines are on the hot path).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// JSON fields by name, as sent.
pub type Fields = serde_json::Map<String, Value>;

/// `POST /v1/responses` request body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseRequest {
    /// Model name as the client knows it.
    pub model: String,
    /// A string (one user message) or a list of input items.
    #[serde(default)]
    pub input: Option<Value>,
    /// A system message put before the input.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required` or `{"type":"function","name":…}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Whether several tools may be called in one turn.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Text output options (`format`, `verbosity`).
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// Output token cap, reasoning included.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Reasoning options (`effort`, `summary`).
    #[serde(default)]
    pub reasoning: Option<ReasoningConfig>,
    /// Key-value pairs the client attaches (echoed on the response).
    #[serde(default)]
    pub metadata: Option<Value>,
    /// End-user id.
    #[serde(default)]
    pub user: Option<String>,
    /// Stream typed server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// An earlier response to continue from.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Whether to store the response for later continuing and reading (default true).
    #[serde(default)]
    pub store: Option<bool>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Fields,
}

/// `text`: the output's format and verbosity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TextConfig {
    /// `{"type":"text"}`, `{"type":"json_object"}` or
    /// `{"type":"json_schema","name":…,"schema":…,"strict":…}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Every other field (`verbosity`), as sent.
    #[serde(flatten)]
    pub extra: Fields,
}

/// `reasoning`: how hard a reasoning model thinks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReasoningConfig {
    /// `minimal`, `low`, `medium`, `high`.
    #[serde(default)]
    pub effort: Option<String>,
    /// Every other field (`summary`), as sent.
    #[serde(flatten)]
    pub extra: Fields,
}

/// The `response` object, whole or as streamed events carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: String,
    /// Why it failed, when it did.
    pub error: Option<ResponseError>,
    /// Why it is incomplete, when it is.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The instructions as sent.
    pub instructions: Option<String>,
    /// The output token cap as sent.
    pub max_output_tokens: Option<u32>,
    /// The model as asked for.
    pub model: String,
    /// The output items, in order.
    pub output: Vec<OutputItem>,
    /// Whether several tools may be called in one turn.
    pub parallel_tool_calls: bool,
    /// The response this one continues, as sent.
    pub previous_response_id: Option<String>,
    /// The reasoning options as sent.
    pub reasoning: Value,
    /// Whether the response is stored (asked for, and possible: the caller owns data
    /// and it is within the size cap).
    pub store: bool,
    /// The temperature as sent.
    pub temperature: Option<f32>,
    /// The text options as sent (`format` defaults to text).
    pub text: Value,
    /// The tool choice as sent (default `auto`).
    pub tool_choice: Value,
    /// The tools as sent.
    pub tools: Vec<Value>,
    /// The nucleus mass as sent.
    pub top_p: Option<f32>,
    /// Always `disabled`.
    pub truncation: String,
    /// Token counts, once it ended.
    pub usage: Option<ResponseUsage>,
    /// The end-user id as sent.
    pub user: Option<String>,
    /// The metadata as sent.
    pub metadata: Value,
}

/// Why a response failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseError {
    /// `server_error`, `rate_limit_exceeded`, `invalid_prompt`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// Why a response is incomplete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

/// One output item.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// Reasoning a thinking model gave before its answer.
    Reasoning {
        /// `rs_…`.
        id: String,
        /// Always empty: Sluice passes the reasoning text itself, not a summary.
        summary: Vec<Value>,
        /// The reasoning text, as `reasoning_text` parts.
        content: Vec<ContentPart>,
        /// `in_progress`, `completed`, `incomplete`.
        status: String,
    },
    /// The assistant's text.
    Message {
        /// `msg_…`.
        id: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: String,
        /// Always `assistant`.
        role: String,
        /// The text, as `output_text` parts.
        content: Vec<ContentPart>,
    },
    /// A call of one of the request's functions.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// The id the `function_call_output` answering it carries.
        call_id: String,
        /// The function called.
        name: String,
        /// Its arguments as JSON text.
        arguments: String,
        /// `in_progress`, `completed`, `incomplete`.
        status: String,
    },
}

/// A part of a message or reasoning item's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Answer text.
    OutputText {
        /// The text.
        text: String,
        /// Always empty.
        annotations: Vec<Value>,
        /// Always empty (log probabilities are not offered here).
        logprobs: Vec<Value>,
    },
    /// Reasoning text.
    ReasoningText {
        /// The text.
        text: String,
    },
}

/// Token counts of a response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// Tokens read.
    pub input_tokens: u32,
    /// Of which cached.
    pub input_tokens_details: InputTokensDetails,
    /// Tokens generated, reasoning included.
    pub output_tokens: u32,
    /// Of which reasoning.
    pub output_tokens_details: OutputTokensDetails,
    /// Sum of both.
    pub total_tokens: u32,
}

/// Details of the input tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Tokens served from the upstream's prompt cache.
    pub cached_tokens: u32,
    /// Tokens written to the upstream's prompt cache (0: Sluice's upstreams do not say).
    pub cache_write_tokens: u32,
}

/// Details of the output tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Tokens spent reasoning.
    pub reasoning_tokens: u32,
}
