//! What a stranger may cost the agent endpoint before its Hello is verified: at most
//! `agents.max_handshakes` unverified connections at once, and at most
//! `agents.attempts_per_minute` connection attempts per client address. Both are
//! checked before the WebSocket upgrade, so a refused attempt costs one HTTP answer.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// The window per-address attempts are counted in.
const WINDOW: Duration = Duration::from_secs(60);

/// Addresses remembered before old windows are swept.
const SWEEP_ABOVE: usize = 4096;

/// Why a handshake may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// `agents.max_handshakes` connections are waiting for their Hello to be checked.
    Handshakes,
    /// This address used its `agents.attempts_per_minute`.
    Attempts,
}

/// The handshake gate.
#[derive(Debug)]
pub struct Handshakes {
    running: Arc<Semaphore>,
    per_minute: u32,
    attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Handshakes {
    /// A gate for `max` handshakes at once and `per_minute` attempts per address.
    pub fn new(max: usize, per_minute: u32) -> Handshakes {
        Handshakes { running: Arc::new(Semaphore::new(max)), per_minute, attempts: Mutex::default() }
    }

    /// Counts an attempt from `ip` and takes a handshake place; the place is free
    /// again when the permit is dropped (once the Hello is verified or refused).
    pub fn begin(&self, ip: Option<IpAddr>) -> Result<OwnedSemaphorePermit, Busy> {
        if let Some(ip) = ip {
            let now = Instant::now();
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            if attempts.len() > SWEEP_ABOVE {
                attempts.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            }
            let (since, n) = attempts.entry(ip).or_insert((now, 0));
            if now.duration_since(*since) >= WINDOW {
                (*since, *n) = (now, 0);
            }
            if *n >= self.per_minute {
                return Err(Busy::Attempts);
            }
            *n += 1;
        }
        self.running.clone().try_acquire_owned().map_err(|_| Busy::Handshakes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn handshakes_are_capped_at_once_and_per_address() {
        let gate = Handshakes::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = gate.begin(Some(a)).unwrap();
        let _second = gate.begin(Some(b)).unwrap();
        assert_eq!(gate.begin(Some(b)).unwrap_err(), Busy::Handshakes);
        drop(first);
        let _third = gate.begin(Some(a)).unwrap();
        // `a` tried three times this minute (one refused for lack of room counts too).
        assert_eq!(gate.begin(Some(a)).unwrap_err(), Busy::Handshakes);
        assert_eq!(gate.begin(Some(a)).unwrap_err(), Busy::Attempts);
        tokio::time::sleep(WINDOW).await;
        assert_eq!(gate.begin(Some(a)).unwrap_err(), Busy::Handshakes, "a new minute, but no room");
    }
}
