//! The `sluice agent` and `sluice agent-token` commands.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentOptions};
use crate::{
    config::{BackendKind, Config, LogFormat, Overrides, parse_backend_flag},
    state::AppState,
    store::Store,
    telemetry,
};

/// `sluice agent` flags.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The gateway, e.g. `https://gateway.example:8080` (or a full `wss://` URL).
    #[arg(long, env = "SLUICE_GATEWAY")]
    pub gateway: String,
    /// The agent token (`sluice agent-token create` on the gateway prints one).
    #[arg(long, env = "SLUICE_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Agent id, unique per gateway (default: the host name).
    #[arg(long)]
    pub id: Option<String>,
    /// Jobs to run at once.
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// Extra CA certificate (PEM) to trust for the gateway's TLS certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TOML configuration with the local `[[backends]]` (same format as `sluice serve`).
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A local backend as KIND=URL, e.g. `ollama=http://127.0.0.1:11434`. Repeatable.
    #[arg(long = "backend", value_parser = parse_backend_flag)]
    pub backends: Vec<(BackendKind, String)>,
    /// A GGUF file to serve with the embedded engine, named after the file. Repeatable.
    /// With no backend and no model, the agent serves the default model (SmolLM2).
    #[arg(long = "model", value_name = "PATH")]
    pub models: Vec<PathBuf>,
    /// How long running jobs may take to finish after SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub drain_timeout: Duration,
    /// Log format (overrides `log.format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Runs `sluice agent` until SIGTERM/SIGINT (then drains) or a permanent refusal.
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
    let state = AppState::new(config)?;
    state.load_models_at_start().await;
    let mut options = AgentOptions::new(&args.gateway, &args.token).map_err(anyhow::Error::msg)?;
    if let Some(id) = args.id {
        options.agent_id = id;
    }
    options.slots = args.slots.max(1);
    options.ca = args.ca;
    options.drain_timeout = args.drain_timeout;
    let agent = Agent::new(options, state).await?;
    if agent.models().is_empty() {
        anyhow::bail!("none of the local backends reported a model: are they running?");
    }
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        on_signal.cancel();
    });
    agent.run(shutdown).await?;
    Ok(())
}

/// `sluice agent-token` flags.
#[derive(Debug, Args)]
pub struct AgentTokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AgentTokenAction,
    /// The gateway's configuration file (for `[store] url`).
    #[arg(long, short, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// `sluice agent-token ...`.
#[derive(Debug, Subcommand)]
pub enum AgentTokenAction {
    /// Create a token and print it (it is shown only this once).
    Create {
        /// What the token is for, e.g. the machine's name.
        #[arg(long)]
        name: String,
    },
    /// List tokens (never the secrets).
    List,
    /// Revoke a token by id; agents using it are refused from their next connection.
    Revoke {
        /// The token's id (see `list`).
        id: String,
    },
}

/// Runs `sluice agent-token`.
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
