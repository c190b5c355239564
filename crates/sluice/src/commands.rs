//! What each subcommand does, wired from the crates that do the work.

use sluice_protocol::budget::{Budget, BudgetMode};
use std::{
    io::{IsTerminal as _, Read as _},
    time::Duration,
};

use sluice_agent::{Agent, AgentOptions};
use sluice_config::{Config, Overrides, telemetry};
use sluice_core::registry::Registry;
use sluice_server::{auth, serve as server, state::AppState};
use sluice_store::{NewApiKey, Store, api_keys::Limits};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    AgentArgs, AgentTokenAction, AgentTokenArgs, KeyAction, KeyArgs, KeyCreate, ServeArgs, TlsAction,
    TlsArgs, UserAction, UserArgs,
};

/// `println!` that returns the write error instead of panicking, so that
/// `sluice key list | head` ends quietly when `head` closes the pipe (see `main`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `sluice serve`: the gateway, until SIGTERM/SIGINT (then a graceful drain).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &args.overrides())?;
    telemetry::init(&config.log);
    let listen = config.server.listen;
    let state = AppState::new(config)?;
    // Fail closed: an unreadable SQLite store stops here, before the port is bound; a
    // Postgres one that is down is waited for in the background (service keys only).
    state.start_auth_or_retry().await?;
    let auth = &state.config.auth;
    if !listen.ip().is_loopback()
        && auth.api_key_sha256.is_empty()
        && !auth.allow_anonymous
        && !state.directory.any_credential()
    {
        anyhow::bail!(
            "server.listen is {listen} (reachable from other machines) but no user or API key exists: create an admin (`sluice user create --name admin --admin`), add auth.api_key_sha256 (see `sluice key generate`), or set auth.allow_anonymous = true"
        );
    }
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
    options.insecure = args.insecure;
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

/// `sluice tls generate`: a CA and a server certificate, written as PEM files, and
/// how to use them.
pub fn tls(args: TlsArgs) -> anyhow::Result<()> {
    let TlsAction::Generate { hosts, out, days } = args.action;
    let made = sluice_server::tls::generate(&hosts, days).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let files = [
        ("ca.pem", made.ca_cert.as_str(), 0o644),
        ("server.pem", made.server_chain.as_str(), 0o644),
        ("server-key.pem", made.server_key.as_str(), 0o600),
    ];
    for (name, _, _) in &files {
        let path = out.join(name);
        if path.exists() {
            anyhow::bail!("{} exists already: remove it or choose another --out", path.display());
        }
    }
    for (name, pem, mode) in files {
        let path = out.join(name);
        write_private(&path, pem, mode)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let abs = |name: &str| {
        let p = out.join(name);
        std::fs::canonicalize(&p).unwrap_or(p).display().to_string()
    };
    out!(
        "wrote {}, {} and {} (for {})",
        abs("ca.pem"),
        abs("server.pem"),
        abs("server-key.pem"),
        hosts.join(", ")
    );
    out!(
        "gateway configuration:\n  [server]\n  tls_cert = \"{}\"\n  tls_key = \"{}\"",
        abs("server.pem"),
        abs("server-key.pem")
    );
    out!("agents:  sluice agent --gateway https://{}:PORT --ca {} ...", hosts[0], abs("ca.pem"));
    out!("clients: curl --cacert {} https://{}:PORT/healthz", abs("ca.pem"), hosts[0]);
    Ok(())
}

/// Writes `text` to a new file with permissions `mode`.
fn write_private(path: &std::path::Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    f.write_all(text.as_bytes())
}

/// `sluice agent-token`: create, list or revoke agent tokens in the configured store.
pub async fn agent_token(args: AgentTokenArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &Overrides::default())?;
    let store = Store::new(&config.store);
    match args.action {
        AgentTokenAction::Create { name, models, expires } => {
            let expires_at = expires.map(|d| {
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                i64::try_from((now + d).as_secs()).unwrap_or(i64::MAX)
            });
            let (t, secret) = store.create_agent_token_scoped(&name, models, expires_at).await?;
            out!("id:    {}", t.id);
            out!("name:  {}", t.name);
            out!("token: {secret}");
            out!(
                "\nGive the token to the agent (`sluice agent --token ...`); it is not stored and cannot be shown again."
            );
        }
        AgentTokenAction::List => {
            let tokens = store.list_agent_tokens().await?;
            out!("{:<18} {:<24} {:<22} revoked", "id", "name", "created");
            for t in tokens {
                let revoked = t.revoked_at.map_or_else(|| "-".to_owned(), time);
                out!("{:<18} {:<24} {:<22} {revoked}", t.id, t.name, time(t.created_at));
            }
        }
        AgentTokenAction::Revoke { id } => {
            let done = store.revoke_agent_token(&id).await?;
            if !done {
                anyhow::bail!("no active agent token with id '{id}'");
            }
            out!("revoked {id}");
        }
    }
    Ok(())
}

