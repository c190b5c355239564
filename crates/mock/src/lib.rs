//! `sluice-mock`: a deterministic, controllable fake LLM upstream that speaks the
//! OpenAI (`/v1`) and Ollama (`/api`) dialects, for the gateway's integration tests and
//! benchmarks.
//!
//! Token `i` of every reply is `"t{i} "`. Speed, length and injected faults come from a
//! [`MockConfig`], and any request can override them with a `[mock ...]` directive in its
//! last user message or prompt (see [`directive`]). [`MockStats`] counts what happened
//! and lets a test wait for it without polling.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sluice_mock::{MockConfig, MockServer};
//! let mock = MockServer::start(MockConfig::default()).await?;
//! let base = mock.openai_base(); // point the gateway's upstream here
//! # let _ = base;
//! mock.stats().wait_completed(1).await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: server-wide settings ([`MockConfig`], [`Behavior`], [`Pace`]).
//! - [`directive`]: the per-request `[mock ...]` override.
//! - [`stats`]: counters, the last request, waiters.
//! - `plan`, `reply`: one request's resolved reply and its execution (pacing, faults).
//! - `openai`, `ollama`: the two dialects' routes and wire encoders.
//! - [`embed`]: deterministic embedding vectors.
//! - `server`: the route table and the server with its shutdown.

pub mod config;
pub mod directive;
pub mod embed;
mod error;
mod ollama;
mod openai;
mod plan;
mod reply;
mod server;
mod state;
pub mod stats;

pub use config::{Behavior, DEFAULT_MODEL, MockConfig, Pace};
pub use directive::{Directive, DirectiveError};
pub use server::{MockServer, router};
pub use stats::{MockStats, RecordedRequest, StatsSnapshot};
