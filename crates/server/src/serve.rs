//! Startup and the serve loop: discover backends, log what is served, accept
//! connections until shutdown, then give in-flight requests a grace period.

use std::{io, sync::atomic::Ordering, time::Duration};

use tokio::net::TcpListener;

use crate::{api, state::AppState};

/// Probes every backend, then logs the address, the backends and the models.
pub async fn announce(state: &AppState, addr: std::net::SocketAddr) {
    state.core.registry.discover().await;
    let scheme = if state.config.server.tls_cert.is_some() { "https" } else { "http" };
    tracing::info!(address = %format!("{scheme}://{addr}"), "Sluice listening");
    let slots = state.core.registry.slots();
    if slots.is_empty() {
        tracing::warn!(
            "no backend configured: add one with `sluice serve --backend openai=http://127.0.0.1:8000/v1` \
             (or `ollama=http://127.0.0.1:11434`), a GGUF file with `--model PATH`, a [[backends]] entry in the config file, or connect agents (`sluice agent`)"
        );
    }
    for s in slots.iter() {
        tracing::info!(
            backend = s.name(),
            kind = s.backend.kind(),
            healthy = s.healthy.load(Ordering::Relaxed),
            "backend"
        );
        state
            .core
            .metrics
            .backend_up
            .get_or_create(&sluice_core::metrics::BackendLabels { backend: s.name().to_owned() })
            .set(i64::from(s.healthy.load(Ordering::Relaxed)));
    }
    let table = state.core.registry.table();
    for name in table.names() {
        let backends: Vec<&str> =
            table.routes(name).unwrap_or_default().iter().map(|r| r.slot.name()).collect();
        tracing::info!(model = %name, backends = ?backends, "model");
    }
}

/// Serves `state` on `listener` until `state.core.shutdown` is cancelled, then lets
/// in-flight requests finish for up to the configured grace period, then ends the
/// answers still running with an error event (`state.core.cut`), drops every
/// connection still open [`crate::connections::FLUSH`] later (and stops waiting for
/// the gateway's own tasks [`TASKS_AFTER_GRACE`] after that), then writes the queued
/// usage records (for up to one more grace period).
///
/// Also starts the usage writer (`[usage]`) and the retention task (`[retention]`).
pub async fn run(listener: TcpListener, state: AppState) -> io::Result<()> {
    let shutdown = state.core.shutdown.clone();
    let grace = state.config.server.shutdown_grace;
    // Fail closed: users and keys unread, only the configured service keys work.
    state.start_auth_or_retry().await.map_err(io::Error::other)?;
    sluice_core::health::spawn_probes(&state.core);
    state.start_usage();
    // Expired conversations and usage go at start, then hourly and on every change.
    let task_state = state.clone();
    state.core.tasks.spawn(async move {
        let shutdown = task_state.core.shutdown.clone();
        let store = task_state.store.clone();
        crate::retention::run(&task_state.retention, &shutdown, |cfg| {
            let store = store.clone();
            async move { crate::retention::sweep_logged(&store, cfg).await }
        })
        .await;
    });
    if state.config.limits.replicas > 1 && state.prices_configured() {
        // Other replicas' spend reaches this one through the shared store.
        let task_state = state.clone();
        state.core.tasks.spawn(async move {
            let shutdown = task_state.core.shutdown.clone();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(crate::budgets::REFRESH_EVERY) => {}
                }
                let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
                if let Err(e) = crate::budgets::seed_from_store(&task_state.store, &task_state.budgets, now).await {
                    tracing::warn!(error = %e, "spend of other replicas not read; budgets use this replica's");
                }
            }
        });
    }
    let tls = match (&state.config.server.tls_cert, &state.config.server.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key).map_err(io::Error::other)?),
        _ => None,
    };
    let limits = crate::connections::Limits::from_config(&state.config.server);
    let announce = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
        }
    };
    let stop = crate::connections::Stop { shutdown, grace, cut: state.core.cut.clone() };
    let serve = crate::connections::serve(listener, tls, api::app(state.clone()), limits, stop);
    tokio::join!(serve, announce);
    // Every connection is closed now; the gateway's own tasks (agent sessions, UI
    // generations, cache flights) stop with the grace period too.
    state.core.tasks.close();
    if tokio::time::timeout(TASKS_AFTER_GRACE, state.core.tasks.wait()).await.is_err() {
        tracing::warn!(
            tasks = state.core.tasks.len(),
            "tasks still running after the grace period; leaving them"
        );
    }
    // After the requests: the last ones record their usage as they finish.
    state.usage.drain(grace).await;
    Ok(())
}

/// How long the gateway's own tasks may take to stop once the connections are closed:
/// with [`crate::connections::FLUSH`] and the runtime's own shutdown, the process ends
/// within a second of the grace period.
pub const TASKS_AFTER_GRACE: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sluice_config::{Config, Overrides};
    use sluice_store::{UsageFilter, UsageGroup, UsageRecord};

    use super::*;

    fn record(at: i64) -> UsageRecord {
        UsageRecord {
            at,
            user_id: Some("local".into()),
            key_id: None,
            model: "m".into(),
            backend: "b".into(),
            dialect: "openai".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
            cached: false,
            ttft_ms: Some(3),
            duration_ms: 4,
            status: 200,
            spend: 0.0,
        }
    }

    /// Count in = count out: records queued right before shutdown are written by the
    /// drain, including a last partial batch whose flush timer (an hour) never fires.
    #[tokio::test]
    async fn usage_queued_before_shutdown_is_all_written() {
        let toml = "[store]\nurl = \"sqlite::memory:\"\n[usage]\nmax_batch = 100\nflush_every = \"1h\"\n";
        let state = AppState::with_slots(Config::from_toml(toml, &Overrides::default()).unwrap(), Vec::new());
        // `run` starts the writer too; starting it here first lets the test hold the sink.
        state.start_usage();
        let sink = state.usage.sink().unwrap().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = tokio::spawn(run(listener, state.clone()));
        const N: u64 = 10_050;
        for at in 0..N {
            sink.record(record(i64::try_from(at).unwrap()));
        }
        state.core.shutdown.cancel();
        server.await.unwrap().unwrap();
        assert_eq!((sink.stats().written(), sink.stats().dropped(), sink.stats().pending()), (N, 0, 0));
        let rows = state.store.usage_summary(&UsageFilter::default(), UsageGroup::Model).await.unwrap();
        assert_eq!(rows[0].requests, N);
        // After the drain the sink refuses, and counts what it refused.
        sink.record(record(0));
        assert_eq!(sink.stats().dropped(), 1);
    }
}
