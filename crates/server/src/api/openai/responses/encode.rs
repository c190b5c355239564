//! Responses API encodings: the whole `response` object, and the typed server-sent
//! events of a streamed one.
//!
//! A stream opens with `response.created` and `response.in_progress`, then each output
//! item (reasoning, message, function call) in order: `response.output_item.added`,
//! its content part, its deltas, and the matching `.done` events; it ends with
//! `response.completed` (or `response.incomplete` when cut by the token cap), or with
//! `error` and `response.failed`. Every event carries `sequence_number`. The per-token
//! lines are a head written once per item plus the sequence number and the
//! JSON-escaped delta, so a delta costs the same whichever kind of item it extends. A
//! response to be stored is stored before the frame with its last event leaves.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};
use sluice_protocol::responses as wire;

use super::{Echo, stored::Keep};
use crate::api::{
    openai::encode::{new_id, unix_now, usage_or_estimate},
    stream_body::{Encoder, push_json_str},
};
use futures_util::future::BoxFuture;
use sluice_core::{
    answer::Answer,
    chat::{DoneDetails, Event, FinishReason, Usage},
    error::GatewayError,
    tools::ToolCallDelta,
};

/// An output item as it is being built.
enum Item {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
    Call { id: String, index: u32, call_id: String, name: String, args: String },
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Reasoning { id, .. } | Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    fn wire(&self, status: &str) -> wire::OutputItem {
        match self {
            Item::Reasoning { id, text } => wire::OutputItem::Reasoning {
                id: id.clone(),
                summary: Vec::new(),
                content: vec![wire::ContentPart::ReasoningText { text: text.clone() }],
                status: status.into(),
            },
            Item::Message { id, text } => wire::OutputItem::Message {
                id: id.clone(),
                status: status.into(),
                role: "assistant".into(),
                content: vec![output_text(text)],
            },
            Item::Call { id, call_id, name, args, .. } => wire::OutputItem::FunctionCall {
                id: id.clone(),
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: args.clone(),
                status: status.into(),
            },
        }
    }
}

fn output_text(text: &str) -> wire::ContentPart {
    wire::ContentPart::OutputText { text: text.to_owned(), annotations: Vec::new(), logprobs: Vec::new() }
}

/// How an answer that ended for `finish` is reported: its status and why it is
/// incomplete, if it is.
fn status_of(finish: FinishReason) -> (&'static str, Option<wire::IncompleteDetails>) {
    let incomplete = |reason: &str| Some(wire::IncompleteDetails { reason: reason.into() });
    match finish {
        FinishReason::Length => ("incomplete", incomplete("max_output_tokens")),
        FinishReason::ContentFilter => ("incomplete", incomplete("content_filter")),
        FinishReason::Stop | FinishReason::ToolCalls => ("completed", None),
    }
}

/// The usage block, from the backend's counts and details or an estimate.
fn usage(
    usage: Option<Usage>,
    details: Option<&DoneDetails>,
    prompt_estimate: u32,
    deltas: u32,
) -> wire::ResponseUsage {
    let u = usage_or_estimate(usage, details, prompt_estimate, deltas);
    let detail = |outer: &str, inner: &str| {
        u.details.get(outer).and_then(|d| d.get(inner)).and_then(Value::as_u64).map_or(0, |n| n as u32)
    };
    wire::ResponseUsage {
        input_tokens: u.prompt_tokens,
        input_tokens_details: wire::InputTokensDetails {
            cached_tokens: detail("prompt_tokens_details", "cached_tokens"),
            cache_write_tokens: 0,
        },
        output_tokens: u.completion_tokens,
        output_tokens_details: wire::OutputTokensDetails {
            reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens"),
        },
        total_tokens: u.total_tokens,
    }
}

/// A whole `response` object.
pub fn whole(echo: &Echo, answer: Answer, prompt_estimate: u32) -> wire::Response {
    let (status, incomplete) = status_of(answer.finish_reason);
    let mut r = echo.response(&new_id("resp_"), unix_now(), status);
    r.incomplete_details = incomplete;
    if !answer.reasoning.is_empty() {
        r.output.push(Item::Reasoning { id: new_id("rs_"), text: answer.reasoning }.wire(status));
    }
    if !answer.text.is_empty() || answer.tool_calls.is_empty() {
        r.output.push(Item::Message { id: new_id("msg_"), text: answer.text }.wire(status));
    }
    for c in answer.tool_calls {
        r.output.push(wire::OutputItem::FunctionCall {
            id: new_id("fc_"),
            call_id: c.id,
            name: c.name,
            arguments: c.arguments,
            status: status.into(),
        });
    }
    r.usage = Some(usage(answer.usage, answer.details.as_deref(), prompt_estimate, answer.deltas));
    r
}

