//! A whole (non-streamed) answer is assembled from a streamed generation, so only the
//! first token is held to the first-token deadline: a slow three-minute answer
//! succeeds, is sent once (never retried) and leaves the circuit breaker closed.
//! Runs on paused time against an in-process backend that paces its own tokens.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use sluice_core::{
    backend::{Backend, BackendError, EventStream, ModelInfo},
    cache::config::CacheConfig,
    chat::{ChatRequest, EmbedRequest, Embeddings, Event, FinishReason, Input, Message, Role},
    config::{BackendConfig, BackendKind, ModelEntry, RoutingConfig},
    context::RequestContext,
    gateway::{Gateway, Settings},
    registry::BackendSlot,
    reply,
    scheduler::breaker::BreakerState,
};

/// Sends a token every `gap`, `tokens` times, then the end; counts its calls.
struct Slow {
    calls: Arc<AtomicU32>,
    tokens: u32,
    gap: Duration,
}

impl Backend for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn chat(
        &self,
        _: &RequestContext,
        req: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(!req.stream, "the client asked for a whole answer");
        let (tokens, gap) = (self.tokens, self.gap);
        Box::pin(async move {
            let events = futures_util::stream::unfold(0u32, move |i| async move {
                if i > tokens {
                    return None;
                }
                tokio::time::sleep(gap).await;
                let ev = if i == tokens {
                    Event::Done {
                        finish_reason: FinishReason::Stop,
                        usage: None,
                        timings: None,
                        details: None,
                    }
                } else {
                    Event::Delta(format!("t{i} "))
                };
                Some((Ok(ev), i + 1))
            });
            Ok(Box::pin(events) as EventStream)
        })
    }
    fn embed(&self, _: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported("no embeddings".into())) })
    }
    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        Box::pin(async { Ok(vec![]) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_three_minute_whole_answer_succeeds_once_and_keeps_the_breaker_closed() {
    let calls = Arc::new(AtomicU32::new(0));
    // 6 tokens 30 s apart and the end: 3.5 minutes, beyond the 2-minute first-token
    // deadline but within the 60 s idle and 30 min total deadlines.
    let backend = Arc::new(Slow { calls: calls.clone(), tokens: 6, gap: Duration::from_secs(30) });
    let mut cfg = BackendConfig::new("slow", BackendKind::Openai, "http://127.0.0.1:1/v1");
    cfg.models = vec![ModelEntry::Name("m".into())];
    let slot = Arc::new(BackendSlot::new(backend, &cfg));
    let (routing, cache) = (RoutingConfig::default(), CacheConfig::default());
    let gateway =
        Gateway::new(Settings { routing: &routing, models: &[], cache: &cache }, vec![slot.clone()]);
    let req = ChatRequest {
        model: "m".into(),
        input: Input::Chat(vec![Message::new(Role::User, "hi")]),
        stream: false,
        ..Default::default()
    };
    let ctx = RequestContext::internal();
    let started = tokio::time::Instant::now();
    let mut reply = reply::start(&gateway, &ctx, req).await.unwrap();
    let mut text = String::new();
    let mut done = false;
    while let Some(ev) = reply.next().await {
        match ev.unwrap() {
            Event::Delta(t) => text.push_str(&t),
            Event::Done { .. } => done = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(done, "the answer ended normally");
    assert_eq!(text, "t0 t1 t2 t3 t4 t5 ");
    assert!(started.elapsed() >= Duration::from_secs(210), "{:?}", started.elapsed());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "sent once, never retried");
    let now = tokio::time::Instant::now();
    assert_eq!(slot.routing.breaker_state(now), BreakerState::Closed);
    let snapshot = slot.routing.snapshot(now);
    assert_eq!(snapshot.p95_ttft, Some(Duration::from_secs(30)), "only the first token counts toward TTFT");
}
