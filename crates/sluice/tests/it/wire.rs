//! Wire-faithful: fields Sluice does not model reach an upstream of the client's
//! dialect unchanged; across dialects, advisory ones are dropped and named in
//! `x-sluice-dropped`, answer-changing ones refused with a 400 naming them; what the
//! upstream says about the answer reaches the client.

use serde_json::json;
use sluice_mock::MockConfig;

use crate::util::*;

#[tokio::test]
async fn openai_fields_reach_an_openai_upstream_unchanged() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = json!({
        "model": "mock-model",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "hi", "name": "alice"},
        ],
        "max_completion_tokens": 9, "reasoning_effort": "high", "store": true,
        "metadata": {"team": "x"}, "service_tier": "flex", "logit_bias": {"50256": -100},
        "modalities": ["text"], "prediction": {"type": "content", "content": "hi"},
        "web_search_options": {}, "top_k": 5, "min_p": 0.1, "user": "u1",
        "x_vendor": {"nested": [1, 2]},
    });
    let resp = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-sluice-dropped").is_none(), "{:?}", resp.headers());
    let up = mock.stats().last().unwrap().body;
    for field in [
        "reasoning_effort",
        "store",
        "metadata",
        "service_tier",
        "logit_bias",
        "modalities",
        "prediction",
        "web_search_options",
        "top_k",
        "user",
        "x_vendor",
    ] {
        assert_eq!(up[field], body[field], "{field} in {up}");
    }
    assert!((up["min_p"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{up}");
    // The cap keeps the client's name: reasoning models refuse `max_tokens`.
    assert_eq!(up["max_completion_tokens"], 9);
    assert!(up.get("max_tokens").is_none(), "{up}");
    assert_eq!(up["messages"][0]["role"], "developer");
    assert_eq!(up["messages"][1]["name"], "alice");
}

#[tokio::test]
async fn across_dialects_advisory_fields_are_named_and_answer_changing_refused() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "ollama", "").await;
    let body = json!({
        "model": "mock-model",
        "messages": [{"role": "developer", "content": "s"}, {"role": "user", "content": "q", "name": "bob"}],
        "store": true, "metadata": {"a": "b"}, "user": "u", "x_vendor": 1, "max_completion_tokens": 3,
    });
    let resp = client().post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-dropped"], "metadata, store, user, x_vendor, messages[1].name");
    let up = mock.stats().last().unwrap().body;
    assert_eq!(up["messages"][0]["role"], "system");
    assert_eq!(up["options"]["num_predict"], 3);
    assert!(up.get("store").is_none() && up["messages"][1].get("name").is_none(), "{up}");

    let mut refused = body.clone();
    refused["logit_bias"] = json!({"1": 5});
    let before = mock.stats().snapshot().requests;
    let resp = client().post(gw.url("/v1/chat/completions")).json(&refused).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "logit_bias", "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(err["error"]["message"].as_str().unwrap().contains("'logit_bias'"), "{err}");
    assert_eq!(mock.stats().snapshot().requests, before, "a refused request never reaches the upstream");
}

#[tokio::test]
async fn ollama_fields_reach_an_ollama_upstream_and_are_sorted_elsewhere() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "ollama", "").await;
    let body = json!({
        "model": "mock-model", "prompt": "hi", "stream": false, "keep_alive": "10m",
        "template": "{{ .Prompt }}", "context": [1, 2, 3],
        "options": {"num_predict": 2, "num_ctx": 4096, "mirostat": 2, "typical_p": 0.7},
    });
    let resp = client().post(gw.url("/api/generate")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-sluice-dropped").is_none());
    let up = mock.stats().last().unwrap().body;
    assert_eq!(up["template"], body["template"]);
    assert_eq!(up["context"], body["context"]);
    assert_eq!(up["keep_alive"], "10m");
    assert_eq!(up["options"]["num_ctx"], 4096);
    assert_eq!(up["options"]["mirostat"], 2);
    assert_eq!(up["options"]["num_predict"], 2);

    let gw = Gateway::over(&mock, "openai", "").await;
    let resp = client().post(gw.url("/api/generate")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("'context'"), "{err}");
    let advisory = json!({
        "model": "mock-model", "prompt": "hi", "stream": false, "keep_alive": "10m",
        "options": {"num_ctx": 4096, "num_thread": 2},
    });
    let resp = client().post(gw.url("/api/generate")).json(&advisory).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-dropped"], "keep_alive, options.num_ctx, options.num_thread");
}

