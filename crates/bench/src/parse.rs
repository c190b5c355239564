//! Incremental parsing of streamed replies (SSE for OpenAI, NDJSON for Ollama) and
//! of whole replies.
//!
//! Streams are split into lines with `memchr` as body frames arrive; a line cut by a
//! frame boundary is carried to the next frame. Each payload is classified without a
//! full JSON parse: content presence is a scan for the text key followed by a
//! non-empty string. A quote inside a JSON string is always escaped, so `"content"`
//! followed by `:` can only be a key. Rare payloads (an `"error"` key, usage, the
//! final Ollama line) are parsed fully.

use memchr::memmem;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::args::{Api, Endpoint};

/// Longest line kept while waiting for its end; longer ones are malformed output.
const MAX_LINE: usize = 8 << 20;

/// Reply format and the JSON key that carries generated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// OpenAI (SSE, `usage` object) or Ollama (NDJSON, `eval_count`).
    pub api: Api,
    /// Chat or plain completion.
    pub endpoint: Endpoint,
}

impl Dialect {
    /// The dialect of `api` at `endpoint`.
    pub fn new(api: Api, endpoint: Endpoint) -> Dialect {
        Dialect { api, endpoint }
    }

    /// The quoted key whose string value is generated text.
    fn text_key(self) -> &'static [u8] {
        match (self.api, self.endpoint) {
            (_, Endpoint::Chat) => b"\"content\"",
            (Api::Openai, Endpoint::Completions) => b"\"text\"",
            (Api::Ollama, Endpoint::Completions) => b"\"response\"",
        }
    }
}

/// Token counts reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, if reported.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, if reported.
    pub completion_tokens: Option<u64>,
}

/// What one streamed payload meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// A chunk with non-empty generated text.
    Content,
    /// Token counts (OpenAI usage chunk, Ollama final line).
    Usage(Usage),
    /// The end marker: `[DONE]` or `"done": true`.
    Done,
    /// An error object (or an SSE `event: error`) inside the stream.
    Error,
    /// A payload that is not the expected JSON.
    Malformed,
}

/// Incremental parser of one streamed reply; `reset` it between replies to reuse
/// its buffers.
#[derive(Debug)]
pub struct StreamParser {
    dialect: Dialect,
    /// Prebuilt searchers: building one per payload would cost more than the search.
    text_key: memmem::Finder<'static>,
    error_key: memmem::Finder<'static>,
    /// `"usage"` (OpenAI) or `"done"` (Ollama): the key of the final numbers.
    end_key: memmem::Finder<'static>,
    /// Unfinished line from the previous frame.
    carry: Vec<u8>,
    /// SSE: data lines of the current event, joined by `\n`.
    data: Vec<u8>,
    has_data: bool,
    error_event: bool,
}

impl StreamParser {
    /// A parser for streams of `dialect`.
    pub fn new(dialect: Dialect) -> StreamParser {
        StreamParser {
            dialect,
            text_key: memmem::Finder::new(dialect.text_key()),
            error_key: memmem::Finder::new(b"\"error\""),
            end_key: memmem::Finder::new(match dialect.api {
                Api::Openai => &b"\"usage\""[..],
                Api::Ollama => &b"\"done\""[..],
            }),
            carry: Vec::new(),
            data: Vec::new(),
            has_data: false,
            error_event: false,
        }
    }

