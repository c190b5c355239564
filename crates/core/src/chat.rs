//! The canonical chat request and token events, shared by every dialect and backend.
//!
//! Ingress handlers translate their dialect into a [`ChatRequest`]; backends turn it
//! into a stream of [`Event`]s; encoders turn events back into the client's dialect.
//! Nothing here knows about HTTP.

use std::time::Duration;

use crate::{
    carry::{Carried, Fields, WireDialect},
    media::Image,
    output::{ResponseFormat, Think, TokenLogprob},
    tools::{Tool, ToolCall, ToolCallDelta, ToolChoice},
};

/// One chat or completion request in Sluice's own terms.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// Model name as the client asked for it.
    pub model: String,
    /// What to continue.
    pub input: Input,
    /// Sampling parameters.
    pub sampling: Sampling,
    /// Whether the client wants the answer streamed. Backends ignore it: they always
    /// stream from their upstream, and the gateway assembles a whole answer itself, so
    /// per-token deadlines and first-token statistics mean the same either way.
    pub stream: bool,
    /// End-user identifier supplied by the client.
    pub user: Option<String>,
    /// Fields the client sent that Sluice does not model, for an upstream of the same
    /// dialect ([`crate::carry`]).
    pub carried: Carried,
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool the model must call; `None` leaves the backend's default.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn; `None`: the default.
    pub parallel_tool_calls: Option<bool>,
    /// The format the answer must have; `None` is free text.
    pub response_format: Option<ResponseFormat>,
    /// `Some(n)`: return each output token's log probability and its `n` likeliest
    /// alternatives.
    pub logprobs: Option<u8>,
    /// Whether a thinking model should think; `None`: the model's default.
    pub think: Option<Think>,
}

/// The text to continue: a conversation, or a raw prompt.
#[derive(Debug, Clone)]
pub enum Input {
    /// A chat conversation.
    Chat(Vec<Message>),
    /// A plain prompt (OpenAI legacy completions, Ollama generate).
    Text {
        /// The prompt.
        prompt: String,
        /// Optional system prompt (Ollama generate).
        system: Option<String>,
        /// Send the prompt without any chat template.
        raw: bool,
    },
}

impl Default for Input {
    fn default() -> Self {
        Input::Chat(Vec::new())
    }
}

impl Input {
    /// All text of the input, for rough size checks and cache keys.
    pub fn char_len(&self) -> usize {
        match self {
            Input::Chat(m) => m
                .iter()
                .map(|m| m.content.len() + m.tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>())
                .sum(),
            Input::Text { prompt, system, .. } => prompt.len() + system.as_ref().map_or(0, String::len),
        }
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What they said: the text (an OpenAI client's text parts, joined by newlines).
    pub content: String,
    /// The message's fields Sluice does not model (a role spelled the client's way
    /// such as `developer`), carried like [`ChatRequest::carried`].
    pub extra: Fields,
    /// Images, after the text.
    pub images: Vec<Image>,
    /// The calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
    /// The function a `tool` message answers for (Ollama's `tool_name`).
    pub name: Option<String>,
    /// An assistant message's reasoning, as a thinking model gave it.
    pub reasoning: Option<String>,
}

impl Message {
    /// A text message with nothing carried.
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            extra: Fields::new(),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
            reasoning: None,
        }
    }
}

/// Speaker of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The human.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

impl Role {
    /// Parses a role name from either dialect (`developer` is OpenAI's new `system`).
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            _ => return None,
        })
    }

    /// The wire name, the same in both dialects.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Sampling parameters; `None` leaves the backend's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    /// Output token cap.
    pub max_tokens: Option<u32>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Top-k.
    pub top_k: Option<u32>,
    /// Min-p.
    pub min_p: Option<f32>,
    /// Repeat penalty.
    pub repeat_penalty: Option<f32>,
    /// Presence penalty.
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Seed.
    pub seed: Option<i64>,
    /// Stop sequences.
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    #[default]
    Stop,
    /// The token cap was reached.
    Length,
    /// The backend filtered the content.
    ContentFilter,
    /// The model called tools.
    ToolCalls,
}

