//! End-to-end tests of `sluice_bench::run` against a small axum server started in
//! the test. The server's behaviour is chosen by the prompt: `fail-mix <i>` picks a
//! failure from the request index, `hang` never answers, `close` closes every
//! connection, `abort` breaks the stream, `no-usage` omits usage numbers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test
use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use sluice_bench::report::StopReason;
use sluice_bench::{BenchArgs, Report};

/// Tokens per reply unless the request sets `max_tokens` / `num_predict`.
const DEFAULT_TOKENS: u64 = 8;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

async fn start_server() -> SocketAddr {
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/v1/completions", post(openai))
        .route("/api/chat", post(ollama))
        .route("/api/generate", post(ollama));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn bench(addr: SocketAddr, flags: &[&str]) -> Report {
    let url = format!("http://{addr}");
    let mut argv = vec!["bench", "--url", &url, "--quiet"];
    argv.extend_from_slice(flags);
    sluice_bench::run(Cli::try_parse_from(argv).unwrap().args).await.unwrap()
}

/// What the server does for one request.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Behaviour {
    Ok,
    NoUsage,
    StreamError,
    Truncated,
    Status503,
    Malformed,
    Hang,
    Close,
    Abort,
}

fn behaviour(prompt: &str) -> Behaviour {
    if let Some(index) = prompt.strip_prefix("fail-mix ") {
        return match index.parse::<u64>().unwrap() % 5 {
            0 => Behaviour::Ok,
            1 => Behaviour::StreamError,
            2 => Behaviour::Truncated,
            3 => Behaviour::Status503,
            _ => Behaviour::Malformed,
        };
    }
    match prompt {
        "hang" => Behaviour::Hang,
        "close" => Behaviour::Close,
        "abort" => Behaviour::Abort,
        "no-usage" => Behaviour::NoUsage,
        _ => Behaviour::Ok,
    }
}

/// Splits every event in two so that the client sees events cut across frames.
fn split_frames(events: Vec<String>) -> Vec<Result<Vec<u8>, std::io::Error>> {
    let mut frames = Vec::new();
    for event in events {
        let bytes = event.into_bytes();
        let (a, b) = bytes.split_at(bytes.len() / 2);
        frames.push(Ok(a.to_vec()));
        frames.push(Ok(b.to_vec()));
    }
    frames
}

fn respond(behaviour: Behaviour, content_type: &str, mut frames: Vec<String>, whole: Value) -> Response {
    let stream = !frames.is_empty();
    let mut frames = match behaviour {
        Behaviour::Hang => {
            return Body::from_stream(stream::pending::<Result<Vec<u8>, Infallible>>()).into_response();
        }
        Behaviour::Status503 => return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        Behaviour::Truncated if stream => {
            frames.truncate(3);
            split_frames(frames)
        }
        Behaviour::Abort if stream => {
            frames.truncate(2);
            // Yield once so the server flushes the head and frames, then fail: hyper
            // aborts the connection mid-body.
            let broken = stream::once(async {
                tokio::task::yield_now().await;
                Err(std::io::Error::other("boom"))
            });
            let body = stream::iter(split_frames(frames)).chain(broken);
            return Body::from_stream(body).into_response();
        }
        _ if stream => split_frames(frames),
        Behaviour::Malformed => vec![Ok(b"{\"choices\":[".to_vec())],
        Behaviour::StreamError => vec![Ok(br#"{"error":{"message":"no"}}"#.to_vec())],
        _ => vec![Ok(serde_json::to_vec(&whole).unwrap())],
    };
    if stream && behaviour == Behaviour::Malformed {
        frames.insert(2, Ok(b"data: <html>\n\n".to_vec()));
    }
    let mut response = Body::from_stream(stream::iter(frames)).into_response();
    let ct = if stream { content_type } else { "application/json" };
    response.headers_mut().insert(header::CONTENT_TYPE, ct.parse().unwrap());
    if behaviour == Behaviour::Close {
        response.headers_mut().insert(header::CONNECTION, "close".parse().unwrap());
    }
    response
}

async fn openai(Json(req): Json<Value>) -> Response {
    let chat = req.get("messages").is_some();
    let prompt = if chat { &req["messages"][0]["content"] } else { &req["prompt"] };
    let behaviour = behaviour(prompt.as_str().unwrap());
    let tokens = req["max_tokens"].as_u64().unwrap_or(DEFAULT_TOKENS);
    let usage = json!({ "prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": tokens + 3 });
    let piece = |text: &str| {
        if chat {
            json!({ "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": { "content": text } }] })
        } else {
            json!({ "object": "text_completion", "choices": [{ "index": 0, "text": text }] })
        }
    };
    let mut frames = Vec::new();
    if req["stream"] == true {
        frames.push(format!("data: {}\n\n", piece("")));
        for i in 0..tokens {
            frames.push(format!("data: {}\n\n", piece(&format!("t{i} "))));
        }
        if behaviour == Behaviour::StreamError {
            frames.insert(2, "data: {\"error\":{\"message\":\"backend died\"}}\n\n".into());
        }
        if req["stream_options"]["include_usage"] == true && behaviour != Behaviour::NoUsage {
            frames.push(format!("data: {}\n\n", json!({ "choices": [], "usage": usage })));
        }
        frames.push("data: [DONE]\n\n".into());
    }
    let whole = if chat {
        json!({ "choices": [{ "message": { "role": "assistant", "content": "hello" } }], "usage": usage })
    } else {
        json!({ "choices": [{ "text": "hello" }], "usage": usage })
    };
    respond(behaviour, "text/event-stream", frames, whole)
}

