//! The Ollama dialect: NDJSON streams, non-stream replies, metadata routes, errors.

use serde_json::{Value, json};
use sluice_mock::MockConfig;

use crate::support::*;

#[tokio::test]
async fn ollama_chat_streams_ndjson_with_final_stats() {
    let mock = mock(MockConfig { tokens: 4, ..MockConfig::default() }).await;
    let body =
        json!({"model": "mock-model", "messages": [{"role": "user", "content": "why is the sky blue"}]});
    let response = post(format!("{}/api/chat", mock.ollama_base()), body).await;
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let lines = Events::ndjson(response).rest().await;
    assert_eq!(lines.len(), 5);
    for (i, line) in lines[..4].iter().enumerate() {
        let object: Value = serde_json::from_str(line).unwrap();
        assert_eq!(object["message"], json!({"role": "assistant", "content": format!("t{i} ")}));
        assert_eq!(object["done"], false);
        assert_eq!(object["model"], "mock-model");
        assert!(object["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let done: Value = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["prompt_eval_count"], 5);
    assert_eq!(done["eval_count"], 4);
    for field in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        assert!(done[field].is_u64(), "{field} missing");
    }
    assert_eq!(mock.stats().snapshot().streams_completed, 1);
}

#[tokio::test]
async fn ollama_generate_non_stream_num_predict_and_errors() {
    let mock = mock(MockConfig::default()).await;
    let base = mock.ollama_base();
    let body = json!({"model": "mock-model:latest", "prompt": "p q", "stream": false, "options": {"num_predict": 2}});
    let reply: Value = post(format!("{base}/api/generate"), body).await.json().await.unwrap();
    assert_eq!(reply["response"], "t0 t1 ");
    assert_eq!(reply["done"], true);
    assert_eq!(reply["done_reason"], "length");
    assert_eq!(reply["eval_count"], 2);

    let missing = post(format!("{base}/api/generate"), json!({"model": "nope", "prompt": "x"})).await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert!(error["error"].is_string());
    let bad = client().post(format!("{base}/api/chat")).body("[").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn ollama_metadata_routes() {
    let mock = mock(MockConfig::default()).await;
    let base = mock.ollama_base();
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { client().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(get("/api/tags").await["models"][0]["name"], "mock-model:latest");
    assert_eq!(get("/api/ps").await["models"][0]["model"], "mock-model:latest");
    assert!(get("/api/version").await["version"].is_string());
    let show: Value =
        post(format!("{base}/api/show"), json!({"model": "mock-model"})).await.json().await.unwrap();
    assert_eq!(show["details"]["format"], "gguf");
    let show = post(format!("{base}/api/show"), json!({"model": "other"})).await;
    assert_eq!(show.status(), 404);
    let embed: Value = post(format!("{base}/api/embed"), json!({"model": "mock-model", "input": "a b"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(embed["embeddings"][0].as_array().unwrap().len(), 8);
    assert_eq!(embed["prompt_eval_count"], 2);
}
