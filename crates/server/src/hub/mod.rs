//! The gateway's side of the agent network: agents dial in over a WebSocket
//! ([`sluice_protocol::agent::CONNECT_PATH`]), authenticate with their token, and each
//! becomes a backend in the registry for as long as it stays connected.
//!
//! # Layout
//! - [`session`]: one agent connection: handshake, reader, writer, heartbeats.
//! - [`backend`]: [`backend::AgentBackend`], the `Backend` a connected agent is, and
//!   the per-job inbox the reader fills.
//! - [`socket`]: axum's WebSocket adapted to the link's message type.
//! - [`handshakes`]: what a connection may cost before its Hello is verified.
//!
//! The session skeleton (codec, heartbeat, frame reader and writer) and the wire
//! conversions are shared with the agent: [`sluice_link`].

pub mod backend;
pub mod handshakes;
pub mod session;
pub mod socket;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use sluice_config::AgentsConfig;
use sluice_core::gateway::Gateway;
use sluice_store::Store;

use self::backend::AgentConn;
use sluice_core::registry::BackendSlot;

/// What an agent session needs from the gateway: the core it joins as a backend, the
/// store that knows its token, the hub of connected agents and the `[agents]` settings.
#[derive(Clone)]
pub struct Link {
    /// The domain the agent serves as a backend.
    pub core: Gateway,
    /// Where agent tokens are kept.
    pub store: Arc<Store>,
    /// The connected agents.
    pub agents: Arc<AgentHub>,
    /// `[agents]`.
    pub config: AgentsConfig,
    /// How long a draining gateway waits for an agent's jobs (`server.shutdown_grace`).
    pub grace: Duration,
}

/// A connected agent: its connection and its backend slot.
pub type Connected = (Arc<AgentConn>, Arc<BackendSlot>);

/// The connected agents, by id.
pub struct AgentHub {
    conns: Mutex<HashMap<String, Connected>>,
    count: watch::Sender<usize>,
    /// Unverified connections at once and attempts per address.
    pub handshakes: handshakes::Handshakes,
}

impl Default for AgentHub {
    fn default() -> Self {
        AgentHub::new(&AgentsConfig::default())
    }
}

impl AgentHub {
    /// A hub with no agent, limiting handshakes as `config` says.
    pub fn new(config: &AgentsConfig) -> AgentHub {
        AgentHub {
            conns: Mutex::new(HashMap::new()),
            count: watch::Sender::new(0),
            handshakes: handshakes::Handshakes::new(config.max_handshakes, config.attempts_per_minute),
        }
    }

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

    /// True when an agent with `id` is connected with a token other than `token_id`:
    /// an agent id can only replace a connection of its own token.
    pub fn held_by_other_token(&self, id: &str, token_id: &str) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.get(id).is_some_and(|(c, _)| c.info.token_id != token_id)
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
