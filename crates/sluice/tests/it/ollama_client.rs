//! The official `ollama` Python client against the gateway's `/api`, with an OpenAI
//! mock upstream behind it (every field translated) and an Ollama one (carried as is):
//! tools, `format` with a schema, images, `think`.

use sluice_mock::MockConfig;

use crate::util::*;

const SCRIPT: &str = r#"
import sys, json, ollama
client = ollama.Client(host=sys.argv[1])
png = sys.argv[2]
tools = [{"type": "function", "function": {"name": "lookup", "description": "Looks a thing up",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
ask = [{"role": "user", "content": "find it [mock tokens=3 call=lookup]"}]

r = client.chat(model="mock-model", messages=ask, tools=tools)
calls = r.message.tool_calls
assert len(calls) == 1 and calls[0].function.name == "lookup", r
assert calls[0].function.arguments == {"q": "t0 t1 t2 "}, r
streamed = [c for chunk in client.chat(model="mock-model", messages=ask, tools=tools, stream=True)
            for c in (chunk.message.tool_calls or [])]
assert len(streamed) == 1 and streamed[0].function.arguments == {"q": "t0 t1 t2 "}, streamed
history = ask + [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "t0 t1 t2 "}}}]},
                 {"role": "tool", "content": "42", "tool_name": "lookup"}]
r = client.chat(model="mock-model", messages=history, tools=tools)
assert r.message.content == "t0 t1 t2 " and not r.message.tool_calls, r

r = client.chat(model="mock-model", think=True, messages=[{"role": "user", "content": "why? [mock tokens=3 reasoning=2]"}])
assert r.message.thinking == "t0 t1 " and r.message.content == "t2 ", r
thinking = "".join(c.message.thinking or "" for c in client.chat(model="mock-model", think=True, stream=True,
                   messages=[{"role": "user", "content": "why? [mock tokens=3 reasoning=2]"}]))
assert thinking == "t0 t1 ", thinking

schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
r = client.chat(model="mock-model", format=schema, messages=[{"role": "user", "content": "json [mock tokens=1]"}])
assert r.message.content == "t0 ", r
print(json.dumps({"schema": schema}))

r = client.chat(model="mock-model", messages=[{"role": "user", "content": "what is it? [mock tokens=1]", "images": [png]}])
assert r.message.content == "t0 ", r
print(json.dumps({"ok": True}))
"#;

/// A 1×1 PNG.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[tokio::test]
async fn official_ollama_python_client_with_tools_formats_images_and_thinking() {
    for kind in ["openai", "ollama"] {
        let mock = mock(MockConfig::default()).await;
        let gw = Gateway::over(&mock, kind, "").await;
        let out = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(gw.url(""))
            .arg(PNG)
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the ollama client script failed against a {kind} upstream (install it with `pip install ollama`):\n{stdout}\n{stderr}"
        );
        // The last request carried the image, in the upstream's own form.
        let last = mock.stats().last().unwrap().body;
        let m = &last["messages"][0];
        match kind {
            "openai" => {
                assert_eq!(
                    m["content"][1]["image_url"]["url"],
                    format!("data:image/png;base64,{PNG}"),
                    "{last}"
                );
            }
            _ => assert_eq!(m["images"], serde_json::json!([PNG]), "{last}"),
        }
    }
}
