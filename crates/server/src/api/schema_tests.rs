//! Every response object kind the OpenAI dialect emits has the required properties,
//! with the types, that OpenAI's API reference (its published OpenAPI document) gives
//! them: whole chat answers, every chunk kind (role, content, finish, usage),
//! legacy completions, embeddings, models, errors. Clients generated from that
//! document (the .NET, Java and Go SDKs among them) refuse objects that break it.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use serde_json::Value;
use sluice_core::chat::{DoneDetails, Event, FinishReason, Usage};

use super::{
    openai::encode::{Kind, OpenAiSse},
    router_tests::{call, state_with},
    stream_body::Encoder,
};

/// A property's type in the reference.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Arr,
    Obj,
    /// `string`, nullable.
    StrOrNull,
    /// An object, nullable.
    ObjOrNull,
    /// This exact string.
    Is(&'static str),
}

fn fits(v: &Value, ty: Ty) -> bool {
    match ty {
        Ty::Str => v.is_string(),
        Ty::Int => v.is_u64() || v.is_i64(),
        Ty::Arr => v.is_array(),
        Ty::Obj => v.is_object(),
        Ty::StrOrNull => v.is_string() || v.is_null(),
        Ty::ObjOrNull => v.is_object() || v.is_null(),
        Ty::Is(s) => v == s,
    }
}

/// `required` must all be there with their types; `optional` may be absent, but not of
/// another type (`null` included, unless the type allows it).
fn check(what: &str, v: &Value, required: &[(&str, Ty)], optional: &[(&str, Ty)]) {
    for (name, ty) in required {
        let got = v.get(name).unwrap_or_else(|| panic!("{what}: required `{name}` missing in {v}"));
        assert!(fits(got, *ty), "{what}: `{name}` has the wrong type in {v}");
    }
    for (name, ty) in optional {
        if let Some(got) = v.get(name) {
            assert!(fits(got, *ty), "{what}: optional `{name}` has the wrong type in {v}");
        }
    }
}

fn usage(what: &str, v: &Value) {
    check(
        what,
        v,
        &[("prompt_tokens", Ty::Int), ("completion_tokens", Ty::Int), ("total_tokens", Ty::Int)],
        &[("prompt_tokens_details", Ty::Obj), ("completion_tokens_details", Ty::Obj)],
    );
}

fn error(what: &str, v: &Value) {
    check(what, v, &[("error", Ty::Obj)], &[]);
    check(what, &v["error"], &[("message", Ty::Str), ("type", Ty::Str), ("param", Ty::StrOrNull)], &[]);
    let code = &v["error"]["code"];
    assert!(code.is_string() || code.is_null(), "{what}: code is a string or null: {v}");
}

