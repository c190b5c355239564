//! OpenAI encodings: SSE chunks for chat and legacy completions, whole responses, and
//! the error object.
//!
//! Chunks are written from a prefix computed once per request plus the JSON-escaped
//! token, which is byte-for-byte what serializing the chunk struct would give, at a
//! fraction of the cost per token.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use bytes::{BufMut, BytesMut};
use sluice_protocol::openai as oa;

use crate::api::stream_body::{Encoder, push_json_str};
use sluice_core::{
    answer::Answer,
    carry::WireDialect,
    chat::{DoneDetails, Event, FinishReason, Usage},
    error::GatewayError,
    output::TokenLogprob,
    tools::{ToolCall, ToolCallDelta},
};

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh completion id with the given prefix (`chatcmpl-`, `cmpl-`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Which OpenAI object a stream carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `chat.completion.chunk`.
    Chat,
    /// `text_completion`.
    Completion,
}

/// SSE encoder for OpenAI streams.
pub struct OpenAiSse {
    kind: Kind,
    /// `data: {"id":…,"model":…` — the fields every chunk opens with.
    start: String,
    /// `start` then `,"choices":[` — everything before the choice.
    head: String,
    include_usage: bool,
    sent_role: bool,
    deltas: u32,
    prompt_estimate: u32,
    /// Log probabilities waiting for the text they describe.
    logprobs: Option<Vec<TokenLogprob>>,
    /// Whether a tool call was streamed (the finish reason then says `tool_calls`).
    called_tools: bool,
}

impl OpenAiSse {
    /// An encoder for one response.
    pub fn new(kind: Kind, model: &str, include_usage: bool, prompt_estimate: u32) -> Self {
        let (id, object) = match kind {
            Kind::Chat => (new_id("chatcmpl-"), "chat.completion.chunk"),
            Kind::Completion => (new_id("cmpl-"), "text_completion"),
        };
        let model = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
        // `system_fingerprint` is a string or absent in the API reference, never null:
        // it is written on the last chunks, once the upstream has said it.
        let start = format!(
            "data: {{\"id\":\"{id}\",\"object\":\"{object}\",\"created\":{},\"model\":{model}",
            unix_now()
        );
        let head = format!("{start},\"choices\":[");
        OpenAiSse {
            kind,
            start,
            head,
            include_usage,
            sent_role: false,
            deltas: 0,
            prompt_estimate,
            logprobs: None,
            called_tools: false,
        }
    }

    fn choice_end(&mut self, buf: &mut BytesMut, finish: Option<&str>) {
        buf.put_slice(b",\"logprobs\":");
        match self.logprobs.take() {
            Some(l) => {
                let _ = serde_json::to_writer((&mut *buf).writer(), &choice_logprobs(l));
            }
            None => buf.put_slice(b"null"),
        }
        buf.put_slice(b",\"finish_reason\":");
        match finish {
            Some(f) => {
                buf.put_u8(b'"');
                buf.put_slice(f.as_bytes());
                buf.put_u8(b'"');
            }
            None => buf.put_slice(b"null"),
        }
        buf.put_slice(b"}]}\n\n");
    }

    /// The head of a closing chunk: with the upstream's fingerprint when it gave one.
    fn closing_head(&self, buf: &mut BytesMut, details: Option<&DoneDetails>) {
        let fingerprint = details.and_then(|d| d.system_fingerprint.as_deref());
        let vendor = DoneDetails::fields_for(details, WireDialect::OpenAi);
        if fingerprint.is_none() && vendor.is_none() {
            return buf.put_slice(self.head.as_bytes());
        }
        buf.put_slice(self.start.as_bytes());
        if let Some(fp) = fingerprint {
            buf.put_slice(b",\"system_fingerprint\":");
            push_json_str(buf, fp);
        }
        // The upstream's vendor fields, on the closing chunks as the upstream sent them.
        for (k, v) in vendor.into_iter().flatten() {
            buf.put_slice(b",");
            push_json_str(buf, k);
            buf.put_slice(b":");
            let _ = serde_json::to_writer((&mut *buf).writer(), v);
        }
        buf.put_slice(b",\"choices\":[");
    }

    /// Opens a chat chunk's delta, with the role on the first one.
    fn delta_start(&mut self, buf: &mut BytesMut) {
        buf.put_slice(self.head.as_bytes());
        self.delta_open(buf);
    }

    fn delta_open(&mut self, buf: &mut BytesMut) {
        if self.sent_role {
            buf.put_slice(b"{\"index\":0,\"delta\":{");
        } else {
            self.sent_role = true;
            buf.put_slice(b"{\"index\":0,\"delta\":{\"role\":\"assistant\",");
        }
    }

