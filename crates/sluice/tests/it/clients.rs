//! The real clients people point at Sluice, unchanged: the `ollama` Python client on
//! every Ollama endpoint it offers, the `openai` Python and Node SDKs with
//! reasoning-model parameters, token embeddings, `dimensions`, and their error classes
//! and retries, and LangChain's OpenAI and Ollama chat models and embeddings.

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

/// The client libraries installed by `scripts/setup.sh` (`npm ci` in `tests/clients`).
fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

#[tokio::test]
async fn the_openai_node_sdk_works_unchanged() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let before = mock.stats().snapshot().requests;
    let dir = clients_dir();
    let out = tokio::process::Command::new("node")
        .arg(dir.join("openai_node.mjs"))
        .arg(gw.url("/v1"))
        .current_dir(&dir)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("node runs");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("client-ok"),
        "the openai Node SDK script failed (scripts/setup.sh installs it into tests/clients):\n{text}"
    );
    let sent = mock.stats().snapshot().requests - before;
    assert_eq!(sent, 5, "chat, stream, the 400, one try at the 401, the broken stream");
}

const LANGCHAIN: &str = r#"
import sys
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langchain_ollama import ChatOllama, OllamaEmbeddings
base = sys.argv[1]
llm = ChatOpenAI(base_url=base + "/v1", api_key="unused", model="mock-model", max_tokens=3, max_retries=0)
r = llm.invoke("hello")
assert r.content == "t0 t1 t2 ", r
assert r.usage_metadata["output_tokens"] == 3, r.usage_metadata
assert "".join(c.content for c in llm.stream("hello")) == "t0 t1 t2 "
# LangChain tokenizes with tiktoken by default, which downloads its tables: without the
# internet, strings are sent (token arrays are covered by the SDK tests).
emb = OpenAIEmbeddings(base_url=base + "/v1", api_key="unused", model="mock-model", check_embedding_ctx_length=False)
assert len(emb.embed_documents(["a", "b"])) == 2
ol = ChatOllama(base_url=base, model="mock-model", validate_model_on_init=True, num_predict=2)
assert ol.invoke("hi").content == "t0 t1 ", "ollama chat"
assert "".join(c.content for c in ol.stream("hi")) == "t0 t1 "
try:
    ChatOllama(base_url=base, model="nope", validate_model_on_init=True)
    raise SystemExit("an unknown model must fail validation")
except ValueError as err:
    assert "nope" in str(err), err
oemb = OllamaEmbeddings(base_url=base, model="mock-model")
assert len(oemb.embed_query("a")) > 0
print("client-ok")
"#;

#[tokio::test]
async fn langchain_openai_and_ollama_models_work_unchanged() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let (ok, out) = python(LANGCHAIN, &gw.url("")).await;
    assert!(ok, "the LangChain script failed (pip install langchain-openai langchain-ollama):\n{out}");
}
