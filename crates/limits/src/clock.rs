//! The calendar clock behind the daily and monthly quotas, injectable so tests can
//! cross a UTC midnight or a month's end, and the UTC calendar arithmetic itself.
//!
//! Rates (GCRA) do not use this clock: they run on `tokio::time::Instant` locally and
//! on Redis' `TIME` when shared.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

const DAY_MS: u64 = 86_400_000;

/// Wall-clock time as unix milliseconds (UTC).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn unix_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `unix_ms`.
    pub fn new(unix_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(unix_ms))
    }

    /// Shows `unix_ms` from now on.
    pub fn set(&self, unix_ms: u64) {
        self.0.store(unix_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A quota period: a UTC day or a UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// 00:00 to 24:00 UTC.
    Day,
    /// The first of the month 00:00 UTC to the first of the next.
    Month,
}

impl Period {
    /// The number of the period containing `unix_ms`: days since the epoch, or
    /// `year * 12 + month0`.
    pub fn index(self, unix_ms: u64) -> u64 {
        let days = unix_ms / DAY_MS;
        match self {
            Period::Day => days,
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                y * 12 + (m - 1)
            }
        }
    }

    /// The start of the period containing `unix_ms`, in unix ms.
    pub fn start(self, unix_ms: u64) -> u64 {
        let days = unix_ms / DAY_MS;
        let start_days = match self {
            Period::Day => days,
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                days_from_civil(y, m, 1)
            }
        };
        start_days * DAY_MS
    }

    /// Milliseconds from `unix_ms` to the start of the next period.
    pub fn ms_until_next(self, unix_ms: u64) -> u64 {
        let days = unix_ms / DAY_MS;
        let next_start_days = match self {
            Period::Day => days + 1,
            Period::Month => {
                let (y, m, _) = civil_from_days(days);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1)
            }
        };
        next_start_days * DAY_MS - unix_ms
    }

    /// Lowercase name, as in messages: "daily" or "monthly".
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// (year, month 1-12, day 1-31) of a day number since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The day number since 1970-01-01 of a date on or after the epoch.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T23:59:59.500Z
    const NOV30_LATE: u64 = 1_796_083_199_500;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 30) * DAY_MS / 1000, 1_796_083_200 - 86_400);
        for days in [0, 59, 365, 10_956, 11_016, 20_000, 20_787] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn boundaries() {
        assert_eq!(Period::Day.ms_until_next(NOV30_LATE), 500);
        assert_eq!(Period::Month.ms_until_next(NOV30_LATE), 500);
        assert_eq!(Period::Month.index(NOV30_LATE) + 1, Period::Month.index(NOV30_LATE + 500));
        assert_eq!(Period::Day.index(NOV30_LATE) + 1, Period::Day.index(NOV30_LATE + 500));
        // Mid-month: the month lasts until 1 December.
        let nov_1 = days_from_civil(2026, 11, 1) * DAY_MS;
        assert_eq!(Period::Month.ms_until_next(nov_1), 30 * DAY_MS);
        assert_eq!(Period::Month.index(nov_1), Period::Month.index(NOV30_LATE));
        // Each period starts where the one before ends.
        assert_eq!(Period::Month.start(NOV30_LATE), nov_1);
        assert_eq!(Period::Day.start(NOV30_LATE), NOV30_LATE + 500 - DAY_MS);
        assert_eq!(Period::Month.start(NOV30_LATE + 500), NOV30_LATE + 500);
    }
}