/// The `error` event ending a stream, numbered `seq`.
pub fn error_event(err: &GatewayError, seq: u64, buf: &mut BytesMut) {
    let body = json!({
        "type": "error",
        "sequence_number": seq,
        "code": err.error_type(),
        "message": err.client_message(),
        "param": err.param(),
        "status": err.status_code().as_u16(),
    });
    buf.put_slice(b"event: error\ndata: ");
    let _ = serde_json::to_writer((&mut *buf).writer(), &body);
    buf.put_slice(b"\n\n");
}

/// SSE encoder for a streamed response.
pub struct ResponsesSse {
    echo: Echo,
    id: String,
    created_at: u64,
    prompt_estimate: u32,
    /// The next event's `sequence_number`.
    seq: u64,
    started: bool,
    /// Every output item so far; the last one is still streaming when `open`.
    items: Vec<Item>,
    open: bool,
    /// The open item's delta line up to its sequence number.
    delta_head: String,
    /// Text, reasoning and tool-call events seen (a stand-in token count).
    deltas: u32,
    /// Stores the response once it ends.
    keep: Option<Keep>,
    /// Its write, which the end of the stream waits for.
    saving: Option<BoxFuture<'static, bool>>,
}

impl ResponsesSse {
    /// An encoder for one response.
    pub fn new(echo: Echo, prompt_estimate: u32, keep: Option<Keep>) -> Self {
        ResponsesSse {
            echo,
            id: new_id("resp_"),
            created_at: unix_now(),
            prompt_estimate,
            seq: 0,
            started: false,
            items: Vec::new(),
            open: false,
            delta_head: String::new(),
            deltas: 0,
            keep,
            saving: None,
        }
    }

    /// A rare event, with its type and sequence number added to `body`.
    fn emit(&mut self, buf: &mut BytesMut, kind: &str, mut body: Value) {
        if let Value::Object(o) = &mut body {
            o.insert("type".into(), kind.into());
            o.insert("sequence_number".into(), self.seq.into());
        }
        self.seq += 1;
        buf.put_slice(b"event: ");
        buf.put_slice(kind.as_bytes());
        buf.put_slice(b"\ndata: ");
        let _ = serde_json::to_writer((&mut *buf).writer(), &body);
        buf.put_slice(b"\n\n");
    }

    /// One delta line of the open item: its head, the sequence number, the text.
    fn delta(&mut self, buf: &mut BytesMut, text: &str) {
        buf.put_slice(self.delta_head.as_bytes());
        let _ = write!(buf, "{}", self.seq);
        self.seq += 1;
        buf.put_slice(b",\"delta\":");
        push_json_str(buf, text);
        buf.put_slice(b"}\n\n");
    }

    fn start(&mut self, buf: &mut BytesMut) {
        if !self.started {
            self.started = true;
            let r = self.echo.response(&self.id, self.created_at, "in_progress");
            let r = serde_json::to_value(r).unwrap_or_default();
            self.emit(buf, "response.created", json!({ "response": r }));
            self.emit(buf, "response.in_progress", json!({ "response": r }));
        }
    }

    /// Closes the open item, if any, with `status`.
    fn close(&mut self, buf: &mut BytesMut, status: &str) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let index = self.items.len() - 1;
        let item = &self.items[index];
        let id = item.id().to_owned();
        let done = item.wire(status);
        let ((kind, body), part) = match item {
            Item::Message { text, .. } => (
                (
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                ),
                Some(output_text(text)),
            ),
            Item::Reasoning { text, .. } => (
                (
                    "response.reasoning_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                ),
                Some(wire::ContentPart::ReasoningText { text: text.clone() }),
            ),
            Item::Call { name, args, .. } => (
                (
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": args}),
                ),
                None,
            ),
        };
        self.emit(buf, kind, body);
        if let Some(part) = part {
            let body = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
            self.emit(buf, "response.content_part.done", body);
        }
        self.emit(buf, "response.output_item.done", json!({"output_index": index, "item": done}));
    }

