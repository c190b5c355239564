//! The OpenAI reply encoder for `/v1/chat/completions` and `/v1/completions`: SSE
//! chunks pre-formatted once per request, so each token costs one buffer and a copy.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use crate::error::Dialect;
use crate::plan::{Finish, push_token, reply_text};
use crate::reply::{Encoder, Timing};

/// The `system_fingerprint` every answer carries.
pub(crate) const FINGERPRINT: &str = "fp_mock";

/// Which OpenAI endpoint the reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `chat.completion` / `chat.completion.chunk`.
    Chat,
    /// Legacy `text_completion`.
    Completion,
}

/// Pre-formatted pieces of one request's chunks.
#[derive(Debug)]
pub(crate) struct SseEncoder {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    prompt_tokens: usize,
    /// `data: {"id":…,"object":…,"created":…,"model":…,` shared by every chunk.
    head: String,
    /// Everything after the head up to the token text.
    token_prefix: String,
    /// Everything after the token text up to the blank line.
    token_suffix: String,
}

impl SseEncoder {
    /// An encoder for one reply.
    pub(crate) fn new(
        kind: Kind,
        seq: u64,
        created: u64,
        model: &str,
        include_usage: bool,
        prompt_tokens: usize,
    ) -> SseEncoder {
        let (id, object) = match kind {
            Kind::Chat => (format!("chatcmpl-mock-{seq}"), "chat.completion.chunk"),
            Kind::Completion => (format!("cmpl-mock-{seq}"), "text_completion"),
        };
        let model_json = Value::from(model).to_string();
        // As OpenAI does: every chunk names the serving configuration.
        let head = format!(
            r#"data: {{"id":"{id}","object":"{object}","created":{created},"model":{model_json},"system_fingerprint":"{FINGERPRINT}","#
        );
        let token_prefix = match kind {
            Kind::Chat => r#""choices":[{"index":0,"delta":{"content":""#,
            Kind::Completion => r#""choices":[{"text":""#,
        };
        let token_choice_end = match kind {
            Kind::Chat => r#""},"logprobs":null,"finish_reason":null}]"#,
            Kind::Completion => r#"","index":0,"logprobs":null,"finish_reason":null}]"#,
        };
        SseEncoder {
            token_prefix: format!("{head}{token_prefix}"),
            token_suffix: close(token_choice_end, include_usage),
            kind,
            id,
            created,
            model: model.to_owned(),
            include_usage,
            prompt_tokens,
            head,
        }
    }

    fn chunk(&self, choices: &str) -> Bytes {
        Bytes::from(format!("{}{}", self.head, close(choices, self.include_usage)))
    }

    /// The `usage` object, fields and details in OpenAI's order.
    fn usage(&self, produced: usize) -> String {
        let prompt = self.prompt_tokens;
        format!(
            r#"{{"prompt_tokens":{prompt},"completion_tokens":{produced},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0}}}}"#,
            prompt + produced
        )
    }
}

/// `choices`, then the `"usage":null` OpenAI adds to every chunk when usage was asked
/// for, then the end of the event.
fn close(choices: &str, include_usage: bool) -> String {
    let usage = if include_usage { r#","usage":null"# } else { "" };
    format!("{choices}{usage}}}\n\n")
}

impl Encoder for SseEncoder {
    const DIALECT: Dialect = Dialect::OpenAi;
    const STREAM_CONTENT_TYPE: &'static str = "text/event-stream";

    fn preamble(&mut self) -> Option<Bytes> {
        match self.kind {
            Kind::Chat => Some(self.chunk(
                r#""choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            )),
            Kind::Completion => None,
        }
    }

    fn token(&mut self, index: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(self.token_prefix.len() + self.token_suffix.len() + 24);
        out.extend_from_slice(self.token_prefix.as_bytes());
        push_token(&mut out, index);
        out.extend_from_slice(self.token_suffix.as_bytes());
        out.freeze()
    }

    fn garbage(&self) -> Bytes {
        Bytes::from_static(b"data: {not json\n\n")
    }

    fn end(&mut self, produced: usize, finish: Finish, _timing: Timing) -> Vec<Bytes> {
        let reason = finish.as_str();
        let last = match self.kind {
            Kind::Chat => format!(
                r#""choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{reason}"}}]"#
            ),
            Kind::Completion => {
                format!(r#""choices":[{{"text":"","index":0,"logprobs":null,"finish_reason":"{reason}"}}]"#)
            }
        };
        let mut events = vec![self.chunk(&last)];
        if self.include_usage {
            let usage = format!("{}\"choices\":[],\"usage\":{}}}\n\n", self.head, self.usage(produced));
            events.push(Bytes::from(usage));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn whole(&self, produced: usize, finish: Finish, _timing: Timing) -> Bytes {
        let text = reply_text(produced);
        let (object, choice) = match self.kind {
            Kind::Chat => (
                "chat.completion",
                json!({
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": finish.as_str(),
                }),
            ),
            Kind::Completion => (
                "text_completion",
                json!({
                    "text": text,
                    "index": 0,
                    "logprobs": null,
                    "finish_reason": finish.as_str(),
                }),
            ),
        };
        let reply = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": produced,
                "total_tokens": self.prompt_tokens + produced,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        });
        Bytes::from(reply.to_string())
    }
}
