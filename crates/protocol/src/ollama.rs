//! Ollama `/api` wire types: chat, generate, tags, ps, show, embed, version, NDJSON
//! stream lines and the error object.
//!
//! Durations are nanoseconds, as Ollama reports them. Request types keep every field
//! they do not model in `extra`, for an upstream of the same dialect; `*View` types borrow from the input for parsing upstream streams cheaply.

use serde::{Deserialize, Serialize};

use crate::common::{OneOrMany, Text};

/// `POST /api/chat` request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// The conversation so far.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Stream NDJSON lines (Ollama's default is `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Runtime options (`num_predict`, `temperature`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// How long the model stays loaded after this request (`"5m"`, seconds, `0`, `-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
    /// Output format (`"json"` or a JSON schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    /// Functions the model may call (the same shape as OpenAI's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<crate::openai::Tool>>,
    /// Let a thinking model think (`true`/`false`, or `"low"`, `"medium"`, `"high"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<serde_json::Value>,
    /// Return the log probability of each output token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Also return this many likeliest alternatives per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
    /// Every other field (`tools`, `think`, ...), as sent.
    #[serde(flatten)]
    pub extra: Fields,
}

/// JSON fields by name.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// Reads a string that may be `null` as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// One chat message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (`null` reads as empty, as Ollama reads it).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// The model's reasoning (assistant messages of thinking models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Base64 images, for multimodal models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Every other field (`tool_calls`, `thinking`, ...), as sent.
    #[serde(flatten)]
    pub extra: Fields,
    /// Calls an assistant message made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The tool a `tool` message answers for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// The call a `tool` message answers (newer Ollama versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A call the model made. Ollama sends whole calls, arguments as a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id (newer Ollama versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Position among the message's calls (newer Ollama versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Function name.
    pub name: String,
    /// Arguments, a JSON object.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// One output token's log probability (Ollama's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logprob {
    /// The token text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// The likeliest tokens at this position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<Logprob>>,
}

/// `POST /api/generate` request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Model name.
    pub model: String,
    /// The prompt; empty or missing only loads the model.
    #[serde(default)]
    pub prompt: String,
    /// System prompt overriding the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Send the prompt without the chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<bool>,
    /// Stream NDJSON lines (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Runtime options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// Keep-alive, as for chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    /// Every other field (`suffix`, `template`, `context`, `images`, `think`), as sent.
    #[serde(flatten)]
    pub extra: Fields,
    /// Base64 images, for multimodal models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Let a thinking model think.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<serde_json::Value>,
    /// Return the log probability of each output token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Also return this many likeliest alternatives per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
}

/// Runtime options Sluice maps; the others are kept in `extra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    /// Output token cap (`-1`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i64>,
    /// Sampling temperature.
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub top_p: Option<f32>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Min-p sampling.
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_p: Option<f32>,
    /// Repeat penalty.
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat_penalty: Option<f32>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany>,
    /// Context size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    /// Presence penalty.
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub frequency_penalty: Option<f32>,
    /// Every other option, as sent.
    #[serde(flatten)]
    pub extra: Fields,
}

/// Timing and count fields of the final line of a reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalStats {
    /// Wall time of the whole request, ns.
    #[serde(default)]
    pub total_duration: u64,
    /// Time spent loading the model, ns.
    #[serde(default)]
    pub load_duration: u64,
    /// Prompt tokens evaluated.
    #[serde(default)]
    pub prompt_eval_count: u32,
    /// Time evaluating the prompt, ns.
    #[serde(default)]
    pub prompt_eval_duration: u64,
    /// Tokens generated.
    #[serde(default)]
    pub eval_count: u32,
    /// Time generating, ns.
    #[serde(default)]
    pub eval_duration: u64,
}