    /// Opens `item` after closing the one before it.
    fn open(&mut self, buf: &mut BytesMut, item: Item) {
        self.close(buf, "completed");
        let index = self.items.len();
        let id = item.id().to_owned();
        let added = item.wire("in_progress");
        let (delta, part) = match &item {
            Item::Message { .. } => ("response.output_text.delta", Some(output_text(""))),
            Item::Reasoning { .. } => (
                "response.reasoning_text.delta",
                Some(wire::ContentPart::ReasoningText { text: String::new() }),
            ),
            Item::Call { .. } => ("response.function_call_arguments.delta", None),
        };
        self.items.push(item);
        self.open = true;
        self.emit(buf, "response.output_item.added", json!({"output_index": index, "item": added}));
        if let Some(part) = part {
            let body = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
            self.emit(buf, "response.content_part.added", body);
        }
        let extra = if delta == "response.output_text.delta" {
            ",\"content_index\":0,\"logprobs\":[]"
        } else if delta == "response.reasoning_text.delta" {
            ",\"content_index\":0"
        } else {
            ""
        };
        self.delta_head = format!(
            "event: {delta}\ndata: {{\"type\":\"{delta}\",\"item_id\":\"{id}\",\"output_index\":{index}{extra},\"sequence_number\":"
        );
    }

    fn text(&mut self, buf: &mut BytesMut, t: &str, reasoning: bool) {
        let same = self.open
            && matches!(
                (self.items.last(), reasoning),
                (Some(Item::Reasoning { .. }), true) | (Some(Item::Message { .. }), false)
            );
        if !same {
            let item = if reasoning {
                Item::Reasoning { id: new_id("rs_"), text: String::new() }
            } else {
                Item::Message { id: new_id("msg_"), text: String::new() }
            };
            self.open(buf, item);
        }
        if let Some(Item::Reasoning { text, .. } | Item::Message { text, .. }) = self.items.last_mut() {
            text.push_str(t);
        }
        self.delta(buf, t);
    }

    fn call(&mut self, buf: &mut BytesMut, d: &ToolCallDelta) {
        let open_here =
            self.open && matches!(self.items.last(), Some(Item::Call { index, .. }) if *index == d.index);
        if !open_here {
            let item = Item::Call {
                id: new_id("fc_"),
                index: d.index,
                call_id: d.id.clone().unwrap_or_else(sluice_core::tools::ToolCall::new_id),
                name: d.name.clone().unwrap_or_default(),
                args: String::new(),
            };
            self.open(buf, item);
        }
        if let Some(Item::Call { name, args, .. }) = self.items.last_mut() {
            if name.is_empty()
                && let Some(n) = &d.name
            {
                n.clone_into(name);
            }
            args.push_str(&d.arguments);
        }
        if !d.arguments.is_empty() {
            self.delta(buf, &d.arguments);
        }
    }

    /// The response object as it stands, with `status`.
    fn snapshot(&self, status: &str, item_status: &str) -> wire::Response {
        let mut r = self.echo.response(&self.id, self.created_at, status);
        r.output = self.items.iter().map(|i| i.wire(item_status)).collect();
        r
    }
}

