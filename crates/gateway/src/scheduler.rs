//! Picks the backend for a request among a model's routes.
//!
//! Healthy backends first, then the one with the least outstanding work; ties go to the
//! earlier route, so configuration order expresses preference.

use std::sync::atomic::Ordering;

use crate::registry::Route;

/// The route to use, or `None` when there is none.
pub fn pick(routes: &[Route]) -> Option<&Route> {
    routes.iter().min_by_key(|r| {
        let unhealthy = !r.slot.healthy.load(Ordering::Relaxed);
        (unhealthy, r.slot.outstanding.load(Ordering::Relaxed))
    })
}
