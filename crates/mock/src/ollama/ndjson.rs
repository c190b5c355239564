//! The Ollama reply encoder for `/api/chat` and `/api/generate`: NDJSON lines
//! pre-formatted once per request, and the final `done: true` object with its durations.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::error::Dialect;
use crate::plan::{Finish, Part, Shape, logprob, push_token};
use crate::reply::{Encoder, Timing};

/// Which Ollama endpoint the reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/api/chat`: text under `message.content`.
    Chat,
    /// `/api/generate`: text under `response`.
    Generate,
}

/// Pre-formatted pieces of one request's lines.
#[derive(Debug)]
pub(crate) struct NdjsonEncoder {
    kind: Kind,
    model: String,
    created_at: String,
    prompt_tokens: usize,
    token_prefix: String,
    token_suffix: &'static str,
    /// Everything before a reasoning token's text.
    thinking_prefix: String,
    /// A line with no text (Ollama sends no argument pieces: the call comes whole).
    empty_line: Bytes,
    shape: Shape,
}

impl NdjsonEncoder {
    /// An encoder for one reply; `created_at` is taken now and reused on every line.
    pub(crate) fn new(kind: Kind, model: &str, prompt_tokens: usize, shape: Shape) -> NdjsonEncoder {
        let created_at = rfc3339(SystemTime::now());
        let model_json = Value::from(model).to_string();
        let (field, token_suffix) = match kind {
            Kind::Chat => (r#""message":{"role":"assistant","content":""#, "\"},\"done\":false}\n"),
            Kind::Generate => (r#""response":""#, "\",\"done\":false}\n"),
        };
        let head = format!(r#"{{"model":{model_json},"created_at":"{created_at}","#);
        let (thinking, empty) = match kind {
            Kind::Chat => (
                r#""message":{"role":"assistant","content":"","thinking":""#,
                r#""message":{"role":"assistant","content":""},"done":false}"#,
            ),
            Kind::Generate => (r#""response":"","thinking":""#, r#""response":"","done":false}"#),
        };
        NdjsonEncoder {
            thinking_prefix: format!("{head}{thinking}"),
            empty_line: Bytes::from(format!("{head}{empty}\n")),
            shape,
            token_prefix: format!(r#"{{"model":{model_json},"created_at":"{created_at}",{field}"#),
            token_suffix,
            kind,
            model: model.to_owned(),
            created_at,
            prompt_tokens,
        }
    }

    /// The `done: true` object carrying `produced` tokens (`whole`) or none (the end of
    /// a stream), fields in Ollama's order.
    fn done(&self, whole: bool, produced: usize, finish: Finish, timing: Timing) -> Done<'_> {
        let now = Instant::now();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        let (thinking, text, args) = if whole { self.shape.split(produced) } else { Default::default() };
        let thinking = (!thinking.is_empty()).then_some(thinking);
        let (message, response, thinking) = match self.kind {
            Kind::Chat => {
                let tool_calls = args.map(|a| self.tool_calls(&a));
                (Some(Message { role: "assistant", content: text, thinking, tool_calls }), None, None)
            }
            Kind::Generate => (None, Some(text), thinking),
        };
        let logprobs = self.shape.logprobs.filter(|_| whole).map(|top| {
            (0..produced)
                .filter(|i| self.shape.part(*i) == Part::Text)
                .map(|i| token_logprob(i, top))
                .collect()
        });
        Done {
            model: &self.model,
            created_at: &self.created_at,
            message,
            response,
            thinking,
            logprobs,
            done: true,
            done_reason: finish.as_str(),
            total_duration: nanos(now - timing.received),
            load_duration: 0,
            prompt_eval_count: self.prompt_tokens,
            prompt_eval_duration: nanos(timing.first_token - timing.received),
            eval_count: produced,
            eval_duration: nanos(now - timing.first_token),
        }
    }

    /// The call, whole, as Ollama sends it (arguments as an object, no id).
    fn tool_calls(&self, args: &str) -> Value {
        let arguments: Value = serde_json::from_str(args).unwrap_or(Value::Null);
        serde_json::json!([{"function": {"name": self.shape.call, "arguments": arguments}}])
    }
}

/// Token `index` in Ollama's log-probability shape, with `top` alternatives.
fn token_logprob(index: usize, top: u8) -> Value {
    let token = format!("t{index} ");
    let alternatives: Vec<Value> = (0..usize::from(top))
        .map(|k| {
            let t = if k == 0 { token.clone() } else { format!("a{k} ") };
            serde_json::json!({"token": t, "logprob": logprob(index, k), "bytes": t.as_bytes()})
        })
        .collect();
    serde_json::json!({"token": token, "logprob": logprob(index, 0), "bytes": token.as_bytes(), "top_logprobs": alternatives})
}

/// The final object of a reply (the only one when not streaming).
#[derive(Debug, Serialize)]
struct Done<'a> {
    model: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<Vec<Value>>,
    done: bool,
    done_reason: &'static str,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: usize,
    prompt_eval_duration: u64,
    eval_count: usize,
    eval_duration: u64,
}

#[derive(Debug, Serialize)]
struct Message {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Value>,
}

impl Encoder for NdjsonEncoder {
    const DIALECT: Dialect = Dialect::Ollama;
    const STREAM_CONTENT_TYPE: &'static str = "application/x-ndjson";

    fn token(&mut self, index: usize) -> Bytes {
        let prefix = match self.shape.part(index) {
            Part::Argument { .. } => return self.empty_line.clone(),
            Part::Text if self.shape.logprobs.is_some() => {
                let mut line = self.token_prefix.clone();
                let _ = write!(line, "t{index} ");
                let tail = if self.kind == Kind::Chat { "\"}," } else { "\"," };
                let logprobs = Value::from(vec![token_logprob(index, self.shape.logprobs.unwrap_or(0))]);
                let _ = writeln!(line, "{tail}\"logprobs\":{logprobs},\"done\":false}}");
                return Bytes::from(line);
            }
            Part::Text => &self.token_prefix,
            Part::Reasoning => &self.thinking_prefix,
        };
        let mut out = BytesMut::with_capacity(prefix.len() + self.token_suffix.len() + 24);
        out.extend_from_slice(prefix.as_bytes());
        push_token(&mut out, index);
        out.extend_from_slice(self.token_suffix.as_bytes());
        out.freeze()
    }

    fn garbage(&self) -> Bytes {
        Bytes::from_static(b"{not json\n")
    }

    fn end(&mut self, produced: usize, finish: Finish, timing: Timing) -> Vec<Bytes> {
        let mut lines = Vec::new();
        if self.kind == Kind::Chat
            && let (_, _, Some(args)) = self.shape.split(produced)
        {
            let message = Message {
                role: "assistant",
                content: String::new(),
                thinking: None,
                tool_calls: Some(self.tool_calls(&args)),
            };
            let line = serde_json::json!({"model": self.model, "created_at": self.created_at, "message": message, "done": false});
            lines.push(Bytes::from(format!("{line}\n")));
        }
        let done = self.done(false, produced, finish, timing);
        // Serializing plain strings and numbers cannot fail.
        let mut line = serde_json::to_vec(&done).unwrap_or_default();
        line.push(b'\n');
        lines.push(Bytes::from(line));
        lines
    }

    fn whole(&self, produced: usize, finish: Finish, timing: Timing) -> Bytes {
        let done = self.done(true, produced, finish, timing);
        Bytes::from(serde_json::to_vec(&done).unwrap_or_default())
    }
}

/// `time` as RFC 3339 in UTC with nanoseconds, the way Ollama writes `created_at`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }
}
