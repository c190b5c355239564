//! `sluice-bench`: the load generator behind `sluice bench`.
//!
//! It drives any OpenAI- or Ollama-compatible endpoint with N workers, each a
//! persistent HTTP/1.1 keep-alive connection, and measures time to first token,
//! every inter-token gap, end-to-end latency, request and token rates and errors by
//! kind.
//!
//! # Layout
//! - [`args`]: the flags ([`BenchArgs`]) and their value parsers.
//! - `request`: resolved target and prebuilt request bodies.
//! - [`parse`]: incremental SSE / NDJSON parsing and whole-reply parsing.
//! - `client`: one worker = one connection, its request loop and measurements.
//! - [`stats`]: per-thread histograms and counters, merged at the end.
//! - `budget`: the shared request budget and progress counters.
//! - `runner`: threads, caps, progress bar, Ctrl-C; [`run`] is the entry point.
//! - [`report`]: the [`Report`] struct, its text tables and JSON.

pub mod args;
mod budget;
mod client;
pub mod parse;
pub mod report;
mod request;
mod runner;
pub mod stats;

pub use args::BenchArgs;
pub use report::Report;
pub use runner::run;
