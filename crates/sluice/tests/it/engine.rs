//! The embedded engine through the whole gateway, with the real default model
//! (SmolLM2-135M, fetched by `scripts/fetch-model.sh`): both dialects, determinism,
//! context overflow, embeddings, `/api/ps` and keep-alive.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Frames, Gateway, SOON, client, json};

/// A gateway serving only the default model as `smollm2`, with the given extra
/// `[engine]` keys. Two sequences in parallel, one thread each keeps tests light. The
/// response cache is off: determinism must come from the engine, not from a replay.
pub(crate) async fn engine_gateway(extra: &str) -> Gateway {
    let path = sluice_engine::default_model_path().expect("a model directory");
    assert!(path.is_file(), "the default model is missing: run scripts/fetch-model.sh ({})", path.display());
    let toml = format!(
        "[cache]\nenabled = false\n[engine]\ndefault_model = 'off'\nparallel = 2\nthreads = 1\n{extra}\n[[engine.models]]\nname = 'smollm2'\npath = '{}'\n",
        path.display()
    );
    Gateway::start(&toml).await
}

pub(crate) async fn post(gw: &Gateway, path: &str, body: Value) -> reqwest::Response {
    let send = client().post(gw.url(path)).json(&body).send();
    // The first request may load the model.
    tokio::time::timeout(Duration::from_secs(60), send).await.expect("answer within a minute").unwrap()
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 16,
        "temperature": 0,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

#[tokio::test]
async fn openai_answers_are_deterministic_with_usage() {
    let gw = engine_gateway("").await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = post(&gw, "/v1/chat/completions", chat("Name a color.", json!({"seed": 7}))).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let usage = &v["usage"];
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 5, "{v}");
        let completion = usage["completion_tokens"].as_u64().unwrap();
        assert!((1..=16).contains(&completion), "{v}");
        let reason = v["choices"][0]["finish_reason"].as_str().unwrap().to_owned();
        assert!(reason == "stop" || reason == "length", "{v}");
        answers.push(v["choices"][0]["message"]["content"].as_str().unwrap().to_owned());
    }
    assert!(!answers[0].is_empty());
    assert_eq!(answers[0], answers[1], "same seed and request, same answer");

    // The streamed answer is the same text, token by token.
    let r =
        post(&gw, "/v1/chat/completions", chat("Name a color.", json!({"seed": 7, "stream": true}))).await;
    assert_eq!(r.status(), 200);
    let mut frames = Frames::sse(r);
    let mut text = String::new();
    let mut deltas = 0;
    for f in frames.rest().await {
        if f == "[DONE]" {
            break;
        }
        let v = json(&f);
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
            deltas += 1;
        }
    }
    assert!(deltas > 1, "tokens arrive one by one");
    assert_eq!(text, answers[0]);
}

