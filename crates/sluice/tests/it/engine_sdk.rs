//! Log probabilities and tool calling from the embedded engine (SmolLM2), through the
//! real `openai` Python SDK. Tool calling uses a short Hermes-style chat template given
//! as the `[engine] chat_template` override: SmolLM2's own template has no `tools`
//! section (and so, without the override, it answers 400 to tools: see `engine.rs`).

use serde_json::{Value, json};

use crate::engine::{engine_gateway, post};
use crate::structured::python;

/// Whole and streamed answers with `logprobs` + `top_logprobs`: one entry per generated
/// token, the tokens spell the answer, greedy picks the likeliest, the lists are sorted
/// and hold at most all the probability, and the stream carries the same entries.
const LOGPROBS_SCRIPT: &str = r#"
import sys, math, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
ask = dict(model="smollm2", messages=[{"role": "user", "content": "Name three colors."}],
           max_tokens=16, temperature=0, logprobs=True, top_logprobs=5)
r = client.chat.completions.create(**ask)
lp = r.choices[0].logprobs.content
assert len(lp) == r.usage.completion_tokens, (len(lp), r.usage)
assert "".join(t.token for t in lp) == r.choices[0].message.content, lp
for t in lp:
    assert len(t.top_logprobs) == 5, t
    assert t.logprob <= 0, t
    assert abs(t.logprob - t.top_logprobs[0].logprob) < 1e-5, t
    assert all(a.logprob >= b.logprob for a, b in zip(t.top_logprobs, t.top_logprobs[1:])), t
    assert sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1.0001, t
    assert bytes(t.bytes).decode() == t.token, t
text, streamed = "", []
for c in client.chat.completions.create(**ask, stream=True):
    if not c.choices:
        continue
    text += c.choices[0].delta.content or ""
    if c.choices[0].logprobs and c.choices[0].logprobs.content:
        streamed += c.choices[0].logprobs.content
assert text == r.choices[0].message.content, (text, r)
assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in lp], streamed
print("logprobs-ok")
"#;

/// tools → a forced call (whole, then named and streamed) whose arguments validate
/// against the schema → the `tool` result → a final answer; `auto` answers either way.
const TOOLS_SCRIPT: &str = r#"
import sys, json, openai, jsonschema
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
weather = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}
clock = {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 40}}, "required": ["tz"]}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": weather}},
         {"type": "function", "function": {"name": "get_time", "description": "Time in a time zone", "parameters": clock}}]
schemas = {"get_weather": weather, "get_time": clock}
msgs = [{"role": "user", "content": "What is the weather in Paris?"}]

r = client.chat.completions.create(model="smollm2", messages=msgs, tools=tools, tool_choice="required",
                                   max_tokens=200, seed=7)
c = r.choices[0]
assert c.finish_reason == "tool_calls", c
call = c.message.tool_calls[0]
assert call.id.startswith("call_") and call.type == "function", call
jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])

name, args, finish, ids = None, "", None, set()
for chunk in client.chat.completions.create(model="smollm2", messages=msgs, tools=tools, max_tokens=200, seed=7,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, stream=True):
    ch = chunk.choices[0]
    for d in ch.delta.tool_calls or []:
        name = d.function.name or name
        args += d.function.arguments or ""
        ids.add(d.id) if d.id else None
    finish = ch.finish_reason or finish
assert name == "get_time" and finish == "tool_calls" and len(ids) == 1, (name, finish, ids)
jsonschema.validate(json.loads(args), clock)

msgs.append({"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
msgs.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "unit": "celsius"})})
f = client.chat.completions.create(model="smollm2", messages=msgs, tools=tools, tool_choice="none",
                                   max_tokens=40, seed=7)
assert f.choices[0].message.content and not f.choices[0].message.tool_calls, f
assert f.choices[0].finish_reason in ("stop", "length"), f

a = client.chat.completions.create(model="smollm2", messages=msgs[:1], tools=tools, max_tokens=120, seed=7)
for t in a.choices[0].message.tool_calls or []:
    jsonschema.validate(json.loads(t.function.arguments), schemas[t.function.name])
assert a.choices[0].message.tool_calls or a.choices[0].message.content, a
print("engine-tools-ok", call.function.name, call.function.arguments, args)
"#;

/// A Hermes-style template: the tools in a system turn, calls in `<tool_call>` tags,
/// results in `<tool_response>` tags.
const HERMES_TEMPLATE: &str = r#"{%- if tools %}<|im_start|>system
You are a function calling AI model. You may call one of these functions to answer the user:
<tools>
{% for tool in tools %}{{ tool.function | tojson }}
{% endfor %}</tools>
For each function call, return a JSON object with the function name and arguments within <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.tool_calls is defined %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

#[tokio::test]
async fn openai_sdk_gets_logprobs_from_the_engine_whole_and_streamed() {
    let gw = engine_gateway("").await;
    let stdout = python(LOGPROBS_SCRIPT, &gw.url("/v1"), "openai SDK logprobs").await;
    assert!(stdout.contains("logprobs-ok"), "{stdout}");

    // Ollama's dialect: one entry per evaluated token, with the alternatives asked for.
    let r = post(
        &gw,
        "/api/chat",
        json!({"model": "smollm2", "stream": false, "logprobs": true, "top_logprobs": 3,
               "options": {"num_predict": 8, "temperature": 0},
               "messages": [{"role": "user", "content": "Name a color."}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let lp = v["logprobs"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(lp.len() as u64, v["eval_count"].as_u64().unwrap(), "{v}");
    assert!(lp.iter().all(|t| t["top_logprobs"].as_array().is_some_and(|a| a.len() == 3)), "{v}");
    let models: Value =
        crate::util::client().get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let caps = models["data"][0]["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("logprobs")) && !caps.contains(&json!("tools")), "{models}");
}

#[tokio::test]
async fn openai_sdk_tool_calling_round_trip_through_a_template_override() {
    let gw = engine_gateway(&format!("chat_template = '''{HERMES_TEMPLATE}'''")).await;
    let models: Value =
        crate::util::client().get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let caps = models["data"][0]["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("tools")), "the override renders tools: {models}");
    let stdout = python(TOOLS_SCRIPT, &gw.url("/v1"), "openai SDK engine tools").await;
    assert!(stdout.contains("engine-tools-ok"), "{stdout}");
    eprintln!("{stdout}");
}
