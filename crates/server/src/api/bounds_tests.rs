//! Bounds a client meets before its request reaches a model: who may change a
//! model's keep-alive, and how much one request may ask for (stop sequences,
//! embedding inputs).

#![allow(clippy::unwrap_used)]

use http::StatusCode;

use super::{
    auth_tests::user_with_key,
    router_tests::{call, error_message, state_with},
};

/// `keep_alive: 0` unloads a model for everyone: a user's request saying so is refused
/// with 403 naming the rule, on every route that reads it; an admin's is served.
#[tokio::test]
async fn only_an_admin_may_unload_a_model() {
    let state = state_with("").await;
    let (_, user) = user_with_key(&state, "user", false, None, None).await;
    let (_, admin) = user_with_key(&state, "boss", true, None, None).await;
    let calls = [
        ("/api/generate", r#"{"model":"m","prompt":"hi","stream":false,"keep_alive":0}"#),
        ("/api/generate", r#"{"model":"m","keep_alive":"0s"}"#),
        (
            "/api/chat",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false,"keep_alive":0}"#,
        ),
        ("/api/embed", r#"{"model":"m","input":"hi","keep_alive":0}"#),
    ];
    for (path, body) in calls {
        let (status, json) = call(&state, "POST", path, body, Some(&user)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} {body}: {json}");
        let message = error_message(path, &json).unwrap();
        assert!(message.contains("only an admin"), "{message}");
        let (status, json) = call(&state, "POST", path, body, Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{path} {body}: {json}");
    }
    // Other keep-alives are the user's to give (cut to the maximum).
    let body = r#"{"model":"m","prompt":"hi","stream":false,"keep_alive":-1}"#;
    assert_eq!(call(&state, "POST", "/api/generate", body, Some(&user)).await.0, StatusCode::OK);
}

/// Stop sequences: 16 at most, each at most 256 bytes, in both dialects.
#[tokio::test]
async fn stop_sequences_are_bounded_in_both_dialects() {
    let state = state_with("").await;
    let seventeen: Vec<String> = (0..17).map(|i| i.to_string()).collect();
    let long = vec!["x".repeat(257)];
    for stop in [serde_json::json!(seventeen), serde_json::json!(long)] {
        let openai =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": stop});
        let (status, json) = call(&state, "POST", "/v1/chat/completions", &openai.to_string(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["error"]["param"], "stop", "{json}");
        let ollama =
            serde_json::json!({"model": "m", "prompt": "hi", "stream": false, "options": {"stop": stop}});
        let (status, json) = call(&state, "POST", "/api/generate", &ollama.to_string(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert!(json["error"].as_str().unwrap().contains("options.stop"), "{json}");
    }
}

/// At most 2,048 embedding inputs per request, in both dialects; 2,048 is served.
#[tokio::test]
async fn embedding_inputs_are_bounded_in_both_dialects() {
    let state = state_with("").await;
    for (path, n, want) in [
        ("/v1/embeddings", 2049, StatusCode::BAD_REQUEST),
        ("/api/embed", 2049, StatusCode::BAD_REQUEST),
        ("/v1/embeddings", 2048, StatusCode::OK),
        ("/api/embed", 2048, StatusCode::OK),
    ] {
        let body = serde_json::json!({"model": "m", "input": vec!["hi"; n]});
        let (status, json) = call(&state, "POST", path, &body.to_string(), None).await;
        assert_eq!(status, want, "{path} {n}");
        if want == StatusCode::BAD_REQUEST {
            assert!(error_message(path, &json).unwrap().contains("at most 2048"), "{json}");
        }
    }
}