impl FinishReason {
    /// The name both dialects use.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::ToolCalls => "tool_calls",
        }
    }

    /// Reads a finish reason from an upstream; unknown ones count as `stop` (the
    /// upstream's name travels on in [`DoneDetails::finish_reason`]).
    pub fn parse(s: &str) -> FinishReason {
        FinishReason::known(s).unwrap_or(FinishReason::Stop)
    }

    /// The finish reason `s` names, if Sluice has a name for it.
    pub fn known(s: &str) -> Option<FinishReason> {
        Some(match s {
            "stop" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "content_filter" => FinishReason::ContentFilter,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            _ => return None,
        })
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
}

/// Backend-reported timings, when it has them (Ollama and the embedded engine do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Model load time.
    pub load: Duration,
    /// Prompt evaluation time.
    pub prompt_eval: Duration,
    /// Generation time.
    pub eval: Duration,
}

/// One event of a generation.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text.
    Delta(String),
    /// New reasoning text, from a model that thinks before it answers.
    Reasoning(String),
    /// A piece of a tool call (or a whole one, from upstreams that send them whole).
    ToolCall(ToolCallDelta),
    /// Log probabilities of the tokens of the `Delta` just before.
    Logprobs(Vec<TokenLogprob>),
    /// The end, with why and how much.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts, when the backend reported them.
        usage: Option<Usage>,
        /// Timings, when the backend reported them.
        timings: Option<Timings>,
        /// What else the upstream said about the answer, for clients of its dialect.
        details: Option<Box<DoneDetails>>,
    },
}

/// What an upstream said about a finished answer beyond Sluice's own terms, carried to
/// clients that can read it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DoneDetails {
    /// The upstream's dialect (its `fields` are in that dialect's terms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<WireDialect>,
    /// The finish reason as the upstream named it, when Sluice has no name of its own
    /// for it (`tool_calls`, `function_call`, a vendor's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// OpenAI's `system_fingerprint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Usage entries beyond the three counts, in OpenAI's shape
    /// (`prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`).
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub usage: Fields,
    /// Other top-level fields of the upstream's final object (vendor extensions).
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub fields: Fields,
}

impl DoneDetails {
    /// True when it says nothing.
    pub fn is_empty(&self) -> bool {
        self.finish_reason.is_none()
            && self.system_fingerprint.is_none()
            && self.usage.is_empty()
            && self.fields.is_empty()
    }

    /// The finish reason a client sees: the upstream's own name when Sluice has none.
    pub fn finish_reason(details: Option<&DoneDetails>, reason: FinishReason) -> &str {
        details.and_then(|d| d.finish_reason.as_deref()).unwrap_or(reason.as_str())
    }

    /// The vendor fields, when the client speaks `dialect`.
    pub fn fields_for(details: Option<&DoneDetails>, dialect: WireDialect) -> Option<&Fields> {
        details.filter(|d| d.dialect == Some(dialect) && !d.fields.is_empty()).map(|d| &d.fields)
    }
}

impl Event {
    /// True for events that carry generated output (text, reasoning, a tool-call
    /// piece): what token counts and inter-token timings count.
    pub fn is_output(&self) -> bool {
        matches!(self, Event::Delta(_) | Event::Reasoning(_) | Event::ToolCall(_))
    }
}

/// An embeddings request.
#[derive(Debug, Clone, Default)]
pub struct EmbedRequest {
    /// Model name.
    pub model: String,
    /// Texts to embed.
    pub input: Vec<String>,
    /// Inputs given as token ids instead (OpenAI's `[[int]]` form); `input` is then empty.
    pub tokens: Vec<Vec<u32>>,
    /// Length of the vectors wanted (models trained to be cut, e.g. OpenAI's v3).
    pub dimensions: Option<u32>,
    /// Cut inputs longer than the model's context instead of refusing them (Ollama's
    /// `truncate`; its default is true).
    pub truncate: Option<bool>,
}

