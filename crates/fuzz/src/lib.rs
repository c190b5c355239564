//! What each `cargo fuzz` target (in `fuzz/`, outside the workspace) does with its input.
//!
//! Each function here is one target: it hands the fuzzer's bytes to the pub function of
//! the crate under test that the network (or a config file, or an agent) reaches, and
//! panics only where that function broke a promise (a panic inside it is the finding).
//! The fuzzers call these on nightly features; [`replay`] calls them on stable Rust
//! with every committed corpus and regression input, as a normal test.
//!
//! Some targets read their first byte as a choice (a read size, a method, a template)
//! and the rest as the input proper.

use http::Method;
use sluice_backends::{
    h1,
    ndjson::{LineDecoder, LineItem},
    sse::{SseDecoder, SseItem},
};
use sluice_config::{Config, Overrides};
use sluice_engine::{ChatMessage, render_chat_template};
use sluice_link::{
    convert,
    frame::{AgentCodec, GatewayCodec, LinkMessage},
};
use sluice_protocol::agent::ToAgent;
use sluice_server::{
    api::{ollama, openai},
    hub::session::read_hello,
};

pub mod replay;
pub mod templates;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/` and its binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("h1_response", h1_response),
    ("sse", sse),
    ("ndjson", ndjson),
    ("openai_chat", openai_chat),
    ("openai_completion", openai_completion),
    ("ollama_chat", ollama_chat),
    ("ollama_generate", ollama_generate),
    ("frame_to_gateway", frame_to_gateway),
    ("frame_to_agent", frame_to_agent),
    ("chat_template", chat_template),
    ("config", config),
];

/// An upstream's HTTP/1.1 response, read the way the gateway's client reads it.
/// First byte: bits 0-5 the read size minus one, bit 6 a `HEAD` request. The response
/// must decode the same whatever the read size.
pub fn h1_response(data: &[u8]) {
    let Some((&choice, input)) = data.split_first() else { return };
    let method = if choice & 0x40 != 0 { Method::HEAD } else { Method::POST };
    let read_size = usize::from(choice & 0x3f) + 1;
    let small = h1::parse_response(&method, input, read_size);
    let whole = h1::parse_response(&method, input, usize::MAX);
    // Limits on buffered lines may refuse a response in small reads and not in one
    // read; two answers must agree.
    if let (Ok(a), Ok(b)) = (small, whole) {
        assert_eq!((a.status, &a.headers, &a.body), (b.status, &b.headers, &b.body));
    }
}

/// An upstream's server-sent-events stream; first byte: the frame size minus one. The
/// events must not depend on where the stream was cut into frames.
pub fn sse(data: &[u8]) {
    let Some((&choice, input)) = data.split_first() else { return };
    let events = |frame: usize| {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        for piece in input.chunks(frame) {
            decoder.push(piece);
            while let Some(item) = decoder.next_event() {
                let too_large = item == SseItem::TooLarge;
                out.push(item);
                if too_large {
                    return out;
                }
            }
        }
        out.extend(decoder.finish().map(SseItem::Data));
        out
    };
    let pieces = events(usize::from(choice) + 1);
    if !pieces.contains(&SseItem::TooLarge) {
        assert_eq!(pieces, events(input.len().max(1)));
    }
}

/// An upstream's newline-delimited JSON stream, as [`sse`].
pub fn ndjson(data: &[u8]) {
    let Some((&choice, input)) = data.split_first() else { return };
    let lines = |frame: usize| {
        let mut decoder = LineDecoder::default();
        let mut out = Vec::new();
        for piece in input.chunks(frame) {
            decoder.push(piece);
            while let Some(item) = decoder.next_line() {
                let too_large = item == LineItem::TooLarge;
                out.push(item);
                if too_large {
                    return out;
                }
            }
        }
        out.extend(decoder.finish().map(LineItem::Line));
        out
    };
    let pieces = lines(usize::from(choice) + 1);
    if !pieces.contains(&LineItem::TooLarge) {
        assert_eq!(pieces, lines(input.len().max(1)));
    }
}

/// A `POST /v1/chat/completions` body.
pub fn openai_chat(data: &[u8]) {
    let _ = openai::convert::chat_body(data);
}

/// A `POST /v1/completions` body.
pub fn openai_completion(data: &[u8]) {
    let _ = openai::convert::completion_body(data);
}

/// A `POST /api/chat` body.
pub fn ollama_chat(data: &[u8]) {
    let _ = ollama::convert::chat_body(data);
}

/// A `POST /api/generate` body.
pub fn ollama_generate(data: &[u8]) {
    let _ = ollama::convert::generate_body(data);
}

/// The first frame an agent sends, before its token is checked: the Hello (any other
/// frame is decoded, then refused).
pub fn frame_to_gateway(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = read_hello(&GatewayCodec::default(), text);
    }
}

/// A frame from the gateway, as the agent decodes it; a job is converted to the request
/// the agent runs. A frame that decodes must survive a round trip through the wire.
pub fn frame_to_agent(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let agent = AgentCodec::default();
    let Ok(frame) = agent.decode(text) else { return };
    let LinkMessage::Text(again) = GatewayCodec::default().encode(&frame) else {
        panic!("a frame encodes as text")
    };
    assert_eq!(agent.decode(&again).ok().as_ref(), Some(&frame), "{again}");
    if let ToAgent::Job { request, .. } = frame {
        let _ = convert::chat_request(*request);
    }
}

/// The chat-template renderer. First byte even: a model's real template (chosen by the
/// byte) renders a conversation read from the rest. Odd: the rest is a template, then
/// optionally a NUL and a conversation. A conversation is NUL-separated messages, each
/// `role` SOH `content` (or only content, roles alternating user and assistant).
pub fn chat_template(data: &[u8]) {
    let Some((&choice, input)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(input);
    let (source, conversation) = if choice % 2 == 0 {
        let real = templates::REAL[usize::from(choice / 2) % templates::REAL.len()];
        (real.to_owned(), text.as_ref())
    } else {
        let (source, rest) = text.split_once('\0').unwrap_or((&text, "hi"));
        (source.to_owned(), rest)
    };
    let messages: Vec<ChatMessage> = conversation
        .split('\0')
        .enumerate()
        .map(|(i, m)| match m.split_once('\u{1}') {
            Some((role, content)) => ChatMessage::new(role, content),
            None => ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, m),
        })
        .collect();
    let _ = render_chat_template(&source, "<s>", "</s>", &messages);
}

/// A configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, &Overrides::default());
    }
}