    /// Forgets any partial state so the parser can read a new reply.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.data.clear();
        self.has_data = false;
        self.error_event = false;
    }

    /// Parses one body frame, calling `on` for every complete payload in it.
    pub fn feed(&mut self, mut chunk: &[u8], on: &mut impl FnMut(StreamEvent)) {
        if !self.carry.is_empty() {
            let Some(end) = memchr::memchr(b'\n', chunk) else {
                self.carry.extend_from_slice(chunk);
                if self.carry.len() > MAX_LINE {
                    self.carry.clear();
                    on(StreamEvent::Malformed);
                }
                return;
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&chunk[..end]);
            self.line(&line, on);
            line.clear();
            self.carry = line;
            chunk = &chunk[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            self.line(&chunk[start..end], on);
            start = end + 1;
        }
        let rest = &chunk[start..];
        if rest.len() > MAX_LINE {
            on(StreamEvent::Malformed);
        } else {
            self.carry.extend_from_slice(rest);
        }
    }

    /// Ends the reply: a last line or event without its terminator still counts.
    pub fn finish(&mut self, on: &mut impl FnMut(StreamEvent)) {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line, on);
        }
        if self.dialect.api == Api::Openai {
            self.line(b"", on);
        }
    }

    fn line(&mut self, line: &[u8], on: &mut impl FnMut(StreamEvent)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.dialect.api {
            Api::Ollama => {
                let line = line.trim_ascii();
                if !line.is_empty() {
                    self.ndjson(line, on);
                }
            }
            Api::Openai => self.sse_line(line, on),
        }
    }

    fn sse_line(&mut self, line: &[u8], on: &mut impl FnMut(StreamEvent)) {
        if line.is_empty() {
            if self.has_data {
                let data = std::mem::take(&mut self.data);
                self.sse_payload(&data, on);
                self.data = data;
                self.data.clear();
            }
            self.has_data = false;
            self.error_event = false;
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.error_event = value == b"error",
            _ => {}
        }
    }

    fn sse_payload(&self, payload: &[u8], on: &mut impl FnMut(StreamEvent)) {
        let payload = payload.trim_ascii();
        if payload == b"[DONE]" {
            return on(StreamEvent::Done);
        }
        if self.error_event {
            return on(StreamEvent::Error);
        }
        if payload.is_empty() {
            return;
        }
        if !looks_like_object(payload) {
            return on(StreamEvent::Malformed);
        }
        if self.error_key.find(payload).is_some() {
            match serde_json::from_slice::<ErrorProbe>(payload) {
                Err(_) => return on(StreamEvent::Malformed),
                Ok(probe) if probe.error.is_some() => return on(StreamEvent::Error),
                Ok(_) => {}
            }
        }
        if has_text(&self.text_key, payload) {
            on(StreamEvent::Content);
        }
        if value_after_key(&self.end_key, payload).is_some_and(|v| v.first() == Some(&b'{')) {
            match serde_json::from_slice::<OpenAiUsageChunk>(payload) {
                Ok(chunk) => on(StreamEvent::Usage(chunk.usage.map(Into::into).unwrap_or_default())),
                Err(_) => on(StreamEvent::Malformed),
            }
        }
    }

    fn ndjson(&self, line: &[u8], on: &mut impl FnMut(StreamEvent)) {
        if !looks_like_object(line) {
            return on(StreamEvent::Malformed);
        }
        if self.error_key.find(line).is_some() {
            match serde_json::from_slice::<ErrorProbe>(line) {
                Err(_) => return on(StreamEvent::Malformed),
                Ok(probe) if probe.error.is_some() => return on(StreamEvent::Error),
                Ok(_) => {}
            }
        }
        if has_text(&self.text_key, line) {
            on(StreamEvent::Content);
        }
        if value_after_key(&self.end_key, line).is_some_and(|v| v.starts_with(b"true")) {
            match serde_json::from_slice::<OllamaReply>(line) {
                Ok(last) => {
                    on(StreamEvent::Usage(last.usage()));
                    on(StreamEvent::Done);
                }
                Err(_) => on(StreamEvent::Malformed),
            }
        }
    }
}

/// Cheap shape check standing in for full validation on the hot path.
fn looks_like_object(payload: &[u8]) -> bool {
    payload.first() == Some(&b'{') && payload.last() == Some(&b'}')
}

/// Whether some occurrence of the quoted `key` holds a non-empty string.
fn has_text(key: &memmem::Finder<'_>, payload: &[u8]) -> bool {
    let key_len = key.needle().len();
    key.find_iter(payload).any(|at| {
        value_at(&payload[at + key_len..]).is_some_and(|v| v.len() >= 2 && v[0] == b'"' && v[1] != b'"')
    })
}

/// The bytes following the first occurrence of the quoted `key` used as a key.
fn value_after_key<'a>(key: &memmem::Finder<'_>, payload: &'a [u8]) -> Option<&'a [u8]> {
    let key_len = key.needle().len();
    key.find_iter(payload).find_map(|at| value_at(&payload[at + key_len..]))
}

/// `rest` starts right after a quoted string; if that string is a key, returns what
/// follows its colon.
fn value_at(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    Some(rest.trim_ascii_start())
}

#[derive(Deserialize)]
struct ErrorProbe {
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OpenAiUsageChunk {
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }
    }
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: Option<Message>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiReply {
    #[serde(default)]
    choices: Vec<OpenAiChoice>,
    usage: Option<OpenAiUsage>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OllamaReply {
    message: Option<Message>,
    response: Option<String>,
    eval_count: Option<u64>,
    prompt_eval_count: Option<u64>,
    error: Option<IgnoredAny>,
}

impl OllamaReply {
    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_eval_count, completion_tokens: self.eval_count }
    }
}

/// A whole (non-streamed) reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeReply {
    /// Whether the reply carries non-empty text.
    pub has_text: bool,
    /// Token counts reported by the server.
    pub usage: Usage,
}

/// Why a whole reply is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeReplyError {
    /// The body is an error object.
    Error,
    /// The body is not the expected JSON.
    Malformed,
}

/// Parses a whole reply of `dialect`.
pub fn parse_whole(dialect: Dialect, body: &[u8]) -> Result<WholeReply, WholeReplyError> {
    let non_empty = |text: Option<&String>| text.is_some_and(|t| !t.is_empty());
    match dialect.api {
        Api::Openai => {
            let reply: OpenAiReply = serde_json::from_slice(body).map_err(|_| WholeReplyError::Malformed)?;
            if reply.error.is_some() {
                return Err(WholeReplyError::Error);
            }
            let has_text = reply.choices.iter().any(|c| {
                non_empty(c.text.as_ref()) || non_empty(c.message.as_ref().and_then(|m| m.content.as_ref()))
            });
            Ok(WholeReply { has_text, usage: reply.usage.map(Into::into).unwrap_or_default() })
        }
        Api::Ollama => {
            let reply: OllamaReply = serde_json::from_slice(body).map_err(|_| WholeReplyError::Malformed)?;
            if reply.error.is_some() {
                return Err(WholeReplyError::Error);
            }
            let has_text = non_empty(reply.response.as_ref())
                || non_empty(reply.message.as_ref().and_then(|m| m.content.as_ref()));
            Ok(WholeReply { has_text, usage: reply.usage() })
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
