//! OpenAI's Responses API: `POST /v1/responses`, on the same path as chat completions
//! (limits, cache, routing, accounting; [`respond`]). The request becomes the canonical
//! request ([`convert`]); the answer comes back as a `response` object or as the typed
//! server-sent events ([`encode`]). Sluice keeps no responses: `store` is accepted and
//! named as dropped, `previous_response_id` is refused by name.

pub mod convert;
pub mod encode;

use axum::{
    Json,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_protocol::responses as wire;

use sluice_core::{answer::Answer, error::GatewayError, reply::Reply};

use self::encode::ResponsesSse;
use super::encode::error_response;
use crate::{
    api::{
        Ctx, body_or_error, parse_json,
        respond::{Dialect, prompt_estimate, respond},
    },
    state::AppState,
};

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body_or_error(&state, body)
        .and_then(|b| parse_json::<wire::ResponseRequest>(&b))
        .and_then(convert::request);
    match parsed {
        Ok((req, echo)) => {
            let dialect = Responses { echo, prompt_estimate: prompt_estimate(&req) };
            respond(&state, ctx, req, dialect).await
        }
        Err(e) => error_response(&e),
    }
}

/// What a `response` object repeats of its request.
#[derive(Debug, Clone)]
pub struct Echo {
    model: String,
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    tools: Vec<Value>,
    tool_choice: Value,
    parallel_tool_calls: bool,
    text: Value,
    reasoning: Value,
    metadata: Value,
    user: Option<String>,
}

impl Echo {
    /// The echo of `r`, with the API's defaults for what it left out.
    pub fn of(r: &wire::ResponseRequest) -> Echo {
        Echo {
            model: r.model.clone(),
            instructions: r.instructions.clone(),
            max_output_tokens: r.max_output_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            tools: r.tools.clone().unwrap_or_default(),
            tool_choice: r.tool_choice.clone().filter(|v| !v.is_null()).unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: r.parallel_tool_calls.unwrap_or(true),
            text: match &r.text {
                Some(t) if t.format.is_some() => serde_json::to_value(t).unwrap_or_default(),
                _ => json!({"format": {"type": "text"}}),
            },
            reasoning: match &r.reasoning {
                Some(x) => serde_json::to_value(x).unwrap_or_default(),
                None => json!({"effort": null, "summary": null}),
            },
            metadata: r.metadata.clone().filter(|m| !m.is_null()).unwrap_or_else(|| json!({})),
            user: r.user.clone(),
        }
    }

    /// A `response` object for this request, without output yet.
    pub fn response(&self, id: &str, created_at: u64, status: &str) -> wire::Response {
        wire::Response {
            id: id.to_owned(),
            object: "response".into(),
            created_at,
            status: status.into(),
            error: None,
            incomplete_details: None,
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            model: self.model.clone(),
            output: Vec::new(),
            parallel_tool_calls: self.parallel_tool_calls,
            previous_response_id: None,
            reasoning: self.reasoning.clone(),
            store: false,
            temperature: self.temperature,
            text: self.text.clone(),
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            top_p: self.top_p,
            truncation: "disabled".into(),
            usage: None,
            user: self.user.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// How a Responses answer is rendered.
struct Responses {
    echo: Echo,
    prompt_estimate: u32,
}

impl Dialect for Responses {
    type Stream = ResponsesSse;
    const CONTENT_TYPE: &'static str = "text/event-stream";
    const NAME: &'static str = "responses";

    fn stream(self, _: &Reply) -> ResponsesSse {
        ResponsesSse::new(self.echo, self.prompt_estimate)
    }

    fn whole(self, _: &Reply, answer: Answer) -> Response {
        Json(encode::whole(&self.echo, answer, self.prompt_estimate)).into_response()
    }

    fn error(err: &GatewayError) -> Response {
        error_response(err)
    }

    fn early_keepalive(&self) -> Bytes {
        Bytes::from_static(b": keep-alive\n\n")
    }

    fn stream_error(err: &GatewayError) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        encode::error_event(err, 0, &mut buf);
        buf.freeze()
    }
}
