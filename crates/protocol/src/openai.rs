//! OpenAI `/v1` wire types: chat completions, legacy completions, models, embeddings,
//! stream chunks and the error object.
//!
//! Request types keep every field they do not model in `extra`, so the gateway can
//! carry it to an upstream of the same dialect; response types serialize exactly the
//! fields the official SDKs read. `*View` types borrow from the input and are for parsing upstream streams cheaply.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::common::{OneOrMany, Text};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name as the client knows it.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Legacy output token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Output token cap (newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
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
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany>,
    /// End-user identifier, for abuse tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Number of choices; Sluice serves exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
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
    /// Top-k sampling (an extension of vLLM, llama.cpp and LM Studio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Min-p sampling (an extension of vLLM, llama.cpp and LM Studio).
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_p: Option<f32>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: Fields,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `none`, `auto`, `required`, or `{"type":"function","function":{"name":…}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<serde_json::Value>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format: text, any JSON object, or JSON matching a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Return the log probability of each output token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Also return this many likeliest alternatives per token (0 to 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
    /// How hard a reasoning model thinks (`minimal`, `low`, `medium`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
}

/// A tool definition: `{"type":"function","function":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function` (the only kind of tool chat completions know).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Whether the arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A call the model made: `{"id":…,"type":"function","function":{"name","arguments"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, echoed by the `tool` message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".to_owned()
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    #[serde(default)]
    pub arguments: String,
}

/// `response_format` of a chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Plain text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// The `json_schema` of a `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// Name of the schema.
    pub name: String,
    /// What the output is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Whether the output must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Log probabilities of a choice: one entry per output token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    /// One entry per token of the content.
    #[serde(default)]
    pub content: Option<Vec<TokenLogprob>>,
}

/// One output token's log probability and its likeliest alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes (a token may be part of a character).
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// The likeliest tokens at this position.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// JSON fields by name.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with token usage before `[DONE]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// One message of a chat request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or a list of typed parts; may be null for assistant tool calls.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every other field (`tool_calls`, `refusal`, vendor fields), as sent.
    #[serde(flatten)]
    pub extra: Fields,
    /// Calls an assistant message made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// An assistant message's reasoning (vLLM, DeepSeek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (text, images, ...).
    Parts(Vec<ContentPart>),
}

/// One typed part of a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentPart {
    /// Part type, e.g. `text` or `image_url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text, for `text` parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The image, for `image_url` parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
}

/// An image of a message: an `http(s)` URL or a `data:` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// The URL.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ContentPart {
    /// A `text` part.
    pub fn text(text: impl Into<String>) -> ContentPart {
        ContentPart { kind: "text".into(), text: Some(text.into()), image_url: None }
    }

    /// An `image_url` part.
    pub fn image(url: impl Into<String>, detail: Option<String>) -> ContentPart {
        ContentPart {
            kind: "image_url".into(),
            text: None,
            image_url: Some(ImageUrl { url: url.into(), detail }),
        }
    }
}

impl MessageContent {
    /// The text of the content; parts other than text are skipped.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            MessageContent::Text(t) => Cow::Borrowed(t),
            MessageContent::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                if texts.len() == 1 { Cow::Borrowed(texts[0]) } else { Cow::Owned(texts.join("\n")) }
            }
        }
    }

    /// True when a part is not text (images, audio, ...).
    pub fn has_non_text(&self) -> bool {
        matches!(self, MessageContent::Parts(p) if p.iter().any(|p| p.kind != "text"))
    }
}

/// `POST /v1/completions` request body (legacy text completions).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// The prompt (one string, or a list of which Sluice accepts exactly one).
    #[serde(default)]
    pub prompt: Option<OneOrMany>,
    /// Stream as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Output token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
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
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Text appended after the completion (not supported by every backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
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
    /// Every other field (`n`, `echo`, `best_of`, `logit_bias`, ...), as sent.
    #[serde(flatten)]
    pub extra: Fields,
}

/// Token usage of one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
    /// The upstream's details (`prompt_tokens_details`, `completion_tokens_details`).
    #[serde(flatten)]
    pub details: Fields,
}

/// Non-streaming `chat.completion` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// Completion id (`chatcmpl-...`).
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answered.
    pub model: String,
    /// The single choice.
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The upstream's configuration fingerprint, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Other fields of the upstream's answer, carried.
    #[serde(flatten)]
    pub extra: Fields,
}

/// One choice of a non-streaming chat completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Choice index.
    pub index: u32,
    /// The assistant message.
    pub message: AssistantMessage,
    /// `stop`, `length`, `tool_calls`, ...
    pub finish_reason: Option<String>,
    /// Log probabilities, when asked for.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// The assistant message of a completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The generated text.
    pub content: Option<String>,
    /// The model's refusal message; null when it did not refuse (required by the
    /// API reference).
    #[serde(default)]
    pub refusal: Option<String>,
    /// The reasoning, from models that think before they answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Calls the model made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// Non-streaming `text_completion` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    /// Completion id (`cmpl-...`).
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answered.
    pub model: String,
    /// The single choice.
    pub choices: Vec<CompletionChoice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The upstream's configuration fingerprint, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// One choice of a text completion (also the shape of its stream chunks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// The generated text.
    pub text: String,
    /// Choice index.
    pub index: u32,
    /// Always null.
    #[serde(default)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop`, `length`, or null while streaming.
    pub finish_reason: Option<String>,
}