/// An embeddings answer.
#[derive(Debug, Clone, Default)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read.
    pub prompt_tokens: u32,
    /// Time this request spent loading the model (zero when it was loaded already).
    pub load: Duration,
}

/// How long a model stays in memory once idle (Ollama's `keep_alive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Never unload.
    Forever,
    /// Unload after this long idle; zero unloads as soon as idle.
    For(Duration),
}

impl KeepAlive {
    /// This keep-alive, cut to `max` when it is longer.
    pub fn at_most(self, max: KeepAlive) -> KeepAlive {
        match (self, max) {
            (k, KeepAlive::Forever) => k,
            (KeepAlive::Forever, m) => m,
            (KeepAlive::For(k), KeepAlive::For(m)) => KeepAlive::For(k.min(m)),
        }
    }

    /// Reads Ollama's forms: seconds as a number, a duration string (`"5m"`, `"1h30m"`,
    /// `"0"`), and any negative value or `"forever"` for never.
    pub fn parse_value(v: &serde_json::Value) -> Result<KeepAlive, String> {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(s) if s < 0.0 => Ok(KeepAlive::Forever),
                Some(s) if s.is_finite() && s < 1e12 => Ok(KeepAlive::For(Duration::from_secs_f64(s))),
                _ => Err(format!("keep_alive: {n} is not a number of seconds")),
            },
            serde_json::Value::String(s) => KeepAlive::parse_str(s),
            other => Err(format!("keep_alive: expected a duration like \"5m\" or seconds, got {other}")),
        }
    }

    /// Parses a duration string; a bare number is seconds, a leading `-` means forever.
    pub fn parse_str(s: &str) -> Result<KeepAlive, String> {
        let t = s.trim();
        if t.starts_with('-') || t.eq_ignore_ascii_case("forever") {
            return Ok(KeepAlive::Forever);
        }
        if let Ok(secs) = t.parse::<f64>() {
            return KeepAlive::parse_value(&serde_json::json!(secs));
        }
        humantime::parse_duration(t)
            .map(KeepAlive::For)
            .map_err(|e| format!("keep_alive: '{s}' is not a duration ({e})"))
    }
}

impl serde::Serialize for KeepAlive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeepAlive::Forever => s.serialize_str("forever"),
            KeepAlive::For(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeepAlive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        KeepAlive::parse_value(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_reads_every_ollama_form() {
        let secs = |n| KeepAlive::For(Duration::from_secs(n));
        assert_eq!(KeepAlive::parse_value(&serde_json::json!(0)), Ok(secs(0)));
        assert_eq!(KeepAlive::parse_value(&serde_json::json!(300)), Ok(secs(300)));
        assert_eq!(KeepAlive::parse_value(&serde_json::json!(-1)), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse_str("5m"), Ok(secs(300)));
        assert_eq!(KeepAlive::parse_str("0"), Ok(secs(0)));
        assert_eq!(KeepAlive::parse_str("-1m"), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse_str("forever"), Ok(KeepAlive::Forever));
        assert!(KeepAlive::parse_str("soon").is_err());
        assert!(KeepAlive::parse_value(&serde_json::json!([1])).is_err());
        let round: KeepAlive = serde_json::from_str(&serde_json::to_string(&secs(90)).unwrap()).unwrap();
        assert_eq!(round, secs(90));
    }

    #[test]
    fn keep_alive_is_cut_to_a_maximum() {
        let secs = |n| KeepAlive::For(Duration::from_secs(n));
        assert_eq!(KeepAlive::Forever.at_most(secs(3600)), secs(3600));
        assert_eq!(secs(7200).at_most(secs(3600)), secs(3600));
        assert_eq!(secs(60).at_most(secs(3600)), secs(60));
        assert_eq!(secs(0).at_most(secs(3600)), secs(0));
        assert_eq!(KeepAlive::Forever.at_most(KeepAlive::Forever), KeepAlive::Forever);
        let huge = KeepAlive::parse_str("300000000000y").unwrap();
        assert_eq!(huge.at_most(secs(3600)), secs(3600));
    }
}
