//! The Sluice HTTP server: what a client, a browser or an agent talks to. The domain
//! (routing, cache, generation) is `sluice-core`; this crate turns HTTP into calls on
//! it and back.
//!
//! # Layout
//! - [`serve`]: startup announcement, the serve loop, graceful shutdown.
//! - [`connections`]: accepting connections: caps, timeouts, the hard stop.
//! - [`state`]: [`state::AppState`], the core plus what only the server holds
//!   (configuration, keys, agent hub, store).
//! - [`api`]: the route table, middleware, one module per dialect, the streaming body.
//! - [`auth`]: API keys.
//! - [`clock`]: the wall clock, read in one place.
//! - [`exposition`]: counters outside the registry, written into `/metrics`.
//! - [`hub`]: connected agents as backends (the gateway's side of the agent link).
//! - [`tenancy`]: who a request is limited and recorded as.
//! - [`tls`]: the TLS server configuration.
//! - [`usage_writer`]: the usage writer's life (start, drain, metrics).
//! - [`retention`]: the task deleting expired conversations and usage.
//! - [`runs`]: UI generations, which outlive the browser's connection.

pub mod api;
pub mod auth;
pub mod budgets;
pub mod clock;
pub mod connections;
pub mod exposition;
pub mod hub;
pub mod retention;
pub mod runs;
pub mod serve;
pub mod state;
pub mod tenancy;
pub mod tls;
pub mod usage_writer;