    fn text_chunk(&mut self, text: &str, finish: Option<&str>, buf: &mut BytesMut) {
        buf.put_slice(self.head.as_bytes());
        self.choice(text, finish, buf);
    }

    fn choice(&mut self, text: &str, finish: Option<&str>, buf: &mut BytesMut) {
        match self.kind {
            Kind::Chat => {
                self.delta_open(buf);
                buf.put_slice(b"\"content\":");
                push_json_str(buf, text);
                buf.put_u8(b'}');
            }
            Kind::Completion => {
                buf.put_slice(b"{\"index\":0,\"text\":");
                push_json_str(buf, text);
            }
        }
        self.choice_end(buf, finish);
    }

    fn reasoning_chunk(&mut self, text: &str, buf: &mut BytesMut) {
        self.delta_start(buf);
        buf.put_slice(b"\"reasoning_content\":");
        push_json_str(buf, text);
        buf.put_u8(b'}');
        self.choice_end(buf, None);
    }

    /// A piece of a tool call in OpenAI's shape: id, type and name on the first piece
    /// of a call, argument text on every piece.
    fn tool_chunk(&mut self, d: &ToolCallDelta, buf: &mut BytesMut) {
        self.called_tools = true;
        self.delta_start(buf);
        buf.put_slice(b"\"tool_calls\":[{\"index\":");
        buf.put_slice(d.index.to_string().as_bytes());
        if let Some(id) = &d.id {
            buf.put_slice(b",\"id\":");
            push_json_str(buf, id);
            buf.put_slice(b",\"type\":\"function\"");
        }
        buf.put_slice(b",\"function\":{");
        if let Some(name) = &d.name {
            buf.put_slice(b"\"name\":");
            push_json_str(buf, name);
            buf.put_u8(b',');
        }
        buf.put_slice(b"\"arguments\":");
        push_json_str(buf, &d.arguments);
        buf.put_slice(b"}}]}");
        self.choice_end(buf, None);
    }
}

impl Encoder for OpenAiSse {
    fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
        match ev {
            Event::Delta(t) => {
                self.deltas += 1;
                self.text_chunk(t, None, buf);
            }
            Event::Reasoning(t) if self.kind == Kind::Chat => {
                self.deltas += 1;
                self.reasoning_chunk(t, buf);
            }
            Event::ToolCall(d) if self.kind == Kind::Chat => {
                self.deltas += 1;
                self.tool_chunk(d, buf);
            }
            // A legacy completion has no place for reasoning or tool calls (and asks
            // for no tools).
            Event::Reasoning(_) | Event::ToolCall(_) => {}
            Event::Logprobs(l) => self.logprobs.get_or_insert_with(Vec::new).extend(l.iter().cloned()),
            Event::Done { finish_reason, usage, details, .. } => {
                let details = details.as_deref();
                let finish = if self.called_tools && *finish_reason == FinishReason::Stop {
                    FinishReason::ToolCalls.as_str()
                } else {
                    DoneDetails::finish_reason(details, *finish_reason)
                };
                self.closing_head(buf, details);
                self.choice("", Some(finish), buf);
                if self.include_usage {
                    let u = usage_or_estimate(*usage, details, self.prompt_estimate, self.deltas);
                    // The head ends inside `"choices":[`: close it empty, then the usage.
                    self.closing_head(buf, details);
                    buf.put_slice(b"],\"usage\":");
                    let _ = serde_json::to_writer((&mut *buf).writer(), &u);
                    buf.put_slice(b"}\n\n");
                }
                buf.put_slice(b"data: [DONE]\n\n");
            }
        }
    }

    fn error(&mut self, err: &GatewayError, buf: &mut BytesMut) {
        buf.put_slice(b"data: ");
        let _ = serde_json::to_writer((&mut *buf).writer(), &error_body(err));
        buf.put_slice(b"\n\n");
    }

    fn keepalive(&self) -> Option<&'static [u8]> {
        Some(b": keep-alive\n\n")
    }
}

/// The backend's usage with the upstream's details, or an estimate: prompt characters
/// / 4 and one token per delta.
pub fn usage_or_estimate(
    usage: Option<Usage>,
    details: Option<&DoneDetails>,
    prompt_estimate: u32,
    deltas: u32,
) -> oa::Usage {
    let u = usage.unwrap_or(Usage { prompt_tokens: prompt_estimate, completion_tokens: deltas });
    oa::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        details: details.filter(|_| usage.is_some()).map(|d| d.usage.clone()).unwrap_or_default(),
    }
}

