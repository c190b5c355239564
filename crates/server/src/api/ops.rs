//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /`: what Ollama clients probe to see a server is there.
pub async fn root() -> &'static str {
    "Sluice is running"
}

/// `GET /readyz`: 200 when at least one backend answered its last probe, else 503.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let backends: Vec<_> = state
        .core
        .registry
        .slots()
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name(),
                "kind": s.backend.kind(),
                "healthy": s.healthy.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    let ready = state.core.registry.any_healthy();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "backends": backends }))).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        crate::usage_writer::with_usage_metrics(
            {
                let text = super::accounting::with_limits_metrics(state.core.metrics.render(), &state.limits);
                let backend_metrics: Vec<_> =
                    state.core.registry.slots().iter().flat_map(|slot| slot.backend.metrics()).collect();
                let text = crate::exposition::with_backend_metrics(text, &backend_metrics);
                let text = state.budgets.render_into(text);
                match &state.per_key {
                    Some(counters) => counters.render_into(text),
                    None => text,
                }
            },
            state.usage.sink().map(sluice_store::UsageSink::stats),
        ),
    )
        .into_response()
}