impl Encoder for ResponsesSse {
    fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
        self.start(buf);
        match ev {
            Event::Delta(t) => {
                self.deltas += 1;
                self.text(buf, t, false);
            }
            Event::Reasoning(t) => {
                self.deltas += 1;
                self.text(buf, t, true);
            }
            Event::ToolCall(d) => {
                self.deltas += 1;
                self.call(buf, d);
            }
            // Log probabilities are not asked for through this API.
            Event::Logprobs(_) => {}
            Event::Done { finish_reason, usage: u, details, .. } => {
                let (status, incomplete) = status_of(*finish_reason);
                if self.items.is_empty() {
                    // An empty answer is still one (empty) message.
                    self.open(buf, Item::Message { id: new_id("msg_"), text: String::new() });
                }
                self.close(buf, status);
                let mut r = self.snapshot(status, "completed");
                if let Some(last) = r.output.last_mut() {
                    *last = self.items[self.items.len() - 1].wire(status);
                }
                r.incomplete_details = incomplete;
                r.usage = Some(usage(*u, details.as_deref(), self.prompt_estimate, self.deltas));
                if let Some(keep) = self.keep.take() {
                    self.saving = keep.save(&mut r);
                }
                let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
                self.emit(buf, kind, json!({ "response": r }));
            }
        }
    }

    fn error(&mut self, err: &GatewayError, buf: &mut BytesMut) {
        self.start(buf);
        self.close(buf, "incomplete");
        let seq = self.seq;
        self.seq += 1;
        error_event(err, seq, buf);
        let mut r = self.snapshot("failed", "incomplete");
        let status = err.status_code().as_u16();
        let code = match status {
            429 => "rate_limit_exceeded",
            400..=499 => "invalid_prompt",
            _ => "server_error",
        };
        r.error = Some(wire::ResponseError { code: code.into(), message: err.client_message() });
        self.emit(buf, "response.failed", json!({ "response": r }));
    }

    fn keepalive(&self) -> Option<&'static [u8]> {
        Some(b": keep-alive\n\n")
    }

    fn before_end(&mut self) -> Option<BoxFuture<'static, ()>> {
        let saving = self.saving.take()?;
        Some(Box::pin(async move {
            // A failed write is logged where it failed; the stream ends either way.
            let _ = saving.await;
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_json;

    fn encoder() -> ResponsesSse {
        let r: wire::ResponseRequest = parse_json(br#"{"model":"m","input":"hi"}"#).unwrap();
        ResponsesSse::new(Echo::of(&r), 1, None)
    }

    fn events(buf: &BytesMut) -> Vec<Value> {
        let text = std::str::from_utf8(buf).unwrap();
        text.split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| {
                let mut lines = b.lines();
                let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], event, "the event line names the data's type");
                data
            })
            .collect()
    }

    #[test]
    fn a_stream_opens_fills_and_closes_each_item_in_order() {
        let mut e = encoder();
        let mut buf = BytesMut::new();
        let call = |index, id: Option<&str>, args: &str| {
            Event::ToolCall(ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                name: id.map(|_| "f".to_owned()),
                arguments: args.into(),
            })
        };
        for ev in [
            Event::Reasoning("think".into()),
            Event::Delta("Hi".into()),
            Event::Delta(" \"you\"".into()),
            call(0, Some("c1"), "{\"a\":"),
            call(0, None, "1}"),
            call(1, Some("c2"), "{}"),
            Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None, details: None },
        ] {
            e.event(&ev, &mut buf);
        }
        let ev = events(&buf);
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in ev.iter().enumerate() {
            assert_eq!(e["sequence_number"], i, "{e}");
        }
        assert_eq!(ev[12]["text"], "Hi \"you\"");
        assert_eq!(ev[18]["arguments"], "{\"a\":1}");
        let done = &ev[24]["response"];
        assert_eq!(done["status"], "completed");
        let output = done["output"].as_array().unwrap();
        assert_eq!(output.len(), 4);
        assert_eq!(output[2]["call_id"], "c1");
        assert_eq!(output[3]["call_id"], "c2");
        assert_eq!(done["usage"]["output_tokens"], 6, "estimated: one token per delta");
    }

    #[test]
    fn a_stream_cut_by_the_cap_is_incomplete_and_a_failure_is_named() {
        let mut e = encoder();
        let mut buf = BytesMut::new();
        e.event(&Event::Delta("a".into()), &mut buf);
        let usage = Some(Usage { prompt_tokens: 3, completion_tokens: 1 });
        e.event(
            &Event::Done { finish_reason: FinishReason::Length, usage, timings: None, details: None },
            &mut buf,
        );
        let last = events(&buf).pop().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(last["response"]["usage"]["total_tokens"], 4);

        let mut e = encoder();
        let mut buf = BytesMut::new();
        e.event(&Event::Delta("a".into()), &mut buf);
        e.error(&GatewayError::bad_request("no", Some("x")), &mut buf);
        let ev = events(&buf);
        let n = ev.len();
        assert_eq!(ev[n - 2]["type"], "error");
        assert_eq!(ev[n - 2]["param"], "x");
        assert_eq!(ev[n - 1]["type"], "response.failed");
        assert_eq!(ev[n - 1]["response"]["error"]["code"], "invalid_prompt");
        assert_eq!(ev[n - 1]["sequence_number"], n - 1);
    }
}
