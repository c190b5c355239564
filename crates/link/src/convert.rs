//! Conversions between the agent protocol's wire types and Sluice's own request, event
//! and error types. Both ends use them: the gateway to push a job and read its frames,
//! the agent to run the job and report how it went.

use sluice_protocol::agent::{self as wire, JobError, JobErrorKind};

use sluice_core::{
    backend::{BackendError, Stage},
    carry::Carried,
    chat::{ChatRequest, DoneDetails, Event, FinishReason, Input, Message, Role, Sampling, Usage},
    context::RequestContext,
    error::GatewayError,
};

/// The wire form of a request (the gateway side) for an agent speaking `protocol`,
/// tagged with the request id of `ctx`. A request that protocol version cannot express
/// (tools, images, formats, log probabilities, thinking before version 2) is refused
/// rather than sent without them.
pub fn job_request(
    ctx: &RequestContext,
    req: ChatRequest,
    protocol: u32,
) -> Result<wire::JobRequest, BackendError> {
    if protocol < 2
        && let Some(field) = inexpressible(&req)
    {
        return Err(BackendError::Unsupported(format!(
            "this agent (protocol {protocol}) cannot take '{field}': upgrade it to protocol 2"
        )));
    }
    let input = match req.input {
        Input::Chat(messages) => wire::JobInput::Chat {
            messages: messages
                .into_iter()
                .map(|m| wire::Message {
                    role: m.role.as_str().to_owned(),
                    content: m.content,
                    extra: m.extra,
                    images: m.images.iter().map(json).collect(),
                    tool_calls: m.tool_calls.iter().map(json).collect(),
                    tool_call_id: m.tool_call_id,
                    name: m.name,
                    reasoning: m.reasoning,
                })
                .collect(),
        },
        Input::Text { prompt, system, raw } => wire::JobInput::Text { prompt, system, raw },
    };
    let s = req.sampling;
    Ok(wire::JobRequest {
        model: req.model,
        input,
        sampling: wire::Sampling {
            max_tokens: s.max_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            seed: s.seed,
            stop: s.stop,
        },
        stream: req.stream,
        user: req.user,
        request_id: Some(ctx.request_id.to_string()),
        carried: (req.carried != Carried::default())
            .then(|| serde_json::to_value(&req.carried).ok())
            .flatten(),
        tools: (!req.tools.is_empty()).then(|| json(&req.tools)),
        tool_choice: req.tool_choice.as_ref().map(json),
        parallel_tool_calls: req.parallel_tool_calls,
        response_format: req.response_format.as_ref().map(json),
        logprobs: req.logprobs,
        think: req.think.as_ref().map(json),
    })
}

/// Sluice's own types as JSON (they always serialize: no maps with non-string keys,
/// no failing `Serialize` impls).
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The first field of `req` protocol version 1 cannot carry.
fn inexpressible(req: &ChatRequest) -> Option<&'static str> {
    let messages = match &req.input {
        Input::Chat(m) => m.as_slice(),
        Input::Text { .. } => &[],
    };
    if !req.tools.is_empty() || req.tool_choice.is_some() || req.parallel_tool_calls.is_some() {
        Some("tools")
    } else if req.response_format.is_some() {
        Some("response_format")
    } else if req.logprobs.is_some() {
        Some("logprobs")
    } else if req.think.is_some() {
        Some("think")
    } else if messages.iter().any(|m| !m.images.is_empty()) {
        Some("images")
    } else if messages.iter().any(|m| !m.tool_calls.is_empty() || m.tool_call_id.is_some()) {
        Some("tool_calls")
    } else {
        None
    }
}

fn field<T: serde::de::DeserializeOwned>(name: &str, v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("{name}: {e}"))
}

fn opt_field<T: serde::de::DeserializeOwned>(
    name: &str,
    v: Option<serde_json::Value>,
) -> Result<Option<T>, String> {
    v.map(|v| field(name, v)).transpose()
}