/// An embedding as base64 of little-endian f32s, as OpenAI's `encoding_format: base64`.
pub fn base64_vector(v: &[f32]) -> oa::EmbeddingVector {
    use base64::Engine as _;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    oa::EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The OpenAI error object for `err`. An upstream's own `type`, `code` and `param`
/// are passed on as it sent them (clients act on `context_length_exceeded`).
pub fn error_body(err: &GatewayError) -> oa::ErrorResponse {
    let status = err.status_code().as_u16();
    let kind = match status {
        // OpenAI's own type for a spent quota; clients tell it from a rate limit by it.
        _ if matches!(err, GatewayError::QuotaExceeded { .. }) => "insufficient_quota",
        401 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let upstream = err.upstream_detail();
    oa::ErrorResponse {
        error: oa::ErrorBody {
            message: err.client_message(),
            kind: Some(upstream.and_then(|d| d.kind.clone()).unwrap_or_else(|| kind.to_owned())),
            param: err.param().map(str::to_owned),
            code: Some(
                upstream
                    .and_then(|d| d.code.clone())
                    .unwrap_or_else(|| serde_json::Value::String(err.error_type().to_owned())),
            ),
        },
    }
}

/// An error event ending a stream whose headers left already: the error object with
/// the `status` the response would have had, then `[DONE]`.
pub fn stream_error(err: &GatewayError) -> bytes::Bytes {
    let mut v = serde_json::to_value(error_body(err)).unwrap_or_default();
    v["error"]["status"] = err.status_code().as_u16().into();
    if let Some(after) = err.retry_after() {
        v["error"]["retry_after_ms"] = u64::try_from(after.as_millis()).unwrap_or(u64::MAX).into();
    }
    bytes::Bytes::from(format!("data: {v}\n\ndata: [DONE]\n\n"))
}

/// An error response in OpenAI's shape, with its retry headers.
pub fn error_response(err: &GatewayError) -> Response {
    let mut resp = (err.status_code(), Json(error_body(err))).into_response();
    crate::api::retry_headers(err, resp.headers_mut());
    resp
}

/// A whole chat completion.
pub fn chat_completion(model: &str, answer: Answer, prompt_estimate: u32) -> oa::ChatCompletion {
    let end = Ending::of(&answer, prompt_estimate);
    let tool_calls =
        (!answer.tool_calls.is_empty()).then(|| answer.tool_calls.into_iter().map(wire_tool_call).collect());
    // A turn that only called tools has no content (OpenAI sends null).
    let content = (!answer.text.is_empty() || tool_calls.is_none()).then_some(answer.text);
    oa::ChatCompletion {
        id: new_id("chatcmpl-"),
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![oa::ChatChoice {
            index: 0,
            message: oa::AssistantMessage {
                role: "assistant".into(),
                content,
                refusal: None,
                reasoning_content: (!answer.reasoning.is_empty()).then_some(answer.reasoning),
                tool_calls,
            },
            finish_reason: Some(end.finish),
            logprobs: answer.logprobs.map(choice_logprobs),
        }],
        usage: Some(end.usage),
        system_fingerprint: end.fingerprint,
        extra: end.fields,
    }
}

/// A whole legacy completion.
pub fn completion(model: &str, answer: Answer, prompt_estimate: u32) -> oa::Completion {
    let end = Ending::of(&answer, prompt_estimate);
    oa::Completion {
        id: new_id("cmpl-"),
        object: "text_completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![oa::CompletionChoice {
            text: answer.text,
            index: 0,
            logprobs: None,
            finish_reason: Some(end.finish),
        }],
        usage: Some(end.usage),
        system_fingerprint: end.fingerprint,
    }
}

/// How a whole answer ended, in OpenAI's terms.
struct Ending {
    finish: String,
    usage: oa::Usage,
    fingerprint: Option<String>,
    fields: oa::Fields,
}

impl Ending {
    fn of(answer: &Answer, prompt_estimate: u32) -> Ending {
        let details = answer.details.as_deref();
        let finish = match answer.finish_reason {
            // The answer says `tool_calls` when it holds calls, whatever the upstream said.
            FinishReason::ToolCalls => FinishReason::ToolCalls.as_str(),
            f => DoneDetails::finish_reason(details, f),
        };
        Ending {
            finish: finish.to_owned(),
            usage: usage_or_estimate(answer.usage, details, prompt_estimate, answer.deltas),
            fingerprint: details.and_then(|d| d.system_fingerprint.clone()),
            fields: DoneDetails::fields_for(details, WireDialect::OpenAi).cloned().unwrap_or_default(),
        }
    }
}

/// A canonical tool call in OpenAI's shape.
pub fn wire_tool_call(c: ToolCall) -> oa::ToolCall {
    oa::ToolCall {
        id: c.id,
        kind: "function".into(),
        function: oa::FunctionCall { name: c.name, arguments: c.arguments },
    }
}