/// Unix seconds as RFC 3339.
fn time(t: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn store_of(config: Option<&std::path::Path>) -> anyhow::Result<Store> {
    let config = Config::load(config, &Overrides::default())?;
    Ok(Store::new(&config.store))
}

async fn user_named(store: &Store, name: &str) -> anyhow::Result<sluice_store::User> {
    store.user_by_name(name).await?.ok_or_else(|| anyhow::anyhow!("no user named '{name}'"))
}

/// `sluice key`: service keys (`generate`, `hash`) and users' keys in the store.
pub async fn key(args: KeyArgs) -> anyhow::Result<()> {
    match args.action {
        KeyAction::Generate => {
            let k = auth::generate_key();
            out!("key:    {k}");
            out!("sha256: {}", auth::hash_key(&k));
            out!("\nGive the key to the client; put only the sha256 in auth.api_key_sha256.");
        }
        KeyAction::Hash => {
            let mut k = String::new();
            std::io::stdin().read_to_string(&mut k)?;
            out!("{}", auth::hash_key(k.trim()));
        }
        KeyAction::Create(c) => create_key(&store_of(args.config.as_deref())?, c).await?,
        KeyAction::List { user } => {
            let store = store_of(args.config.as_deref())?;
            let users = store.list_users().await?;
            let owner = match &user {
                Some(name) => Some(user_named(&store, name).await?.id),
                None => None,
            };
            let name_of = |id: &str| users.iter().find(|u| u.id == id).map_or("?", |u| u.name.as_str());
            out!(
                "{:<18} {:<16} {:<16} {:<16} {:<22} {:<22} state",
                "id",
                "user",
                "name",
                "prefix",
                "created",
                "last used"
            );
            for k in store.list_api_keys(owner.as_deref()).await? {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(t), _) => format!("revoked {}", time(t)),
                    (None, Some(t)) => format!("expires {}", time(t)),
                    (None, None) => "active".to_owned(),
                };
                let used = k.last_used_at.map_or_else(|| "-".to_owned(), time);
                out!(
                    "{:<18} {:<16} {:<16} {:<16} {:<22} {:<22} {state}",
                    k.id,
                    name_of(&k.user_id),
                    k.name,
                    k.prefix,
                    time(k.created_at),
                    used
                );
            }
        }
        KeyAction::Revoke { id } => {
            if !store_of(args.config.as_deref())?.revoke_api_key(&id, None).await? {
                anyhow::bail!("no active API key with id '{id}'");
            }
            out!("revoked {id}");
        }
    }
    Ok(())
}

async fn create_key(store: &Store, c: KeyCreate) -> anyhow::Result<()> {
    let user = user_named(store, &c.user).await?;
    let expires_at = c.expires.map(|d| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from((now + d).as_secs()).unwrap_or(i64::MAX)
    });
    let new = NewApiKey {
        user_id: user.id,
        name: c.name,
        models: (!c.models.is_empty()).then_some(c.models),
        limits: Limits::new(
            c.rpm,
            c.tpm,
            c.max_streams,
            c.daily_tokens,
            c.monthly_tokens,
            c.budget.map(|usd| budget(usd, c.budget_mode)).transpose()?,
        ),
        expires_at,
    };
    let (k, secret) = store.create_api_key(&new).await?;
    out!("id:     {}", k.id);
    out!("user:   {}", user.name);
    out!("key:    {secret}");
    out!("\nGive the key to its user; it is not stored and cannot be shown again.");
    Ok(())
}

/// A new password: one line of standard input when it is not a terminal, else asked
/// for twice.
fn read_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("password: ")?;
    let again = rpassword::prompt_password("again:    ")?;
    if first != again {
        anyhow::bail!("the passwords differ");
    }
    Ok(first)
}

/// `sluice user`: create, list, disable, enable users, or set a password.
pub async fn user(args: UserArgs) -> anyhow::Result<()> {
    let store = store_of(args.config.as_deref())?;
    match args.action {
        UserAction::Create { name, admin } => {
            let password = read_password()?;
            let u = store.create_user(&name, &password, admin).await?;
            out!("created {} ({}, id {})", u.name, if u.admin { "admin" } else { "user" }, u.id);
        }
        UserAction::List => {
            out!("{:<18} {:<24} {:<6} {:<9} created", "id", "name", "role", "state");
            for u in store.list_users().await? {
                let role = if u.admin { "admin" } else { "user" };
                let state = if u.disabled { "disabled" } else { "active" };
                out!("{:<18} {:<24} {:<6} {:<9} {}", u.id, u.name, role, state, time(u.created_at));
            }
        }
        UserAction::Disable { name } => {
            let u = user_named(&store, &name).await?;
            store.set_user_disabled(&u.id, true).await?;
            store.delete_user_sessions(&u.id).await?;
            out!("disabled {name}");
        }
        UserAction::Enable { name } => {
            let u = user_named(&store, &name).await?;
            store.set_user_disabled(&u.id, false).await?;
            out!("enabled {name}");
        }
        UserAction::Passwd { name } => {
            let u = user_named(&store, &name).await?;
            let password = read_password()?;
            store.set_password(&u.id, &password).await?;
            store.delete_user_sessions(&u.id).await?;
            out!("password of {name} changed; their sessions ended");
        }
        UserAction::Budget { name, usd, mode } => {
            let u = user_named(&store, &name).await?;
            let b = usd.map(|usd| budget(usd, mode)).transpose()?;
            store.set_user_budget(&u.id, b).await?;
            match b {
                Some(b) => out!("budget of {name}: {b}"),
                None => out!("budget of {name} removed"),
            }
        }
    }
    Ok(())
}

/// A budget of `usd` dollars a month.
fn budget(usd: f64, mode: BudgetMode) -> anyhow::Result<Budget> {
    Budget::from_usd(usd, mode).ok_or_else(|| {
        anyhow::anyhow!("a budget is from 0 to {} dollars", sluice_protocol::budget::MAX_BUDGET_USD)
    })
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
