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

/// The wire form of a request (the gateway side), tagged with the request id of `ctx`.
/// A request this protocol version cannot express (tools, images, formats, log
/// probabilities, thinking) is refused rather than sent without them.
pub fn job_request(ctx: &RequestContext, req: ChatRequest) -> Result<wire::JobRequest, BackendError> {
    if let Some(field) = inexpressible(&req) {
        return Err(BackendError::Unsupported(format!("agents cannot take '{field}' yet")));
    }
    let input = match req.input {
        Input::Chat(messages) => wire::JobInput::Chat {
            messages: messages
                .into_iter()
                .map(|m| wire::Message {
                    role: m.role.as_str().to_owned(),
                    content: m.content,
                    extra: m.extra,
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
    })
}

/// The first field of `req` the agent protocol cannot carry.
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

/// A pushed job as a request (the agent side); an unknown role is an error.
pub fn chat_request(job: wire::JobRequest) -> Result<ChatRequest, String> {
    let input = match job.input {
        wire::JobInput::Chat { messages } => Input::Chat(
            messages
                .into_iter()
                .map(|m| {
                    let role = Role::parse(&m.role).ok_or_else(|| format!("unknown role '{}'", m.role))?;
                    let mut msg = Message::new(role, m.content);
                    msg.extra = m.extra;
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
        ..ChatRequest::default()
    })
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
        let back = chat_request(job_request(&RequestContext::internal(), req.clone()).unwrap()).unwrap();
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
