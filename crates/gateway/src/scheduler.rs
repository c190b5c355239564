//! Picks the backend for a request among a model's routes.
//!
//! Healthy backends first, then backends with a free slot, then the one with the least
//! outstanding work relative to its slots (a backend without a slot limit counts as
//! one slot); ties go to the earlier route, so configuration order expresses preference.

use std::{cmp::Ordering as Cmp, sync::atomic::Ordering};

use crate::registry::Route;

/// The route to use, or `None` when there is none.
pub fn pick(routes: &[Route]) -> Option<&Route> {
    routes.iter().min_by(|a, b| {
        let (a, b) = (Load::of(a), Load::of(b));
        (a.unhealthy, a.full).cmp(&(b.unhealthy, b.full)).then_with(|| a.relative_cmp(&b))
    })
}

struct Load {
    unhealthy: bool,
    full: bool,
    outstanding: u64,
    slots: u64,
}

impl Load {
    fn of(r: &Route) -> Load {
        let outstanding = r.slot.outstanding.load(Ordering::Relaxed);
        let limit = r.slot.backend.slots().map(u64::from);
        Load {
            unhealthy: !r.slot.healthy.load(Ordering::Relaxed),
            full: limit.is_some_and(|n| outstanding >= n),
            outstanding,
            slots: limit.unwrap_or(1).max(1),
        }
    }

    /// Compares outstanding/slots without division.
    fn relative_cmp(&self, other: &Load) -> Cmp {
        (u128::from(self.outstanding) * u128::from(other.slots))
            .cmp(&(u128::from(other.outstanding) * u128::from(self.slots)))
    }
}
