//! Gateway integration tests: a real gateway on port 0 in front of the mock upstream.

// Test helpers panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod util;

mod agents;
mod agents_tls;
mod deadlines;
mod dialects;
mod errors;
mod ops;
mod python_sdk;
mod store;
mod streaming;
