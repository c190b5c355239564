//! `[ui]`: the bounds of answers the web UI has the gateway generate (they outlive the
//! browser's connection, so each one holds gateway memory until it ends).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[ui]`: bounds of UI generations (answers generated for a conversation by the
/// gateway, re-attachable after a reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Answers one user may have generating at once.
    pub generations_per_user: usize,
    /// Bytes of text one answer may reach; it is cut there (and says so).
    pub max_answer_bytes: usize,
    /// Bytes of one message sent from the UI.
    pub max_message_bytes: usize,
    /// How long a finished answer can still be re-attached to (its text is also in
    /// the conversation, so this only bridges a reload).
    #[serde(with = "humantime_serde")]
    pub keep_finished: Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            generations_per_user: 4,
            max_answer_bytes: 1 << 20,
            max_message_bytes: 256 * 1024,
            keep_finished: Duration::from_secs(120),
        }
    }
}

impl UiConfig {
    /// Adds what is wrong with these settings to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.generations_per_user == 0 {
            problems.push("ui.generations_per_user must be at least 1".to_owned());
        }
        if self.max_answer_bytes < 1024 {
            problems.push("ui.max_answer_bytes must be at least 1024".to_owned());
        }
        if self.max_message_bytes < 1024 {
            problems.push("ui.max_message_bytes must be at least 1024".to_owned());
        }
        if self.keep_finished.is_zero() {
            problems.push("ui.keep_finished must be more than 0".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_named() {
        let mut problems = Vec::new();
        UiConfig::default().check(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let zero = UiConfig {
            generations_per_user: 0,
            max_answer_bytes: 0,
            max_message_bytes: 0,
            keep_finished: Duration::ZERO,
        };
        zero.check(&mut problems);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("ui.")));
    }
}
