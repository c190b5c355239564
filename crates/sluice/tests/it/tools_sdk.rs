//! Function calling, images, reasoning and log probabilities through the official
//! `openai` Python SDK, against an OpenAI and an Ollama mock upstream: what the SDK
//! parses is checked in Python, what reached the upstream in Rust.

use sluice_mock::{MockConfig, MockServer};

use crate::util::*;

/// One script, three parts (`tools`, `image`, `extras`); each prints one JSON line the
/// test reads.
const SCRIPT: &str = r#"
import sys, json, openai
base, part = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
tools = [{"type": "function", "function": {"name": "lookup", "description": "Looks a thing up",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
ask = [{"role": "user", "content": "find it [mock tokens=4 reasoning=1 call=lookup]"}]

if part == "tools":
    # Streamed: the tool call arrives as deltas the SDK's users join by index.
    calls, reasoning, finish, pieces = {}, "", None, 0
    for chunk in client.chat.completions.create(model="mock-model", messages=ask, tools=tools, stream=True):
        for c in chunk.choices:
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            for tc in c.delta.tool_calls or []:
                pieces += 1
                e = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                if tc.id:
                    assert e["id"] in (None, tc.id), ("the id changed mid-call", e, tc)
                    e["id"] = tc.id
                e["name"] += tc.function.name or ""
                e["args"] += tc.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls", finish
    assert reasoning == "t0 ", reasoning
    assert list(calls) == [0], calls
    call = calls[0]
    assert call["name"] == "lookup" and call["id"].startswith("call_"), call
    assert json.loads(call["args"]) == {"q": "t1 t2 t3 "}, call
    # Whole: the same call in one message.
    r = client.chat.completions.create(model="mock-model", messages=ask, tools=tools, tool_choice="auto")
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls", r
    assert m.content is None and m.tool_calls[0].function.name == "lookup", m
    assert json.loads(m.tool_calls[0].function.arguments) == {"q": "t1 t2 t3 "}, m
    assert getattr(m, "reasoning_content", None) == "t0 ", m
    # The tool's result goes back; the model answers in text.
    history = ask + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": "lookup", "arguments": call["args"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "42"},
    ]
    text = ""
    for chunk in client.chat.completions.create(model="mock-model", messages=history, tools=tools, stream=True):
        for c in chunk.choices:
            text += c.delta.content or ""
            assert not c.delta.tool_calls, chunk
            finish = c.finish_reason or finish
    assert text == "t1 t2 t3 " and finish == "stop", (text, finish)
    print(json.dumps({"id": call["id"], "pieces": pieces}))

elif part == "image":
    url = sys.argv[3]
    r = client.chat.completions.create(model="mock-model", max_tokens=2, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}])
    assert r.choices[0].message.content == "t0 t1 ", r
    print(json.dumps({"ok": True}))

elif part == "extras":
    r = client.chat.completions.create(model="mock-model", max_tokens=3, logprobs=True, top_logprobs=2,
                                       messages=[{"role": "user", "content": "hi"}])
    lp = r.choices[0].logprobs.content
    assert [t.token for t in lp] == ["t0 ", "t1 ", "t2 "], lp
    assert len(lp[1].top_logprobs) == 2 and lp[1].logprob < 0, lp
    tokens = []
    for chunk in client.chat.completions.create(model="mock-model", max_tokens=3, logprobs=True, stream=True,
                                                messages=[{"role": "user", "content": "hi"}]):
        for c in chunk.choices:
            if c.logprobs and c.logprobs.content:
                tokens += [t.token for t in c.logprobs.content]
    assert tokens == ["t0 ", "t1 ", "t2 "], tokens
    r = client.chat.completions.create(model="mock-model", response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "json please [mock tokens=2]"}])
    assert r.choices[0].message.content == "t0 t1 ", r
    print(json.dumps({"ok": True}))
"#;

/// A 1×1 PNG.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

async fn run(base: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![base];
    all.extend_from_slice(args);
    python_json(SCRIPT, &all).await
}

async fn round_trip(kind: &str) -> (MockServer, Gateway) {
    let mock = mock(MockConfig { tokens: 4, ..Default::default() }).await;
    let gw = Gateway::over(&mock, kind, "").await;
    (mock, gw)
}

#[tokio::test]
async fn function_calling_round_trip_through_an_openai_upstream() {
    let (mock, gw) = round_trip("openai").await;
    let out = run(&gw.url("/v1"), &["tools"]).await;
    let id = out["id"].as_str().unwrap();
    assert!(out["pieces"].as_u64().unwrap() >= 4, "argument fragments pass through as they come: {out}");
    let last = mock.stats().last().unwrap().body;
    assert_eq!(last["tools"][0]["function"]["name"], "lookup", "the tools reach the upstream: {last}");
    let m = last["messages"].as_array().unwrap();
    assert_eq!(m[1]["tool_calls"][0]["id"], id);
    assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"], r#"{"q":"t1 t2 t3 "}"#);
    assert_eq!(m[2], serde_json::json!({"role": "tool", "content": "42", "tool_call_id": id}));
}

#[tokio::test]
async fn function_calling_round_trip_through_an_ollama_upstream() {
    let (mock, gw) = round_trip("ollama").await;
    let out = run(&gw.url("/v1"), &["tools"]).await;
    let id = out["id"].as_str().unwrap();
    let last = mock.stats().last().unwrap().body;
    assert_eq!(last["tools"][0]["function"]["name"], "lookup", "{last}");
    let m = last["messages"].as_array().unwrap();
    assert_eq!(
        m[1]["tool_calls"][0]["function"]["arguments"],
        serde_json::json!({"q": "t1 t2 t3 "}),
        "{last}"
    );
    assert_eq!((m[2]["role"].as_str(), m[2]["content"].as_str()), (Some("tool"), Some("42")));
    assert_eq!(m[2]["tool_name"], "lookup", "Ollama learns which tool answered: {last}");
    assert_eq!(m[2]["tool_call_id"], id);
}

#[tokio::test]
async fn image_parts_reach_an_openai_upstream_byte_exact() {
    let (mock, gw) = round_trip("openai").await;
    let url = format!("data:image/png;base64,{PNG}");
    run(&gw.url("/v1"), &["image", &url]).await;
    let last = mock.stats().last().unwrap().body;
    let part = &last["messages"][0]["content"][1];
    assert_eq!(part["image_url"]["url"].as_str(), Some(url.as_str()), "{last}");
    assert_eq!(part["image_url"]["detail"], "low");
}

#[tokio::test]
async fn image_parts_reach_an_ollama_upstream_as_base64() {
    let (mock, gw) = round_trip("ollama").await;
    run(&gw.url("/v1"), &["image", &format!("data:image/png;base64,{PNG}")]).await;
    let last = mock.stats().last().unwrap().body;
    assert_eq!(last["messages"][0]["images"], serde_json::json!([PNG]), "{last}");
    assert_eq!(last["messages"][0]["content"], "what is this?");
}

#[tokio::test]
async fn logprobs_and_formats_through_either_upstream() {
    for kind in ["openai", "ollama"] {
        let (mock, gw) = round_trip(kind).await;
        run(&gw.url("/v1"), &["extras"]).await;
        let last = mock.stats().last().unwrap().body;
        match kind {
            "openai" => assert_eq!(last["response_format"], serde_json::json!({"type": "json_object"})),
            _ => assert_eq!(last["format"], "json", "{last}"),
        }
    }
}