/// Canonical log probabilities in OpenAI's shape.
pub fn choice_logprobs(l: Vec<TokenLogprob>) -> oa::ChoiceLogprobs {
    let content = l
        .into_iter()
        .map(|t| oa::TokenLogprob {
            token: t.token,
            logprob: t.logprob,
            bytes: t.bytes,
            top_logprobs: t
                .top
                .into_iter()
                .map(|a| oa::TopLogprob { token: a.token, logprob: a.logprob, bytes: a.bytes })
                .collect(),
        })
        .collect();
    oa::ChoiceLogprobs { content: Some(content) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::chat::FinishReason;

    fn events(enc: &mut OpenAiSse, evs: &[Event]) -> Vec<serde_json::Value> {
        let mut buf = BytesMut::new();
        for e in evs {
            enc.event(e, &mut buf);
        }
        let text = String::from_utf8(buf.to_vec()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        text.split("\n\n")
            .filter(|l| !l.is_empty() && *l != "data: [DONE]")
            .map(|l| serde_json::from_str(l.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn chat_chunks_are_valid_json_with_usage_last() {
        let mut enc = OpenAiSse::new(Kind::Chat, "m\"x", true, 3);
        let done = Event::Done {
            finish_reason: FinishReason::Length,
            usage: Some(Usage { prompt_tokens: 5, completion_tokens: 2 }),
            timings: None,
            details: None,
        };
        let v = events(&mut enc, &[Event::Delta("a\n\"b".into()), Event::Delta("c".into()), done]);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v[0]["choices"][0]["delta"]["content"], "a\n\"b");
        assert_eq!(v[0]["model"], "m\"x");
        assert_eq!(v[0]["object"], "chat.completion.chunk");
        assert!(v[1]["choices"][0]["delta"].get("role").is_none());
        assert_eq!(v[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(v[3]["choices"], serde_json::json!([]));
        assert_eq!(v[3]["usage"]["total_tokens"], 7);
        assert_eq!(v[0]["id"], v[3]["id"]);
    }

    #[test]
    fn tool_call_pieces_reasoning_and_logprobs_keep_openais_shape() {
        let mut enc = OpenAiSse::new(Kind::Chat, "m", false, 0);
        let piece = |id: Option<&str>, name: Option<&str>, args: &str| {
            Event::ToolCall(ToolCallDelta {
                index: 0,
                id: id.map(Into::into),
                name: name.map(Into::into),
                arguments: args.into(),
            })
        };
        let lp = TokenLogprob { token: "x".into(), logprob: -0.5, bytes: Some(vec![120]), top: Vec::new() };
        let done =
            Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None, details: None };
        let v = events(
            &mut enc,
            &[
                Event::Reasoning("hm".into()),
                Event::Logprobs(vec![lp]),
                Event::Delta("x".into()),
                piece(Some("c1"), Some("f"), "{\"a\""),
                piece(None, None, ":1}"),
                done,
            ],
        );
        assert_eq!(v[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v[0]["choices"][0]["delta"]["reasoning_content"], "hm");
        assert_eq!(v[1]["choices"][0]["delta"]["content"], "x");
        assert_eq!(
            v[1]["choices"][0]["logprobs"]["content"][0]["logprob"], -0.5,
            "with the text they describe"
        );
        let first = &v[2]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!((first["id"].as_str(), first["type"].as_str()), (Some("c1"), Some("function")));
        assert_eq!(
            (first["function"]["name"].as_str(), first["function"]["arguments"].as_str()),
            (Some("f"), Some("{\"a\""))
        );
        let next = &v[3]["choices"][0]["delta"]["tool_calls"][0];
        assert!(next.get("id").is_none() && next["function"].get("name").is_none(), "{next}");
        assert_eq!(next["function"]["arguments"], ":1}");
        assert_eq!(v[4]["choices"][0]["finish_reason"], "tool_calls", "a turn that called tools says so");
    }

    #[test]
    fn a_whole_answer_of_tool_calls_has_null_content() {
        let answer = Answer {
            tool_calls: vec![ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into() }],
            reasoning: "hm".into(),
            finish_reason: FinishReason::ToolCalls,
            ..Answer::default()
        };
        let v = serde_json::to_value(chat_completion("m", answer, 1)).unwrap();
        let m = &v["choices"][0]["message"];
        assert!(m["content"].is_null(), "{v}");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(m["reasoning_content"], "hm");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn completion_chunks() {
        let mut enc = OpenAiSse::new(Kind::Completion, "m", false, 0);
        let done =
            Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None, details: None };
        let v = events(&mut enc, &[Event::Delta("x".into()), done]);
        assert_eq!(v[0]["object"], "text_completion");
        assert_eq!(v[0]["choices"][0]["text"], "x");
        assert_eq!(v[1]["choices"][0]["finish_reason"], "stop");
    }
}