/// One `/api/chat` response object (a stream line, or the whole non-stream reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Model name.
    pub model: String,
    /// RFC 3339 timestamp.
    pub created_at: String,
    /// The (partial) assistant message.
    pub message: Message,
    /// Log probabilities of this object's tokens, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Logprob>>,
    /// True on the final object.
    pub done: bool,
    /// `stop`, `length` or `load`, on the final object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// Durations and counts, on the final object.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<FinalStats>,
    /// Other fields of an Ollama upstream's final object, carried.
    #[serde(flatten)]
    pub extra: Fields,
}

/// One `/api/generate` response object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateResponse {
    /// Model name.
    pub model: String,
    /// RFC 3339 timestamp.
    pub created_at: String,
    /// The (partial) generated text.
    pub response: String,
    /// The (partial) reasoning of a thinking model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Log probabilities of this object's tokens, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Logprob>>,
    /// True on the final object.
    pub done: bool,
    /// `stop`, `length` or `load`, on the final object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// Durations and counts, on the final object.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<FinalStats>,
    /// Other fields of the final object: `context` (the conversation as token ids),
    /// or what an Ollama upstream sent, carried.
    #[serde(flatten)]
    pub extra: Fields,
}

/// Borrowed view of one NDJSON line from an Ollama upstream (chat or generate).
#[derive(Debug, Deserialize)]
pub struct StreamLineView<'a> {
    /// Chat message delta.
    #[serde(default, borrow)]
    pub message: Option<MessageView<'a>>,
    /// Generate text delta.
    #[serde(default, borrow)]
    pub response: Option<Text<'a>>,
    /// Generate reasoning delta.
    #[serde(default, borrow)]
    pub thinking: Option<Text<'a>>,
    /// Log probabilities of this line's tokens.
    #[serde(default)]
    pub logprobs: Option<Vec<Logprob>>,
    /// True on the final line.
    #[serde(default)]
    pub done: bool,
    /// Why it stopped.
    #[serde(default, borrow)]
    pub done_reason: Option<Text<'a>>,
    /// Prompt tokens, on the final line.
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    /// Output tokens, on the final line.
    #[serde(default)]
    pub eval_count: Option<u32>,
    /// Model load time in ns, on the final line.
    #[serde(default)]
    pub load_duration: Option<u64>,
    /// Prompt evaluation time in ns, on the final line.
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    /// Generation time in ns, on the final line.
    #[serde(default)]
    pub eval_duration: Option<u64>,
    /// Error text some versions send inside the stream.
    #[serde(default, borrow)]
    pub error: Option<Text<'a>>,
    /// The conversation as token ids, on the final `/api/generate` line.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
}

/// Borrowed view of a streamed chat message.
#[derive(Debug, Deserialize)]
pub struct MessageView<'a> {
    /// New text.
    #[serde(default, borrow)]
    pub content: Option<Text<'a>>,
    /// New reasoning text.
    #[serde(default, borrow)]
    pub thinking: Option<Text<'a>>,
    /// Whole tool calls (Ollama never splits one across lines).
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// `GET /api/tags` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TagList {
    /// Local models.
    pub models: Vec<ModelTag>,
}

/// One model of `/api/tags` and `/api/ps`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelTag {
    /// Name with tag.
    pub name: String,
    /// Same as `name`.
    #[serde(default)]
    pub model: String,
    /// RFC 3339 modification time (tags only); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Hex SHA-256 of the model's content; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Model details.
    #[serde(default)]
    pub details: ModelDetails,
    /// When the model unloads (ps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Bytes in accelerator memory (ps only; `0` for a model that runs on the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_vram: Option<u64>,
    /// Context window it was loaded with, in tokens (ps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
}

/// Model details block.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelDetails {
    /// Base model, if any.
    #[serde(default)]
    pub parent_model: String,
    /// File format, e.g. `gguf`.
    #[serde(default)]
    pub format: String,
    /// Model family.
    #[serde(default)]
    pub family: String,
    /// All families.
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// E.g. `135M`.
    #[serde(default)]
    pub parameter_size: String,
    /// E.g. `Q4_1`.
    #[serde(default)]
    pub quantization_level: String,
}

