//! The gateway's side of the agent network: agents dial in over a WebSocket
//! ([`sluice_protocol::agent::CONNECT_PATH`]), authenticate with their token, and each
//! becomes a backend in the registry for as long as it stays connected.
//!
//! # Layout
//! - [`session`]: one agent connection: handshake, reader, writer, heartbeats.
//! - [`backend`]: [`backend::AgentBackend`], the `Backend` a connected agent is, and
//!   the per-job inbox the reader fills.
//! - [`convert`]: wire types ↔ Sluice's request, event and error types.

pub mod backend;
pub mod convert;
pub mod session;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::backend::AgentConn;
use crate::{config::Timeouts, registry::BackendSlot};

/// `[agents]`: how the gateway treats connecting agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Accept agent connections.
    pub enabled: bool,
    /// How often the gateway pings each agent.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// An agent silent for this long is dead: its connection is closed and its jobs end.
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
    /// How long a new connection may take to send its Hello.
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,
    /// Largest frame accepted from an agent, in bytes.
    pub max_frame_bytes: usize,
    /// Deadlines for jobs run on agents.
    pub timeouts: Timeouts,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            enabled: true,
            heartbeat: Duration::from_secs(3),
            dead_after: Duration::from_secs(9),
            hello_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 << 20,
            timeouts: Timeouts::default(),
        }
    }
}

impl AgentsConfig {
    /// Adds what is wrong with these settings to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.heartbeat.is_zero() || self.hello_timeout.is_zero() {
            problems.push("agents.heartbeat and agents.hello_timeout must be more than 0".to_owned());
        }
        if self.dead_after <= self.heartbeat {
            problems.push("agents.dead_after must be longer than agents.heartbeat".to_owned());
        }
        if self.max_frame_bytes < 1024 {
            problems.push("agents.max_frame_bytes must be at least 1024".to_owned());
        }
    }
}

/// A connected agent: its connection and its backend slot.
pub type Connected = (Arc<AgentConn>, Arc<BackendSlot>);

/// The connected agents, by id.
pub struct AgentHub {
    conns: Mutex<HashMap<String, Connected>>,
    count: watch::Sender<usize>,
}

impl Default for AgentHub {
    fn default() -> Self {
        AgentHub { conns: Mutex::new(HashMap::new()), count: watch::Sender::new(0) }
    }
}

impl AgentHub {
    /// Records a new connection; an older connection with the same id (an agent that
    /// reconnected before its old connection was found dead) is told to close.
    pub fn join(&self, conn: Arc<AgentConn>, slot: Arc<BackendSlot>) {
        let old = {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            let old = conns.insert(conn.info.id.clone(), (conn, slot));
            self.count.send_replace(conns.len());
            old
        };
        if let Some((old, _)) = old {
            old.close("replaced by a newer connection of the same agent");
        }
    }

    /// Forgets `conn` unless a newer connection of the same agent replaced it; returns
    /// true when it was replaced (the agent is still connected).
    pub fn leave(&self, conn: &Arc<AgentConn>) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let replaced = match conns.get(&conn.info.id) {
            Some((c, _)) if Arc::ptr_eq(c, conn) => {
                conns.remove(&conn.info.id);
                false
            }
            Some(_) => true,
            None => false,
        };
        self.count.send_replace(conns.len());
        replaced
    }

    /// Every connected agent, sorted by id.
    pub fn list(&self) -> Vec<Connected> {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = conns.values().cloned().collect();
        v.sort_by(|a, b| a.0.info.id.cmp(&b.0.info.id));
        v
    }

    /// The number of connected agents, to wait on.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Closes every connection that authenticated with `token_id` (it was revoked).
    pub fn disconnect_token(&self, token_id: &str) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let hit: Vec<_> = conns.values().filter(|(c, _)| c.info.token_id == token_id).collect();
        for (c, _) in &hit {
            c.close("its token was revoked");
        }
        hit.len()
    }
}
