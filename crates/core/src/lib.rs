//! The domain of the Sluice gateway, free of HTTP servers and of llama.cpp: what a
//! request is, where it may go, and how it gets there.
//!
//! # Layout (the request path, in order)
//! - [`chat`]: the canonical request and token events every dialect and backend share;
//!   [`carry`]: the fields it carries unmodeled, for an upstream of the client's dialect;
//!   what it holds besides text: [`tools`] (function calling), [`media`] (images),
//!   [`output`] (formats, log probabilities, reasoning); [`answer`] assembles events
//!   into a whole answer.
//! - [`context`]: [`context::RequestContext`], who asks and under which limits,
//!   carried by value down the path.
//! - [`reply`]: answers a request from the cache, an identical request in flight, or
//!   a new [`generation`].
//! - [`cache`]: the response cache and single-flight table [`reply`] uses.
//! - [`generation`]: admit, dispatch, then watch a generation (deadlines, metrics).
//! - [`dispatch`]: the attempts of one request up to its first token: retries,
//!   hedging, fallbacks.
//! - [`scheduler`]: the routing state those attempts consult: admission queues,
//!   balancing, circuit breakers, the retry budget.
//! - [`registry`]: which backends serve which models, and the cheapest one now;
//!   [`capabilities`]: which of them can take what a request asks beyond text.
//! - [`health`]: active probes of every backend.
//! - [`backend`]: the [`backend::Backend`] trait every token source implements.
//! - [`embeddings`]: embeddings through the same dispatch.
//! - [`error`]: [`error::GatewayError`], what a client is told; [`scrub`]: credentials
//!   out of the upstream messages it passes on.
//! - [`gateway`]: [`gateway::Gateway`], the shared state holding all of the above.
//! - [`metrics`], [`config`]: every metric, and the per-backend settings.

pub mod answer;
pub mod backend;
pub mod cache;
pub mod capabilities;
pub mod carry;
pub mod chat;
pub mod config;
pub mod context;
pub mod dispatch;
pub mod embeddings;
pub mod error;
pub mod gateway;
pub mod generation;
pub mod health;
pub mod media;
pub mod metrics;
pub mod output;
pub mod registry;
pub mod reply;
pub mod scheduler;
pub mod scrub;
pub mod tools;

pub use gateway::Gateway;
