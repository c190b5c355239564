//! Command-line interface of the `sluice` binary.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{BackendKind, LogFormat, Overrides, parse_backend_flag};

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
    Chat(crate::chat_cli::ChatArgs),
    /// Serve this machine's models through a gateway (dials out; works behind NAT).
    Agent(crate::agent::cli::AgentArgs),
    /// Manage agent tokens (`create --name N`, `list`, `revoke ID`).
    AgentToken(crate::agent::cli::AgentTokenArgs),
    /// Manage client API keys.
    Key {
        /// What to do with keys.
        #[command(subcommand)]
        action: KeyAction,
    },
}

/// `sluice key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Print a new random key and the hash to put in `auth.api_key_sha256`.
    Generate,
    /// Print the hash of a key read from standard input.
    Hash,
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
