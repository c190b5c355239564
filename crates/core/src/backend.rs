//! The token-source contract. Every backend implements [`Backend`]: a stream of
//! [`Event`]s for a [`ChatRequest`], embeddings, model discovery and a health probe.
//! The implementations live in the `sluice-backends` crate (HTTP upstreams, the
//! embedded engine) and the server's agent hub (connected agents).
//!
//! Cancellation is dropping the stream: every backend stops its upstream work (closes
//! the HTTP request, cancels the job) when its stream is dropped.

use std::{pin::Pin, time::Duration};

use futures_util::{Stream, future::BoxFuture};
use http::StatusCode;

use crate::{
    chat::{ChatRequest, EmbedRequest, Embeddings, Event, KeepAlive},
    context::RequestContext,
};

/// A generation in progress. Dropping it cancels the upstream work.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, BackendError>> + Send>>;

/// The stage of a request a deadline guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the connection.
    Connect,
    /// Waiting for the first token (includes the response head).
    FirstToken,
    /// Waiting for the next token.
    Idle,
    /// The whole request.
    Total,
}

impl Stage {
    /// Lowercase name, for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::FirstToken => "first_token",
            Stage::Idle => "idle",
            Stage::Total => "total",
        }
    }
}

/// What went wrong in a backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The upstream could not be reached.
    #[error("upstream unreachable")]
    Connect(String),
    /// A deadline passed.
    #[error("upstream timed out ({} deadline)", .0.as_str())]
    Timeout(Stage),
    /// The upstream answered with an error status.
    #[error("upstream returned {status}: {message}")]
    Status {
        /// HTTP status from the upstream.
        status: u16,
        /// The upstream's error message, credentials scrubbed ([`crate::scrub`]).
        message: String,
        /// The upstream's `retry-after-ms` or `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The rest of the upstream's error object, when it sent one.
        detail: Option<Box<UpstreamError>>,
    },
    /// The upstream sent something that is not its protocol.
    #[error("upstream sent a malformed response")]
    Protocol(String),
    /// The upstream connection broke mid-answer.
    #[error("upstream connection lost mid-stream")]
    Interrupted(String),
    /// The prompt does not fit the model's context.
    #[error("prompt is {prompt_tokens} tokens but the model's context is {context} tokens")]
    ContextOverflow {
        /// Prompt length in tokens.
        prompt_tokens: u32,
        /// Context length in tokens.
        context: u32,
    },
    /// The backend cannot do this (e.g. embeddings on a chat-only upstream).
    #[error("{0}")]
    Unsupported(String),
    /// The request has a field that would change the answer and that this backend has
    /// no counterpart for ([`crate::carry`]).
    #[error("{message}")]
    UnsupportedField {
        /// The field, by its path in the request.
        param: String,
        /// What to do about it.
        message: String,
    },
    /// The backend is at capacity.
    #[error("backend at capacity")]
    Overloaded,
}

/// The parts of an upstream's error object that clients act on, as OpenAI shapes
/// them (`context_length_exceeded` makes clients trim their context).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamError {
    /// `error.type`.
    pub kind: Option<String>,
    /// `error.code` (a string or a number).
    pub code: Option<serde_json::Value>,
    /// `error.param`.
    pub param: Option<String>,
}

impl BackendError {
    /// An upstream error status with a message and nothing else.
    pub fn status(status: u16, message: impl Into<String>) -> BackendError {
        BackendError::Status { status, message: message.into(), retry_after: None, detail: None }
    }

    /// True when the upstream refused the gateway's own credentials (401, 403, 407).
    pub fn credentials_refused(&self) -> bool {
        matches!(self, BackendError::Status { status: 401 | 403 | 407, .. })
    }