/// A pushed job as a request (the agent side); an unknown role or a field that does
/// not parse is an error.
pub fn chat_request(job: wire::JobRequest) -> Result<ChatRequest, String> {
    let input = match job.input {
        wire::JobInput::Chat { messages } => Input::Chat(
            messages
                .into_iter()
                .map(|m| {
                    let role = Role::parse(&m.role).ok_or_else(|| format!("unknown role '{}'", m.role))?;
                    let mut msg = Message::new(role, m.content);
                    msg.extra = m.extra;
                    msg.images =
                        m.images.into_iter().map(|i| field("images", i)).collect::<Result<_, _>>()?;
                    msg.tool_calls =
                        m.tool_calls.into_iter().map(|c| field("tool_calls", c)).collect::<Result<_, _>>()?;
                    msg.tool_call_id = m.tool_call_id;
                    msg.name = m.name;
                    msg.reasoning = m.reasoning;
                    Ok(msg)
                })
                .collect::<Result<_, String>>()?,
        ),
        wire::JobInput::Text { prompt, system, raw } => Input::Text { prompt, system, raw },
    };
    let carried = match job.carried {
        Some(v) => serde_json::from_value(v).map_err(|e| format!("carried fields: {e}"))?,
        None => Carried::default(),
    };
    let s = job.sampling;
    Ok(ChatRequest {
        model: job.model,
        input,
        sampling: Sampling {
            max_tokens: s.max_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            seed: s.seed,
            stop: s.stop,
        },
        stream: job.stream,
        user: job.user,
        carried,
        tools: opt_field("tools", job.tools)?.unwrap_or_default(),
        tool_choice: opt_field("tool_choice", job.tool_choice)?,
        parallel_tool_calls: job.parallel_tool_calls,
        response_format: opt_field("response_format", job.response_format)?,
        logprobs: job.logprobs,
        think: opt_field("think", job.think)?,
    })
}

/// The frame for a generation event other than text and the end (the agent side):
/// reasoning, a tool call piece, log probabilities.
pub fn event_frame(job: u64, event: Event) -> Option<wire::ToGateway> {
    match event {
        Event::Reasoning(delta) => Some(wire::ToGateway::Reasoning { job, delta }),
        Event::ToolCall(call) => {
            Some(wire::ToGateway::ToolCall { job, call: serde_json::to_value(call).ok()? })
        }
        Event::Logprobs(l) => {
            Some(wire::ToGateway::Logprobs { job, logprobs: serde_json::to_value(l).ok()? })
        }
        Event::Delta(_) | Event::Done { .. } => None,
    }
}

/// The event a ToolCall frame stands for (the gateway side).
pub fn tool_call_event(call: serde_json::Value) -> Result<Event, String> {
    field("tool call", call).map(Event::ToolCall)
}

/// The event a Logprobs frame stands for (the gateway side).
pub fn logprobs_event(logprobs: serde_json::Value) -> Result<Event, String> {
    field("logprobs", logprobs).map(Event::Logprobs)
}

/// The Done frame for an event (the agent side).
pub fn done_frame(
    job: u64,
    finish_reason: FinishReason,
    usage: Option<Usage>,
    details: Option<&DoneDetails>,
) -> wire::ToGateway {
    wire::ToGateway::Done {
        job,
        finish_reason: finish_reason.as_str().to_owned(),
        usage: usage
            .map(|u| wire::Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }),
        details: details.and_then(|d| serde_json::to_value(d).ok()),
    }
}

/// The event a Done frame stands for (the gateway side).
pub fn done_event(
    finish_reason: &str,
    usage: Option<wire::Usage>,
    details: Option<serde_json::Value>,
) -> Event {
    Event::Done {
        finish_reason: FinishReason::parse(finish_reason),
        usage: usage
            .map(|u| Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }),
        timings: None,
        // Details an older or newer agent wrote differently are left out, not fatal.
        details: details.and_then(|d| serde_json::from_value(d).ok()).map(Box::new),
    }
}

fn job_error(kind: JobErrorKind, message: String) -> JobError {
    JobError { kind, message, status: None, prompt_tokens: None, context: None }
}

