//! The OpenAI reply encoder for `/v1/chat/completions` and `/v1/completions`: SSE
//! chunks pre-formatted once per request, so each token costs one buffer and a copy.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use crate::error::Dialect;
use crate::plan::{ARGS_CLOSE, ARGS_OPEN, Finish, Part, Shape, logprob, push_token, reply_text};
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
    /// What the tokens are.
    shape: Shape,
    /// Reasoning and argument pieces: prefix before the token text (the suffix is the
    /// text's, since every delta closes the same way).
    reasoning_prefix: String,
    argument_prefix: String,
    /// Closes an argument piece (its string, function, call, list and delta).
    argument_suffix: String,
    /// Whether the call's first piece (with its id and name) went out.
    call_opened: bool,
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
        shape: Shape,
    ) -> SseEncoder {
        let (id, object) = match kind {
            Kind::Chat => (format!("chatcmpl-mock-{seq}"), "chat.completion.chunk"),
            Kind::Completion => (format!("cmpl-mock-{seq}"), "text_completion"),
        };
        let model_json = Value::from(model).to_string();
        // As OpenAI does: every chunk names the serving configuration.
        let vendor = if shape.vendor { format!("{},", crate::plan::VENDOR_FIELDS) } else { String::new() };
        let head = format!(
            r#"data: {{"id":"{id}","object":"{object}","created":{created},"model":{model_json},"system_fingerprint":"{FINGERPRINT}",{vendor}"#
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
            reasoning_prefix: format!(r#"{head}"choices":[{{"index":0,"delta":{{"reasoning_content":""#),
            argument_prefix: format!(
                r#"{head}"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":""#
            ),
            argument_suffix: close(r#""}}]},"logprobs":null,"finish_reason":null}]"#, include_usage),
            call_opened: false,
            shape,
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

impl SseEncoder {
    /// The call's first piece: index, id, type, name and the first argument text.
    fn open_call(&mut self, arguments: &str) -> Bytes {
        self.call_opened = true;
        let call = json!([{
            "index": 0,
            "id": format!("call_{}", self.id),
            "type": "function",
            "function": {"name": self.shape.call.clone().unwrap_or_default(), "arguments": arguments},
        }]);
        self.chunk(&format!(
            r#""choices":[{{"index":0,"delta":{{"tool_calls":{call}}},"logprobs":null,"finish_reason":null}}]"#
        ))
    }

    /// A text token with its log probability and alternatives.
    fn logprob_token(&self, index: usize) -> Bytes {
        let content = json!({"content": [token_logprob(index, self.shape.logprobs.unwrap_or(0))]});
        self.chunk(&format!(
            r#""choices":[{{"index":0,"delta":{{"content":"t{index} "}},"logprobs":{content},"finish_reason":null}}]"#
        ))
    }

    /// The finish reason as OpenAI says it: a turn that called a tool ends `tool_calls`.
    fn finish_reason(&self, finish: Finish) -> &'static str {
        match finish {
            Finish::Stop if self.shape.call.is_some() && self.kind == Kind::Chat => "tool_calls",
            f => f.as_str(),
        }
    }
}

/// Token `index` in OpenAI's log-probability shape, with `top` alternatives.
fn token_logprob(index: usize, top: u8) -> Value {
    let token = format!("t{index} ");
    let alternatives: Vec<Value> = (0..usize::from(top))
        .map(|k| {
            let t = if k == 0 { token.clone() } else { format!("a{k} ") };
            json!({"token": t, "logprob": logprob(index, k), "bytes": t.as_bytes()})
        })
        .collect();
    json!({"token": token, "logprob": logprob(index, 0), "bytes": token.as_bytes(), "top_logprobs": alternatives})
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
        let part = if self.kind == Kind::Chat { self.shape.part(index) } else { Part::Text };
        let prefix = match part {
            Part::Text if self.shape.logprobs.is_some() => return self.logprob_token(index),
            Part::Text => &self.token_prefix,
            Part::Reasoning => &self.reasoning_prefix,
            Part::Argument { first: true } => return self.open_call(&format!("{ARGS_OPEN}t{index} ")),
            Part::Argument { first: false } => &self.argument_prefix,
        };
        let suffix = if part == Part::Text || part == Part::Reasoning {
            &self.token_suffix
        } else {
            &self.argument_suffix
        };
        let mut out = BytesMut::with_capacity(prefix.len() + suffix.len() + 24);
        out.extend_from_slice(prefix.as_bytes());
        push_token(&mut out, index);
        out.extend_from_slice(suffix.as_bytes());
        out.freeze()
    }

    fn garbage(&self) -> Bytes {
        Bytes::from_static(b"data: {not json\n\n")
    }

    fn end(&mut self, produced: usize, finish: Finish, _timing: Timing) -> Vec<Bytes> {
        let reason = self.finish_reason(finish);
        let mut events = Vec::new();
        if self.shape.call.is_some() && self.kind == Kind::Chat {
            // Close the arguments (or send the whole call, if no token was an argument).
            events.push(if self.call_opened {
                let close = Value::from(ARGS_CLOSE).to_string();
                self.chunk(&format!(
                    r#""choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":{close}}}}}]}},"logprobs":null,"finish_reason":null}}]"#
                ))
            } else {
                self.open_call(&format!("{ARGS_OPEN}{ARGS_CLOSE}"))
            });
        }
        let last = match self.kind {
            Kind::Chat => format!(
                r#""choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{reason}"}}]"#
            ),
            Kind::Completion => {
                format!(r#""choices":[{{"text":"","index":0,"logprobs":null,"finish_reason":"{reason}"}}]"#)
            }
        };
        events.push(self.chunk(&last));
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
            Kind::Chat => {
                let (reasoning, text, args) = self.shape.split(produced);
                let mut message = json!({"role": "assistant", "content": text, "refusal": null});
                if !reasoning.is_empty() {
                    message["reasoning_content"] = reasoning.into();
                }
                if let Some(args) = args {
                    message["content"] = Value::Null;
                    message["tool_calls"] = json!([{
                        "id": format!("call_{}", self.id),
                        "type": "function",
                        "function": {"name": self.shape.call, "arguments": args},
                    }]);
                }
                let logprobs = self.shape.logprobs.map(|top| {
                    let content: Vec<Value> = (0..produced)
                        .filter(|i| self.shape.part(*i) == Part::Text)
                        .map(|i| token_logprob(i, top))
                        .collect();
                    json!({"content": content})
                });
                let choice = json!({
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": self.finish_reason(finish),
                });
                ("chat.completion", choice)
            }
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
        let mut reply = json!({
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
        if self.shape.vendor {
            let vendor: Value =
                serde_json::from_str(&format!("{{{}}}", crate::plan::VENDOR_FIELDS)).unwrap_or_default();
            if let (Some(r), Value::Object(v)) = (reply.as_object_mut(), vendor) {
                r.extend(v);
            }
        }
        Bytes::from(reply.to_string())
    }
}
