//! The `sluice` binary: parse the command line and hand over to the library.

use std::{io::Read as _, process::ExitCode};

use clap::Parser;
use sluice_gateway::{
    auth,
    cli::{Cli, Command, KeyAction, ServeArgs},
    config::Config,
    server,
    state::AppState,
    telemetry,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Bench(args) => runtime.block_on(async { sluice_bench::run(args).await.map(|_| ()) }),
        Command::Chat(args) => runtime.block_on(sluice_gateway::chat_cli::run(args)),
        Command::Key { action } => key(action),
        Command::Agent(args) => runtime.block_on(sluice_gateway::agent::cli::agent(args)),
        Command::AgentToken(args) => runtime.block_on(sluice_gateway::agent::cli::agent_token(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &args.overrides())?;
    telemetry::init(&config.log);
    let listen = config.server.listen;
    let state = AppState::new(config)?;
    state.store.open().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    state.load_models_at_start().await;
    server::announce(&state, addr).await;
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        shutdown.cancel();
    });
    server::run(listener, state).await?;
    Ok(())
}

fn key(action: KeyAction) -> anyhow::Result<()> {
    match action {
        KeyAction::Generate => {
            let k = auth::generate_key();
            println!("key:    {k}");
            println!("sha256: {}", auth::hash_key(&k));
            println!("\nGive the key to the client; put only the sha256 in auth.api_key_sha256.");
        }
        KeyAction::Hash => {
            let mut k = String::new();
            std::io::stdin().read_to_string(&mut k)?;
            println!("{}", auth::hash_key(k.trim()));
        }
    }
    Ok(())
}
