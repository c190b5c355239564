//! `GET /admin/backends`: every backend's routing state (breaker, load, latency,
//! health, tokens generated, requests waiting) and every capped model's admission
//! queue, for operators. Behind the normal API-key check like every admin route.

use std::{collections::BTreeMap, sync::atomic::Ordering};

use axum::{Json, extract::State};
use serde::Serialize;
use tokio::time::Instant;

use crate::state::AppState;

/// The answer: one entry per backend, in configuration order.
#[derive(Debug, Serialize)]
pub struct BackendList {
    /// The backends.
    pub backends: Vec<BackendStatus>,
    /// The admission queue of every model with `max_concurrency`, by name.
    pub admission: Vec<AdmissionStatus>,
}

/// One capped model's admission gate.
#[derive(Debug, Serialize)]
pub struct AdmissionStatus {
    /// Public model name.
    pub model: String,
    /// Requests admitted and running.
    pub running: usize,
    /// Requests waiting for admission.
    pub queued: usize,
}

/// One backend's routing state.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    /// Configured name.
    pub name: String,
    /// `openai`, `ollama`, ...
    pub kind: &'static str,
    /// The backend's own breaker: `closed`, `half_open` or `open`.
    pub breaker: &'static str,
    /// Models whose own breaker is not closed (the backend's name for each), with its
    /// state: one model failing leaves the backend's others in service.
    pub model_breakers: BTreeMap<String, &'static str>,
    /// Requests in flight.
    pub outstanding: u64,
    /// Peak-EWMA of time to first token, in milliseconds.
    pub ewma_ttft_ms: f64,
    /// 95th percentile of recent times to first token, in milliseconds.
    pub p95_ttft_ms: Option<f64>,
    /// Last health probe (or discovery) succeeded.
    pub healthy: bool,
    /// Relative capacity.
    pub weight: f64,
    /// Milliseconds a 429 still keeps requests away.
    pub throttled_ms: Option<f64>,
    /// Tokens generated so far, counted as they stream (monotonic: a rate is the
    /// difference between two reads over the time between them).
    pub completion_tokens: u64,
    /// Requests waiting inside the backend for a slot (embedded engines); `None` when
    /// Sluice cannot see the backend's queue.
    pub queued: Option<u64>,
}

/// `GET /admin/backends`.
pub async fn list(State(state): State<AppState>) -> Json<BackendList> {
    let now = Instant::now();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let backends = state
        .core
        .registry
        .slots()
        .iter()
        .map(|s| {
            let snap = s.routing.snapshot(now);
            BackendStatus {
                name: s.name().to_owned(),
                kind: s.backend.kind(),
                breaker: snap.breaker.as_str(),
                model_breakers: snap.model_breakers.into_iter().map(|(m, b)| (m, b.as_str())).collect(),
                outstanding: s.outstanding.load(Ordering::Relaxed),
                ewma_ttft_ms: ms(snap.ewma_ttft),
                p95_ttft_ms: snap.p95_ttft.map(ms),
                healthy: s.healthy.load(Ordering::Relaxed),
                weight: s.routing.weight,
                throttled_ms: snap.throttled_for.map(ms),
                completion_tokens: s.completion_tokens.load(Ordering::Relaxed),
                queued: s.backend.queued(),
            }
        })
        .collect();
    let admission = (state.core.routing.gates().into_iter())
        .map(|(model, gate)| {
            let (running, queued) = gate.load();
            AdmissionStatus { model: model.to_owned(), running, queued }
        })
        .collect();
    Json(BackendList { backends, admission })
}