#[tokio::test]
async fn whole_answers_carry_refusal_and_processing_time() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ms: u64 = resp.headers()["openai-processing-ms"].to_str().unwrap().parse().unwrap();
    assert!(ms < 60_000);
    let v: serde_json::Value = resp.json().await.unwrap();
    let message = v["choices"][0]["message"].as_object().unwrap();
    assert!(message.contains_key("refusal") && message["refusal"].is_null(), "{v}");
    // Streamed chunks carry no `"system_fingerprint": null` (a string or absent).
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
    for frame in Frames::sse(resp).rest().await.iter().filter(|f| *f != "[DONE]") {
        let chunk = json(frame);
        assert!(chunk.get("system_fingerprint").is_none_or(|f| f.is_string()), "{chunk}");
    }
}

#[tokio::test]
async fn what_an_openai_upstream_says_about_the_answer_reaches_the_client() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", false)).send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["system_fingerprint"], "fp_mock", "{v}");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{v}");
    assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 0, "{v}");
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", true)).send().await.unwrap();
    let frames = Frames::sse(resp).rest().await;
    let usage = json(&frames[frames.len() - 2]);
    assert_eq!(usage["system_fingerprint"], "fp_mock", "{usage}");
    assert_eq!(usage["usage"]["completion_tokens_details"]["reasoning_tokens"], 0, "{usage}");
    let finish = json(&frames[frames.len() - 3]);
    assert_eq!(finish["system_fingerprint"], "fp_mock", "{finish}");
}

/// Fields Sluice does not model that an OpenAI upstream puts on its answer (a
/// service tier, a router's provider) reach an OpenAI client, whole or streamed; an
/// Ollama client, whose dialect has no place for them, does not get them.
#[tokio::test]
async fn an_openai_upstreams_vendor_fields_reach_openai_clients() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let ask = "x [mock vendor=1]";
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body(ask, false)).send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (v["service_tier"].as_str(), v["provider"].as_str()),
        (Some("default"), Some("mock-provider")),
        "{v}"
    );
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body(ask, true)).send().await.unwrap();
    let frames = Frames::sse(resp).rest().await;
    for closing in [&frames[frames.len() - 2], &frames[frames.len() - 3]] {
        let chunk = json(closing);
        assert_eq!(chunk["provider"], "mock-provider", "{chunk}");
        assert_eq!(chunk["system_fingerprint"], "fp_mock", "{chunk}");
        assert_eq!(chunk["id"], json(&frames[0])["id"], "one id, not the upstream's: {chunk}");
    }
    // Without the directive, nothing extra.
    let resp =
        client().post(gw.url("/v1/chat/completions")).json(&chat_body("x", false)).send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v.get("provider").is_none() && v.get("service_tier").is_none(), "{v}");
    // Another dialect has no place for them.
    let resp = client().post(gw.url("/api/chat")).json(&ollama_chat_body(ask, false)).send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["done"], true, "{v}");
    assert!(v.get("provider").is_none(), "{v}");
}

#[tokio::test]
async fn upstream_errors_keep_type_code_and_param() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock mode=status:400]", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    assert_eq!(v["error"]["param"], "messages", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("This model's maximum context length is 8192 tokens."), "{v}");
}

#[tokio::test]
async fn refused_upstream_credentials_are_a_502_not_to_retry_with_the_key_scrubbed() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    for (path, body) in [
        ("/v1/chat/completions", chat_body("[mock mode=status:401]", false)),
        ("/api/chat", ollama_chat_body("[mock mode=status:401]", false)),
    ] {
        let resp = client().post(gw.url(path)).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 502, "{path}");
        assert_eq!(resp.headers()["x-should-retry"], "false", "{path}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("credentials"), "{text}");
        assert!(!text.contains("sk-mock-4f3a9c2b71de") && text.contains("[redacted]"), "{text}");
    }
}

