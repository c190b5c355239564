//! Counts over a sliding window of time, shared by the circuit breaker (requests and
//! failures) and the retry budget (requests and retries).
//!
//! The window is cut into [`BUCKETS`] buckets of equal length counted from the
//! window's origin; a bucket is reused lazily once its number falls out of the window,
//! so nothing runs in the background. The window slides one bucket at a time: a count
//! stops counting between `window - bucket` and `window` after it was added.
//!
//! Nothing here reads the clock: callers pass `now`, so tests drive time by hand.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window.
pub const BUCKETS: usize = 10;

/// No bucket number: a bucket never used since the window began.
const EMPTY: u64 = u64::MAX;

/// `N` counters summed over a sliding window, in [`BUCKETS`] buckets.
#[derive(Debug, Clone)]
pub struct SlidingWindow<const N: usize> {
    origin: Instant,
    bucket: Duration,
    /// (bucket number, counts) per slot; slot = bucket number mod [`BUCKETS`].
    buckets: [(u64, [u32; N]); BUCKETS],
}

impl<const N: usize> SlidingWindow<N> {
    /// An empty window of length `window` (at least one millisecond per bucket),
    /// beginning at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        let bucket = (window / BUCKETS as u32).max(Duration::from_millis(1));
        SlidingWindow { origin: now, bucket, buckets: [(EMPTY, [0; N]); BUCKETS] }
    }

    /// Adds `counts` (counter by counter) to the bucket holding `now`.
    pub fn add(&mut self, now: Instant, counts: [u32; N]) {
        let i = self.index(now);
        let (number, slot) = &mut self.buckets[(i % BUCKETS as u64) as usize];
        if *number != i {
            *number = i;
            *slot = [0; N];
        }
        for (total, n) in slot.iter_mut().zip(counts) {
            *total = total.saturating_add(n);
        }
    }

    /// Each counter summed over the window ending at `now`.
    pub fn totals(&self, now: Instant) -> [u32; N] {
        let i = self.index(now);
        let mut totals = [0u32; N];
        let live = self
            .buckets
            .iter()
            .filter(|(number, _)| *number != EMPTY && i.saturating_sub(*number) < BUCKETS as u64);
        for (_, counts) in live {
            for (total, n) in totals.iter_mut().zip(counts) {
                *total = total.saturating_add(*n);
            }
        }
        totals
    }

    /// Forgets every count; the window begins again at `now`.
    pub fn clear(&mut self, now: Instant) {
        *self = SlidingWindow { origin: now, bucket: self.bucket, buckets: [(EMPTY, [0; N]); BUCKETS] };
    }

    /// The number of the bucket holding `now`; instants before the origin fall in the
    /// first bucket.
    fn index(&self, now: Instant) -> u64 {
        let n = now.saturating_duration_since(self.origin).as_nanos() / self.bucket.as_nanos();
        u64::try_from(n).unwrap_or(EMPTY - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn counts_add_up_per_counter() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<2>::new(10 * SEC, t0);
        assert_eq!(w.totals(t0), [0, 0]);
        w.add(t0, [1, 0]);
        w.add(t0 + SEC / 2, [1, 1]);
        w.add(t0 + 3 * SEC, [2, 5]);
        assert_eq!(w.totals(t0 + 3 * SEC), [4, 6]);
    }

    #[test]
    fn counts_slide_out_one_bucket_at_a_time() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(10 * SEC, t0);
        w.add(t0, [1]);
        w.add(t0 + 5 * SEC, [10]);
        assert_eq!(w.totals(t0 + 9 * SEC + SEC / 2), [11], "bucket 0 is still in the window");
        assert_eq!(w.totals(t0 + 10 * SEC), [10], "bucket 0 slid out");
        assert_eq!(w.totals(t0 + 14 * SEC + SEC / 2), [10]);
        assert_eq!(w.totals(t0 + 15 * SEC), [0], "everything slid out");
    }

    #[test]
    fn a_reused_slot_starts_from_zero() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(10 * SEC, t0);
        w.add(t0 + 2 * SEC, [7]);
        // Bucket 12 lands in the same slot as bucket 2.
        w.add(t0 + 12 * SEC, [1]);
        assert_eq!(w.totals(t0 + 12 * SEC), [1]);
    }

    #[test]
    fn clear_forgets_and_restarts_the_buckets() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(10 * SEC, t0);
        w.add(t0 + 3 * SEC, [4]);
        let t1 = t0 + 3 * SEC + SEC / 2;
        w.clear(t1);
        assert_eq!(w.totals(t1), [0]);
        w.add(t1, [1]);
        // Buckets now count from t1, so t1 + 10 s is the first instant it no longer counts.
        assert_eq!(w.totals(t1 + 9 * SEC + SEC / 2), [1]);
        assert_eq!(w.totals(t1 + 10 * SEC), [0]);
    }

    #[test]
    fn tiny_windows_use_one_millisecond_buckets_and_counts_saturate() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(Duration::ZERO, t0);
        w.add(t0, [u32::MAX]);
        w.add(t0 + Duration::from_millis(1), [5]);
        assert_eq!(w.totals(t0 + Duration::from_millis(9)), [u32::MAX]);
        assert_eq!(w.totals(t0 + Duration::from_millis(10)), [5]);
    }

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let mut w = SlidingWindow::<1>::new(10 * SEC, Instant::now());
        w.add(Instant::now(), [3]);
        tokio::time::advance(9 * SEC).await;
        assert_eq!(w.totals(Instant::now()), [3]);
        tokio::time::advance(SEC).await;
        assert_eq!(w.totals(Instant::now()), [0]);
    }
}
