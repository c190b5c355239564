//! OpenAI's Responses API: `POST /v1/responses`, on the same path as chat completions
//! (limits, cache, routing, accounting; [`respond`]). The request becomes the canonical
//! request ([`convert`]); the answer comes back as a `response` object or as the typed
//! server-sent events ([`encode`]). Responses asked with `store` (the default) are kept
//! for their owner, to continue with `previous_response_id` and to read or delete at
//! `/v1/responses/{id}` ([`stored`]).

pub mod convert;
pub mod encode;
pub mod stored;

use axum::{
    Json,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_protocol::responses as wire;

use sluice_core::{answer::Answer, error::GatewayError, reply::Reply};

use self::{encode::ResponsesSse, stored::Keep};
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
    let r = match body_or_error(&state, body).and_then(|b| parse_json::<wire::ResponseRequest>(&b)) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let previous = match r.previous_response_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => match stored::previous(&state, &ctx, id).await {
            Ok(Some(items)) => items,
            Ok(None) => return stored::previous_not_found(id),
            Err(e) => return error_response(&e),
        },
        None => Vec::new(),
    };
    let keep =
        r.store.unwrap_or(true).then(|| Keep::new(&state, &ctx, &previous, r.input.as_ref())).flatten();
    match convert::request(r, previous) {
        Ok((req, mut echo)) => {
            echo.store = keep.is_some();
            let dialect = Responses { echo, prompt_estimate: prompt_estimate(&req), keep };
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
    /// The response continued, as sent.
    previous_response_id: Option<String>,
    /// Whether the response is to be stored.
    store: bool,
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
            previous_response_id: r.previous_response_id.clone().filter(|id| !id.is_empty()),
            store: false,
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
            previous_response_id: self.previous_response_id.clone(),
            reasoning: self.reasoning.clone(),
            store: self.store,
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

/// How a Responses answer is rendered (and stored, when it is kept).
struct Responses {
    echo: Echo,
    prompt_estimate: u32,
    keep: Option<Keep>,
}

impl Dialect for Responses {
    type Stream = ResponsesSse;
    const CONTENT_TYPE: &'static str = "text/event-stream";
    const NAME: &'static str = "responses";

    fn stream(self, _: &Reply) -> ResponsesSse {
        ResponsesSse::new(self.echo, self.prompt_estimate, self.keep)
    }

    fn whole(self, _: &Reply, answer: Answer) -> impl Future<Output = Response> + Send {
        let mut r = encode::whole(&self.echo, answer, self.prompt_estimate);
        let save = self.keep.and_then(|k| k.save(&mut r));
        async move {
            if let Some(save) = save {
                r.store = save.await;
            }
            Json(r).into_response()
        }
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