/// Borrowed view of one streamed chunk (`chat.completion.chunk` or `text_completion`),
/// for parsing upstream streams without copying what is not needed.
#[derive(Debug, Deserialize)]
pub struct StreamChunkView<'a> {
    /// Choices carried by this chunk (empty on the usage chunk).
    #[serde(default, borrow)]
    pub choices: Vec<StreamChoiceView<'a>>,
    /// Usage, on the final chunk when requested.
    #[serde(default)]
    pub usage: Option<UsageView>,
    /// The upstream's configuration fingerprint.
    #[serde(default, borrow)]
    pub system_fingerprint: Option<Text<'a>>,
    /// An error object some servers send inside the stream.
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

/// Usage as an upstream reports it: the three counts and any details
/// (`prompt_tokens_details`, `completion_tokens_details`, vendor entries).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UsageView {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u32,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u32,
    /// Sum of both (recomputed by the gateway).
    #[serde(default)]
    pub total_tokens: Option<u32>,
    /// Everything else, as sent.
    #[serde(flatten)]
    pub details: Fields,
}

/// Borrowed view of one streamed choice.
#[derive(Debug, Deserialize)]
pub struct StreamChoiceView<'a> {
    /// Chat delta.
    #[serde(default, borrow)]
    pub delta: Option<DeltaView<'a>>,
    /// Completion text (legacy completions).
    #[serde(default, borrow)]
    pub text: Option<Text<'a>>,
    /// Set on the last content chunk.
    #[serde(default, borrow)]
    pub finish_reason: Option<Text<'a>>,
    /// Log probabilities of this chunk's tokens.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// Borrowed view of a chat delta.
#[derive(Debug, Deserialize)]
pub struct DeltaView<'a> {
    /// New text, if any.
    #[serde(default, borrow)]
    pub content: Option<Text<'a>>,
    /// New reasoning text (vLLM, DeepSeek).
    #[serde(default, borrow)]
    pub reasoning_content: Option<Text<'a>>,
    /// New reasoning text, as some servers name it.
    #[serde(default, borrow)]
    pub reasoning: Option<Text<'a>>,
    /// Pieces of tool calls.
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCallDeltaView<'a>>>,
}

/// Borrowed view of one streamed piece of a tool call.
#[derive(Debug, Deserialize)]
pub struct ToolCallDeltaView<'a> {
    /// Which call of the message this piece belongs to.
    #[serde(default)]
    pub index: u32,
    /// The call id, on its first piece.
    #[serde(default, borrow)]
    pub id: Option<Text<'a>>,
    /// Name and argument text.
    #[serde(default, borrow)]
    pub function: Option<FunctionDeltaView<'a>>,
}

/// Borrowed view of the function of a tool-call piece.
#[derive(Debug, Deserialize)]
pub struct FunctionDeltaView<'a> {
    /// The name, on the call's first piece.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// More argument text.
    #[serde(default, borrow)]
    pub arguments: Option<Text<'a>>,
}

/// `GET /v1/models` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One model entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// Model id.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Owner (Sluice reports the backend name).
    #[serde(default)]
    pub owned_by: String,
    /// What the model can do beyond text (`tools`, `vision`, `json_schema`, `logprobs`,
    /// `thinking`; Sluice's extension); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

/// What `/v1/embeddings` embeds: text(s) or token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text, or a list of texts.
    Text(OneOrMany),
    /// One input as token ids.
    Tokens(Vec<u32>),
    /// Several inputs as token ids (what LangChain's `OpenAIEmbeddings` sends).
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/embeddings` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// Model name.
    pub model: String,
    /// Text(s) or token ids.
    pub input: EmbeddingInput,
    /// Length of the vectors wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// `float` (default) or `base64`; Sluice serves `float`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input, in order.
    pub data: Vec<Embedding>,
    /// Model that answered.
    pub model: String,
    /// Token usage (`completion_tokens` is 0).
    pub usage: EmbeddingUsage,
}

/// Usage of an embeddings request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Tokens read.
    pub prompt_tokens: u32,
    /// Same as `prompt_tokens`.
    pub total_tokens: u32,
}

/// One embedding vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input.
    pub index: u32,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// An embedding vector: floats, or base64 of little-endian f32s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// The error envelope: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// The error object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Error type, e.g. `invalid_request_error`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The offending parameter, when one is to blame.
    #[serde(default)]
    pub param: Option<String>,
    /// A stable machine-readable code.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_accepts_unknown_fields_and_parts() {
        let r: ChatCompletionRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
                "stop":"x","tools":[],"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].content.as_ref().unwrap().text(), "hi");
        assert_eq!(r.stop, Some(OneOrMany::One("x".into())));
        assert_eq!(r.stream_options.unwrap().include_usage, Some(true));
    }

    #[test]
    fn chunk_view_borrows_plain_content_and_unescapes_escaped() {
        let plain = r#"{"id":"a","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        let v: StreamChunkView<'_> = serde_json::from_str(plain).unwrap();
        let c = v.choices[0].delta.as_ref().unwrap().content.as_ref().unwrap();
        assert!(matches!(c.0, Cow::Borrowed("hi")));
        let esc = r#"{"choices":[{"delta":{"content":"a\nb"},"finish_reason":"stop"}],"usage":null}"#;
        let v: StreamChunkView<'_> = serde_json::from_str(esc).unwrap();
        assert_eq!(v.choices[0].delta.as_ref().unwrap().content.as_deref(), Some("a\nb"));
        assert_eq!(v.choices[0].finish_reason.as_deref(), Some("stop"));
    }
}