async fn ollama(Json(req): Json<Value>) -> Response {
    let chat = req.get("messages").is_some();
    let prompt = if chat { &req["messages"][0]["content"] } else { &req["prompt"] };
    let behaviour = behaviour(prompt.as_str().unwrap());
    let tokens = req["options"]["num_predict"].as_u64().unwrap_or(DEFAULT_TOKENS);
    let line = |text: &str, done: bool| {
        let mut line = if chat {
            json!({ "model": "m", "message": { "role": "assistant", "content": text }, "done": done })
        } else {
            json!({ "model": "m", "response": text, "done": done })
        };
        if done {
            line["eval_count"] = json!(tokens);
            line["prompt_eval_count"] = json!(3);
        }
        line
    };
    let mut frames = Vec::new();
    if req["stream"] != false {
        for i in 0..tokens {
            frames.push(format!("{}\n", line(&format!("t{i} "), false)));
        }
        frames.push(format!("{}\n", line("", true)));
        if behaviour == Behaviour::StreamError {
            frames.insert(2, "{\"error\":\"backend died\"}\n".into());
        }
    }
    respond(behaviour, "application/x-ndjson", frames, line("hello", true))
}

/// Checks the invariants of a run where every request succeeds with `tokens` tokens.
fn assert_all_ok(report: &Report, requests: u64, tokens: u64) {
    assert_eq!(report.errors, Default::default(), "{report:#?}");
    assert_eq!(report.requests.ok, requests);
    assert_eq!(report.requests.completed, requests);
    assert_eq!(report.requests.aborted, 0);
    assert_eq!(report.stopped_by, StopReason::Requests);
    assert_eq!(report.tokens.output, requests * tokens);
    assert_eq!(report.e2e_ms.count, requests);
    if report.config.stream {
        assert_eq!(report.ttft_ms.count, requests);
        assert_eq!(report.inter_token_ms.count, requests * (tokens - 1));
    } else {
        assert_eq!(report.ttft_ms.count, 0);
        assert_eq!(report.inter_token_ms.count, 0);
    }
    assert!(report.e2e_ms.p50 <= report.e2e_ms.p99 && report.e2e_ms.p99 <= report.e2e_ms.max);
}

#[tokio::test]
async fn openai_chat_stream_counts_every_token() {
    let addr = start_server().await;
    let json_path = std::env::temp_dir().join(format!("sluice-bench-{}.json", std::process::id()));
    let json_arg = json_path.to_str().unwrap().to_owned();
    let report =
        bench(addr, &["--concurrency", "4", "--requests", "40", "--max-tokens", "5", "--json", &json_arg])
            .await;
    assert_all_ok(&report, 40, 5);
    assert_eq!(report.tokens.requests_with_usage, 40);
    assert_eq!(report.tokens.prompt, 40 * 3);
    assert!(report.config.url.ends_with("/v1/chat/completions"));

    let written: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    std::fs::remove_file(&json_path).unwrap();
    for key in [
        "config",
        "stopped_by",
        "elapsed_s",
        "requests",
        "throughput",
        "tokens",
        "ttft_ms",
        "inter_token_ms",
        "e2e_ms",
        "errors",
    ] {
        assert!(written.get(key).is_some(), "missing {key}");
    }
    assert_eq!(written["inter_token_ms"]["count"], 40 * 4);
    let text = report.render();
    assert!(text.contains("inter-token") && text.contains("ttft"), "{text}");
}

#[tokio::test]
async fn stream_without_usage_counts_content_events() {
    let addr = start_server().await;
    let flags = ["--concurrency", "2", "--requests", "10", "--prompt", "no-usage"];
    let report = bench(addr, &flags).await;
    assert_all_ok(&report, 10, DEFAULT_TOKENS);
    assert_eq!(report.tokens.requests_with_usage, 0);

    let mut flags = flags.to_vec();
    flags.extend(["--endpoint", "completions", "--threads", "2"]);
    let report = bench(addr, &flags).await;
    assert_all_ok(&report, 10, DEFAULT_TOKENS);
}

/// Also checks that `run` works from a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_ndjson_streams() {
    let addr = start_server().await;
    for endpoint in ["chat", "completions"] {
        let flags = ["--api", "ollama", "--endpoint", endpoint, "--concurrency", "3", "--requests", "12"];
        let report = bench(addr, &flags).await;
        assert_all_ok(&report, 12, DEFAULT_TOKENS);
        assert_eq!(report.tokens.requests_with_usage, 12);
    }
}

