//! The OpenAI dialect: stream and non-stream shapes, legacy completions, models,
//! embeddings, error shapes and the API key.

use serde_json::{Value, json};
use sluice_mock::MockConfig;

use crate::support::*;

#[tokio::test]
async fn openai_stream_has_role_tokens_finish_usage_and_done() {
    let mock = mock(MockConfig::default()).await;
    let mut body = chat("hello there world", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(format!("{}/chat/completions", mock.openai_base()), body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = Events::sse(response).rest().await;

    assert_eq!(events.len(), 1 + 8 + 1 + 1 + 1, "{events:#?}");
    let first = sse_json(&events[0]);
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["usage"], Value::Null);
    assert_eq!(sse_content(&events), "t0 t1 t2 t3 t4 t5 t6 t7 ");
    let last = sse_json(&events[9]);
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    let usage = sse_json(&events[10]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11,
               "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(usage["system_fingerprint"], "fp_mock");
    assert_eq!(events[11], "data: [DONE]");
    assert!(events.iter().all(|e| e == "data: [DONE]" || sse_json(e)["id"] == first["id"]));

    let stats = mock.stats().snapshot();
    assert_eq!((stats.requests, stats.streams_started, stats.streams_completed), (1, 1, 1));
    assert_eq!((stats.streams_cancelled, stats.in_flight), (0, 0));
}

#[tokio::test]
async fn openai_non_stream_and_max_tokens() {
    let mock = mock(MockConfig::default()).await;
    let url = format!("{}/chat/completions", mock.openai_base());
    let reply: Value = post(url.clone(), chat("a b", false)).await.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["choices"][0]["message"]["content"], "t0 t1 t2 t3 t4 t5 t6 t7 ");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply["usage"]["prompt_tokens"], 2);
    assert_eq!(reply["usage"]["completion_tokens"], 8);

    let mut body = chat("a b", false);
    body["max_tokens"] = json!(3);
    let reply: Value = post(url.clone(), body).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "t0 t1 t2 ");
    assert_eq!(reply["choices"][0]["finish_reason"], "length");

    let mut body = chat("a b", true);
    body["max_completion_tokens"] = json!(2);
    let events = Events::sse(post(url, body).await).rest().await;
    assert_eq!(sse_content(&events), "t0 t1 ");
    assert_eq!(sse_json(&events[3])["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn openai_legacy_completions() {
    let mock = mock(MockConfig { tokens: 3, ..MockConfig::default() }).await;
    let url = format!("{}/completions", mock.openai_base());
    let reply: Value =
        post(url.clone(), json!({"model": "mock-model", "prompt": "one two"})).await.json().await.unwrap();
    assert_eq!(reply["object"], "text_completion");
    assert_eq!(reply["choices"][0]["text"], "t0 t1 t2 ");
    assert_eq!(reply["usage"]["prompt_tokens"], 2);

    let body = json!({"model": "mock-model", "prompt": ["x"], "stream": true});
    let events = Events::sse(post(url, body).await).rest().await;
    let texts: Vec<Value> = events[..4].iter().map(|e| sse_json(e)["choices"][0]["text"].clone()).collect();
    assert_eq!(texts, [json!("t0 "), json!("t1 "), json!("t2 "), json!("")]);
    assert_eq!(sse_json(&events[3])["choices"][0]["finish_reason"], "stop");
    assert_eq!(events.last().unwrap(), "data: [DONE]");
}

#[tokio::test]
async fn openai_models_embeddings_and_errors() {
    let mock = mock(MockConfig::default()).await;
    let base = mock.openai_base();
    let list: Value = client().get(format!("{base}/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"][0]["id"], "mock-model");
    let one = client().get(format!("{base}/models/mock-model")).send().await.unwrap();
    assert_eq!(one.status(), 200);
    let missing = client().get(format!("{base}/models/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    assert!(error["error"]["message"].is_string() && error["error"]["type"].is_string());

    let body = json!({"model": "mock-model", "input": ["a b", "c", "a b"]});
    let reply: Value = post(format!("{base}/embeddings"), body).await.json().await.unwrap();
    let data = reply["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(reply["usage"]["prompt_tokens"], 5);

    let unknown = post(format!("{base}/chat/completions"), json!({"model": "x", "messages": []})).await;
    assert_eq!(unknown.status(), 404);
    let bad = client().post(format!("{base}/chat/completions")).body("{oops").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn api_key_guards_openai_routes_only() {
    let cfg = MockConfig { require_api_key: Some("sk-test".into()), ..MockConfig::default() };
    let mock = mock(cfg).await;
    let url = format!("{}/chat/completions", mock.openai_base());
    let denied = post(url.clone(), chat("hi", false)).await;
    assert_eq!(denied.status(), 401);
    let error: Value = denied.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    let denied = client().get(format!("{}/models", mock.openai_base())).send().await.unwrap();
    assert_eq!(denied.status(), 401);

    let allowed = client()
        .post(url)
        .bearer_auth("sk-test")
        .header("X-Trace", "abc")
        .json(&chat("hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let recorded = mock.stats().last().unwrap();
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.headers["authorization"], "Bearer sk-test");
    assert_eq!(recorded.headers["x-trace"], "abc");
    assert_eq!(recorded.body["messages"][0]["content"], "hi");

    let ollama = post(format!("{}/api/chat", mock.ollama_base()), chat("hi", false)).await;
    assert_eq!(ollama.status(), 200);
}