/// `GET /api/ps` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PsList {
    /// Loaded models.
    pub models: Vec<ModelTag>,
}

/// `POST /api/show` request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowRequest {
    /// Model name (current field).
    #[serde(default)]
    pub model: Option<String>,
    /// Model name (older field).
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/show` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowResponse {
    /// Modelfile text.
    #[serde(default)]
    pub modelfile: String,
    /// Parameters text.
    #[serde(default)]
    pub parameters: String,
    /// Prompt template.
    #[serde(default)]
    pub template: String,
    /// Details block.
    #[serde(default)]
    pub details: ModelDetails,
    /// Free-form model metadata.
    #[serde(default)]
    pub model_info: serde_json::Map<String, serde_json::Value>,
    /// What the model can do (`completion`, `embedding`, `tools`, ...); absent when
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// RFC 3339 modification time; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// The model's license text or name; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// `POST /api/embed` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// Model name.
    pub model: String,
    /// One text or a list (none only loads the model).
    #[serde(default)]
    pub input: OneOrMany,
    /// Truncate inputs that exceed the context (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
    /// Length of the vectors wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
}

/// `POST /api/embeddings` request body (the legacy single-text form).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LegacyEmbedRequest {
    /// Model name.
    pub model: String,
    /// The text; empty answers an empty vector.
    #[serde(default)]
    pub prompt: String,
    /// Keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
}

/// `POST /api/embeddings` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LegacyEmbedResponse {
    /// The vector.
    pub embedding: Vec<f32>,
}

/// `POST /api/embed` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// Model name.
    pub model: String,
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Wall time, ns.
    #[serde(default)]
    pub total_duration: u64,
    /// Load time, ns.
    #[serde(default)]
    pub load_duration: u64,
    /// Tokens read.
    #[serde(default)]
    pub prompt_eval_count: u32,
}

/// `GET /api/version` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResponse {
    /// Version string.
    pub version: String,
}

/// Error body: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The message.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_chat_line_flattens_stats() {
        let line = ChatResponse {
            model: "m".into(),
            created_at: "t".into(),
            message: Message { role: "assistant".into(), ..Default::default() },
            logprobs: None,
            done: true,
            done_reason: Some("stop".into()),
            stats: Some(FinalStats { eval_count: 3, ..Default::default() }),
            extra: Fields::new(),
        };
        let v = serde_json::to_value(&line).unwrap();
        assert_eq!(v["eval_count"], 3);
        assert_eq!(v["done_reason"], "stop");
        assert!(v.get("stats").is_none());
    }

    #[test]
    fn unknown_model_facts_are_omitted() {
        let v = serde_json::to_value(ModelTag { name: "m".into(), ..Default::default() }).unwrap();
        assert!(v.get("digest").is_none() && v.get("modified_at").is_none(), "{v}");
        let v = serde_json::to_value(ShowResponse::default()).unwrap();
        assert!(v.get("capabilities").is_none(), "{v}");
        let tag: ModelTag =
            serde_json::from_str(r#"{"name":"m","digest":"abc","modified_at":"2024-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(tag.digest.as_deref(), Some("abc"));
    }

    #[test]
    fn stream_line_view_reads_both_kinds() {
        let v: StreamLineView<'_> = serde_json::from_str(
            r#"{"model":"m","message":{"role":"assistant","content":"x"},"done":false}"#,
        )
        .unwrap();
        assert_eq!(v.message.unwrap().content.as_deref(), Some("x"));
        let v: StreamLineView<'_> = serde_json::from_str(
            r#"{"response":"","done":true,"done_reason":"length","eval_count":4,"prompt_eval_count":2}"#,
        )
        .unwrap();
        assert!(v.done);
        assert_eq!(v.eval_count, Some(4));
    }
}
