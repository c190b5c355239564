//! Sluice's token sources: OpenAI-compatible and Ollama HTTP upstreams, and models run
//! in-process by the embedded llama.cpp engine. Each implements
//! [`sluice_core::backend::Backend`]; [`build`] turns the configuration into the
//! backend slots a gateway or an agent serves.
//!
//! # Layout
//! - [`openai_http`]: OpenAI-compatible HTTP upstreams (vLLM, llama.cpp, hosted APIs).
//! - [`ollama_http`]: Ollama's native API.
//! - [`sse`], [`ndjson`]: incremental decoders for the two stream framings.
//! - [`upstream`]: the body-to-events adapter both HTTP backends share.
//! - [`http_client`]: the transports (pooled, keep-alive) to upstreams.
//! - [`h1`]: the in-task HTTP/1.1 client for plain-HTTP upstreams.
//! - [`engine`]: models run in-process by the embedded llama.cpp engine.

pub mod engine;
pub mod h1;
pub mod http_client;
pub mod ndjson;
pub mod ollama_http;
pub mod openai_http;
pub mod sse;
pub mod upstream;

use std::sync::Arc;

use sluice_core::{
    backend::{Backend, BackendError, EventStream, ModelInfo, RunningModel, Stage},
    config::{BackendConfig, BackendKind, Timeouts},
    registry::BackendSlot,
};

pub use engine::EngineBackend;
pub use ollama_http::OllamaHttp;
pub use openai_http::OpenAiHttp;

use self::{
    engine::config::EngineSection,
    http_client::{HttpClients, Transport},
};

/// One slot per `[[backends]]` entry (all on one shared HTTP client) and one per
/// engine model. Does not touch the network.
pub fn build(
    backends: &[BackendConfig],
    engine: &EngineSection,
) -> Result<Vec<Arc<BackendSlot>>, BackendError> {
    let clients = HttpClients::default();
    let mut slots = Vec::with_capacity(backends.len());
    for b in backends {
        let backend: Arc<dyn Backend> = match b.kind {
            BackendKind::Openai => {
                let key = b.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
                let transport = Transport::new(&clients, &b.url, b.timeouts.connect)?;
                Arc::new(OpenAiHttp::new(&b.name, transport, key.as_deref()))
            }
            BackendKind::Ollama => {
                let transport = Transport::new(&clients, OllamaHttp::base_url(&b.url), b.timeouts.connect)?;
                Arc::new(OllamaHttp::new(&b.name, transport))
            }
        };
        slots.push(Arc::new(BackendSlot::new(backend, b)));
    }
    for m in engine.resolve(!backends.is_empty()) {
        let backend: Arc<dyn Backend> = Arc::new(EngineBackend::new(&m));
        let models = vec![(m.name.clone(), m.name.clone())];
        slots.push(Arc::new(BackendSlot::with_models(backend, Timeouts::default(), models)));
    }
    Ok(slots)
}

/// Loads the engine models configured to load at start, all at once; a model that
/// fails is logged and loaded again on first use.
pub async fn load_at_start(slots: &[Arc<BackendSlot>], engine: &EngineSection, other_backends: bool) {
    let start: Vec<String> = engine
        .resolve(other_backends)
        .into_iter()
        .filter(|m| m.load == engine::config::LoadPolicy::Start)
        .map(|m| m.name)
        .collect();
    let loads = start.iter().filter_map(|model| {
        let backend = format!("engine:{model}");
        let slot = slots.iter().find(|s| s.name() == backend)?;
        let load = slot.backend.load(model);
        let started = std::time::Instant::now();
        Some(async move {
            match load.await {
                Ok(()) => tracing::info!(model = %model, took = ?started.elapsed(), "model loaded"),
                Err(e) => tracing::error!(model = %model, error = %e, "model failed to load at start"),
            }
        })
    });
    futures_util::future::join_all(loads).await;
}
