//! `sluice chat`: an interactive terminal chat, like `ollama run`. It talks to a
//! running gateway over HTTP (the OpenAI dialect, streamed), or, when none is running,
//! starts one inside its own process and talks to that the same way.
//!
//! # Layout
//! - [`input`]: typed lines → messages, multi-line blocks, `/` commands.
//! - [`terminal`]: the line reader and Ctrl-C.
//! - [`client`]: the HTTP client (health probe, models, streamed chat).
//! - [`session`]: the conversation: history, model, one turn at a time.
//! - [`local`]: the in-process gateway.

pub mod client;
pub mod input;
pub mod local;
pub mod session;
pub mod terminal;

use std::{fmt::Display, io::Write as _, path::PathBuf};

use clap::Args;

use self::{
    client::GatewayClient,
    input::{Input, InputParser},
    local::{LocalGateway, start_local_gateway},
    session::{Flow, Sampling, Session},
    terminal::{Interrupts, LineReader, ReadOutcome},
};

/// Where `sluice chat` looks for a gateway when neither `--url` nor `SLUICE_URL` is set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// `sluice chat` flags.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Model to talk to (default: the gateway's first model).
    pub model: Option<String>,
    /// The gateway to talk to [default: http://127.0.0.1:8080, or one started in this
    /// process if nothing answers there].
    #[arg(long, env = "SLUICE_URL")]
    pub url: Option<String>,
    /// API key for the gateway.
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sampling seed.
    #[arg(long)]
    pub seed: Option<i64>,
    /// Most tokens per answer.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Always start a gateway inside this process (configured like `sluice serve`).
    #[arg(long, conflicts_with = "no_local")]
    pub local: bool,
    /// Never start a gateway inside this process; fail if none answers.
    #[arg(long)]
    pub no_local: bool,
    /// Configuration file for the in-process gateway (as `sluice serve --config`).
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Which gateway to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// The one at the URL.
    Remote,
    /// One started in this process.
    Local,
    /// None: nothing answers, and starting one here is not allowed.
    Refuse,
}

/// `--local` wins; a gateway that answers is used; otherwise one is started here, unless
/// `--no-local` forbids it or the user named a URL (a named gateway that is down is an
/// error to report, not something to replace silently with another model).
fn plan(args: &ChatArgs, remote_is_up: impl FnOnce() -> bool) -> Plan {
    if args.local {
        Plan::Local
    } else if remote_is_up() {
        Plan::Remote
    } else if args.no_local || args.url.is_some() {
        Plan::Refuse
    } else {
        Plan::Local
    }
}

/// Runs the chat until `/bye`, Ctrl-D, or two Ctrl-Cs at an empty prompt.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    // First: from here on Ctrl-C is ours to interpret, not the end of the process.
    let mut interrupts = Interrupts::listen()?;
    let (session, local) = tokio::select! {
        started = start(&args) => started?,
        // Starting can take a while (a model loading); Ctrl-C then means "never mind".
        () = interrupts.recv() => return Ok(()),
    };
    let outcome = converse(session, &mut interrupts).await;
    if let Some(local) = local {
        local.stop().await;
    }
    outcome
}

/// Finds or starts the gateway and picks the model.
async fn start(args: &ChatArgs) -> anyhow::Result<(Session, Option<LocalGateway>)> {
    let (client, local) = connect(args).await?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => client.models().await?.into_iter().next().ok_or_else(|| {
            let which = if local.is_some() { "the gateway started here" } else { client.base() };
            anyhow::anyhow!("{which} serves no model: configure a backend (see `sluice serve --help`)")
        })?,
    };
    let sampling = Sampling {
        system: args.system.clone(),
        temperature: args.temperature,
        seed: args.seed,
        max_tokens: args.max_tokens,
    };
    Ok((Session::new(client, model, sampling), local))
}

/// Picks the gateway (see [`plan`]) and a client for it.
async fn connect(args: &ChatArgs) -> anyhow::Result<(GatewayClient, Option<LocalGateway>)> {
    let url = args.url.as_deref().unwrap_or(DEFAULT_URL);
    let remote = GatewayClient::new(url, args.api_key.clone())?;
    let up = if args.local { false } else { remote.is_up().await };
    match plan(args, || up) {
        Plan::Remote => Ok((remote, None)),
        Plan::Refuse => {
            let hint = if args.no_local { "" } else { ", or use --local to run one inside this chat" };
            anyhow::bail!("no Sluice gateway answers at {url}: start one with `sluice serve`{hint}")
        }
        Plan::Local => {
            if !args.local {
                note(format_args!("No gateway at {url}; starting one inside this process."));
            }
            let gateway = start_local_gateway(args.config.as_deref()).await?;
            let client = GatewayClient::new(&gateway.url, args.api_key.clone())?;
            Ok((client, Some(gateway)))
        }
    }
}

/// The read–ask loop.
async fn converse(mut session: Session, interrupts: &mut Interrupts) -> anyhow::Result<()> {
    let mut reader = LineReader::spawn()?;
    if reader.interactive {
        note(format_args!(
            "Talking to {} at {}. /help for help, Ctrl-D or /bye to leave.",
            session.model(),
            session.base_url()
        ));
    }
    let mut parser = InputParser::default();
    let mut hinted = false;
    loop {
        let prompt = if parser.is_pending() { "... " } else { ">>> " };
        let outcome = tokio::select! {
            line = reader.read(prompt) => line?,
            () = interrupts.recv() => ReadOutcome::Interrupted,
        };
        let line = match outcome {
            ReadOutcome::Line(line) => line,
            ReadOutcome::Eof => break,
            ReadOutcome::Interrupted if parser.is_pending() => {
                parser.reset();
                continue;
            }
            ReadOutcome::Interrupted if hinted => break,
            ReadOutcome::Interrupted => {
                hinted = true;
                note("Use Ctrl + d or /bye to exit.");
                continue;
            }
        };
        hinted = false;
        match parser.feed(&line) {
            Input::Message(text) => session.ask(text, interrupts).await?,
            Input::Command(command) => {
                if session.command(command).await? == Flow::Exit {
                    break;
                }
            }
            Input::More | Input::Nothing => {}
        }
    }
    tracing::debug!(model = session.model(), "chat ended");
    Ok(())
}

/// A line for the user on standard error (the answers alone go to standard output).
/// A closed standard error is no reason to stop.
pub(crate) fn note(text: impl Display) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ChatArgs,
    }

    fn args(argv: &[&str]) -> ChatArgs {
        let mut full = vec!["chat"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    #[test]
    fn local_gateway_only_when_allowed_and_needed() {
        // Nothing named, nothing running: start one here.
        assert_eq!(plan(&ChatArgs { url: None, ..args(&[]) }, || false), Plan::Local);
        assert_eq!(plan(&ChatArgs { url: None, ..args(&[]) }, || true), Plan::Remote);
        assert_eq!(plan(&ChatArgs { url: None, ..args(&["--no-local"]) }, || false), Plan::Refuse);
        // A named gateway that is down is reported, not replaced.
        assert_eq!(plan(&args(&["--url", "http://gpu:8080"]), || false), Plan::Refuse);
        // --local never even probes.
        assert_eq!(plan(&args(&["--local"]), || panic!("probed")), Plan::Local);
        assert!(Cli::try_parse_from(["chat", "--local", "--no-local"]).is_err());
    }
}
