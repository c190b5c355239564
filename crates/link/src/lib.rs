//! The agent link, shared by both of its ends (the gateway's agent hub and the
//! `sluice agent` program): the session skeleton (frames, codec, heartbeat),
//! conversions between the wire frames and Sluice's own request, event and error types,
//! and the client's TLS setup.
//!
//! # Layout
//! - [`frame`]: link-level messages and the typed frame codec.
//! - [`heartbeat`]: pings and the dead-peer timer.
//! - [`connection`]: frame reader and writer over any `Stream`/`Sink` of messages.
//! - [`convert`]: wire types ↔ canonical types.
//! - [`tls`]: the agent's TLS client configuration.

pub mod connection;
pub mod convert;
pub mod frame;
pub mod heartbeat;
pub mod tls;