/// How a failed job is reported (the agent side). Messages are the client-safe ones.
pub fn error_frame(err: &GatewayError) -> JobError {
    let message = err.client_message();
    let GatewayError::Backend(b) = err else {
        let kind = match err {
            GatewayError::ModelNotFound(_) => JobErrorKind::ModelNotFound,
            GatewayError::Unavailable(_) | GatewayError::RateLimited { .. } => JobErrorKind::Overloaded,
            _ => JobErrorKind::Unsupported,
        };
        return job_error(kind, message);
    };
    match b {
        BackendError::Connect(_) => job_error(JobErrorKind::Connect, message),
        BackendError::Timeout(_) => job_error(JobErrorKind::Timeout, message),
        BackendError::Status { status, message, .. } => {
            JobError { status: Some(*status), ..job_error(JobErrorKind::Status, message.clone()) }
        }
        BackendError::Protocol(_) => job_error(JobErrorKind::Protocol, message),
        BackendError::Interrupted(_) => job_error(JobErrorKind::Interrupted, message),
        BackendError::ContextOverflow { prompt_tokens, context } => JobError {
            prompt_tokens: Some(*prompt_tokens),
            context: Some(*context),
            ..job_error(JobErrorKind::ContextOverflow, message)
        },
        BackendError::Unsupported(m) | BackendError::UnsupportedField { message: m, .. } => {
            job_error(JobErrorKind::Unsupported, m.clone())
        }
        BackendError::Overloaded => job_error(JobErrorKind::Overloaded, message),
    }
}

/// The backend error a job's Error frame stands for (the gateway side). `agent` names
/// the agent in the message; `streaming` says whether tokens were already delivered.
pub fn backend_error(agent: &str, e: JobError, streaming: bool) -> BackendError {
    let msg = format!("agent {agent}: {}", e.message);
    match e.kind {
        JobErrorKind::Connect => BackendError::Connect(msg),
        JobErrorKind::Timeout => {
            BackendError::Timeout(if streaming { Stage::Idle } else { Stage::FirstToken })
        }
        JobErrorKind::Status => BackendError::status(e.status.unwrap_or(502), e.message),
        JobErrorKind::Protocol => BackendError::Protocol(msg),
        JobErrorKind::Interrupted => BackendError::Interrupted(msg),
        JobErrorKind::ContextOverflow => BackendError::ContextOverflow {
            prompt_tokens: e.prompt_tokens.unwrap_or(0),
            context: e.context.unwrap_or(0),
        },
        JobErrorKind::Unsupported => BackendError::Unsupported(e.message),
        JobErrorKind::Overloaded => BackendError::Overloaded,
        JobErrorKind::ModelNotFound => BackendError::status(404, e.message),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_survive_the_round_trip() {
        let req = ChatRequest {
            model: "m".into(),
            input: Input::Chat(vec![Message::new(Role::System, "be brief")]),
            sampling: Sampling {
                max_tokens: Some(5),
                stop: vec!["\n".into()],
                seed: Some(-1),
                ..Default::default()
            },
            stream: true,
            user: Some("u".into()),
            ..ChatRequest::default()
        };
        let back = chat_request(job_request(&RequestContext::internal(), req.clone(), 2).unwrap()).unwrap();
        assert_eq!(
            (back.model, back.sampling, back.stream, back.user),
            (req.model, req.sampling, true, req.user)
        );
        assert!(
            matches!(back.input, Input::Chat(m) if m[0].role == Role::System && m[0].content == "be brief")
        );
    }

    #[test]
    fn errors_keep_their_kind() {
        let e = error_frame(&GatewayError::Backend(BackendError::ContextOverflow {
            prompt_tokens: 9,
            context: 4,
        }));
        assert!(matches!(
            backend_error("a", e, false),
            BackendError::ContextOverflow { prompt_tokens: 9, context: 4 }
        ));
        let e = error_frame(&GatewayError::ModelNotFound("x".into()));
        assert_eq!(backend_error("a", e, false).status_code(), 404);
        let e = error_frame(&GatewayError::Backend(BackendError::Connect("refused at 10.0.0.1".into())));
        let BackendError::Connect(msg) = backend_error("gpu1", e, false) else { panic!() };
        assert!(msg.contains("gpu1") && !msg.contains("10.0.0.1"), "{msg}");
    }
}
