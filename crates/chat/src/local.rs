//! A gateway inside the `sluice chat` process, for when none is running: the same
//! configuration `sluice serve` would load (file, environment, defaults), served on an
//! ephemeral loopback port, and talked to over HTTP like any other gateway. Whatever
//! `sluice serve` serves by default (the embedded engine's model), chat gets too.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use sluice_config::{Config, Overrides, telemetry};
use sluice_server::{serve, state::AppState};

/// How long the in-process gateway may take to stop when the chat ends; no request
/// is in flight then, so this is only a bound.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A gateway served by this process.
pub struct LocalGateway {
    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

/// Loads the configuration as `sluice serve` does (`config` file if given, then
/// `SLUICE_*` environment variables), but listens on 127.0.0.1 on a free port, with an
/// in-memory store and no keys (keyless mode: this process is its only client), and
/// starts serving. Backends are probed before it returns, so the model list is ready.
pub async fn start_local_gateway(config: Option<&Path>) -> anyhow::Result<LocalGateway> {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let overrides = Overrides { listen: Some(listen), ..Overrides::default() };
    let mut config = Config::load(config, &overrides)?;
    // This gateway serves only this terminal: it keeps nothing and asks for no
    // credential (keyless on loopback), whatever users the configured store holds.
    config.store.url = Some("sqlite::memory:".to_owned());
    config.auth.api_key_sha256.clear();
    // Gateway logs would interleave with the conversation; only on request.
    if std::env::var_os("RUST_LOG").is_some() {
        telemetry::init(&config.log);
    }
    let state = AppState::new(config).context("cannot set up the backends")?;
    let listener = TcpListener::bind(listen).await.context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    state.load_models_at_start().await;
    state.core.registry.discover().await;
    let shutdown = state.core.shutdown.clone();
    let task = tokio::spawn(serve::run(listener, state));
    Ok(LocalGateway { url: format!("http://{addr}"), shutdown, task })
}

impl LocalGateway {
    /// Stops serving and waits (boundedly) for the server to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(STOP_DEADLINE, self.task).await;
    }
}
