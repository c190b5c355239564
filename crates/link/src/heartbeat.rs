//! The heartbeat and dead-peer timer of one end of the link.
//!
//! The gateway pings every `agents.heartbeat` and gives up on a peer silent for
//! `agents.dead_after`; the agent sends no pings and gives up after three heartbeat
//! intervals. Any received message counts as a sign of life
//! ([`PeerTimer::saw_message`]).

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

/// What the timer says is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Time to send a ping.
    Ping,
    /// Nothing was received for the whole dead-after period.
    Dead,
}

/// Pings at a fixed period (optionally) and notices a silent peer.
#[derive(Debug)]
pub struct PeerTimer {
    ping: Option<Interval>,
    dead_after: Duration,
    last_message: Instant,
    dead: std::pin::Pin<Box<Sleep>>,
}

impl PeerTimer {
    /// A timer started now: the first ping is due one `ping_every` from now (none when
    /// `None`), and the peer is dead after `dead_after` without a message.
    pub fn new(ping_every: Option<Duration>, dead_after: Duration) -> Self {
        let now = Instant::now();
        let ping = ping_every.map(|every| {
            let mut ping = tokio::time::interval_at(now + every, every);
            // A late tick (a busy runtime) does not cause a burst of pings.
            ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ping
        });
        PeerTimer {
            ping,
            dead_after,
            last_message: now,
            dead: Box::pin(tokio::time::sleep_until(now + dead_after)),
        }
    }

    /// How long a silent peer lives.
    pub fn dead_after(&self) -> Duration {
        self.dead_after
    }

    /// A message arrived now: the silence starts again.
    pub fn saw_message(&mut self) {
        self.last_message = Instant::now();
    }

    /// Waits for the next ping or for the peer to be dead. A dead peer wins over a ping
    /// due at the same instant. Cancel-safe: use it in `select!`.
    pub async fn tick(&mut self) -> Tick {
        loop {
            let ping = &mut self.ping;
            let ping = async move {
                match ping {
                    Some(ping) => ping.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.dead.as_mut() => {
                    // The sleep is only moved forward when it fires, not per message.
                    let deadline = self.last_message + self.dead_after;
                    if Instant::now() >= deadline {
                        return Tick::Dead;
                    }
                    self.dead.as_mut().reset(deadline);
                }
                _ = ping => return Tick::Ping,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// Ticks until dead; returns the instants of the pings and of death, from the start.
    async fn run_until_dead(timer: &mut PeerTimer) -> (Vec<Duration>, Duration) {
        let start = Instant::now();
        let mut pings = Vec::new();
        loop {
            match timer.tick().await {
                Tick::Ping => pings.push(start.elapsed()),
                Tick::Dead => return (pings, start.elapsed()),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_pinged_each_heartbeat_and_dead_after_the_period() {
        let mut timer = PeerTimer::new(Some(3 * SEC), 9 * SEC);
        let (pings, dead) = run_until_dead(&mut timer).await;
        assert_eq!(pings, [3 * SEC, 6 * SEC], "the ping due at 9 s loses to the verdict");
        assert_eq!(dead, 9 * SEC);
    }

    #[tokio::test(start_paused = true)]
    async fn without_pings_only_silence_counts() {
        let mut timer = PeerTimer::new(None, 9 * SEC);
        let (pings, dead) = run_until_dead(&mut timer).await;
        assert!(pings.is_empty());
        assert_eq!(dead, 9 * SEC);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_restarts_the_silence() {
        let start = Instant::now();
        let mut timer = PeerTimer::new(None, 9 * SEC);
        tokio::time::advance(5 * SEC).await;
        timer.saw_message();
        tokio::time::advance(7 * SEC).await;
        timer.saw_message();
        assert_eq!(timer.tick().await, Tick::Dead);
        assert_eq!(start.elapsed(), 21 * SEC, "9 s after the last message, at 12 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_tick_loses_nothing() {
        let start = Instant::now();
        let mut timer = PeerTimer::new(Some(3 * SEC), 9 * SEC);
        // Cut every wait short, as a select! with a busier branch would.
        while start.elapsed() < 8 * SEC + SEC / 2 {
            let cut = tokio::time::timeout(SEC / 2, timer.tick()).await;
            assert_ne!(cut, Ok(Tick::Dead), "at {:?}", start.elapsed());
        }
        tokio::time::advance(10 * SEC - start.elapsed()).await;
        // The deadline passed while nobody was waiting: the next tick says so at once.
        assert_eq!(timer.tick().await, Tick::Dead);
        assert_eq!(start.elapsed(), 10 * SEC);
    }
}