#[tokio::test]
async fn whole_answers_embeddings_models_and_errors_match_the_reference() {
    let state = state_with("").await;
    let (_, v) = call(
        &state,
        "POST",
        "/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        None,
    )
    .await;
    check(
        "chat.completion",
        &v,
        &[
            ("id", Ty::Str),
            ("object", Ty::Is("chat.completion")),
            ("created", Ty::Int),
            ("model", Ty::Str),
            ("choices", Ty::Arr),
        ],
        &[("system_fingerprint", Ty::Str), ("usage", Ty::Obj)],
    );
    let choice = &v["choices"][0];
    check(
        "chat choice",
        choice,
        &[("index", Ty::Int), ("message", Ty::Obj), ("finish_reason", Ty::Str), ("logprobs", Ty::ObjOrNull)],
        &[],
    );
    check(
        "chat message",
        &choice["message"],
        &[("role", Ty::Is("assistant")), ("content", Ty::StrOrNull), ("refusal", Ty::StrOrNull)],
        &[],
    );
    usage("chat usage", &v["usage"]);

    let (_, v) = call(&state, "POST", "/v1/completions", r#"{"model":"m","prompt":"hi"}"#, None).await;
    check(
        "text_completion",
        &v,
        &[
            ("id", Ty::Str),
            ("object", Ty::Is("text_completion")),
            ("created", Ty::Int),
            ("model", Ty::Str),
            ("choices", Ty::Arr),
        ],
        &[("system_fingerprint", Ty::Str), ("usage", Ty::Obj)],
    );
    check(
        "completion choice",
        &v["choices"][0],
        &[("text", Ty::Str), ("index", Ty::Int), ("finish_reason", Ty::Str), ("logprobs", Ty::ObjOrNull)],
        &[],
    );

    let (_, v) = call(&state, "POST", "/v1/embeddings", r#"{"model":"m","input":["a","b"]}"#, None).await;
    check(
        "embeddings",
        &v,
        &[("object", Ty::Is("list")), ("data", Ty::Arr), ("model", Ty::Str), ("usage", Ty::Obj)],
        &[],
    );
    check("embeddings usage", &v["usage"], &[("prompt_tokens", Ty::Int), ("total_tokens", Ty::Int)], &[]);
    for e in v["data"].as_array().unwrap() {
        check(
            "embedding",
            e,
            &[("object", Ty::Is("embedding")), ("index", Ty::Int), ("embedding", Ty::Arr)],
            &[],
        );
    }

    let (_, v) = call(&state, "GET", "/v1/models", "", None).await;
    check("model list", &v, &[("object", Ty::Is("list")), ("data", Ty::Arr)], &[]);
    for m in v["data"].as_array().unwrap() {
        check(
            "model",
            m,
            &[("id", Ty::Str), ("object", Ty::Is("model")), ("created", Ty::Int), ("owned_by", Ty::Str)],
            &[],
        );
    }
    let (_, v) = call(&state, "GET", "/v1/models/m", "", None).await;
    check(
        "model",
        &v,
        &[("id", Ty::Str), ("object", Ty::Is("model")), ("created", Ty::Int), ("owned_by", Ty::Str)],
        &[],
    );

    for (method, path, body) in [
        ("POST", "/v1/chat/completions", r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#),
        ("POST", "/v1/chat/completions", r#"{"model":"m","messages":[]}"#),
        ("POST", "/v1/chat/completions", "{not json"),
        ("GET", "/v1/chat/completions", ""),
        ("GET", "/v1/nowhere", ""),
    ] {
        let (status, v) = call(&state, method, path, body, None).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        error(&format!("{method} {path}"), &v);
    }
}

#[test]
fn every_chunk_kind_matches_the_reference() {
    for (kind, object) in [(Kind::Chat, "chat.completion.chunk"), (Kind::Completion, "text_completion")] {
        let mut enc = OpenAiSse::new(kind, "m", true, 3);
        let details = DoneDetails { system_fingerprint: Some("fp_x".into()), ..DoneDetails::default() };
        let mut buf = BytesMut::new();
        for ev in [
            Event::Delta("a".into()),
            Event::Delta("b".into()),
            Event::Done {
                finish_reason: FinishReason::Stop,
                usage: Some(Usage { prompt_tokens: 3, completion_tokens: 2 }),
                timings: None,
                details: Some(Box::new(details)),
            },
        ] {
            enc.event(&ev, &mut buf);
        }
        let text = String::from_utf8(buf.to_vec()).unwrap();
        let chunks: Vec<Value> = text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks.len(), 4, "two deltas, the finish and the usage chunk: {text}");
        for c in &chunks {
            check(
                object,
                c,
                &[
                    ("id", Ty::Str),
                    ("object", Ty::Is(object)),
                    ("created", Ty::Int),
                    ("model", Ty::Str),
                    ("choices", Ty::Arr),
                ],
                &[("system_fingerprint", Ty::Str), ("usage", Ty::ObjOrNull)],
            );
            for choice in c["choices"].as_array().unwrap() {
                check(
                    "chunk choice",
                    choice,
                    &[("index", Ty::Int), ("finish_reason", Ty::StrOrNull)],
                    &[("logprobs", Ty::ObjOrNull)],
                );
                match kind {
                    Kind::Chat => check(
                        "delta",
                        &choice["delta"],
                        &[],
                        &[("role", Ty::Is("assistant")), ("content", Ty::StrOrNull)],
                    ),
                    Kind::Completion => check("text chunk", choice, &[("text", Ty::Str)], &[]),
                }
            }
        }
        usage("usage chunk", &chunks[3]["usage"]);
        assert_eq!(chunks[3]["choices"], serde_json::json!([]));
    }
}
