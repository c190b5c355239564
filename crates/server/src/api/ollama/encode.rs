//! Ollama encodings: NDJSON lines for chat and generate, whole answers, and the error
//! object. Durations are nanoseconds; where a backend reports no timings, the gateway's
//! own measurements stand in (prompt evaluation = time to first token).

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use bytes::{BufMut, BytesMut};
use sluice_protocol::ollama as ol;
use tokio::time::Instant;

use crate::api::stream_body::{Encoder, push_json_str};
use sluice_core::{
    answer::Answer,
    carry::WireDialect,
    chat::{DoneDetails, Event, FinishReason, Timings, Usage},
    error::GatewayError,
    output::TokenLogprob,
    tools::{ToolCall, ToolCallAssembler},
};

/// RFC 3339 timestamp with nanoseconds, as Ollama writes `created_at`.
pub fn timestamp() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// Which endpoint a stream answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/chat`: `message.content`.
    Chat,
    /// `/api/generate`: `response`.
    Generate,
}

/// Clock readings an answer's final statistics are computed from.
#[derive(Clone, Copy)]
pub struct Clock {
    /// Request start.
    pub started: Instant,
    /// Time to the first token.
    pub ttft: Duration,
    /// Prompt size estimate in tokens, when the backend reports none.
    pub prompt_estimate: u32,
}

impl Clock {
    fn stats(&self, usage: Option<Usage>, timings: Option<Timings>, deltas: u32) -> ol::FinalStats {
        let total = self.started.elapsed();
        let u = usage.unwrap_or(Usage { prompt_tokens: self.prompt_estimate, completion_tokens: deltas });
        // A replay from the cache (or an answer joined in flight) took less than the
        // generation it repeats: its parts must not exceed its whole, so the gateway's
        // own readings stand in.
        let t = timings.filter(|t| t.load + t.prompt_eval + t.eval <= total).unwrap_or(Timings {
            load: Duration::ZERO,
            prompt_eval: self.ttft,
            eval: total.saturating_sub(self.ttft),
        });
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        ol::FinalStats {
            total_duration: ns(total),
            load_duration: ns(t.load),
            prompt_eval_count: u.prompt_tokens,
            prompt_eval_duration: ns(t.prompt_eval),
            eval_count: u.completion_tokens,
            eval_duration: ns(t.eval),
        }
    }
}

/// NDJSON encoder for Ollama streams. Tool calls leave whole, as Ollama sends them: the
/// pieces an OpenAI upstream streams are joined and written in one line before the last.
pub struct OllamaNdjson {
    kind: Kind,
    model: String,
    /// `{"model":…,"created_at":"` — everything before the timestamp.
    head: String,
    clock: Clock,
    deltas: u32,
    calls: ToolCallAssembler,
    /// Log probabilities waiting for the text they describe.
    logprobs: Option<Vec<TokenLogprob>>,
}

impl OllamaNdjson {
    /// An encoder for one response.
    pub fn new(kind: Kind, model: &str, clock: Clock) -> Self {
        let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
        let head = format!("{{\"model\":{model_json},\"created_at\":\"");
        OllamaNdjson {
            kind,
            model: model.to_owned(),
            head,
            clock,
            deltas: 0,
            calls: ToolCallAssembler::default(),
            logprobs: None,
        }
    }

    /// One line with `text` as the content (or, with `thinking`, as the reasoning).
    fn line(&mut self, text: &str, thinking: bool, buf: &mut BytesMut) {
        buf.put_slice(self.head.as_bytes());
        let _ = write!(buf, "{}", humantime::format_rfc3339_nanos(SystemTime::now()));
        match (self.kind, thinking) {
            (Kind::Chat, false) => buf.put_slice(b"\",\"message\":{\"role\":\"assistant\",\"content\":"),
            (Kind::Chat, true) => {
                buf.put_slice(b"\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":");
            }
            (Kind::Generate, false) => buf.put_slice(b"\",\"response\":"),
            (Kind::Generate, true) => buf.put_slice(b"\",\"response\":\"\",\"thinking\":"),
        }
        push_json_str(buf, text);
        if self.kind == Kind::Chat {
            buf.put_u8(b'}');
        }
        if let Some(l) = self.logprobs.take() {
            buf.put_slice(b",\"logprobs\":");
            let _ = serde_json::to_writer((&mut *buf).writer(), &wire_logprobs(l));
        }
        buf.put_slice(b",\"done\":false}\n");
    }
}

impl Encoder for OllamaNdjson {
    fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
        match ev {
            Event::Delta(t) => {
                self.deltas += 1;
                self.line(t, false, buf);
            }
            Event::Reasoning(t) => {
                self.deltas += 1;
                self.line(t, true, buf);
            }
            Event::ToolCall(d) => {
                self.deltas += 1;
                self.calls.push(d);
            }
            Event::Logprobs(l) => self.logprobs.get_or_insert_with(Vec::new).extend(l.iter().cloned()),
            Event::Done { finish_reason, usage, timings, details } => {
                let calls = std::mem::take(&mut self.calls);
                if !calls.is_empty() && self.kind == Kind::Chat {
                    let mut line = chat_response(&self.model, Answer::default(), ol::FinalStats::default());
                    line.message.tool_calls = Some(calls.finish().into_iter().map(wire_tool_call).collect());
                    (line.done, line.done_reason, line.stats) = (false, None, None);
                    let _ = serde_json::to_writer((&mut *buf).writer(), &line);
                    buf.put_u8(b'\n');
                }
                let stats = self.clock.stats(*usage, *timings, self.deltas);
                let end = Answer {
                    finish_reason: *finish_reason,
                    logprobs: self.logprobs.take(),
                    details: details.clone(),
                    ..Answer::default()
                };
                let _ = match self.kind {
                    Kind::Chat => {
                        serde_json::to_writer((&mut *buf).writer(), &chat_response(&self.model, end, stats))
                    }
                    Kind::Generate => serde_json::to_writer(
                        (&mut *buf).writer(),
                        &generate_response(&self.model, end, stats),
                    ),
                };
                buf.put_u8(b'\n');
            }
        }
    }

