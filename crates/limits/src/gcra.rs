//! The generic cell rate algorithm, in its "theoretical arrival time" form, for
//! requests per minute and tokens per minute.
//!
//! A limit of `L` per minute gives each unit an emission interval `T = 60 s / L`; the
//! state is one number, the theoretical arrival time `TAT`. A cost of `n` units at
//! time `t` is admitted when `max(TAT, t) + n·T − t ≤ 60 s` (a full minute's worth may
//! come at once: burst = `L`), and then `TAT = max(TAT, t) + n·T`. Refused, it may come
//! back after `max(TAT, t) + n·T − 60 s − t`.
//!
//! One departure from the textbook: a cost larger than the whole minute is admitted
//! when nothing is outstanding (`TAT ≤ t`) and the excess is carried as debt, so a
//! request bigger than a key's tpm is slow rather than impossible. Completion corrections
//! (real token counts) move `TAT` the same way.
//!
//! Pure functions over an abstract time unit (nanoseconds locally, microseconds in the
//! Redis script, which mirrors this file).

/// One minute in nanoseconds.
pub const MINUTE_NS: u64 = 60_000_000_000;

/// The time `units` occupy under a limit of `per_minute` per `window` (`n·T`).
pub fn cost(units: u64, per_minute: u64, window: u64) -> u64 {
    if let Some(p) = units.checked_mul(window) {
        return p / per_minute.max(1);
    }
    let c = u128::from(units) * u128::from(window) / u128::from(per_minute.max(1));
    u64::try_from(c).unwrap_or(u64::MAX)
}

/// The outcome of one GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; the new theoretical arrival time.
    Admit(u64),
    /// Refused; how long until the same cost would be admitted.
    Refuse(u64),
}

/// Checks a cost (from [`cost`]) at `now` against state `tat` and a `window` (one minute).
pub fn decide(tat: u64, now: u64, cost: u64, window: u64) -> Decision {
    let new_tat = tat.max(now).saturating_add(cost);
    let backlog = tat.saturating_sub(now);
    if new_tat - now <= window || backlog == 0 {
        Decision::Admit(new_tat)
    } else {
        // Either the window makes room, or everything outstanding drains (oversized cost).
        Decision::Refuse((new_tat - now - window).min(backlog))
    }
}

/// Units still available at `now`, under a limit of `per_minute`.
pub fn remaining(tat: u64, now: u64, per_minute: u64, window: u64) -> u64 {
    let backlog = tat.saturating_sub(now).min(window);
    if let Some(p) = (window - backlog).checked_mul(per_minute) {
        return p / window.max(1);
    }
    let r = u128::from(window - backlog) * u128::from(per_minute) / u128::from(window.max(1));
    u64::try_from(r).unwrap_or(u64::MAX)
}

/// Time until nothing is outstanding (the limit is back to its initial state).
pub fn reset(tat: u64, now: u64) -> u64 {
    tat.saturating_sub(now)
}

/// `tat` moved by a correction of `delta` units (positive: more used than charged).
pub fn correct(tat: u64, delta: i64, per_minute: u64, window: u64) -> u64 {
    let shift = cost(delta.unsigned_abs(), per_minute, window);
    if delta >= 0 { tat.saturating_add(shift) } else { tat.saturating_sub(shift) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = MINUTE_NS;
    const S: u64 = 1_000_000_000;

    /// The definition, step by step: L requests at once, the next refused for exactly
    /// one emission interval, then one more admitted per interval.
    #[test]
    fn burst_then_one_per_interval() {
        let (l, mut tat) = (60, 0);
        let c = cost(1, l, W);
        assert_eq!(c, S);
        for i in 0..l {
            assert_eq!(remaining(tat, 0, l, W), l - i);
            match decide(tat, 0, c, W) {
                Decision::Admit(t) => tat = t,
                Decision::Refuse(_) => panic!("request {i} of the burst refused"),
            }
        }
        assert_eq!(tat, W);
        assert_eq!(remaining(tat, 0, l, W), 0);
        assert_eq!(decide(tat, 0, c, W), Decision::Refuse(S));
        assert_eq!(decide(tat, S - 1, c, W), Decision::Refuse(1));
        assert_eq!(decide(tat, S, c, W), Decision::Admit(W + S));
        assert_eq!(reset(W + S, S), W);
    }

    #[test]
    fn refused_retry_after_matches_definition() {
        // 10 per minute: T = 6 s. Three spent at t=0, then a cost of 9 at t=1 s:
        // max(18, 1) + 54 - 1 - 60 = 11 s.
        let tat = cost(3, 10, W);
        assert_eq!(decide(tat, S, cost(9, 10, W), W), Decision::Refuse(11 * S));
    }

    #[test]
    fn oversized_cost_waits_for_an_empty_bucket() {
        let big = cost(150, 100, W);
        assert_eq!(decide(0, 0, big, W), Decision::Admit(90 * S));
        // Outstanding 90 s: another oversized cost waits for all of it, not for 140 s.
        assert_eq!(decide(90 * S, 0, big, W), Decision::Refuse(90 * S));
    }

    #[test]
    fn corrections_move_tat() {
        let tat = cost(100, 1000, W);
        assert_eq!(correct(tat, 50, 1000, W), cost(150, 1000, W));
        assert_eq!(correct(tat, -40, 1000, W), cost(60, 1000, W));
        assert_eq!(correct(tat, -400, 1000, W), 0);
    }
}
