//! The Responses API (`/v1/responses`) through the official `openai` Python SDK, against
//! an OpenAI and an Ollama mock upstream: every streamed event is validated against the
//! SDK's own typed class for its `type`, the whole response against `Response`, and
//! what reached the upstream is checked in Rust. Stored responses are continued, read
//! and deleted by two users' keys.

use sluice_mock::{MockConfig, MockServer};

use crate::util::*;

/// One script, several parts; each prints one JSON line the test reads.
const SCRIPT: &str = r#"
import sys, json, typing, openai
from openai.types.responses import Response, ResponseStreamEvent
base, part = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
# Every event class the SDK knows, by its `type`.
KNOWN = {typing.get_args(c.model_fields["type"].annotation)[0]: c
         for c in typing.get_args(typing.get_args(ResponseStreamEvent)[0])}

def checked(events):
    # Each event is the SDK's class for its type and validates strictly against it
    # (the SDK builds events without validation; this proves no field is missing).
    seen = []
    for n, ev in enumerate(events):
        cls = KNOWN.get(ev.type)
        assert cls is not None and isinstance(ev, cls), ("not a known typed event", ev)
        cls.model_validate(ev.model_dump(mode="json", exclude_unset=True))
        assert ev.sequence_number == n, (n, ev)
        seen.append(ev)
    return seen

tools = [{"type": "function", "name": "lookup", "description": "Looks a thing up",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}]

if part == "whole":
    raw = client.responses.with_raw_response.create(model="mock-model", input="hi [mock tokens=1]",
                                                    store=True, metadata={"k": "v"})
    r = raw.parse()
    assert r.metadata == {"k": "v"} and r.output_text == "t0 " and r.store is True, r
    cut = client.responses.create(model="mock-model", input=[{"role": "user", "content": "hi"}],
                                  max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens", cut
    assert cut.output_text == "t0 t1 ", cut
    r = client.responses.create(model="mock-model", instructions="be brief", input="hi [mock tokens=3]")
    Response.model_validate(r.model_dump(mode="json", exclude_unset=True))
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed", r
    assert r.output_text == "t0 t1 t2 ", r
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text", r
    assert r.usage.output_tokens == 3 and r.usage.total_tokens == r.usage.input_tokens + 3, r.usage
    assert r.error is None and r.incomplete_details is None and r.instructions == "be brief", r
    print(json.dumps({"dropped": raw.headers.get("x-sluice-dropped")}))

elif part == "stream":
    ask = dict(model="mock-model", input="think [mock tokens=4 reasoning=2]")
    events = checked(client.responses.create(stream=True, **ask))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] == "response.completed", kinds
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert (reasoning, text) == ("t0 t1 ", "t2 t3 "), (reasoning, text)
    final = events[-1].response
    assert [o.type for o in final.output] == ["reasoning", "message"], final
    assert final.output[0].content[0].text == "t0 t1 " and final.output_text == "t2 t3 ", final
    # The SDK's stream helper accumulates the events into a response of its own.
    with client.responses.stream(**ask) as s:
        helper = checked(s)
        got = s.get_final_response()
    assert got.output_text == "t2 t3 " and got.status == "completed", got
    print(json.dumps({"kinds": kinds}))

elif part == "tools":
    ask = [{"role": "user", "content": "find it [mock tokens=4 reasoning=1 call=lookup]"}]
    events = checked(client.responses.create(model="mock-model", input=ask, tools=tools, stream=True))
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == "".join(pieces), (pieces, done)
    final = events[-1].response
    call = [o for o in final.output if o.type == "function_call"][0]
    assert call.name == "lookup" and json.loads(call.arguments) == {"q": "t1 t2 t3 "}, call
    # Whole: the same call as an output item.
    r = client.responses.create(model="mock-model", input=ask, tools=tools, tool_choice="auto")
    whole_call = [o for o in r.output if o.type == "function_call"][0]
    assert whole_call.name == "lookup" and json.loads(whole_call.arguments) == {"q": "t1 t2 t3 "}, r
    # The output goes back as input, with the tool's result; the model answers in text.
    history = ask + [o.model_dump(exclude_none=True) for o in final.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "42"}]
    events = checked(client.responses.create(model="mock-model", input=history, tools=tools, stream=True))
    last = events[-1].response
    assert last.output_text == "t1 t2 t3 " and not [o for o in last.output if o.type == "function_call"], last
    print(json.dumps({"call_id": call.call_id, "pieces": len(pieces)}))

