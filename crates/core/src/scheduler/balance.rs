//! Load balancing among a model's backends: power of two choices over a cost that
//! grows with outstanding requests and a peak-EWMA of time to first token, divided by
//! the backend's weight (its relative capacity); optional sticky choice by
//! conversation through rendezvous hashing.
//!
//! Peak-EWMA (as in Finagle and linkerd): a slower sample replaces the estimate at
//! once, faster samples pull it down gradually, and the estimate decays toward zero
//! while no sample arrives, so a backend that was slow once is tried again later.

use std::time::Duration;

use tokio::time::Instant;

/// Below this estimate every backend costs the same per outstanding request, so an
/// unmeasured backend is judged by its queue alone.
const FLOOR_SECS: f64 = 0.001;

/// A failure counts as a first token this late, so a backend that fails fast does
/// not look fast.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// Peak-sensitive moving average of time to first token.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    secs: f64,
    updated: Instant,
    decay: f64,
}

impl PeakEwma {
    /// No estimate yet; `decay` is the time constant.
    pub fn new(decay: Duration, now: Instant) -> Self {
        PeakEwma { secs: 0.0, updated: now, decay: decay.as_secs_f64().max(1e-3) }
    }

    /// Changes the time constant.
    pub fn set_decay(&mut self, decay: Duration) {
        self.decay = decay.as_secs_f64().max(1e-3);
    }

    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (-elapsed / self.decay).exp()
    }

    /// Folds in one sample.
    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let s = sample.as_secs_f64();
        if s > self.secs {
            self.secs = s;
        } else {
            let w = self.weight(now);
            self.secs = self.secs * w + s * (1.0 - w);
        }
        self.updated = now;
    }

    /// The estimate at `now`, decayed since the last sample.
    pub fn estimate(&self, now: Instant) -> Duration {
        Duration::from_secs_f64(self.secs * self.weight(now))
    }
}

/// The latest times to first token, for a p95.
#[derive(Debug, Clone, Default)]
pub struct TtftWindow {
    samples: Vec<Duration>,
    next: usize,
}

const WINDOW: usize = 128;

impl TtftWindow {
    /// Remembers one sample, forgetting the oldest past [`WINDOW`].
    pub fn push(&mut self, d: Duration) {
        if self.samples.len() < WINDOW {
            self.samples.push(d);
        } else {
            self.samples[self.next] = d;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    /// The 95th percentile, once there are at least `min` samples.
    pub fn p95(&self, min: usize) -> Option<Duration> {
        if self.samples.len() < min.max(1) {
            return None;
        }
        let mut v = self.samples.clone();
        let k = (v.len() * 95).div_ceil(100).saturating_sub(1);
        let (_, p, _) = v.select_nth_unstable(k);
        Some(*p)
    }
}

/// The cost of sending one more request to a backend.
pub fn cost(outstanding: u64, ewma: Duration, weight: f64) -> f64 {
    ewma.as_secs_f64().max(FLOOR_SECS) * (outstanding as f64 + 1.0) / weight
}

/// Power of two choices: the cheaper of two distinct random candidates (the first on
/// a tie, so configuration order breaks ties); `costs` must not be empty.
pub fn p2c(costs: &[f64], random: u64) -> usize {
    match costs.len() {
        0 | 1 => 0,
        n => {
            let a = (random % n as u64) as usize;
            let b = (a + 1 + ((random >> 32) % (n as u64 - 1)) as usize) % n;
            let (lo, hi) = (a.min(b), a.max(b));
            if costs[hi] < costs[lo] { hi } else { lo }
        }
    }
}

/// Rendezvous hashing: the candidate that `key` prefers, stable as others come and go.
pub fn rendezvous<'a>(key: u64, names: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    names.into_iter().enumerate().max_by_key(|(_, name)| mix(key ^ fnv1a(name.as_bytes()))).map(|(i, _)| i)
}

/// A stable 64-bit hash (FNV-1a), for sticky keys.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_up_decays_down() {
        let mut e = PeakEwma::new(Duration::from_secs(10), Instant::now());
        e.observe(100 * MS, Instant::now());
        assert_eq!(e.estimate(Instant::now()), 100 * MS, "a peak is taken at once");
        e.observe(10 * MS, Instant::now());
        assert_eq!(e.estimate(Instant::now()), 100 * MS, "no time passed: a fast sample weighs nothing");
        tokio::time::advance(Duration::from_secs(10)).await;
        // One time constant later, without samples: e^-1 of the estimate.
        let decayed = e.estimate(Instant::now()).as_secs_f64();
        assert!((decayed - 0.1 / std::f64::consts::E).abs() < 1e-6, "{decayed}");
        e.observe(10 * MS, Instant::now());
        let mixed = e.estimate(Instant::now()).as_secs_f64();
        let expected = 0.1 / std::f64::consts::E + 0.01 * (1.0 - 1.0 / std::f64::consts::E);
        assert!((mixed - expected).abs() < 1e-6, "{mixed} vs {expected}");
    }

    #[test]
    fn p95_needs_enough_samples() {
        let mut w = TtftWindow::default();
        for i in 1..=100 {
            w.push(i * MS);
        }
        assert_eq!(w.p95(101), None);
        assert_eq!(w.p95(20), Some(95 * MS));
        // Old samples roll out.
        for _ in 0..WINDOW {
            w.push(5 * MS);
        }
        assert_eq!(w.p95(20), Some(5 * MS));
    }

    #[test]
    fn cost_grows_with_load_and_latency_and_shrinks_with_weight() {
        assert!(cost(1, 10 * MS, 1.0) > cost(0, 10 * MS, 1.0));
        assert!(cost(0, 20 * MS, 1.0) > cost(0, 10 * MS, 1.0));
        assert!(cost(3, 10 * MS, 4.0) < cost(3, 10 * MS, 1.0));
        assert_eq!(cost(0, Duration::ZERO, 1.0), cost(0, MS / 2, 1.0), "floor");
    }

    #[test]
    fn p2c_picks_the_cheaper_of_two_distinct() {
        let costs = [3.0, 1.0, 2.0];
        for r in 0..64u64 {
            let random = r * 0x9e37_79b9 + (r << 32);
            let i = p2c(&costs, random);
            assert_ne!(i, 0, "the most expensive never wins a pair");
        }
        assert_eq!(p2c(&[1.0, 1.0], 7), 0, "ties go to the earlier");
        assert_eq!(p2c(&[2.0, 1.0], 0), 1);
        assert_eq!(p2c(&[5.0], 3), 0);
    }

    #[test]
    fn rendezvous_is_stable_when_others_leave() {
        let names = ["a", "b", "c", "d"];
        for key in 0..200u64 {
            let k = mix(key);
            let i = rendezvous(k, names).unwrap();
            let without: Vec<&str> = names.iter().copied().filter(|n| *n != names[(i + 1) % 4]).collect();
            let j = rendezvous(k, without.iter().copied()).unwrap();
            assert_eq!(without[j], names[i], "removing another backend keeps the choice");
        }
    }
}
