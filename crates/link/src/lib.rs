//! The agent link, shared by both of its ends (the gateway's agent hub and the
//! `sluice agent` program): conversions between the wire frames and Sluice's own
//! request, event and error types, and the client's TLS setup.
//!
//! # Layout
//! - [`convert`]: wire types ↔ canonical types.
//! - [`tls`]: the agent's TLS client configuration.

pub mod convert;
pub mod tls;
