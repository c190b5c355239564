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
    chat::{Event, Usage},
    error::GatewayError,
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
    /// `data: {"id":…,"choices":[` — everything before the choice.
    head: String,
    include_usage: bool,
    sent_role: bool,
    deltas: u32,
    prompt_estimate: u32,
}

impl OpenAiSse {
    /// An encoder for one response.
    pub fn new(kind: Kind, model: &str, include_usage: bool, prompt_estimate: u32) -> Self {
        let (id, object) = match kind {
            Kind::Chat => (new_id("chatcmpl-"), "chat.completion.chunk"),
            Kind::Completion => (new_id("cmpl-"), "text_completion"),
        };
        let model = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
        let head = format!(
            "data: {{\"id\":\"{id}\",\"object\":\"{object}\",\"created\":{},\"model\":{model},\"system_fingerprint\":null,\"choices\":[",
            unix_now()
        );
        OpenAiSse { kind, head, include_usage, sent_role: false, deltas: 0, prompt_estimate }
    }

    fn choice_end(buf: &mut BytesMut, finish: Option<&str>) {
        buf.put_slice(b",\"logprobs\":null,\"finish_reason\":");
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

    fn text_chunk(&mut self, text: &str, finish: Option<&str>, buf: &mut BytesMut) {
        buf.put_slice(self.head.as_bytes());
        match self.kind {
            Kind::Chat => {
                if self.sent_role {
                    buf.put_slice(b"{\"index\":0,\"delta\":{\"content\":");
                } else {
                    self.sent_role = true;
                    buf.put_slice(b"{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":");
                }
                push_json_str(buf, text);
                buf.put_u8(b'}');
            }
            Kind::Completion => {
                buf.put_slice(b"{\"index\":0,\"text\":");
                push_json_str(buf, text);
            }
        }
        Self::choice_end(buf, finish);
    }
}

impl Encoder for OpenAiSse {
    fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
        match ev {
            Event::Delta(t) => {
                self.deltas += 1;
                self.text_chunk(t, None, buf);
            }
            Event::Done { finish_reason, usage, .. } => {
                self.text_chunk("", Some(finish_reason.as_str()), buf);
                if self.include_usage {
                    let u = usage_or_estimate(*usage, self.prompt_estimate, self.deltas);
                    // The head ends inside `"choices":[`: close it empty, then the usage.
                    buf.put_slice(self.head.as_bytes());
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

/// The backend's usage, or an estimate: prompt characters / 4 and one token per delta.
pub fn usage_or_estimate(usage: Option<Usage>, prompt_estimate: u32, deltas: u32) -> oa::Usage {
    let u = usage.unwrap_or(Usage { prompt_tokens: prompt_estimate, completion_tokens: deltas });
    oa::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
    }
}

/// An embedding as base64 of little-endian f32s, as OpenAI's `encoding_format: base64`.
pub fn base64_vector(v: &[f32]) -> oa::EmbeddingVector {
    use base64::Engine as _;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    oa::EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The OpenAI error object for `err`.
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
    oa::ErrorResponse {
        error: oa::ErrorBody {
            message: err.client_message(),
            kind: Some(kind.to_owned()),
            param: err.param().map(str::to_owned),
            code: Some(serde_json::Value::String(err.error_type().to_owned())),
        },
    }
}

/// An error response in OpenAI's shape, with `Retry-After` when it applies.
pub fn error_response(err: &GatewayError) -> Response {
    let mut resp = (err.status_code(), Json(error_body(err))).into_response();
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs().max(1);
        resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

/// A whole chat completion.
pub fn chat_completion(model: &str, text: String, done: &Event, prompt_estimate: u32) -> oa::ChatCompletion {
    let (finish, usage) = finish_and_usage(done, prompt_estimate, &text);
    oa::ChatCompletion {
        id: new_id("chatcmpl-"),
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![oa::ChatChoice {
            index: 0,
            message: oa::AssistantMessage { role: "assistant".into(), content: Some(text) },
            finish_reason: Some(finish.to_owned()),
            logprobs: None,
        }],
        usage: Some(usage),
    }
}

/// A whole legacy completion.
pub fn completion(model: &str, text: String, done: &Event, prompt_estimate: u32) -> oa::Completion {
    let (finish, usage) = finish_and_usage(done, prompt_estimate, &text);
    oa::Completion {
        id: new_id("cmpl-"),
        object: "text_completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![oa::CompletionChoice {
            text,
            index: 0,
            logprobs: None,
            finish_reason: Some(finish.to_owned()),
        }],
        usage: Some(usage),
    }
}

fn finish_and_usage(done: &Event, prompt_estimate: u32, text: &str) -> (&'static str, oa::Usage) {
    match done {
        Event::Done { finish_reason, usage, .. } => {
            let deltas = u32::from(!text.is_empty());
            (finish_reason.as_str(), usage_or_estimate(*usage, prompt_estimate, deltas))
        }
        Event::Delta(_) => ("stop", usage_or_estimate(None, prompt_estimate, 0)),
    }
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
    fn completion_chunks() {
        let mut enc = OpenAiSse::new(Kind::Completion, "m", false, 0);
        let done = Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None };
        let v = events(&mut enc, &[Event::Delta("x".into()), done]);
        assert_eq!(v[0]["object"], "text_completion");
        assert_eq!(v[0]["choices"][0]["text"], "x");
        assert_eq!(v[1]["choices"][0]["finish_reason"], "stop");
    }
}
