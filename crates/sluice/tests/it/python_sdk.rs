//! The official `openai` Python SDK, unchanged, against the gateway.

use sluice_mock::MockConfig;

use crate::util::*;

const SCRIPT: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
r = client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
assert r.choices[0].message.content == "t0 t1 t2 ", r
assert r.choices[0].finish_reason == "length", r
assert r.usage.completion_tokens == 3, r
parts, usage = [], None
stream = client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "hello"}],
                                        stream=True, stream_options={"include_usage": True})
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
assert "".join(parts) == "t0 t1 t2 t3 ", parts
assert usage.completion_tokens == 4, usage
models = [m.id for m in client.models.list()]
assert models == ["mock-model"], models
e = client.embeddings.create(model="mock-model", input=["a", "b"])
assert len(e.data) == 2
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as err:
    assert "nope" in str(err), err
try:
    for _ in client.chat.completions.create(model="mock-model", stream=True,
                                            messages=[{"role": "user", "content": "[mock mode=drop_after:1]"}]):
        pass
    raise SystemExit("expected an error from the stream")
except openai.APIError as err:
    pass
print("python-sdk-ok")
"#;

#[tokio::test]
async fn official_openai_python_sdk_works_unchanged() {
    let mock = mock(MockConfig { tokens: 4, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let base = gw.url("/v1");
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&base)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("python-sdk-ok"),
        "the openai SDK script failed (install it with `pip install openai`):\n{stdout}\n{stderr}"
    );
}
