//! Structured output from the embedded engine (SmolLM2), through the official clients:
//! the `openai` SDK's `parse` with a Pydantic model and the `ollama` client's `format`.
//! The schema is enforced inside the engine's sampler, so every answer validates; a
//! schema that cannot be enforced is a 400 naming the field, in both dialects.

use serde_json::{Value, json};

use crate::engine::{engine_gateway, post};

/// 20 prompts through `client.chat.completions.parse`; every answer must parse into the
/// Pydantic model (the SDK raises on invalid JSON or a length-truncated answer).
const OPENAI_SCRIPT: &str = r#"
import sys, openai, pydantic
from typing import Annotated, Literal

class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    country: str = pydantic.Field(max_length=40)
    population_millions: int = pydantic.Field(ge=0, le=100)
    climate: Literal["hot", "mild", "cold"]
    landmarks: list[Annotated[str, pydantic.Field(max_length=40)]] = pydantic.Field(max_length=3)

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
places = ["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Nairobi", "Sydney", "Toronto", "Mumbai", "Rome",
          "Berlin", "Madrid", "Seoul", "Bangkok", "Dublin", "Mexico City", "Moscow", "Lagos", "Vienna", "Hanoi"]
ok = 0
for place in places:
    try:
        r = parse(model="smollm2", max_tokens=400, seed=7, response_format=City,
                  messages=[{"role": "user", "content": f"Describe the city of {place}."}])
    except openai.LengthFinishReasonError as err:
        raise SystemExit(f"{place}: cut at max_tokens: {err.completion.choices[0].message.content!r}")
    city = r.choices[0].message.parsed
    assert isinstance(city, City), r
    City.model_validate_json(r.choices[0].message.content)
    ok += 1
print(f"parsed {ok} of {len(places)}")
assert ok == len(places)
"#;

/// The `ollama` client's `format` with a schema, and `format="json"`.
const OLLAMA_SCRIPT: &str = r#"
import sys, json, ollama, pydantic

class Pet(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    age: int = pydantic.Field(ge=0, le=30)
    kind: str = pydantic.Field(max_length=20)

client = ollama.Client(host=sys.argv[1])
for animal in ["cat", "dog", "parrot", "hamster", "goldfish"]:
    r = client.chat(model="smollm2", format=Pet.model_json_schema(), options={"num_predict": 200, "seed": 7},
                    messages=[{"role": "user", "content": f"Describe a pet {animal}."}])
    Pet.model_validate_json(r.message.content)
    assert r.done_reason == "stop", r
r = client.generate(model="smollm2", format="json", prompt="Describe a pet as JSON.", options={"num_predict": 200, "seed": 7})
assert isinstance(json.loads(r.response), dict), r
print("ollama-format-ok")
"#;

pub(crate) async fn python(script: &str, base: &str, what: &str) -> String {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(base)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the {what} script failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test]
async fn openai_sdk_parse_with_a_pydantic_model_validates_on_every_prompt() {
    let gw = engine_gateway("").await;
    let stdout = python(OPENAI_SCRIPT, &gw.url("/v1"), "openai SDK parse").await;
    assert!(stdout.contains("parsed 20 of 20"), "{stdout}");
}

#[tokio::test]
async fn ollama_client_format_schema_and_json_validate() {
    let gw = engine_gateway("").await;
    let stdout = python(OLLAMA_SCRIPT, &gw.url(""), "ollama client format").await;
    assert!(stdout.contains("ollama-format-ok"), "{stdout}");
}

#[tokio::test]
async fn a_schema_the_engine_cannot_enforce_is_a_400_naming_the_field_in_both_dialects() {
    let gw = engine_gateway("").await;
    let bad = json!({"type": "object", "properties": {"a": {"type": "strin"}}});
    let r = post(
        &gw,
        "/v1/chat/completions",
        json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": bad}},
        }),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "response_format", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("strin"), "the cause is named: {msg}");

    let r = post(
        &gw,
        "/api/chat",
        json!({"model": "smollm2", "stream": true, "format": bad, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 400, "refused before the stream starts");
    let v: Value = r.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("format") && msg.contains("strin"), "{msg}");
}

#[tokio::test]
async fn the_engine_reports_structured_output_in_v1_models() {
    let gw = engine_gateway("").await;
    let v: Value =
        crate::util::client().get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let caps = &v["data"][0]["capabilities"];
    assert!(caps.as_array().is_some_and(|c| c.contains(&json!("json_schema"))), "{v}");
}
