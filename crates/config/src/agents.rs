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