#[tokio::test]
async fn browsers_of_allowed_origins_get_cors_before_auth_and_405_is_json() {
    let mock = mock(MockConfig::default()).await;
    let key = sluice_server::auth::generate_key();
    let auth = format!("[auth]\napi_key_sha256 = [\"{}\"]\n", sluice_server::auth::hash_key(&key));
    let gw = Gateway::start(&format!("{auth}{}", backend_toml("m", "openai", &mock, ""))).await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    // No credentials on a preflight, and yet no 401.
    let ok = preflight("http://localhost:5173").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://localhost:5173");
    assert!(ok.headers().get("access-control-allow-credentials").is_none());
    let foreign = preflight("https://evil.example").await.unwrap();
    assert!(foreign.headers().get("access-control-allow-origin").is_none());

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("origin", "http://localhost:5173")
        .json(&chat_body("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://localhost:5173");
    assert!(resp.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));

    for (path, openai) in [("/v1/chat/completions", true), ("/api/chat", false)] {
        let resp = client().get(gw.url(path)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(resp.status(), 405, "{path}");
        let v: serde_json::Value = resp.json().await.unwrap();
        if openai {
            assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
        } else {
            assert!(v["error"].as_str().unwrap().contains("GET"), "{v}");
        }
    }
}

#[tokio::test]
async fn ollama_endpoints_clients_call_answer_as_ollama_does() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let c = client();
    let r = c.get(gw.url("/api/version")).send().await.unwrap();
    assert_eq!(r.headers()["x-sluice-version"], env!("CARGO_PKG_VERSION"));
    let v: serde_json::Value = r.json().await.unwrap();
    let parts: Vec<u32> = v["version"].as_str().unwrap().split('.').map(|p| p.parse().unwrap()).collect();
    assert!(parts >= vec![0, 6, 4], "Copilot Chat wants at least 0.6.4: {v}");

    // Tags carry `:latest`, and every spelling of the name finds the model.
    let v: serde_json::Value = c.get(gw.url("/api/tags")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["models"][0]["name"], "mock-model:latest");
    for name in ["mock-model:latest", "library/mock-model", "registry.ollama.ai/library/mock-model:latest"] {
        let r = c.post(gw.url("/api/show")).json(&json!({"model": name})).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }

    // Pull: success for a served model (streamed or not), a clear 404 otherwise.
    let r = c.post(gw.url("/api/pull")).json(&json!({"model": "mock-model"})).send().await.unwrap();
    let lines = Frames::ndjson(r).rest().await;
    assert_eq!(json(lines.last().unwrap())["status"], "success", "{lines:?}");
    let r = c
        .post(gw.url("/api/pull"))
        .json(&json!({"model": "mock-model", "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "success");
    let r = c.post(gw.url("/api/pull")).json(&json!({"model": "llama9"})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("configuration")
    );

    // Model management is refused in Ollama's shape, never as a 404.
    for (method, path) in [
        (reqwest::Method::POST, "/api/create"),
        (reqwest::Method::POST, "/api/copy"),
        (reqwest::Method::DELETE, "/api/delete"),
        (reqwest::Method::POST, "/api/push"),
        (reqwest::Method::POST, "/api/blobs/sha256:abc"),
    ] {
        let r = c.request(method, gw.url(path)).json(&json!({"model": "x"})).send().await.unwrap();
        assert_eq!(r.status(), 501, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("configuration"), "{path}: {v}");
    }
    let r = c.head(gw.url("/api/blobs/sha256:abc")).send().await.unwrap();
    assert_eq!(r.status(), 501);

    // Embeddings: the legacy route, empty input, `content: null`.
    let r = c
        .post(gw.url("/api/embeddings"))
        .json(&json!({"model": "mock-model", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.json::<serde_json::Value>().await.unwrap()["embedding"].as_array().unwrap().is_empty());
    let r = c
        .post(gw.url("/api/embeddings"))
        .json(&json!({"model": "mock-model", "prompt": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["embedding"], json!([]));
    let r =
        c.post(gw.url("/api/embed")).json(&json!({"model": "mock-model", "input": []})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["embeddings"], json!([]));
    let body = json!({"model": "mock-model", "stream": false,
                      "messages": [{"role": "assistant", "content": null}, {"role": "user", "content": "x"}]});
    assert_eq!(c.post(gw.url("/api/chat")).json(&body).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn token_embeddings_and_dimensions_reach_an_openai_upstream() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let body = json!({"model": "mock-model", "input": [[1, 2, 3], [4, 5]], "dimensions": 16});
    let r = client().post(gw.url("/v1/embeddings")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let up = mock.stats().last().unwrap().body;
    assert_eq!(up["input"], body["input"]);
    assert_eq!(up["dimensions"], 16);
    // An Ollama upstream takes text only: a 400 naming `input`, not a parse error.
    let gw = Gateway::over(&mock, "ollama", "").await;
    let r = client().post(gw.url("/v1/embeddings")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "input", "{v}");
}

/// A gateway sending early headers after 200 ms, over `mock` with `timeouts`.
async fn early_gateway(mock: &sluice_mock::MockServer, kind: &str, timeouts: &str) -> Gateway {
    let server = "[server]\nearly_headers_after = \"200ms\"\n";
    Gateway::start(&format!("{server}{}", backend_toml("m", kind, mock, timeouts))).await
}

#[tokio::test]
async fn a_slow_first_token_gets_headers_and_keepalives_first() {
    let mock = mock(MockConfig::default()).await;
    for (kind, path, body) in [
        ("openai", "/v1/chat/completions", chat_body("[mock first_ms=1200 tokens=2]", true)),
        ("ollama", "/api/chat", ollama_chat_body("[mock first_ms=1200 tokens=2]", true)),
    ] {
        let gw = early_gateway(&mock, kind, "").await;
        let sent = std::time::Instant::now();
        let resp = client().post(gw.url(path)).json(&body).send().await.unwrap();
        // The head comes long before the first token (1.2 s).
        assert!(sent.elapsed() < std::time::Duration::from_millis(1000), "{path}: {:?}", sent.elapsed());
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        if kind == "openai" {
            assert!(text.starts_with(": keep-alive\n\n"), "{text}");
            assert!(text.contains("t0 t1 ") || text.contains("\"t1 \""), "{text}");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        } else {
            let lines: Vec<serde_json::Value> = text.lines().map(json).collect();
            assert_eq!(lines[0]["message"]["content"], "", "an empty chunk keeps it alive: {text}");
            assert_eq!(lines[0]["done"], false);
            let said: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
            assert_eq!(said, "t0 t1 ");
            assert_eq!(lines.last().unwrap()["done"], true);
        }
    }
}

#[tokio::test]
async fn a_failure_after_early_headers_is_an_in_stream_error_with_its_status() {
    let mock = mock(MockConfig::default()).await;
    let timeouts = "timeouts = { first_token = \"700ms\", idle = \"5s\", total = \"10s\" }";
    let gw = early_gateway(&mock, "openai", timeouts).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock mode=hang]", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the headers left before the deadline passed");
    let frames = Frames::sse(resp).rest().await;
    let error = frames.iter().find(|f| f.contains("\"error\"")).unwrap_or_else(|| panic!("{frames:?}"));
    let v = json(error);
    assert_eq!(v["error"]["status"], 504, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout", "{v}");
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    // A whole answer keeps its status semantics.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("[mock mode=hang]", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
}

#[tokio::test]
async fn a_models_created_is_stable_and_its_upstreams_when_known() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "ollama", "").await;
    let list = || async {
        let v: serde_json::Value =
            client().get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
        v["data"][0]["created"].as_u64().unwrap()
    };
    let first = list().await;
    assert_eq!(list().await, first, "the same on every call");
    // The mock's Ollama entry was modified on 2023-11-14.
    assert!((1_699_900_000..1_700_100_000).contains(&first), "{first}");
}

#[tokio::test]
async fn a_rate_limit_on_one_model_leaves_the_backends_other_models_served() {
    let mock = mock(MockConfig { models: vec!["a".into(), "b".into()], ..Default::default() }).await;
    let toml = format!(
        "[[backends]]\nname = \"hosted\"\nkind = \"openai\"\nurl = \"{}\"\nmodels = [\"a\", \"b\"]\n",
        mock.openai_base()
    );
    let gw = Gateway::start(&toml).await;
    let ask = |model: &'static str, content: &'static str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
        client().post(gw.url("/v1/chat/completions")).json(&body).send()
    };
    assert_eq!(ask("a", "[mock mode=status:429]").await.unwrap().status(), 429);
    assert_eq!(ask("b", "hi").await.unwrap().status(), 200, "b is not limited by a's 429");
}
