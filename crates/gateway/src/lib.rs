//! Sluice gateway: OpenAI- and Ollama-compatible APIs over any mix of LLM backends.
//!
//! # Layout
//! - [`cli`], [`config`], [`telemetry`]: the binary's edge.
//! - [`server`]: startup, serve loop, graceful shutdown.
//! - [`api`]: routes, middleware, one module per dialect, the streaming body.
//! - [`chat`]: the canonical request and events every layer shares.
//! - [`cache`]: response cache and single-flight in front of [`generation`].
//! - [`generation`]: start a generation, enforce deadlines, record metrics.
//! - [`registry`], [`scheduler`]: which backends serve a model, and how a request gets
//!   to one (balancing, breakers, retries, hedging, fallbacks, admission).
//! - [`backends`]: the `Backend` trait and its HTTP implementations.
//! - [`chat_cli`]: `sluice chat`, the terminal client.
//! - [`agents`]: remote agents as backends (gateway side); [`agent`]: `sluice agent`.
//! - [`store`]: SQLite/Postgres storage (agent tokens).
//! - [`auth`], [`metrics`], [`state`], [`error`]: cross-cutting pieces.

pub mod agent;
pub mod agents;
pub mod api;
pub mod auth;
pub mod backends;
pub mod cache;
pub mod chat;
pub mod chat_cli;
pub mod cli;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod metrics;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