#[tokio::test]
async fn whole_replies_use_usage_numbers() {
    let addr = start_server().await;
    for api in ["openai", "ollama"] {
        for endpoint in ["chat", "completions"] {
            let flags =
                ["--api", api, "--endpoint", endpoint, "--no-stream", "--requests", "6", "--max-tokens", "4"];
            let report = bench(addr, &flags).await;
            assert_all_ok(&report, 6, 4);
            assert_eq!(report.tokens.requests_with_usage, 6);
        }
    }
}

#[tokio::test]
async fn failures_are_counted_by_kind_and_warmup_is_not_recorded() {
    let addr = start_server().await;
    for api in ["openai", "ollama"] {
        let flags = [
            "--api",
            api,
            "--prompt",
            "fail-mix",
            "--unique-prompts",
            "--warmup",
            "5",
            "--requests",
            "20",
            "--concurrency",
            "3",
        ];
        let report = bench(addr, &flags).await;
        let expected: Vec<(String, u64)> = ["http_503", "malformed", "stream_error", "truncated"]
            .iter()
            .map(|k| (k.to_string(), 4))
            .collect();
        assert_eq!(report.errors.clone().into_iter().collect::<Vec<_>>(), expected, "{api}");
        assert_eq!((report.requests.ok, report.requests.failed), (4, 16));
        assert_eq!(report.e2e_ms.count, 4);
        assert_eq!(report.inter_token_ms.count, 4 * (DEFAULT_TOKENS - 1));
    }
    let flags = ["--no-stream", "--prompt", "fail-mix", "--unique-prompts", "--requests", "10"];
    let report = bench(addr, &flags).await;
    let errors: Vec<_> = report.errors.into_iter().collect();
    let expected = [("http_503", 2), ("malformed", 2), ("stream_error", 2)];
    assert_eq!(errors, expected.map(|(k, n)| (k.to_string(), n)));
    assert_eq!(report.requests.ok, 4); // truncation needs a stream: index % 5 == 2 succeeds
}

#[tokio::test]
async fn closed_and_broken_connections_are_reopened() {
    let addr = start_server().await;
    let report = bench(addr, &["--prompt", "close", "--requests", "10", "--concurrency", "2"]).await;
    assert_all_ok(&report, 10, DEFAULT_TOKENS);

    let report = bench(addr, &["--prompt", "abort", "--requests", "6", "--concurrency", "2"]).await;
    assert_eq!(report.errors.get("truncated"), Some(&6), "{report:#?}");
    assert_eq!(report.requests.completed, 6);
}

#[tokio::test]
async fn timeouts_connect_errors_and_the_duration_cap() {
    let addr = start_server().await;
    let report =
        bench(addr, &["--prompt", "hang", "--timeout", "100ms", "--requests", "4", "--concurrency", "2"])
            .await;
    assert_eq!(report.errors.get("timeout"), Some(&4), "{report:#?}");
    assert_eq!(report.requests.ok, 0);

    let flags = ["--prompt", "hang", "--duration", "200ms", "--requests", "50", "--concurrency", "3"];
    let report = bench(addr, &flags).await;
    assert_eq!(report.stopped_by, StopReason::Duration);
    assert_eq!((report.requests.completed, report.requests.aborted), (0, 3));

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let report = bench(closed, &["--requests", "3", "--concurrency", "2"]).await;
    assert_eq!(report.errors.get("connect"), Some(&3), "{report:#?}");
}

#[test]
fn flags_parse_with_their_defaults() {
    let cli =
        Cli::try_parse_from(["bench", "--url", "http://h:1", "-H", "Authorization: Bearer k", "--no-stream"])
            .unwrap();
    let args = cli.args;
    assert!(!args.streaming());
    assert_eq!((args.concurrency, args.requests, args.model.as_str()), (1, 100, "mock-model"));
    assert_eq!(args.headers.len(), 1);
    assert!(
        Cli::try_parse_from(["bench", "--url", "http://h:1", "--no-stream", "--stream"])
            .unwrap()
            .args
            .streaming()
    );
    assert!(Cli::try_parse_from(["bench", "--url", "http://h:1", "--concurrency", "0"]).is_err());
    assert!(Cli::try_parse_from(["bench", "--url", "http://h:1", "--api", "grpc"]).is_err());
}

#[tokio::test]
async fn local_address_sets_the_source_of_every_connection() {
    use axum::extract::ConnectInfo;
    use std::sync::{Arc, Mutex};
    let peers: Arc<Mutex<Vec<std::net::IpAddr>>> = Arc::default();
    let seen = peers.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Json<Value>| {
            seen.lock().unwrap().push(peer.ip());
            openai(req)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    let report =
        bench(addr, &["--local-address", "127.0.0.2", "--requests", "6", "--concurrency", "2"]).await;
    assert_all_ok(&report, 6, DEFAULT_TOKENS);
    let peers = peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 6);
    assert!(peers.iter().all(|ip| ip.to_string() == "127.0.0.2"), "{peers:?}");

    // A name is not an address: refused when the flags are parsed.
    assert!(Cli::try_parse_from(["bench", "--url", "http://h:1", "--local-address", "host"]).is_err());
}
