//! The real clients people point at Sluice, unchanged: the `ollama` Python client on
//! every Ollama endpoint it offers, and the `openai` Python SDK with reasoning-model
//! parameters, token embeddings, `dimensions`, and its error classes and retries.

use sluice_mock::MockConfig;

use crate::util::*;

async fn python(script: &str, arg: &str) -> (bool, String) {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("python3 runs");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("client-ok"), text)
}

const OLLAMA: &str = r#"
import sys, ollama
c = ollama.Client(host=sys.argv[1])
assert c.list().models[0].model == "mock-model:latest", c.list()
show = c.show("mock-model")
assert show.details.family == "mock", show
assert c.ps() is not None
r = c.chat(model="mock-model", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2})
assert r.message.content == "t0 t1 ", r
parts = [p.message.content for p in c.chat(model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True, options={"num_predict": 3})]
assert "".join(parts) == "t0 t1 t2 ", parts
g = c.generate(model="mock-model", prompt="hi", options={"num_predict": 2})
assert g.response == "t0 t1 ", g
e = c.embed(model="mock-model", input=["a", "b"])
assert len(e.embeddings) == 2, e
legacy = c.embeddings(model="mock-model", prompt="a")
assert len(legacy.embedding) > 0, legacy
pulled = c.pull("mock-model")
assert pulled.status == "success", pulled
for call in (lambda: c.create(model="x", from_="mock-model"), lambda: c.copy("mock-model", "y"),
             lambda: c.delete("mock-model"), lambda: c.push("mock-model")):
    try:
        call()
        raise SystemExit("model management must be refused")
    except ollama.ResponseError as err:
        assert err.status_code == 501 and "configuration" in err.error, (err.status_code, err.error)
try:
    c.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("expected a 404")
except ollama.ResponseError as err:
    assert err.status_code == 404 and "nope" in err.error, err
print("client-ok")
"#;

#[tokio::test]
async fn the_ollama_python_client_works_on_every_endpoint() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "ollama", "").await;
    let (ok, out) = python(OLLAMA, &gw.url("")).await;
    assert!(ok, "the ollama client script failed (pip install ollama):\n{out}");
}

const OPENAI: &str = r#"
import sys, openai
base, = sys.argv[1:]
c = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
r = c.chat.completions.create(model="mock-model", messages=[
        {"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi", "name": "ann"}],
    max_completion_tokens=3, reasoning_effort="low", store=True, metadata={"k": "v"}, service_tier="auto",
    extra_body={"top_k": 4})
assert r.choices[0].message.content == "t0 t1 t2 ", r
assert r.choices[0].message.refusal is None, r
assert r.system_fingerprint == "fp_mock", r
assert r.usage.completion_tokens_details.reasoning_tokens == 0, r.usage
e = c.embeddings.create(model="mock-model", input=[[1, 2, 3]], dimensions=16)
assert len(e.data) == 1
try:
    c.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "[mock mode=status:400]"}])
    raise SystemExit("expected BadRequestError")
except openai.BadRequestError as err:
    assert err.code == "context_length_exceeded" and err.param == "messages", err.body
# A refused upstream credential is not retried: one request, however many retries allowed.
retrying = openai.OpenAI(base_url=base, api_key="unused", max_retries=3)
try:
    retrying.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "[mock mode=status:401]"}])
    raise SystemExit("expected InternalServerError")
except openai.InternalServerError as err:
    assert err.status_code == 502 and "credentials" in str(err), err
print("client-ok")
"#;

#[tokio::test]
async fn the_openai_python_sdk_carries_reasoning_parameters_and_reads_errors() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let before = mock.stats().snapshot().requests;
    let (ok, out) = python(OPENAI, &gw.url("/v1")).await;
    assert!(ok, "the openai SDK script failed:\n{out}");
    // chat, embeddings, the 400, and exactly one try at the 401 (x-should-retry: false).
    assert_eq!(mock.stats().snapshot().requests - before, 3, "embeddings are not counted as generations");
}
