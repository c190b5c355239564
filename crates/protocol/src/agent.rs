//! The agent protocol: frames exchanged between `sluice agent` and the gateway over one
//! WebSocket the agent dials out (see `docs/agent-protocol.md`).
//!
//! Every frame is one JSON text message tagged by `"type"`. The agent opens with
//! [`ToGateway::Hello`] (protocol version, token, id, models, slots); the gateway answers
//! [`ToAgent::Welcome`] or [`ToAgent::Refused`]. After that the gateway pushes
//! [`ToAgent::Job`]s and [`ToAgent::Cancel`]s, the agent streams
//! [`ToGateway::Chunk`]s and ends each job with [`ToGateway::Done`] or
//! [`ToGateway::Error`]. Both sides send [`ToAgent::Ping`] / [`ToGateway::Pong`]
//! heartbeats; the agent reports its load with [`ToGateway::Load`].

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
///
/// Version 2 carries what version 1 could not: tools and tool calls, structured output
/// formats, images, log probabilities and reasoning, in jobs and in their answers.
/// Compatibility rule: a gateway accepts agents of every version from
/// [`MIN_PROTOCOL_VERSION`] to its own; a job an older agent cannot express is never
/// sent to it (routing treats such an agent as text-only, and a job that reaches it
/// anyway is refused by the gateway, not sent stripped). An agent newer than the
/// gateway is refused with [`RefuseCode::VersionMismatch`].
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest agent protocol version a gateway of this build accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Path of the WebSocket endpoint on the gateway.
pub const CONNECT_PATH: &str = "/agent/v1/connect";

/// Frames the agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToGateway {
    /// First frame of every connection.
    Hello(Hello),
    /// Generated text of a job (one or more tokens).
    Chunk {
        /// Job id.
        job: u64,
        /// The text.
        delta: String,
    },
    /// Reasoning text of a job, from a model that thinks before it answers (v2).
    Reasoning {
        /// Job id.
        job: u64,
        /// The text.
        delta: String,
    },
    /// A piece of a tool call, or a whole one (v2): `{index, id?, name?, arguments}`.
    ToolCall {
        /// Job id.
        job: u64,
        /// The piece, as Sluice's canonical tool-call delta.
        call: serde_json::Value,
    },
    /// Log probabilities of the text just sent (v2): a list of
    /// `{token, logprob, bytes?, top_logprobs}`.
    Logprobs {
        /// Job id.
        job: u64,
        /// The tokens' log probabilities.
        logprobs: serde_json::Value,
    },
    /// A job finished normally.
    Done {
        /// Job id.
        job: u64,
        /// `stop`, `length` or `content_filter`.
        finish_reason: String,
        /// Token counts, when the backend reported them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// What the agent's upstream said beyond that (its own finish reason name,
        /// fingerprint, usage details), as the gateway's `DoneDetails`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    /// A job failed.
    Error {
        /// Job id.
        job: u64,
        /// What went wrong.
        error: JobError,
    },
    /// Current load; sent when it changes (a job starts or ends, draining begins).
    Load {
        /// Jobs running.
        jobs: u32,
        /// Parallel slots.
        slots: u32,
        /// True once the agent takes no more jobs (it is shutting down).
        #[serde(default)]
        draining: bool,
    },
    /// Answer to a [`ToAgent::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
}

/// The agent's opening frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    /// The agent token (`sluice agent-token create`).
    pub token: String,
    /// Agent id, unique per gateway (defaults to the host name).
    pub agent_id: String,
    /// Agent software version.
    pub version: String,
    /// Models the agent serves.
    pub models: Vec<String>,
    /// Jobs it runs at once.
    pub slots: u32,
    /// What each model can do beyond text (`tools`, `vision`, `json_schema`,
    /// `logprobs`, `thinking`), where the agent knows (v2); a model left out is
    /// unknown, and the agent's own upstream decides.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub capabilities: std::collections::BTreeMap<String, Vec<String>>,
}

