//! Command-line interface of the `sluice` binary.

use sluice_protocol::budget::BudgetMode;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use sluice_config::{BackendKind, LogFormat, Overrides, parse_backend_flag};

/// Sluice: one binary that turns local models, GPU boxes and hosted LLM APIs into one
/// fast, reliable, OpenAI- and Ollama-compatible chat service.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Load-test any OpenAI- or Ollama-compatible endpoint (Sluice or not).
    Bench(sluice_bench::BenchArgs),
    /// Chat with a model in the terminal (through a running gateway, or one started
    /// in this process when none is running).
    Chat(sluice_chat::ChatArgs),
    /// Serve this machine's models through a gateway (dials out; works behind NAT).
    Agent(AgentArgs),
    /// Manage agent tokens (`create --name N`, `list`, `revoke ID`).
    AgentToken(AgentTokenArgs),
    /// TLS certificates for the gateway (`generate --host NAME...`).
    Tls(TlsArgs),
    /// Manage client API keys (`create --user N`, `list`, `revoke ID`; `generate` and
    /// `hash` for service keys in the configuration).
    Key(KeyArgs),
    /// Manage users (`create --name N [--admin]`, `list`, `disable N`, `enable N`,
    /// `passwd N`).
    User(UserArgs),
}

/// `sluice key` flags.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeyAction,
    /// The gateway's configuration file (for `[store] url`).
    #[arg(long, short, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// `sluice key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Print a new random service key and the hash to put in `auth.api_key_sha256`.
    Generate,
    /// Print the hash of a key read from standard input.
    Hash,
    /// Create an API key for a user and print it (it is shown only this once).
    Create(KeyCreate),
    /// List API keys (ids and prefixes, never the secrets).
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an API key by id; it is refused at once.
    Revoke {
        /// The key's id (see `list`).
        id: String,
    },
}

/// `sluice key create` flags.
#[derive(Debug, Args)]
pub struct KeyCreate {
    /// The user who owns the key.
    #[arg(long)]
    pub user: String,
    /// A label for the key, e.g. the program using it.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Model globs the key may use, e.g. 'llama*' (repeatable or comma-separated;
    /// default: every model).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<u32>,
    /// Concurrent streams.
    #[arg(long)]
    pub max_streams: Option<u32>,
    /// Tokens per day.
    #[arg(long)]
    pub daily_tokens: Option<u64>,
    /// Tokens per month.
    #[arg(long)]
    pub monthly_tokens: Option<u64>,
    /// Monthly spend budget in US dollars (from `[[models]] price`).
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    /// What a spent budget does: `hard` refuses requests, `soft` logs and counts them.
    #[arg(long, value_parser = parse_budget_mode, default_value = "hard")]
    pub budget_mode: BudgetMode,
    /// Refuse the key after this long, e.g. `30d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires: Option<Duration>,
}

/// `sluice user` flags.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: UserAction,
    /// The gateway's configuration file (for `[store] url`).
    #[arg(long, short, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// `sluice user ...`. Passwords are read from standard input when it is not a
/// terminal, else prompted for twice.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user.
    Create {
        /// The login name.
        #[arg(long)]
        name: String,
        /// Give the user the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Disable a user: their keys and sessions stop working at once.
    Disable {
        /// The user's name.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user's name.
        name: String,
    },
    /// Set a user's password (their sessions end).
    Passwd {
        /// The user's name.
        name: String,
    },
    /// Set or remove a user's monthly spend budget (all their keys and sessions).
    Budget {
        /// The user's name.
        name: String,
        /// The budget in US dollars; leave out to remove the budget.
        #[arg(long, value_name = "USD")]
        usd: Option<f64>,
        /// What a spent budget does: `hard` refuses requests, `soft` logs and counts.
        #[arg(long, value_parser = parse_budget_mode, default_value = "hard")]
        mode: BudgetMode,
    },
}

/// Parses `hard` or `soft`.
fn parse_budget_mode(s: &str) -> Result<BudgetMode, String> {
    BudgetMode::parse(s).ok_or_else(|| format!("'{s}': say hard or soft"))
}

/// `sluice serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `server.listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A backend as KIND=URL, e.g. `openai=http://127.0.0.1:8000/v1` or
    /// `ollama=http://127.0.0.1:11434`; its models are discovered. Repeatable.
    #[arg(long = "backend", value_parser = parse_backend_flag)]
    pub backends: Vec<(BackendKind, String)>,
    /// A GGUF model file to serve with the embedded engine, named after the file.
    /// Repeatable.
    #[arg(long = "model", value_name = "PATH")]
    pub models: Vec<PathBuf>,
    /// Log format (overrides `log.format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The values that override the file and environment.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            backends: self.backends.clone(),
            log_format: self.log_format,
            models: self.models.clone(),
        }
    }
}

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
    /// The gateway's certificate (PEM), or the CA that signed it: trusted, and pinned
    /// (a self-signed gateway certificate works as is).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Allow `http://` / `ws://` to a gateway on another machine (the agent token
    /// travels in clear).
    #[arg(long)]
    pub insecure: bool,
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

/// `sluice tls` flags.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TlsAction,
}

/// `sluice tls ...`.
#[derive(Debug, Subcommand)]
pub enum TlsAction {
    /// Write a CA (`ca.pem`) and a server certificate it signs (`server.pem`,
    /// `server-key.pem`) for `[server] tls_cert` / `tls_key` and `sluice agent --ca`.
    Generate {
        /// A name or IP address clients and agents reach the gateway by (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Directory to write the files to (created if missing; existing files are kept).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Days the server certificate is valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
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
        /// Model names its agents may serve (globs, comma-separated, e.g. 'llama*,qwen*');
        /// default: any name no configured backend serves.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Refuse the token after this long, e.g. `90d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (never the secrets).
    List,
    /// Revoke a token by id; agents using it are refused from their next connection.
    Revoke {
        /// The token's id (see `list`).
        id: String,
    },
}
