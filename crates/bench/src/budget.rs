//! The request budget and progress counters every load thread shares: who may send
//! the next request, and how many have finished.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::Instant;

/// The request budget and progress counters shared by all threads.
#[derive(Debug)]
pub struct Shared {
    pub(crate) next: AtomicU64,
    pub(crate) warmup: u64,
    pub(crate) total: u64,
    pub(crate) stopped: AtomicBool,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) measure_start: OnceLock<Instant>,
}

/// The right to send one request.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// Global request index (warmup requests come first).
    pub index: u64,
    /// Whether the request is recorded (not warmup).
    pub measured: bool,
}

impl Shared {
    /// A budget of `warmup` unrecorded then `requests` recorded requests.
    pub fn new(warmup: u64, requests: u64) -> Shared {
        Shared {
            next: AtomicU64::new(0),
            warmup,
            total: warmup.saturating_add(requests),
            stopped: AtomicBool::new(false),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            measure_start: OnceLock::new(),
        }
    }

    /// Takes the next request of the budget, if any is left and the run goes on.
    pub fn claim(&self) -> Option<Ticket> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if index >= self.total {
            return None;
        }
        if index == self.warmup {
            let _ = self.measure_start.set(Instant::now());
        }
        Some(Ticket { index, measured: index >= self.warmup })
    }

    /// Counts a finished recorded request for the progress bar.
    pub fn record_done(&self, ok: bool) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
