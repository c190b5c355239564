//! What each subcommand does, wired from the crates that do the work.

use std::{io::Read as _, time::Duration};

use sluice_agent::{Agent, AgentOptions};
use sluice_config::{Config, Overrides, telemetry};
use sluice_core::registry::Registry;
use sluice_server::{auth, serve as server, state::AppState};
use sluice_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::{AgentArgs, AgentTokenAction, AgentTokenArgs, KeyAction, ServeArgs};

/// `sluice serve`: the gateway, until SIGTERM/SIGINT (then a graceful drain).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    cancel_on_signal(state.core.shutdown.clone());
    server::run(listener, state).await?;
    Ok(())
}

/// `sluice agent`: serves this machine's models through a gateway until SIGTERM/SIGINT
/// (then drains) or a permanent refusal.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: None,
        backends: args.backends.clone(),
        log_format: args.log_format,
        models: args.models.clone(),
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    telemetry::init(&config.log);
    if config.backends.is_empty() && config.engine.resolve(false).is_empty() {
        anyhow::bail!(
            "no local backend: add --backend ollama=http://127.0.0.1:11434 (or openai=URL), --model FILE.gguf, or [[backends]] in --config"
        );
    }
    let slots = sluice_backends::build(&config.backends, &config.engine)?;
    sluice_backends::load_at_start(&slots, &config.engine, !config.backends.is_empty()).await;
    let mut options = AgentOptions::new(&args.gateway, &args.token).map_err(anyhow::Error::msg)?;
    if let Some(id) = args.id {
        options.agent_id = id;
    }
    options.slots = args.slots.max(1);
    options.ca = args.ca;
    options.drain_timeout = args.drain_timeout;
    let agent = Agent::new(options, Registry::new(slots)).await?;
    if agent.models().is_empty() {
        anyhow::bail!("none of the local backends reported a model: are they running?");
    }
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    agent.run(shutdown).await?;
    Ok(())
}

/// `sluice agent-token`: create, list or revoke agent tokens in the configured store.
pub async fn agent_token(args: AgentTokenArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &Overrides::default())?;
    let store = Store::new(&config.store);
    match args.action {
        AgentTokenAction::Create { name } => {
            let (t, secret) = store.create_agent_token(&name).await?;
            println!("id:    {}", t.id);
            println!("name:  {}", t.name);
            println!("token: {secret}");
            println!(
                "\nGive the token to the agent (`sluice agent --token ...`); it is not stored and cannot be shown again."
            );
        }
        AgentTokenAction::List => {
            let tokens = store.list_agent_tokens().await?;
            let time = |t: i64| {
                let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
                humantime::format_rfc3339_seconds(at).to_string()
            };
            println!("{:<18} {:<24} {:<22} revoked", "id", "name", "created");
            for t in tokens {
                let revoked = t.revoked_at.map_or_else(|| "-".to_owned(), time);
                println!("{:<18} {:<24} {:<22} {revoked}", t.id, t.name, time(t.created_at));
            }
        }
        AgentTokenAction::Revoke { id } => {
            let done = store.revoke_agent_token(&id).await?;
            if !done {
                anyhow::bail!("no active agent token with id '{id}'");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// `sluice key`: make a client API key, or hash one.
pub fn key(action: KeyAction) -> anyhow::Result<()> {
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

/// Cancels `token` when SIGINT (Ctrl-C) or SIGTERM arrives.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        token.cancel();
    });
}
