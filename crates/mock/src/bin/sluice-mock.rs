//! `sluice-mock`: runs the mock upstream on a fixed address for benchmarks and manual
//! testing, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use sluice_mock::{Behavior, MockConfig, MockServer};
use tokio::net::TcpListener;

/// Fake OpenAI- and Ollama-compatible LLM server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Tokens per reply.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Delay between tokens, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Delay before the first token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    first_token_ms: u64,
    /// Model names to serve (repeat or comma-separate).
    #[arg(long = "model", value_delimiter = ',', default_value = sluice_mock::DEFAULT_MODEL)]
    models: Vec<String>,
    /// Fault injected into every generation, as in a directive: `normal`, `hang`,
    /// `status:500`, `drop_after:K`, `hang_after:K`, `malformed_after:K`.
    #[arg(long, default_value = "normal")]
    mode: Behavior,
    /// Demand this bearer key on `/v1` routes.
    #[arg(long, env = "SLUICE_MOCK_API_KEY")]
    api_key: Option<String>,
    /// Runtime worker threads; 1 runs everything on the main thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> std::io::Result<()> {
    let cfg = MockConfig {
        tokens: args.tokens,
        token_delay: Duration::from_millis(args.delay_ms),
        first_token_delay: Duration::from_millis(args.first_token_ms),
        models: args.models,
        require_api_key: args.api_key,
        behavior: args.mode,
        ..MockConfig::default()
    };
    let listener = TcpListener::bind(args.listen).await?;
    let server = MockServer::start_on(listener, cfg).await?;
    println!("listening on http://{}", server.addr());
    shutdown_signal().await?;
    let stats = server.stats().snapshot();
    server.shutdown().await;
    // Benchmarks read this line to count what reached the upstream.
    println!(
        "stats: requests={} completed={} cancelled={}",
        stats.requests, stats.streams_completed, stats.streams_cancelled
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (SIGINT only off Unix).
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
