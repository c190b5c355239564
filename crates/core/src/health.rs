//! Active health probes: one tracked task per backend (unless its `health.enabled` is
//! off) asks the backend's cheap liveness endpoint every `health.interval` under
//! `health.timeout`, and records the answer in the backend's `healthy` flag and the
//! `sluice_backend_up` gauge. The balancer prefers healthy backends; the circuit
//! breaker does the passive half from real traffic. Probes end on shutdown.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::time::{Instant, MissedTickBehavior};

use crate::{gateway::Gateway, metrics::BackendLabels, registry::BackendSlot};

/// Starts the probe task of every backend that has probing enabled.
pub fn spawn_probes(state: &Gateway) {
    for slot in state.registry.slots().iter() {
        let cfg = slot.routing.health;
        if !cfg.enabled {
            continue;
        }
        let task_state = state.clone();
        let slot = slot.clone();
        state.tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + cfg.interval, cfg.interval);
            // A slow probe delays the next one instead of firing a burst after it.
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let shutdown = task_state.shutdown.clone();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = probe(&task_state, &slot, cfg.timeout) => {}
                }
            }
        });
    }
}

/// Probes `slot` once and records the result; returns whether it answered.
pub async fn probe(state: &Gateway, slot: &Arc<BackendSlot>, timeout: Duration) -> bool {
    let up = match tokio::time::timeout(timeout, slot.backend.health()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(backend = slot.name(), error = %e, cause = ?e, "health probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(backend = slot.name(), "health probe timed out");
            false
        }
    };
    if slot.healthy.swap(up, Ordering::Relaxed) != up {
        if up {
            tracing::info!(backend = slot.name(), "backend is healthy again");
        } else {
            tracing::warn!(backend = slot.name(), "backend failed its health probe");
        }
    }
    state
        .metrics
        .backend_up
        .get_or_create(&BackendLabels { backend: slot.name().to_owned() })
        .set(i64::from(up));
    up
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32};

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::{
        backend::{Backend, BackendError, EventStream, ModelInfo},
        cache::config::CacheConfig,
        chat::{ChatRequest, EmbedRequest, Embeddings},
        config::RoutingConfig,
        config::{BackendConfig, BackendKind},
        context::RequestContext,
        gateway::Settings,
    };

    #[derive(Default)]
    struct Switch {
        up: AtomicBool,
        probes: AtomicU32,
    }

    struct Fake(Arc<Switch>);

    impl Backend for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn chat(
            &self,
            _: &RequestContext,
            _: ChatRequest,
        ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
            Box::pin(async { Err(BackendError::Unsupported("no chat".into())) })
        }
        fn embed(&self, _: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
            Box::pin(async { Err(BackendError::Unsupported("no embeddings".into())) })
        }
        fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
            let s = self.0.clone();
            Box::pin(async move {
                s.probes.fetch_add(1, Ordering::SeqCst);
                if s.up.load(Ordering::SeqCst) {
                    Ok(vec![])
                } else {
                    Err(BackendError::Connect("down".into()))
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_follow_the_backend_and_stop_on_shutdown() {
        let mut cfg = BackendConfig::new("fake", BackendKind::Openai, "http://127.0.0.1:1/v1");
        cfg.health.interval = Duration::from_secs(1);
        cfg.health.timeout = Duration::from_secs(1);
        let switch = Arc::new(Switch::default());
        let slot = Arc::new(BackendSlot::new(Arc::new(Fake(switch.clone())), &cfg));
        let (routing, cache) = (RoutingConfig::default(), CacheConfig::default());
        let settings = Settings { routing: &routing, models: &[], cache: &cache };
        let state = Gateway::new(settings, vec![slot.clone()]);
        spawn_probes(&state);
        // Paused time only moves on when every task is idle, so each probe due before
        // the end of a sleep has completed by then.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(switch.probes.load(Ordering::SeqCst), 1, "no probe before the first interval");
        assert!(!slot.healthy.load(Ordering::SeqCst));
        switch.up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(switch.probes.load(Ordering::SeqCst), 2);
        assert!(slot.healthy.load(Ordering::SeqCst));
        assert!(state.metrics.render().contains("sluice_backend_up{backend=\"fake\"} 1"));
        state.shutdown.cancel();
        state.tasks.close();
        tokio::time::timeout(Duration::from_secs(1), state.tasks.wait()).await.expect("probes stop");
    }
}