elif part == "schema":
    fmt = {"type": "json_schema", "name": "thing", "strict": True,
           "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                      "additionalProperties": False}}
    r = client.responses.create(model="mock-model", input="json [mock tokens=2]", text={"format": fmt})
    assert r.output_text == "t0 t1 " and r.text.format.type == "json_schema", r
    print(json.dumps({"ok": True}))

elif part == "bad":
    out = {}
    for name, kw in [("tool", dict(input="hi", tools=[{"type": "web_search"}])),
                     ("previous", dict(input="hi", previous_response_id="resp_123")),
                     ("item", dict(input=[{"type": "input_file_ref", "id": "x"}])),
                     ("model", dict(model="no-such-model", input="hi"))]:
        kw.setdefault("model", "mock-model")
        try:
            client.responses.create(**kw)
            raise AssertionError(name + " was accepted")
        except openai.APIStatusError as e:
            out[name] = {"status": e.status_code, "message": e.message, "param": e.body.get("param")}
    print(json.dumps(out))
"#;

async fn run(base: &str, part: &str) -> serde_json::Value {
    python_json(SCRIPT, &[base, part]).await
}

async fn over(kind: &str) -> (MockServer, Gateway) {
    let mock = mock(MockConfig { tokens: 4, ..Default::default() }).await;
    let gw = Gateway::over(&mock, kind, "").await;
    (mock, gw)
}

#[tokio::test]
async fn responses_whole_and_streamed_through_either_upstream() {
    for kind in ["openai", "ollama"] {
        let (mock, gw) = over(kind).await;
        let out = run(&gw.url("/v1"), "whole").await;
        let dropped = out["dropped"].as_str().unwrap_or_default();
        assert!(dropped.contains("metadata"), "{kind}: named as dropped: {out}");
        assert!(!dropped.contains("store"), "{kind}: store is Sluice's own: {out}");
        let first = &mock.stats().last().unwrap().body;
        let m = &first["messages"];
        assert_eq!(
            (m[0]["role"].as_str(), m[0]["content"].as_str()),
            (Some("system"), Some("be brief")),
            "{first}"
        );
        assert_eq!(m[1]["content"], "hi [mock tokens=3]");
        run(&gw.url("/v1"), "stream").await;
    }
}

#[tokio::test]
async fn function_calling_round_trip_through_responses() {
    for kind in ["openai", "ollama"] {
        let (mock, gw) = over(kind).await;
        let out = run(&gw.url("/v1"), "tools").await;
        let id = out["call_id"].as_str().unwrap();
        // Ollama sends a call whole; an OpenAI upstream's fragments pass as they come.
        let least = if kind == "openai" { 3 } else { 1 };
        assert!(out["pieces"].as_u64().unwrap() >= least, "{kind}: argument fragments: {out}");
        let last = mock.stats().last().unwrap().body;
        assert_eq!(last["tools"][0]["function"]["name"], "lookup", "{kind}: {last}");
        let m = last["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{kind}: user, assistant call, tool result: {last}");
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(m[1]["tool_calls"][0]["function"]["name"], "lookup", "{kind}: {last}");
        assert_eq!((m[2]["role"].as_str(), m[2]["content"].as_str()), (Some("tool"), Some("42")), "{last}");
        assert_eq!(m[2]["tool_call_id"], id, "{kind}: {last}");
    }
}

#[tokio::test]
async fn json_schema_text_format_reaches_an_openai_upstream() {
    let (mock, gw) = over("openai").await;
    run(&gw.url("/v1"), "schema").await;
    let last = mock.stats().last().unwrap().body;
    assert_eq!(last["response_format"]["type"], "json_schema", "{last}");
    let js = &last["response_format"]["json_schema"];
    assert_eq!((js["name"].as_str(), js["strict"].as_bool()), (Some("thing"), Some(true)), "{last}");
    assert_eq!(js["schema"]["required"], serde_json::json!(["a"]), "{last}");
}

#[tokio::test]
async fn bad_responses_requests_are_400s_naming_the_field() {
    let (mock, gw) = over("openai").await;
    let out = run(&gw.url("/v1"), "bad").await;
    let case = |name: &str| {
        (
            out[name]["status"].as_u64(),
            out[name]["param"].as_str(),
            out[name]["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (status, param, message) = case("tool");
    assert_eq!((status, param), (Some(400), Some("tools[0].type")), "{out}");
    assert!(message.contains("only 'function' tools"), "{message}");
    let (status, param, message) = case("previous");
    assert_eq!((status, param), (Some(404), Some("previous_response_id")), "{out}");
    assert!(message.contains("Previous response with id 'resp_123' not found."), "{message}");
    let (status, param, _) = case("item");
    assert_eq!((status, param), (Some(400), Some("input[0].type")), "{out}");
    assert_eq!(out["model"]["status"], 404, "{out}");
    assert_eq!(mock.stats().snapshot().requests, 0, "nothing bad reached the upstream");
}

/// The stored-responses script: two users' keys, continuing, reading, deleting.
const STORED: &str = r#"
import sys, json, openai
base, part, ann_key, bob_key = sys.argv[1:5]
ann = openai.OpenAI(base_url=base, api_key=ann_key, max_retries=0)
bob = openai.OpenAI(base_url=base, api_key=bob_key, max_retries=0)
M = "mock-model"

def refused(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"status": e.status_code, "body": e.body}
    raise AssertionError("accepted")

if part == "turns":
    first = ann.responses.create(model=M, instructions="be brief", input="my name is Ann [mock tokens=2]")
    assert first.store is True and first.previous_response_id is None, first
    # Streamed: the next turn continues from it as soon as its last event is read.
    events = list(ann.responses.create(model=M, previous_response_id=first.id,
                                       input=[{"role": "user", "content": "who am I? [mock tokens=3]"}],
                                       stream=True))
    second = events[-1].response
    assert events[-1].type == "response.completed" and second.store is True, events[-1]
    assert second.previous_response_id == first.id and second.output_text == "t0 t1 t2 ", second
    third = ann.responses.create(model=M, previous_response_id=second.id, input="again [mock tokens=1]")
    assert third.previous_response_id == second.id and third.output_text == "t0 ", third
    print(json.dumps({"first": first.id, "second": second.id, "third": third.id}))

elif part == "owners":
    first, second, third = sys.argv[5:8]
    got = ann.responses.retrieve(second)
    assert got.id == second and got.output_text == "t0 t1 t2 " and got.previous_response_id == first, got
    assert got.status == "completed" and got.store is True, got
    out = {
        "continue": refused(lambda: bob.responses.create(model=M, previous_response_id=first, input="hi")),
        "retrieve": refused(lambda: bob.responses.retrieve(first)),
        "delete": refused(lambda: bob.responses.delete(first)),
    }
    unstored = ann.responses.create(model=M, input="forget me [mock tokens=1]", store=False)
    assert unstored.store is False, unstored
    out["unstored"] = refused(lambda: ann.responses.create(model=M, previous_response_id=unstored.id, input="hi"))
    out["unstored_retrieve"] = refused(lambda: ann.responses.retrieve(unstored.id))
    deleted = ann.responses.with_raw_response.delete(first)
    out["deleted"] = deleted.http_response.json()
    out["after_delete"] = refused(lambda: ann.responses.retrieve(first))
    # Each stored response keeps its whole context: the chain outlives its first link.
    fourth = ann.responses.create(model=M, previous_response_id=third, input="still here? [mock tokens=1]")
    assert fourth.output_text == "t0 ", fourth
    # Bob's own chain works for Bob.
    b = bob.responses.create(model=M, input="bob here [mock tokens=1]")
    assert bob.responses.retrieve(b.id).id == b.id
    print(json.dumps(out))
"#;

async fn stored(base: &str, part: &str, keys: [&str; 2], ids: &[&str]) -> serde_json::Value {
    let mut args = vec![base, part];
    args.extend(keys);
    args.extend_from_slice(ids);
    python_json(STORED, &args).await
}

/// `previous_response_id` through the SDK: each turn's upstream request holds the turns
/// before it (the streamed one too, continued from at once); another user's key gets
/// OpenAI's 404 for every id of the first user's; `store: false` keeps nothing;
/// retrieve and delete.
#[tokio::test]
async fn stored_responses_continue_for_their_owner_only() {
    let (mock, gw) = over("openai").await;
    let store = &gw.state.store;
    let mut keys = Vec::new();
    for name in ["ann", "bob"] {
        let user = store.create_user(name, "a long password", false).await.unwrap();
        let new = sluice_store::NewApiKey { user_id: user.id, ..Default::default() };
        keys.push(store.create_api_key(&new).await.unwrap().1);
    }
    gw.state.directory.reload().await.unwrap();
    let keys = [keys[0].as_str(), keys[1].as_str()];
    let base = gw.url("/v1");

    let ids = stored(&base, "turns", keys, &[]).await;
    let last = mock.stats().last().unwrap().body;
    let turns: Vec<(String, String)> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let want = [
        ("user", "my name is Ann [mock tokens=2]"),
        ("assistant", "t0 t1 "),
        ("user", "who am I? [mock tokens=3]"),
        ("assistant", "t0 t1 t2 "),
        ("user", "again [mock tokens=1]"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(r, c)| ((*r).to_owned(), (*c).to_owned())).collect();
    assert_eq!(turns, want, "the chain, without the first turn's instructions: {last}");

    let id = |k: &str| ids[k].as_str().unwrap().to_owned();
    let (first, second, third) = (id("first"), id("second"), id("third"));
    let out = stored(&base, "owners", keys, &[&first, &second, &third]).await;
    let not_found = serde_json::json!({
        "message": format!("Previous response with id '{first}' not found."),
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    });
    assert_eq!(out["continue"]["status"], 404, "{out}");
    assert_eq!(out["continue"]["body"], not_found, "{out}");
    for case in ["retrieve", "delete", "unstored_retrieve", "after_delete"] {
        assert_eq!(out[case]["status"], 404, "{case}: {out}");
    }
    assert_eq!(out["retrieve"]["body"]["message"], format!("Response with id '{first}' not found."));
    assert_eq!(out["unstored"]["status"], 404, "{out}");
    assert_eq!(out["unstored"]["body"]["code"], "previous_response_not_found", "{out}");
    assert_eq!(out["deleted"], serde_json::json!({"id": first, "object": "response", "deleted": true}));
}
