//! Unit tests of the stream parser: every split of a stream into frames must give
//! the same events as the stream in one piece.

use super::*;

const OPENAI_CHAT: Dialect = Dialect { api: Api::Openai, endpoint: Endpoint::Chat };
const OLLAMA_CHAT: Dialect = Dialect { api: Api::Ollama, endpoint: Endpoint::Chat };
const OLLAMA_GENERATE: Dialect = Dialect { api: Api::Ollama, endpoint: Endpoint::Completions };
const OPENAI_COMPLETIONS: Dialect = Dialect { api: Api::Openai, endpoint: Endpoint::Completions };

fn events(dialect: Dialect, frames: &[&[u8]]) -> Vec<StreamEvent> {
    let mut parser = StreamParser::new(dialect);
    let mut out = Vec::new();
    for frame in frames {
        parser.feed(frame, &mut |e| out.push(e));
    }
    parser.finish(&mut |e| out.push(e));
    out
}

/// Feeds `stream` split at every pair of cut points and checks the events match.
fn assert_split_invariant(dialect: Dialect, stream: &[u8], expected: &[StreamEvent]) {
    assert_eq!(events(dialect, &[stream]), expected, "whole stream");
    for a in 0..=stream.len() {
        for b in a..=stream.len() {
            let frames = [&stream[..a], &stream[a..b], &stream[b..]];
            assert_eq!(events(dialect, &frames), expected, "cut at {a} and {b}");
        }
    }
}

const SSE: &[u8] = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
: keep-alive\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n\
data: {\"choices\":[{\"delta\":{\"content\" : \"lo \\\"error\\\": x\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"error\"}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";

#[test]
fn sse_stream_any_split() {
    let usage = Usage { prompt_tokens: Some(5), completion_tokens: Some(2) };
    assert_split_invariant(
        OPENAI_CHAT,
        SSE,
        &[StreamEvent::Content, StreamEvent::Content, StreamEvent::Usage(usage), StreamEvent::Done],
    );
}

#[test]
fn sse_errors_and_garbage() {
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
data: {\"error\":{\"message\":\"backend died\",\"type\":\"upstream\"}}\n\n\
event: error\ndata: anything\n\n\
data: not json\n\n\
data: {\"error\": broken}\n\n";
    assert_split_invariant(
        OPENAI_CHAT,
        stream,
        &[
            StreamEvent::Content,
            StreamEvent::Error,
            StreamEvent::Error,
            StreamEvent::Malformed,
            StreamEvent::Malformed,
        ],
    );
}

#[test]
fn sse_multi_line_data_and_missing_final_blank_line() {
    let stream = b"data: {\"choices\":[{\"text\":\n\
data: \"x\"}]}\n\ndata: [DONE]";
    assert_split_invariant(OPENAI_COMPLETIONS, stream, &[StreamEvent::Content, StreamEvent::Done]);
}

const NDJSON: &[u8] = b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n\
{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":false}\r\n\
\n\
{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\" there\"},\"done\":false}\n\
{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"eval_count\":2,\"prompt_eval_count\":9}";

#[test]
fn ndjson_stream_any_split() {
    let usage = Usage { prompt_tokens: Some(9), completion_tokens: Some(2) };
    assert_split_invariant(
        OLLAMA_CHAT,
        NDJSON,
        &[StreamEvent::Content, StreamEvent::Content, StreamEvent::Usage(usage), StreamEvent::Done],
    );
}

#[test]
fn ndjson_generate_error_and_garbage() {
    let stream = b"{\"response\":\"a\",\"done\":false}\n{\"response\":\"\",\"done\":false}\n\
{\"error\":\"model not found\"}\n<html>\n{\"done\": true, \"eval_count\": bad}\n";
    assert_split_invariant(
        OLLAMA_GENERATE,
        stream,
        &[StreamEvent::Content, StreamEvent::Error, StreamEvent::Malformed, StreamEvent::Malformed],
    );
}

#[test]
fn reset_drops_partial_state() {
    let mut parser = StreamParser::new(OPENAI_CHAT);
    let mut out = Vec::new();
    parser.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"", &mut |e| out.push(e));
    parser.reset();
    parser.feed(b"data: [DONE]\n\n", &mut |e| out.push(e));
    assert_eq!(out, [StreamEvent::Done]);
}

#[test]
fn overlong_line_is_malformed_not_unbounded() {
    let mut parser = StreamParser::new(OLLAMA_CHAT);
    let mut out = Vec::new();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        parser.feed(&chunk, &mut |e| out.push(e));
    }
    assert!(out.contains(&StreamEvent::Malformed));
    assert!(parser.carry.len() <= MAX_LINE);
}

#[test]
fn whole_replies() {
    let openai = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    let reply = parse_whole(OPENAI_CHAT, openai).unwrap();
    assert!(reply.has_text);
    assert_eq!(reply.usage.completion_tokens, Some(1));

    let ollama = br#"{"response":"hello","done":true,"eval_count":4}"#;
    let reply = parse_whole(OLLAMA_GENERATE, ollama).unwrap();
    assert!(reply.has_text);
    assert_eq!(reply.usage.completion_tokens, Some(4));

    assert_eq!(parse_whole(OPENAI_CHAT, br#"{"error":{"message":"no"}}"#), Err(WholeReplyError::Error));
    assert_eq!(parse_whole(OLLAMA_CHAT, br#"{"error":"no"}"#), Err(WholeReplyError::Error));
    assert_eq!(parse_whole(OPENAI_CHAT, b"{\"choices\":"), Err(WholeReplyError::Malformed));
    assert_eq!(parse_whole(OPENAI_CHAT, b"\xff"), Err(WholeReplyError::Malformed));
}
