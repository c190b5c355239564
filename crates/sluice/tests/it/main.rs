//! Gateway integration tests: a real gateway on port 0 in front of the mock upstream.

// Test helpers panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod util;

mod accounts;
mod agents;
mod agents_tls;
mod cache;
mod chaos;
mod chat_cli;
mod clients;
mod deadlines;
mod dialects;
mod engine;
mod engine_sdk;
mod errors;
mod metadata;
mod ollama_client;
mod ops;
mod proxy;
mod python_sdk;
mod replicas;
mod responses_sdk;
mod routing;
mod store;
mod streaming;
mod structured;
mod tools_sdk;
mod ui;
mod wire;
