//! Embeddings go through the same dispatch as chats: a failing or hanging backend is
//! retried on another one within the deadlines, its breaker hears about it, and a
//! model's admission cap applies. Paused time, in-process backends.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use sluice_core::{
    backend::{Backend, BackendError, EventStream, ModelInfo},
    cache::config::CacheConfig,
    chat::{ChatRequest, EmbedRequest, Embeddings},
    config::{BackendConfig, BackendKind, ModelEntry, ModelPolicy, RoutingConfig},
    context::RequestContext,
    embeddings,
    error::GatewayError,
    gateway::{Gateway, Settings},
    registry::BackendSlot,
};

#[derive(Clone, Copy)]
enum Mode {
    Works,
    Refuses,
    Hangs,
}

struct Embedder {
    name: &'static str,
    mode: Mode,
    calls: Arc<AtomicU32>,
}

impl Backend for Embedder {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn chat(
        &self,
        _: &RequestContext,
        _: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported("no chat".into())) })
    }
    fn embed(&self, req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode;
        Box::pin(async move {
            match mode {
                Mode::Works => Ok(Embeddings {
                    vectors: vec![vec![1.0]; req.input.len()],
                    prompt_tokens: 2,
                    ..Default::default()
                }),
                Mode::Refuses => Err(BackendError::Connect("refused".into())),
                Mode::Hangs => std::future::pending().await,
            }
        })
    }
    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        Box::pin(async { Ok(vec![]) })
    }
}

fn slot(name: &'static str, mode: Mode) -> (Arc<BackendSlot>, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut cfg = BackendConfig::new(name, BackendKind::Openai, "http://127.0.0.1:1/v1");
    cfg.models = vec![ModelEntry::Name("e".into())];
    cfg.timeouts.first_token = Duration::from_secs(5);
    let backend = Arc::new(Embedder { name, mode, calls: calls.clone() });
    (Arc::new(BackendSlot::new(backend, &cfg)), calls)
}

fn gateway(slots: Vec<Arc<BackendSlot>>, models: &[ModelPolicy]) -> Gateway {
    let (routing, cache) = (RoutingConfig::default(), CacheConfig::default());
    Gateway::new(Settings { routing: &routing, models, cache: &cache }, slots)
}

fn request() -> EmbedRequest {
    EmbedRequest { model: "e".into(), input: vec!["a".into(), "b".into()], ..Default::default() }
}

#[tokio::test(start_paused = true)]
async fn a_refusing_backend_is_retried_on_another_and_counted_by_its_breaker() {
    let (bad, bad_calls) = slot("bad", Mode::Refuses);
    let (good, good_calls) = slot("good", Mode::Works);
    let gw = gateway(vec![bad.clone(), good.clone()], &[]);
    // Whichever backend the balancer picks first, every request ends on the good one.
    for _ in 0..6 {
        let (emb, served) = embeddings::embed(&gw, &RequestContext::internal(), request()).await.unwrap();
        assert_eq!(emb.vectors.len(), 2);
        assert_eq!(served.backend, "good");
    }
    assert_eq!(good_calls.load(Ordering::SeqCst), 6);
    assert!(bad_calls.load(Ordering::SeqCst) >= 1, "the balancer tried the refusing backend");
    let now = tokio::time::Instant::now();
    assert_eq!(good.routing.snapshot(now).p95_ttft, None, "an embeddings answer is no time to first token");
    let failures = gw.metrics.render();
    assert!(
        failures.contains("sluice_upstream_errors_total{backend=\"bad\",kind=\"connect\"}"),
        "{failures}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_times_out_at_its_deadline() {
    let (hung, _) = slot("hung", Mode::Hangs);
    let gw = gateway(vec![hung], &[]);
    let started = tokio::time::Instant::now();
    let err = embeddings::embed(&gw, &RequestContext::internal(), request()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Backend(BackendError::Timeout(_))), "{err:?}");
    assert_eq!(err.status_code().as_u16(), 504);
    // One attempt under its five-second first-token deadline: a timeout is never
    // retried on the same backend, and there is no other.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn embeddings_wait_for_the_models_admission_slot() {
    let (hung, _) = slot("hung", Mode::Hangs);
    let policy: ModelPolicy = serde_json::from_value(serde_json::json!({
        "name": "e", "max_concurrency": 1, "max_queue": 0, "max_queue_wait": "1s"
    }))
    .unwrap();
    let gw = gateway(vec![hung], &[policy]);
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { embeddings::embed(&gw, &RequestContext::internal(), request()).await }
    });
    tokio::task::yield_now().await;
    let err = embeddings::embed(&gw, &RequestContext::internal(), request()).await.unwrap_err();
    assert_eq!(err.status_code().as_u16(), 429, "{err:?}");
    first.abort();
}