    fn error(&mut self, err: &GatewayError, buf: &mut BytesMut) {
        let _ =
            serde_json::to_writer((&mut *buf).writer(), &ol::ErrorResponse { error: err.client_message() });
        buf.put_u8(b'\n');
    }
}

/// How an answer ended, as an Ollama client reads it: the reason (an Ollama
/// upstream's own name when Sluice has none) and the upstream's other final fields.
#[derive(Default)]
pub struct End {
    /// `done_reason`.
    pub reason: String,
    /// Carried fields of an Ollama upstream's final object.
    pub fields: ol::Fields,
}

impl End {
    /// The end of an answer that finished for `finish`, with what the upstream said.
    pub fn of(finish: FinishReason, details: Option<&DoneDetails>) -> End {
        End {
            reason: DoneDetails::finish_reason(details, finish).to_owned(),
            fields: DoneDetails::fields_for(details, WireDialect::Ollama).cloned().unwrap_or_default(),
        }
    }

    /// The end of `answer`. Ollama has no `tool_calls` reason: a turn that called
    /// tools ends `stop`.
    pub fn of_answer(answer: &Answer) -> End {
        let finish = match answer.finish_reason {
            FinishReason::ToolCalls => FinishReason::Stop,
            f => f,
        };
        let details = answer.details.as_deref().filter(|d| d.finish_reason.as_deref() != Some("tool_calls"));
        End::of(finish, details)
    }
}

/// A chunk with no text, as Ollama streams while a model thinks: the keep-alive of a
/// stream whose answer has not started.
pub fn empty_chunk(kind: Kind, model: &str) -> bytes::Bytes {
    let model = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
    let body = match kind {
        Kind::Chat => r#""message":{"role":"assistant","content":""}"#,
        Kind::Generate => r#""response":"""#,
    };
    bytes::Bytes::from(format!(
        "{{\"model\":{model},\"created_at\":\"{}\",{body},\"done\":false}}\n",
        timestamp()
    ))
}

/// The final (or only) `/api/chat` object.
pub fn chat_response(model: &str, answer: Answer, stats: ol::FinalStats) -> ol::ChatResponse {
    let end = End::of_answer(&answer);
    let tool_calls =
        (!answer.tool_calls.is_empty()).then(|| answer.tool_calls.into_iter().map(wire_tool_call).collect());
    ol::ChatResponse {
        model: model.to_owned(),
        created_at: timestamp(),
        message: ol::Message {
            role: "assistant".into(),
            content: answer.text,
            thinking: (!answer.reasoning.is_empty()).then_some(answer.reasoning),
            tool_calls,
            ..ol::Message::default()
        },
        logprobs: answer.logprobs.map(wire_logprobs),
        done: true,
        done_reason: Some(end.reason),
        stats: Some(stats),
        extra: end.fields,
    }
}

/// The final (or only) `/api/generate` object.
pub fn generate_response(model: &str, answer: Answer, stats: ol::FinalStats) -> ol::GenerateResponse {
    let end = End::of_answer(&answer);
    ol::GenerateResponse {
        model: model.to_owned(),
        created_at: timestamp(),
        response: answer.text,
        thinking: (!answer.reasoning.is_empty()).then_some(answer.reasoning),
        logprobs: answer.logprobs.map(wire_logprobs),
        done: true,
        done_reason: Some(end.reason),
        stats: Some(stats),
        extra: end.fields,
    }
}

/// A whole non-streamed answer.
pub fn whole(kind: Kind, model: &str, answer: Answer, clock: Clock) -> Response {
    let stats = clock.stats(answer.usage, answer.timings, answer.deltas);
    match kind {
        Kind::Chat => Json(chat_response(model, answer, stats)).into_response(),
        Kind::Generate => Json(generate_response(model, answer, stats)).into_response(),
    }
}

