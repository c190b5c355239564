//! The running mock: [`router`] builds the route table (usable without a socket),
//! [`MockServer`] serves it on a listener until shut down or dropped.
//!
//! Connections are served by our own accept loop rather than `axum::serve`, so shutdown
//! can abort every connection at once, including the ones a test left hanging.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::MockConfig;
use crate::state::AppState;
use crate::stats::MockStats;
use crate::{ollama, openai};

/// The mock's routes, OpenAI under `/v1` and Ollama under `/api`, reporting into `stats`.
/// `GET /_mock/stats` answers the counters as JSON, for tests that drive a mock process.
pub fn router(cfg: MockConfig, stats: Arc<MockStats>) -> Router {
    let counters = Arc::clone(&stats);
    Router::new()
        .nest("/v1", openai::routes())
        .merge(ollama::routes())
        .route(
            "/_mock/stats",
            axum::routing::get(move || {
                let s = counters.snapshot();
                async move {
                    axum::Json(serde_json::json!({
                        "requests": s.requests,
                        "streams_started": s.streams_started,
                        "streams_completed": s.streams_completed,
                        "streams_cancelled": s.streams_cancelled,
                        "in_flight": s.in_flight,
                    }))
                }
            }),
        )
        .with_state(AppState::new(cfg, stats))
}

/// A mock upstream serving on a local port. Dropping it stops the server and aborts
/// every open connection.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    stats: Arc<MockStats>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a mock on `127.0.0.1` with a free port.
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        MockServer::start_on(listener, cfg).await
    }

    /// Starts a mock on an already bound listener.
    pub async fn start_on(listener: TcpListener, cfg: MockConfig) -> std::io::Result<MockServer> {
        let addr = listener.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let shutdown = CancellationToken::new();
        let app = router(cfg, Arc::clone(&stats));
        let task = tokio::spawn(serve(listener, app, shutdown.clone()));
        Ok(MockServer { addr, stats, shutdown, task: Some(task) })
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the OpenAI dialect, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn openai_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL of the Ollama dialect, e.g. `http://127.0.0.1:PORT`.
    pub fn ollama_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters, waiters and the last request.
    pub fn stats(&self) -> &Arc<MockStats> {
        &self.stats
    }

    /// Stops accepting, aborts every open connection and waits for the server to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            // The task only ends by returning or by the runtime shutting down.
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Accepts connections until `shutdown`; each connection is a task in a [`JoinSet`], so
/// leaving the loop aborts them all.
async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => {
                    // Tokens are tiny writes; Nagle would hold them back.
                    let _ = socket.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    connections.spawn(async move {
                        let served = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "mock connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "mock accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}