/// Just the version of a Hello, to tell a version mismatch from a malformed frame.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct HelloVersion {
    /// The agent's protocol version.
    pub protocol: u32,
}

/// Frames the gateway sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// The Hello was accepted.
    Welcome {
        /// The gateway's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// How often the gateway pings, in milliseconds; the agent may treat a silence
        /// of three intervals as a dead connection.
        heartbeat_ms: u64,
    },
    /// The Hello was refused; the gateway closes the connection after this frame.
    Refused {
        /// Machine-readable reason.
        code: RefuseCode,
        /// Human-readable reason.
        reason: String,
    },
    /// Run a generation.
    Job {
        /// Job id, unique on this connection.
        job: u64,
        /// What to generate.
        request: Box<JobRequest>,
    },
    /// Stop a job (the client went away); no further frames are expected for it.
    Cancel {
        /// Job id.
        job: u64,
    },
    /// Heartbeat; answer with [`ToGateway::Pong`].
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
}

/// Why a Hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseCode {
    /// Wrong, unknown or revoked token. Retrying will not help.
    Unauthorized,
    /// The protocol versions differ. Retrying will not help.
    VersionMismatch,
    /// The Hello was malformed or invalid.
    BadHello,
    /// The gateway is shutting down; try again later.
    Unavailable,
    /// The agent announced a model its token may not serve. Retrying will not help.
    ModelNotAllowed,
    /// Another token's agent holds this agent id. Retrying will not help.
    AgentIdTaken,
}

impl RefuseCode {
    /// True when reconnecting with the same settings cannot succeed.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            RefuseCode::Unauthorized
                | RefuseCode::VersionMismatch
                | RefuseCode::BadHello
                | RefuseCode::ModelNotAllowed
                | RefuseCode::AgentIdTaken
        )
    }
}

/// A generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Model name as the agent advertised it.
    pub model: String,
    /// What to continue.
    pub input: JobInput,
    /// Sampling parameters.
    #[serde(default)]
    pub sampling: Sampling,
    /// Whether the client streams (the agent may ask its upstream for one answer if not).
    #[serde(default)]
    pub stream: bool,
    /// End-user id supplied by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The gateway's request id, so both ends log the job under one id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Fields the client sent that the gateway does not model, for an upstream of
    /// the client's dialect (the gateway's `Carried`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<serde_json::Value>,
    /// Tool definitions, in Sluice's canonical form (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<serde_json::Value>,
    /// Which tool the model must call, if any (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<serde_json::Value>,
    /// Whether the model may call several tools in one turn (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The shape of the answer: `text`, `json_object` or `json_schema` (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
    /// Log probabilities asked for: the number of alternatives per token (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u8>,
    /// Thinking asked for or refused (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<serde_json::Value>,
}

/// The text to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobInput {
    /// A conversation.
    Chat {
        /// Messages, oldest first.
        messages: Vec<Message>,
    },
    /// A raw prompt.
    Text {
        /// The prompt.
        prompt: String,
        /// Optional system prompt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        /// Skip the chat template.
        #[serde(default)]
        raw: bool,
    },
}

/// A chat message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// The message's fields the gateway does not model, as the client sent them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Images after the text, each `{media_type?, data}` or `{url}` (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<serde_json::Value>,
    /// The calls an assistant message made (v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// The call a `tool` message answers (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The function a `tool` message answers for (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant message's reasoning (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

/// Sampling parameters; absent means the backend's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Sampling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<f32>,
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_p: Option<f32>,
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat_penalty: Option<f32>,
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub presence_penalty: Option<f32>,
    #[serde(
        default,
        deserialize_with = "crate::common::finite_f32",
        skip_serializing_if = "Option::is_none"
    )]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Kind of failure.
    pub kind: JobErrorKind,
    /// Human-readable message (no internals).
    pub message: String,
    /// Upstream HTTP status, for [`JobErrorKind::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Prompt length, for [`JobErrorKind::ContextOverflow`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// Context length, for [`JobErrorKind::ContextOverflow`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u32>,
}