    /// HTTP status for this error when it happens before the response started.
    pub fn status_code(&self) -> StatusCode {
        match self {
            BackendError::Connect(_) | BackendError::Protocol(_) | BackendError::Interrupted(_) => {
                StatusCode::BAD_GATEWAY
            }
            BackendError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            BackendError::Status { status, .. } => match *status {
                // The gateway's credentials, not the client's: the gateway is at fault.
                401 | 403 | 407 => StatusCode::BAD_GATEWAY,
                408 | 504 => StatusCode::GATEWAY_TIMEOUT,
                // The client's request as the upstream judged it: its status, exactly.
                400..=499 => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                503 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            BackendError::ContextOverflow { .. } => StatusCode::BAD_REQUEST,
            BackendError::Unsupported(_) | BackendError::UnsupportedField { .. } => StatusCode::BAD_REQUEST,
            BackendError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable error type name.
    pub fn error_type(&self) -> &'static str {
        match self {
            BackendError::Connect(_) => "upstream_unreachable",
            BackendError::Timeout(_) => "upstream_timeout",
            BackendError::Status { status: 429, .. } => "rate_limit_error",
            BackendError::Status { status: 401 | 403 | 407, .. } => "upstream_credentials_refused",
            BackendError::Status { status: 408, .. } => "upstream_timeout",
            BackendError::Status { status, .. } if *status < 500 => "invalid_request_error",
            BackendError::Status { .. } => "upstream_error",
            BackendError::Protocol(_) => "upstream_protocol_error",
            BackendError::Interrupted(_) => "upstream_interrupted",
            BackendError::ContextOverflow { .. } => "context_length_exceeded",
            BackendError::Unsupported(_) | BackendError::UnsupportedField { .. } => "invalid_request_error",
            BackendError::Overloaded => "service_unavailable",
        }
    }

    /// Short label for the upstream-errors metric.
    pub fn metric_kind(&self) -> &'static str {
        match self {
            BackendError::Connect(_) => "connect",
            BackendError::Timeout(Stage::Connect) => "timeout_connect",
            BackendError::Timeout(Stage::FirstToken) => "timeout_first_token",
            BackendError::Timeout(Stage::Idle) => "timeout_idle",
            BackendError::Timeout(Stage::Total) => "timeout_total",
            BackendError::Status { status: 429, .. } => "status_429",
            BackendError::Status { status, .. } if *status < 500 => "status_4xx",
            BackendError::Status { .. } => "status_5xx",
            BackendError::Protocol(_) => "malformed",
            BackendError::Interrupted(_) => "interrupted",
            BackendError::ContextOverflow { .. } => "context_overflow",
            BackendError::Unsupported(_) | BackendError::UnsupportedField { .. } => "unsupported",
            BackendError::Overloaded => "overloaded",
        }
    }
}

/// What a backend whose upstream speaks `target` (`None`: neither dialect) does with
/// the fields `req` carries: `Ok(true)` to write them into its request unchanged,
/// `Ok(false)` to leave them out, or the 400 naming a field it cannot honour.
pub fn carry_plan(
    req: &crate::chat::ChatRequest,
    target: Option<crate::carry::WireDialect>,
    backend: &str,
) -> Result<bool, BackendError> {
    let messages = match &req.input {
        crate::chat::Input::Chat(m) => m.as_slice(),
        crate::chat::Input::Text { .. } => &[],
    };
    let plan = req.carried.plan(target, messages.iter().map(|m| &m.extra));
    match plan.refusal(backend) {
        Some((param, message)) => Err(BackendError::UnsupportedField { param, message }),
        None => Ok(plan.carry),
    }
}

/// A model a backend offers, as discovered from it.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    /// Model name at the backend.
    pub name: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Family, parameter size, quantization, when known.
    pub details: Option<sluice_protocol::ollama::ModelDetails>,
    /// Hex SHA-256 of the model's content (the GGUF file, or the upstream's own
    /// digest), when known.
    pub digest: Option<String>,
    /// When the model last changed, RFC 3339, when known.
    pub modified_at: Option<String>,
    /// What it can do, in Ollama's words (`completion`, `embedding`, `tools`, ...);
    /// `None` when unknown.
    pub capabilities: Option<Vec<String>>,
    /// What Ollama's `/api/show` says of it (modelfile, parameters, template,
    /// `model_info`, license), from the model file or an Ollama upstream.
    pub show: Option<Box<sluice_protocol::ollama::ShowResponse>>,
}

/// A model an in-process backend holds in memory, for `/api/ps`.
#[derive(Debug, Clone)]
pub struct RunningModel {
    /// Model name at the backend.
    pub name: String,
    /// Bytes it occupies (weights and KV cache).
    pub size: u64,
    /// Bytes of it in accelerator memory: `Some(0)` for a model run on the CPU,
    /// `None` when unknown.
    pub size_vram: Option<u64>,
    /// When it unloads if left idle; `None` means never.
    pub unloads_at: Option<std::time::SystemTime>,
    /// Family, parameter size, quantization.
    pub details: Option<sluice_protocol::ollama::ModelDetails>,
    /// Context window of one sequence, in tokens.
    pub context_length: Option<u32>,
}

/// One value an in-process backend reports for `/metrics`, labelled with its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendMetric {
    /// Family name; a counter's sample gets `_total` appended.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter (monotonic) or gauge.
    pub counter: bool,
    /// The `model` label.
    pub model: String,
    /// The value.
    pub value: u64,
}

/// One token source.
pub trait Backend: Send + Sync + 'static {
    /// The configured name, unique in the gateway.
    fn name(&self) -> &str;

    /// The kind (`openai`, `ollama`, ...), for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Jobs it runs at once, when it has a hard limit (agents do); the scheduler spreads
    /// work against it.
    fn slots(&self) -> Option<u32> {
        None
    }

    /// Starts a generation for the request `ctx` describes. `req.model` is already
    /// the backend's own model name. Resolves once the upstream accepted the request;
    /// tokens follow on the stream.
    fn chat(
        &self,
        ctx: &RequestContext,
        req: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>>;

    /// Embeds texts.
    fn embed(&self, req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>>;

    /// The dialect of the upstream, when it speaks one of the two the gateway serves:
    /// carried request fields of that dialect are written into its requests unchanged.
    fn carries(&self) -> Option<crate::carry::WireDialect> {
        None
    }

    /// Lists the models the upstream serves.
    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>>;

    /// Cheap liveness probe.
    fn health(&self) -> BoxFuture<'static, Result<(), BackendError>> {
        let models = self.models();
        Box::pin(async move { models.await.map(|_| ()) })
    }

    /// What `model` can do beyond text (`tools`, `vision`, ...), when this backend
    /// knows it without asking (embedded engines, agents); `None` leaves it to discovery
    /// or the configuration.
    fn capabilities(&self, _model: &str) -> Option<Vec<String>> {
        None
    }

    /// Models held in memory by this process (in-process engines); remote backends
    /// manage their own memory and report none.
    fn running(&self) -> Vec<RunningModel> {
        Vec::new()
    }

    /// Requests waiting inside the backend for a free slot right now (in-process
    /// engines); `None` for backends whose queue Sluice cannot see.
    fn queued(&self) -> Option<u64> {
        None
    }

    /// Values for `/metrics` (in-process engines); remote backends report none.
    fn metrics(&self) -> Vec<BackendMetric> {
        Vec::new()
    }

    /// Sets how long `model` stays loaded once idle; `None` restores the configured
    /// default. Only in-process engines hold models; others ignore it.
    fn set_keep_alive(&self, _model: &str, _keep_alive: Option<KeepAlive>) {}

    /// Loads `model` into memory now (Ollama's empty-prompt request).
    fn load(&self, _model: &str) -> BoxFuture<'static, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
}
