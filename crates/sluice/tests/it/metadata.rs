//! Ollama model metadata (`/api/tags`, `/api/show`, `/api/ps`) carries what the
//! upstream said, and leaves out what nobody knows.

use serde_json::{Value, json};
use sluice_mock::MockConfig;

use crate::util::*;

/// What the mock upstream itself lists under `/api/tags`, by name.
async fn upstream_tag(mock: &sluice_mock::MockServer, name: &str) -> Value {
    let url = format!("{}/api/tags", mock.ollama_base());
    let v: Value = client().get(url).send().await.unwrap().json().await.unwrap();
    v["models"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned().expect("the mock lists it")
}

async fn tags(gw: &Gateway) -> Vec<Value> {
    let v: Value = client().get(gw.url("/api/tags")).send().await.unwrap().json().await.unwrap();
    v["models"].as_array().unwrap().clone()
}

async fn show(gw: &Gateway, model: &str) -> Value {
    let r = client().post(gw.url("/api/show")).json(&json!({"model": model})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_ollama_upstreams_digest_and_mtime_pass_through() {
    let mock =
        mock(MockConfig { models: vec!["llama3".into(), "mock-model".into()], ..Default::default() }).await;
    // One model discovered, one configured by its bare name (the upstream tags it `:latest`).
    let discovering =
        format!("[[backends]]\nname = \"d\"\nkind = \"ollama\"\nurl = \"{}\"\n", mock.ollama_base());
    let configured = backend_toml("c", "ollama", &mock, "");
    for (toml, name, upstream) in [
        (discovering, "llama3:latest", "llama3:latest"),
        (configured, "mock-model:latest", "mock-model:latest"),
    ] {
        let gw = Gateway::start(&toml).await;
        let theirs = upstream_tag(&mock, upstream).await;
        let ours = tags(&gw).await;
        let ours = ours.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} in {ours:?}"));
        assert_eq!(ours["digest"], theirs["digest"], "{ours}");
        assert_eq!(ours["modified_at"], theirs["modified_at"], "{ours}");
        assert!(ours["modified_at"].as_str().unwrap().starts_with("2023-11-14"), "{ours}");
        assert!(ours.get("size_vram").is_none(), "Ollama leaves size_vram out of tags: {ours}");

        let shown = show(&gw, name).await;
        assert_eq!(
            shown["capabilities"],
            json!(["completion", "embedding", "tools", "vision", "thinking", "json_schema", "logprobs"]),
            "the upstream's own, with what every Ollama model takes: {shown}"
        );
        assert_eq!(shown["modified_at"], theirs["modified_at"]);
        assert_eq!(shown["details"]["family"], "mock");
    }
}

#[tokio::test]
async fn unknown_metadata_is_left_out() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let models = tags(&gw).await;
    let m = models.iter().find(|m| m["name"] == "mock-model:latest").expect("listed");
    assert!(m.get("digest").is_none(), "an OpenAI upstream gives no digest: {m}");
    assert!(m.get("modified_at").is_none(), "nor a modification time: {m}");
    let shown = show(&gw, "mock-model").await;
    assert!(shown.get("capabilities").is_none(), "nor capabilities: {shown}");
    assert!(shown.get("modified_at").is_none(), "{shown}");
}