/// Kinds of job failure, mirroring the gateway's backend errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorKind {
    /// The agent's backend could not be reached.
    Connect,
    /// A deadline passed at the agent.
    Timeout,
    /// The agent's backend answered with an error status.
    Status,
    /// The agent's backend broke its protocol.
    Protocol,
    /// The agent's backend failed mid-answer.
    Interrupted,
    /// The prompt does not fit the model.
    ContextOverflow,
    /// The request asks for something the backend cannot do.
    Unsupported,
    /// The agent has no free slot or is draining.
    Overloaded,
    /// The agent does not serve the model.
    ModelNotFound,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_are_tagged_json() {
        let f = ToGateway::Chunk { job: 7, delta: "hi".into() };
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"type":"chunk","job":7,"delta":"hi"}"#);
        let j = ToAgent::Job {
            job: 1,
            request: Box::new(JobRequest {
                model: "m".into(),
                input: JobInput::Chat {
                    messages: vec![Message {
                        role: "user".into(),
                        content: "x".into(),
                        ..Default::default()
                    }],
                },
                sampling: Sampling { max_tokens: Some(3), ..Default::default() },
                stream: true,
                user: None,
                request_id: None,
                carried: None,
                tools: None,
                tool_choice: None,
                parallel_tool_calls: None,
                response_format: None,
                logprobs: None,
                think: None,
            }),
        };
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(serde_json::from_str::<ToAgent>(&text).unwrap(), j);
        assert!(text.contains(r#""input":{"kind":"chat","#), "{text}");
    }

    #[test]
    fn a_sampling_number_too_large_for_f32_is_refused_not_turned_into_infinity() {
        // Found by the frame_to_agent fuzzer: 8.4e51 became `inf`, which encodes as
        // `null`, so the job the agent ran was not the job the gateway sent.
        let job = |t: &str| {
            format!(
                r#"{{"type":"job","job":1,"request":{{"model":"m","input":{{"kind":"chat","messages":[]}},"sampling":{{"temperature":{t}}},"stream":true}}}}"#
            )
        };
        let err =
            serde_json::from_str::<ToAgent>(&job("8444444444444444444444444444444444444444444444444444.2"))
                .unwrap_err();
        assert!(err.to_string().contains("out of range for a 32-bit float"), "{err}");
        let parsed = serde_json::from_str::<ToAgent>(&job("0.7"));
        let Ok(ToAgent::Job { request, .. }) = parsed else { panic!("{parsed:?}") };
        assert_eq!(request.sampling.temperature, Some(0.7));
        let Ok(ToAgent::Job { request, .. }) = serde_json::from_str::<ToAgent>(&job("null")) else {
            panic!()
        };
        assert_eq!(request.sampling.temperature, None);
    }

    #[test]
    fn a_newer_hello_still_shows_its_version() {
        let text = r#"{"type":"hello","protocol":9,"something_new":true}"#;
        assert!(serde_json::from_str::<ToGateway>(text).is_err());
        assert_eq!(serde_json::from_str::<HelloVersion>(text).unwrap().protocol, 9);
    }

    #[test]
    fn version_1_frames_still_parse_and_text_jobs_look_the_same() {
        let hello = r#"{"type":"hello","protocol":1,"token":"t","agent_id":"a","version":"0.1","models":["m"],"slots":2}"#;
        let Ok(ToGateway::Hello(h)) = serde_json::from_str::<ToGateway>(hello) else { panic!() };
        assert!(h.capabilities.is_empty());
        let job = r#"{"model":"m","input":{"kind":"chat","messages":[{"role":"user","content":"x"}]},"stream":true}"#;
        let j: JobRequest = serde_json::from_str(job).unwrap();
        assert!(j.tools.is_none() && j.logprobs.is_none());
        // A text-only job of version 2 has no field version 1 did not know.
        let text = serde_json::to_string(&j).unwrap();
        for field in ["tools", "tool_choice", "response_format", "logprobs", "think", "images", "tool_calls"]
        {
            assert!(!text.contains(field), "{text}");
        }
    }
}