/// A canonical tool call in Ollama's shape: arguments as a JSON object (text that is
/// not JSON stays a string, as the model wrote it).
pub fn wire_tool_call(c: ToolCall) -> ol::ToolCall {
    let arguments = serde_json::from_str(&c.arguments).unwrap_or(serde_json::Value::String(c.arguments));
    ol::ToolCall { id: Some(c.id), function: ol::FunctionCall { index: None, name: c.name, arguments } }
}

/// Canonical log probabilities in Ollama's shape.
pub fn wire_logprobs(l: Vec<TokenLogprob>) -> Vec<ol::Logprob> {
    l.into_iter()
        .map(|t| ol::Logprob {
            token: t.token,
            logprob: t.logprob,
            bytes: t.bytes,
            top_logprobs: (!t.top.is_empty()).then(|| {
                t.top
                    .into_iter()
                    .map(|a| ol::Logprob {
                        token: a.token,
                        logprob: a.logprob,
                        bytes: a.bytes,
                        top_logprobs: None,
                    })
                    .collect()
            }),
        })
        .collect()
}

/// An error response in Ollama's shape, with `Retry-After` when it applies.
pub fn error_response(err: &GatewayError) -> Response {
    let mut resp =
        (err.status_code(), Json(ol::ErrorResponse { error: err.client_message() })).into_response();
    crate::api::retry_headers(err, resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_pieces_leave_whole_before_the_last_line() {
        use sluice_core::tools::ToolCallDelta;
        let clock = Clock { started: Instant::now(), ttft: Duration::from_millis(2), prompt_estimate: 1 };
        let mut enc = OllamaNdjson::new(Kind::Chat, "m", clock);
        let mut buf = BytesMut::new();
        let piece = |id: Option<&str>, args: &str| ToolCallDelta {
            index: 0,
            id: id.map(Into::into),
            name: id.map(|_| "f".to_owned()),
            arguments: args.into(),
        };
        enc.event(&Event::Reasoning("hm".into()), &mut buf);
        enc.event(&Event::ToolCall(piece(Some("c1"), "{\"a\"")), &mut buf);
        enc.event(&Event::ToolCall(piece(None, ":1}")), &mut buf);
        enc.event(
            &Event::Done {
                finish_reason: FinishReason::ToolCalls,
                usage: None,
                timings: None,
                details: None,
            },
            &mut buf,
        );
        let text = String::from_utf8(buf.to_vec()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"]["thinking"], "hm");
        let call = &lines[1]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], serde_json::json!({"a": 1}), "joined, as an object");
        assert_eq!(call["function"]["name"], "f");
        assert_eq!(lines[1]["done"], false);
        assert_eq!(
            (lines[2]["done"].as_bool(), lines[2]["done_reason"].as_str()),
            (Some(true), Some("stop"))
        );
    }

    #[test]
    fn lines_are_valid_json_and_final_has_every_stat() {
        let clock = Clock { started: Instant::now(), ttft: Duration::from_millis(2), prompt_estimate: 1 };
        for kind in [Kind::Chat, Kind::Generate] {
            let mut enc = OllamaNdjson::new(kind, "m", clock);
            let mut buf = BytesMut::new();
            enc.event(&Event::Delta("a\"\n".into()), &mut buf);
            enc.event(
                &Event::Done {
                    finish_reason: FinishReason::Length,
                    usage: None,
                    timings: None,
                    details: None,
                },
                &mut buf,
            );
            let text = String::from_utf8(buf.to_vec()).unwrap();
            let lines: Vec<serde_json::Value> =
                text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len(), 2);
            let content =
                if kind == Kind::Chat { &lines[0]["message"]["content"] } else { &lines[0]["response"] };
            assert_eq!(content, "a\"\n");
            assert_eq!(lines[0]["done"], false);
            let last = &lines[1];
            assert_eq!(last["done"], true);
            assert_eq!(last["done_reason"], "length");
            assert_eq!(last["eval_count"], 1);
            for k in [
                "total_duration",
                "load_duration",
                "prompt_eval_count",
                "prompt_eval_duration",
                "eval_duration",
            ] {
                assert!(last.get(k).is_some(), "{k} missing");
            }
            assert_eq!(last["prompt_eval_duration"], 2_000_000);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_never_reports_parts_longer_than_its_whole() {
        let clock = Clock { started: Instant::now(), ttft: Duration::from_micros(5), prompt_estimate: 1 };
        tokio::time::advance(Duration::from_micros(40)).await;
        // The cached answer's generation took 88 ms; the replay took 40 µs.
        let replayed = Timings {
            load: Duration::ZERO,
            prompt_eval: Duration::from_millis(3),
            eval: Duration::from_millis(88),
        };
        let s = clock.stats(None, Some(replayed), 2);
        assert_eq!(s.total_duration, 40_000);
        assert_eq!(s.prompt_eval_duration, 5_000);
        assert!(s.load_duration + s.prompt_eval_duration + s.eval_duration <= s.total_duration, "{s:?}");
        // A generation of its own keeps the backend's timings.
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(clock.stats(None, Some(replayed), 2).eval_duration, 88_000_000);
    }
}
