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
    carry::WireDialect,
    chat::{DoneDetails, Event, FinishReason, Timings, Usage},
    error::GatewayError,
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

/// NDJSON encoder for Ollama streams.
pub struct OllamaNdjson {
    kind: Kind,
    model: String,
    /// `{"model":…,"created_at":"` — everything before the timestamp.
    head: String,
    clock: Clock,
    deltas: u32,
}

impl OllamaNdjson {
    /// An encoder for one response.
    pub fn new(kind: Kind, model: &str, clock: Clock) -> Self {
        let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
        let head = format!("{{\"model\":{model_json},\"created_at\":\"");
        OllamaNdjson { kind, model: model.to_owned(), head, clock, deltas: 0 }
    }
}

impl Encoder for OllamaNdjson {
    fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
        match ev {
            Event::Delta(t) => {
                self.deltas += 1;
                buf.put_slice(self.head.as_bytes());
                let _ = write!(buf, "{}", humantime::format_rfc3339_nanos(SystemTime::now()));
                match self.kind {
                    Kind::Chat => buf.put_slice(b"\",\"message\":{\"role\":\"assistant\",\"content\":"),
                    Kind::Generate => buf.put_slice(b"\",\"response\":"),
                }
                push_json_str(buf, t);
                if self.kind == Kind::Chat {
                    buf.put_u8(b'}');
                }
                buf.put_slice(b",\"done\":false}\n");
            }
            Event::Done { finish_reason, usage, timings, details } => {
                let stats = self.clock.stats(*usage, *timings, self.deltas);
                let end = End::of(*finish_reason, details.as_deref());
                let _ = match self.kind {
                    Kind::Chat => serde_json::to_writer(
                        (&mut *buf).writer(),
                        &chat_response(&self.model, String::new(), end, stats),
                    ),
                    Kind::Generate => serde_json::to_writer(
                        (&mut *buf).writer(),
                        &generate_response(&self.model, String::new(), end, stats),
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
pub fn chat_response(model: &str, content: String, end: End, stats: ol::FinalStats) -> ol::ChatResponse {
    ol::ChatResponse {
        model: model.to_owned(),
        created_at: timestamp(),
        message: ol::Message { role: "assistant".into(), content, ..Default::default() },
        done: true,
        done_reason: Some(end.reason),
        stats: Some(stats),
        extra: end.fields,
    }
}

/// The final (or only) `/api/generate` object.
pub fn generate_response(
    model: &str,
    response: String,
    end: End,
    stats: ol::FinalStats,
) -> ol::GenerateResponse {
    ol::GenerateResponse {
        model: model.to_owned(),
        created_at: timestamp(),
        response,
        done: true,
        done_reason: Some(end.reason),
        stats: Some(stats),
        extra: end.fields,
    }
}

/// A whole non-streamed answer.
pub fn whole(kind: Kind, model: &str, text: String, done: &Event, clock: Clock) -> Response {
    let (end, usage, timings) = match done {
        Event::Done { finish_reason, usage, timings, details } => {
            (End::of(*finish_reason, details.as_deref()), *usage, *timings)
        }
        Event::Delta(_) => (End::of(FinishReason::Stop, None), None, None),
    };
    let stats = clock.stats(usage, timings, u32::from(!text.is_empty()));
    match kind {
        Kind::Chat => Json(chat_response(model, text, end, stats)).into_response(),
        Kind::Generate => Json(generate_response(model, text, end, stats)).into_response(),
    }
}

/// An error response in Ollama's shape, with its retry headers.
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
