//! The limiter from the outside: local limits with paused time and a manual calendar,
//! and limits shared through a real Redis (127.0.0.1:6379, and private instances).

mod local;
mod quota;
mod shared;

use std::sync::Arc;

use sluice_limits::{LimitSpec, Limiter, LimitsConfig, ManualClock};

/// 2026-11-30T12:00:00Z.
pub const NOV30_NOON: u64 = 1_796_040_000_000;

/// A limiter without Redis, on a manual calendar at `unix_ms`.
pub fn local_limiter(cfg: LimitsConfig, unix_ms: u64) -> (Limiter, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(unix_ms));
    let limiter = Limiter::new(cfg, clock.clone()).expect("no Redis URL to parse");
    (limiter, clock)
}

/// A spec with only these rates.
pub fn rates(rpm: Option<u64>, tpm: Option<u64>) -> LimitSpec {
    LimitSpec { rpm, tpm, ..LimitSpec::default() }
}

/// The value of header `name` after applying `h`.
pub fn header(h: &sluice_limits::RateHeaders, name: &str) -> Option<String> {
    let mut map = http::HeaderMap::new();
    h.apply(&mut map);
    map.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
