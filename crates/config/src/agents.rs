//! `[agents]`: how the gateway treats connecting agents.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::config::Timeouts;

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
    /// Largest frame accepted from an agent, in bytes (the Hello included: a stranger
    /// may send this much before its token is checked).
    pub max_frame_bytes: usize,
    /// Connections whose Hello is not yet verified, at most, at once; more are refused
    /// with 503 before the WebSocket upgrade.
    pub max_handshakes: usize,
    /// Connection attempts per client address and minute; more are refused with 429.
    pub attempts_per_minute: u32,
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
            max_frame_bytes: 1 << 20,
            max_handshakes: 64,
            attempts_per_minute: 30,
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
        if self.max_handshakes == 0 || self.attempts_per_minute == 0 {
            problems
                .push("agents.max_handshakes and agents.attempts_per_minute must be at least 1".to_owned());
        }
    }
}