#[tokio::test]
async fn ollama_streams_with_engine_timings_and_max_tokens() {
    let gw = engine_gateway("").await;
    let body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Count from one to twenty."}],
        "options": {"num_predict": 5, "temperature": 0},
    });
    let r = post(&gw, "/api/chat", body).await;
    assert_eq!(r.status(), 200);
    let lines = Frames::ndjson(r).rest().await;
    let last = json(lines.last().unwrap());
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length", "{last}");
    assert_eq!(last["eval_count"], 5, "{last}");
    assert!(last["prompt_eval_count"].as_u64().unwrap() > 5, "{last}");
    assert!(last["eval_duration"].as_u64().unwrap() > 0, "{last}");
    assert!(last["prompt_eval_duration"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(lines.len(), 6, "five token lines and the final one: {lines:?}");
}

#[tokio::test]
async fn stop_strings_end_the_answer_without_being_emitted() {
    let gw = engine_gateway("").await;
    let plain = post(
        &gw,
        "/v1/completions",
        json!({
            "model": "smollm2", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 12, "temperature": 0
        }),
    )
    .await;
    let text = plain.json::<Value>().await.unwrap()["choices"][0]["text"].as_str().unwrap().to_owned();
    let Some(stop) = text.split(',').map(str::trim).find(|t| !t.is_empty()).map(str::to_owned) else {
        panic!("the model continued with no number: {text:?}");
    };
    let r = post(
        &gw,
        "/v1/completions",
        json!({
            "model": "smollm2", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 12, "temperature": 0, "stop": [stop]
        }),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let stopped = v["choices"][0]["text"].as_str().unwrap();
    assert!(!stopped.contains(&stop), "stop string {stop:?} leaked into {stopped:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(text.starts_with(stopped), "{stopped:?} is a prefix of {text:?}");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_400_naming_both_lengths() {
    let gw = engine_gateway("").await;
    // Reconfigure with a tiny context: a separate gateway so the shared default stays.
    let path = sluice_engine::default_model_path().unwrap();
    let small = Gateway::start(&format!(
        "[cache]\nenabled = false\n[engine]\ndefault_model = 'off'\nthreads = 1\n[[engine.models]]\nname = 'tiny'\npath = '{}'\ncontext = 64\n",
        path.display()
    ))
    .await;
    drop(gw);
    let long = "word ".repeat(200);
    let r = post(
        &small,
        "/v1/chat/completions",
        json!({"model": "tiny", "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("64"), "{msg}");
    let n: u32 = msg.split_whitespace().find_map(|w| w.parse().ok()).unwrap();
    assert!(n > 200, "the prompt length is named first: {msg}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");

    let r = post(&small, "/api/generate", json!({"model": "tiny", "prompt": long, "stream": false})).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("64"), "{v}");
}

#[tokio::test]
async fn embeddings_come_from_the_engine_in_both_dialects() {
    let gw = engine_gateway("").await;
    let r = post(&gw, "/v1/embeddings", json!({"model": "smollm2", "input": ["hello", "world"]})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let a = v["data"][0]["embedding"].as_array().unwrap();
    let b = v["data"][1]["embedding"].as_array().unwrap();
    assert_eq!(a.len(), 576, "SmolLM2-135M embeds into 576 dimensions");
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 2, "{}", v["usage"]);

    let r = post(&gw, "/api/embed", json!({"model": "smollm2", "input": "hello"})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let e = v["embeddings"][0].as_array().unwrap();
    assert_eq!(e.len(), 576);
    let same: Vec<f64> = e.iter().map(|x| x.as_f64().unwrap()).collect();
    let first: Vec<f64> = a.iter().map(|x| x.as_f64().unwrap()).collect();
    let close = same.iter().zip(&first).all(|(x, y)| (x - y).abs() < 1e-4);
    assert!(close, "the same text embeds the same way through both dialects");

    // Token ids (what LangChain's OpenAIEmbeddings sends) are the model's own.
    let r = post(&gw, "/v1/embeddings", json!({"model": "smollm2", "input": [[1, 2, 3]]})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 576);
    let r = post(&gw, "/v1/embeddings", json!({"model": "smollm2", "input": [[1, 99_999_999]]})).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("99999999"), "{v}");
}

#[tokio::test]
async fn models_are_listed_with_their_size() {
    let gw = engine_gateway("").await;
    let v: Value = client().get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"][0]["id"], "smollm2", "{v}");
    let v: Value = client().get(gw.url("/api/tags")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["models"][0]["name"], "smollm2:latest", "Ollama's names carry a tag: {v}");
    assert_eq!(v["models"][0]["size"], 98_362_432, "{v}");
}

/// `sha256sum` of the default model file.
const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

#[tokio::test]
async fn ollama_metadata_is_the_model_files_own() {
    let gw = engine_gateway("").await;
    let path = sluice_engine::default_model_path().unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let v: Value = client().get(gw.url("/api/tags")).send().await.unwrap().json().await.unwrap();
    let m = &v["models"][0];
    assert_eq!(m["digest"], SMOLLM2_SHA256, "{m}");
    assert_eq!(m["modified_at"], humantime::format_rfc3339(mtime).to_string(), "{m}");
    assert!(m.get("size_vram").is_none(), "{m}");

    let v: Value = post(&gw, "/api/show", json!({"model": "smollm2"})).await.json().await.unwrap();
    // SmolLM2's template has no tools; embeddings are on by default; any model writes
    // JSON to a schema (the constraint runs in the sampler).
    assert_eq!(v["capabilities"], json!(["completion", "embedding", "json_schema", "logprobs"]), "{v}");
    // Read from the GGUF file, loaded or not (what Copilot Chat and Continue read).
    assert_eq!(v["model_info"]["general.architecture"], "llama", "{v}");
    assert_eq!(v["model_info"]["llama.context_length"], 8192, "{v}");
    assert_eq!(v["model_info"]["llama.embedding_length"], 576, "{v}");
    assert!(v["model_info"]["general.parameter_count"].as_u64().unwrap() > 100_000_000, "{v}");
    assert!(v["template"].as_str().unwrap().contains("<|im_start|>"), "{v}");
    assert!(v["parameters"].as_str().unwrap().starts_with("num_ctx "), "{v}");
    assert!(v["modelfile"].as_str().unwrap().contains("FROM "), "{v}");
    assert_eq!(v["details"]["family"], "llama", "{v}");
    assert_eq!(v["details"]["quantization_level"], "Q4_1", "{v}");
    assert_eq!(v["modified_at"], humantime::format_rfc3339(mtime).to_string(), "{v}");

    let loaded: Value = post(&gw, "/api/generate", json!({"model": "smollm2"})).await.json().await.unwrap();
    assert_eq!(loaded["done_reason"], "load", "{loaded}");
    let ps = ps_until(&gw, |v| v["models"].as_array().is_some_and(|m| m.len() == 1)).await;
    let m = &ps["models"][0];
    assert_eq!(m["digest"], SMOLLM2_SHA256, "{m}");
    assert_eq!(m["size_vram"], 0, "the engine runs on the CPU: {m}");
}

#[tokio::test]
async fn capabilities_follow_the_embeddings_switch() {
    let path = sluice_engine::default_model_path().expect("a model directory");
    let toml = format!(
        "[engine]\ndefault_model = 'off'\nparallel = 1\nthreads = 1\nload = 'first_use'\n[[engine.models]]\nname = 'chat-only'\npath = '{}'\nembeddings = false\n",
        path.display()
    );
    let gw = Gateway::start(&toml).await;
    let v: Value = post(&gw, "/api/show", json!({"model": "chat-only"})).await.json().await.unwrap();
    assert_eq!(v["capabilities"], json!(["completion", "json_schema", "logprobs"]), "{v}");
}

#[tokio::test]
async fn the_embed_that_loads_the_model_reports_the_load() {
    let gw = engine_gateway("load = 'first_use'").await;
    let first: Value =
        post(&gw, "/api/embed", json!({"model": "smollm2", "input": "hello"})).await.json().await.unwrap();
    assert!(first["load_duration"].as_u64().unwrap() > 0, "{first}");
    let again: Value =
        post(&gw, "/api/embed", json!({"model": "smollm2", "input": "hello"})).await.json().await.unwrap();
    assert_eq!(again["load_duration"], 0, "the model was loaded already: {again}");
    assert!(first["total_duration"].as_u64().unwrap() >= first["load_duration"].as_u64().unwrap());
}

/// `/api/ps` once `cond` holds for it, within [`SOON`].
async fn ps_until(gw: &Gateway, cond: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let v: Value = client().get(gw.url("/api/ps")).send().await.unwrap().json().await.unwrap();
            if cond(&v) {
                return v;
            }
            // The unload happens on the engine's reaper task right after it turns idle.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SOON, wait).await.expect("/api/ps should reach the expected state")
}

#[tokio::test]
async fn ps_load_and_keep_alive_follow_ollama() {
    let gw = engine_gateway("load = 'first_use'\nmax_keep_alive = 'forever'").await;
    let ps: Value = client().get(gw.url("/api/ps")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ps["models"], json!([]), "nothing is loaded before first use");

    // An empty prompt loads the model.
    let r = post(&gw, "/api/generate", json!({"model": "smollm2"})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["done_reason"], "load", "{v}");
    let ps = ps_until(&gw, |v| v["models"].as_array().is_some_and(|m| m.len() == 1)).await;
    let m = &ps["models"][0];
    assert_eq!(m["name"], "smollm2:latest");
    assert!(m["context_length"].as_u64().unwrap() >= 2048, "{m}");
    assert!(m["size"].as_u64().unwrap() > 98_000_000, "weights and KV cache: {m}");
    assert_eq!(m["details"]["quantization_level"], "Q4_1", "{m}");
    assert!(m["expires_at"].as_str().unwrap().starts_with("20"), "{m}");

    // A request with keep_alive -1 keeps it forever; 0 on an empty prompt unloads it.
    let r = post(&gw, "/api/generate", json!({"model": "smollm2", "prompt": "Hi", "keep_alive": -1, "stream": false, "options": {"num_predict": 2}})).await;
    assert_eq!(r.status(), 200);
    let ps = ps_until(&gw, |v| v["models"].as_array().is_some_and(|m| m.len() == 1)).await;
    assert!(ps["models"][0]["expires_at"].as_str().unwrap().starts_with("2286"), "{ps}");

    let r = post(&gw, "/api/generate", json!({"model": "smollm2", "keep_alive": 0})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["done_reason"], "unload", "{v}");
    ps_until(&gw, |v| v["models"] == json!([])).await;

    // It loads again on demand, and a bad keep_alive is a 400 naming the field.
    let r = post(&gw, "/api/chat", json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "stream": false, "options": {"num_predict": 2}})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["load_duration"].as_u64().unwrap() > 0, "a reload is timed: {v}");
    let r = post(&gw, "/api/chat", json!({"model": "smollm2", "messages": [], "keep_alive": "soon"})).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("keep_alive"), "{v}");
}

/// A client's keep-alive is cut to `[engine] max_keep_alive` (1h by default): `-1`
/// no longer pins the model for everyone. A keep-alive past the clock's range
/// (`"300000000000y"`, allowed when the maximum is "forever") is forever, and `/api/ps`
/// keeps answering.
#[tokio::test]
async fn client_keep_alive_is_bounded_and_never_overflows() {
    let gw = engine_gateway("").await;
    let body = |keep: Value| json!({"model": "smollm2", "prompt": "Hi", "keep_alive": keep, "stream": false, "options": {"num_predict": 2}});
    let r = post(&gw, "/api/generate", body(json!(-1))).await;
    assert_eq!(r.status(), 200);
    let ps = ps_until(&gw, |v| v["models"].as_array().is_some_and(|m| m.len() == 1)).await;
    let expires = ps["models"][0]["expires_at"].as_str().unwrap();
    let expires = humantime::parse_rfc3339(expires).unwrap();
    let in_an_hour = std::time::SystemTime::now() + Duration::from_secs(3600);
    assert!(expires <= in_an_hour + Duration::from_secs(5), "cut to an hour: {ps}");

    let gw = engine_gateway("max_keep_alive = 'forever'").await;
    let r = post(&gw, "/api/generate", body(json!("300000000000y"))).await;
    assert_eq!(r.status(), 200);
    let ps = client().get(gw.url("/api/ps")).send().await.unwrap();
    assert_eq!(ps.status(), 200, "/api/ps must not panic");
    let ps: Value = ps.json().await.unwrap();
    assert!(ps["models"][0]["expires_at"].as_str().unwrap().starts_with("2286"), "forever: {ps}");
}

#[tokio::test]
async fn a_field_the_model_cannot_take_is_a_400_naming_it_in_both_dialects() {
    let gw = engine_gateway("").await;
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "tools": tools}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "tools", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("smollm2") && msg.contains("tools"), "{msg}");

    let png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let resp = post(
        &gw,
        "/api/chat",
        json!({"model": "smollm2", "stream": false, "messages": [{"role": "user", "content": "what?", "images": [png]}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("smollm2") && msg.contains("images"), "{msg}");
}

/// Ollama's `context` on `/api/generate`: the engine gives back the tokens of the
/// prompt and the answer, takes them back as the start of the next prompt (so the
/// next turn reads more tokens than its own prompt), refuses an id outside the
/// vocabulary with a 400 naming `context`, and leaves raw prompts alone, as Ollama does.
#[tokio::test]
async fn ollama_generate_context_goes_out_and_comes_back() {
    let gw = engine_gateway("").await;
    let ask = |prompt: &str, extra: Value| {
        let mut body = json!({"model": "smollm2", "prompt": prompt, "stream": false,
                              "options": {"num_predict": 8, "temperature": 0}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let r = post(&gw, "/api/generate", ask("My name is Ada.", json!({}))).await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let context: Vec<u64> = first["context"]
        .as_array()
        .unwrap_or_else(|| panic!("a context: {first}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let prompt_tokens = first["prompt_eval_count"].as_u64().unwrap();
    let answer_tokens = first["eval_count"].as_u64().unwrap();
    // The prompt's tokens and (re-tokenized, so about) the answer's.
    assert!(context.len() as u64 > prompt_tokens, "{} <= {prompt_tokens}", context.len());
    assert!(context.len() as u64 <= prompt_tokens + answer_tokens + 2, "{first}");

    let r = post(&gw, "/api/generate", ask("What is my name?", json!({"context": context}))).await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    let alone: Value =
        post(&gw, "/api/generate", ask("What is my name?", json!({}))).await.json().await.unwrap();
    // The context is read before the new prompt, whose tokens follow it (without a
    // second BOS token, for a model that adds one).
    let read = second["prompt_eval_count"].as_u64().unwrap();
    let own = alone["prompt_eval_count"].as_u64().unwrap();
    let ctx = context.len() as u64;
    assert!(read == own + ctx || read + 1 == own + ctx, "{read} tokens read, {own} + {ctx} expected");
    let next = second["context"].as_array().unwrap();
    assert!(next.len() > context.len(), "the context grows");
    assert_eq!(next[..context.len()].iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>(), context);

    // Streamed: the context comes on the last line.
    let r = post(&gw, "/api/generate", ask("Hi", json!({"stream": true}))).await;
    let body = r.text().await.unwrap();
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    assert!(last["context"].as_array().is_some_and(|c| !c.is_empty()), "{last}");

    for bad in [json!([1, 99_999_999]), json!("abc"), json!([-1])] {
        let r = post(&gw, "/api/generate", ask("Hi", json!({"context": bad}))).await;
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("context"), "{v}");
    }

    // A raw prompt ignores the context and gives none back.
    let r = post(&gw, "/api/generate", ask("Hi", json!({"raw": true, "context": [1, 2, 3]}))).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v.get("context").is_none(), "{v}");
}
