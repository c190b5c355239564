//! Both dialects' wire formats, against both kinds of upstream.

use sluice_mock::MockConfig;

use crate::util::*;

#[tokio::test]
async fn openai_stream_through_openai_upstream() {
    let mock = mock(MockConfig { tokens: 3, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("hi there", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert!(resp.headers().contains_key("x-request-id"));
    let frames = Frames::sse(resp).rest().await;
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = frames[..frames.len() - 1].iter().map(|f| json(f)).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "t0 t1 t2 ");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    assert_eq!(usage["usage"]["total_tokens"], 5);
}

#[tokio::test]
async fn openai_non_stream_and_parameter_translation() {
    let mock = mock(MockConfig { tokens: 8, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = serde_json::json!({
        "model": "mock-model", "messages": [{"role": "user", "content": "x"}],
        "max_completion_tokens": 2, "temperature": 0.5, "seed": 7, "stop": ["zz"], "user": "u1",
        "tools": [], "logit_bias": {}
    });
    let resp = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "t0 t1 ");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let up = mock.stats().last().unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    // The client's name for the cap, as reasoning models require.
    assert_eq!(up.body["max_completion_tokens"], 2);
    assert!(up.body.get("max_tokens").is_none());
    assert_eq!(up.body["tools"], serde_json::json!([]));
    assert_eq!(up.body["seed"], 7);
    assert_eq!(up.body["stop"], serde_json::json!(["zz"]));
    assert_eq!(up.body["user"], "u1");
    // A whole answer is streamed from the upstream and assembled by the gateway.
    assert_eq!(up.body["stream"], true);
}

#[tokio::test]
async fn ollama_client_over_openai_upstream() {
    let mock = mock(MockConfig { tokens: 3, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = serde_json::json!({
        "model": "mock-model", "messages": [{"role": "user", "content": "a b c"}],
        "options": {"num_predict": 2, "temperature": 0.1}
    });
    let resp = client().post(gw.url("/api/chat")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<serde_json::Value> = Frames::ndjson(resp).rest().await.iter().map(|l| json(l)).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["message"]["content"], "t0 ");
    assert_eq!(lines[0]["done"], false);
    let last = &lines[2];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 2);
    assert_eq!(last["prompt_eval_count"], 3);
    assert!(last["total_duration"].as_u64().unwrap() >= last["eval_duration"].as_u64().unwrap());
    let up = mock.stats().last().unwrap();
    assert_eq!(up.body["max_tokens"], 2);
    assert_eq!(up.body["stream"], true);
}

#[tokio::test]
async fn openai_client_over_ollama_upstream() {
    let mock = mock(MockConfig { tokens: 4, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "ollama", "").await;
    let body = serde_json::json!({
        "model": "mock-model", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
        "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}, "seed": 1
    });
    let resp = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let frames = Frames::sse(resp).rest().await;
    assert_eq!(frames.last().unwrap(), "[DONE]");
    let text: String = frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .filter_map(|f| json(f)["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "t0 t1 t2 ");
    let usage = json(&frames[frames.len() - 2]);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    let up = mock.stats().last().unwrap();
    assert_eq!(up.path, "/api/chat");
    assert_eq!(up.body["options"]["num_predict"], 3);
    assert_eq!(up.body["options"]["seed"], 1);
    assert_eq!(up.body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn ollama_generate_non_stream_and_openai_completions() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "ollama", "").await;
    let body =
        serde_json::json!({"model": "mock-model", "prompt": "why", "stream": false, "system": "be kind"});
    let v: serde_json::Value =
        client().post(gw.url("/api/generate")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["response"], "t0 t1 ");
    assert_eq!(v["done"], true);
    assert_eq!(v["eval_count"], 2);
    let up = mock.stats().last().unwrap();
    assert_eq!(up.path, "/api/generate");
    assert_eq!(up.body["system"], "be kind");

    // Legacy completions reach an OpenAI upstream's /v1/completions, streamed.
    let mock2 = sluice_mock::MockServer::start(MockConfig { tokens: 2, ..Default::default() }).await.unwrap();
    let gw2 = Gateway::over(&mock2, "openai", "").await;
    let body = serde_json::json!({"model": "mock-model", "prompt": "once upon", "stream": true});
    let resp = client().post(gw2.url("/v1/completions")).json(&body).send().await.unwrap();
    let frames = Frames::sse(resp).rest().await;
    let first = json(&frames[0]);
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "t0 ");
    assert_eq!(mock2.stats().last().unwrap().path, "/v1/completions");
}

#[tokio::test]
async fn empty_ollama_prompt_just_loads() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let v: serde_json::Value = client()
        .post(gw.url("/api/generate"))
        .json(&serde_json::json!({"model": "mock-model"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["done_reason"], "load");
    assert_eq!(mock.stats().snapshot().requests, 0);
}

#[tokio::test]
async fn model_listings_and_show() {
    let mock = mock(MockConfig::default()).await;
    let extra = "models = [\"mock-model\", { name = \"alias\", upstream = \"mock-model\" }]";
    let toml =
        format!("[[backends]]\nname = \"m\"\nkind = \"openai\"\nurl = \"{}\"\n{extra}\n", mock.openai_base());
    let gw = Gateway::start(&toml).await;
    let c = client();
    let v: serde_json::Value = c.get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alias", "mock-model"]);
    assert_eq!(v["data"][0]["owned_by"], "m");
    let r = c.get(gw.url("/v1/models/alias")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    let v: serde_json::Value = c.get(gw.url("/api/tags")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    assert_eq!(v["models"][1]["name"], "mock-model:latest");
    assert!(v["models"][1].get("digest").is_none(), "an OpenAI upstream gives no digest: {v}");
    let r = c.post(gw.url("/api/show")).json(&serde_json::json!({"model": "alias"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(gw.url("/api/show")).json(&serde_json::json!({"model": "zzz"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("zzz"));
    let v: serde_json::Value = c.get(gw.url("/api/version")).send().await.unwrap().json().await.unwrap();
    assert!(v["version"].is_string());
    let v: serde_json::Value = c.get(gw.url("/api/ps")).send().await.unwrap().json().await.unwrap();
    assert!(v["models"].is_array());

    // An alias is sent upstream under its real name.
    let body = serde_json::json!({"model": "alias", "messages": [{"role": "user", "content": "x"}]});
    let v: serde_json::Value =
        c.post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["model"], "alias");
    assert_eq!(mock.stats().last().unwrap().body["model"], "mock-model");
}

#[tokio::test]
async fn discovered_models_from_both_kinds() {
    let a = mock(MockConfig { models: vec!["from-openai".into()], ..Default::default() }).await;
    let b = mock(MockConfig { models: vec!["from-ollama".into()], ..Default::default() }).await;
    let toml = format!(
        "[[backends]]\nname = \"a\"\nkind = \"openai\"\nurl = \"{}\"\n[[backends]]\nname = \"b\"\nkind = \"ollama\"\nurl = \"{}\"\n",
        a.openai_base(),
        b.ollama_base()
    );
    let gw = Gateway::start(&toml).await;
    let v: serde_json::Value = client().get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["from-ollama:latest", "from-openai"]);
    // As with Ollama itself, the bare name reaches the `:latest` model.
    let body = serde_json::json!({"model": "from-ollama", "messages": [{"role": "user", "content": "x"}]});
    let r = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(b.stats().last().unwrap().body["model"], "from-ollama:latest");
}

#[tokio::test]
async fn embeddings_in_both_dialects() {
    let mock = mock(MockConfig::default()).await;
    for kind in ["openai", "ollama"] {
        let gw = Gateway::over(&mock, kind, "").await;
        let c = client();
        let v: serde_json::Value = c
            .post(gw.url("/v1/embeddings"))
            .json(&serde_json::json!({"model": "mock-model", "input": ["a", "b"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["object"], "list", "{kind}: {v}");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        let e: serde_json::Value = c
            .post(gw.url("/api/embed"))
            .json(&serde_json::json!({"model": "mock-model", "input": "a"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(e["embeddings"].as_array().unwrap().len(), 1);
        assert_eq!(e["embeddings"][0], v["data"][0]["embedding"], "{kind}: same text, same vector");
    }
}
