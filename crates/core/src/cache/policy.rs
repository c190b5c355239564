//! Which requests use the cache, and how: the request's own determinism plus the
//! client's `Cache-Control` header.
//!
//! - A request is *eligible* when its answer is reproducible (`temperature` 0 or a
//!   `seed`) or when the client opts in with `Cache-Control: max-age=N`. Anything else
//!   goes straight upstream (`x-sluice-cache: bypass`): two clients asking a sampling
//!   model the same question expect two different answers.
//! - `max-age=N` also bounds the age of a stored answer the client accepts (seconds).
//! - `no-cache` (or `max-age=0`): do not replay a stored answer and do not join an
//!   identical request in flight; generate afresh (the answer is still stored).
//! - `no-store`: do not store this answer.
//! - `no-cache, no-store` together: bypass the cache entirely.

use std::time::Duration;

use crate::{chat::ChatRequest, context::Directives};

/// How one eligible request uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Look for a stored answer (and join an identical request in flight).
    pub lookup: bool,
    /// Oldest stored answer accepted; `None`: any unexpired one.
    pub max_age: Option<Duration>,
    /// Store the answer once it completes.
    pub store: bool,
}

/// True when the same request always gets the same answer.
pub fn deterministic(req: &ChatRequest) -> bool {
    req.sampling.temperature == Some(0.0) || req.sampling.seed.is_some()
}

/// The plan for `req`, or `None` when it bypasses the cache.
pub fn plan(req: &ChatRequest, d: Directives) -> Option<Plan> {
    if !deterministic(req) && d.max_age.is_none() {
        return None;
    }
    let fresh = d.no_cache || d.max_age == Some(Duration::ZERO);
    let plan = Plan { lookup: !fresh, max_age: d.max_age, store: !d.no_store };
    (plan.lookup || plan.store).then_some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Sampling;
    use http::{HeaderMap, header::CACHE_CONTROL};

    fn req(temperature: Option<f32>, seed: Option<i64>) -> ChatRequest {
        ChatRequest { sampling: Sampling { temperature, seed, ..Sampling::default() }, ..Default::default() }
    }

    fn cc(v: &str) -> Directives {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, v.parse().unwrap());
        Directives::from_headers(&h)
    }

    #[test]
    fn directives_parse() {
        assert_eq!(
            cc("No-Cache, max-age=\"30\", no-store, private"),
            Directives { no_cache: true, no_store: true, max_age: Some(Duration::from_secs(30)) }
        );
        assert_eq!(cc("max-age=soon"), Directives::default());
        assert_eq!(Directives::from_headers(&HeaderMap::new()), Directives::default());
    }

    #[test]
    fn only_reproducible_or_opted_in_requests_are_eligible() {
        let all = Plan { lookup: true, max_age: None, store: true };
        assert_eq!(plan(&req(Some(0.0), None), Directives::default()), Some(all));
        assert_eq!(plan(&req(Some(0.7), Some(3)), Directives::default()), Some(all));
        assert_eq!(plan(&req(Some(0.7), None), Directives::default()), None);
        assert_eq!(plan(&req(None, None), Directives::default()), None);
        let opted = plan(&req(Some(0.7), None), cc("max-age=60"));
        assert_eq!(opted, Some(Plan { max_age: Some(Duration::from_secs(60)), ..all }));
    }

    #[test]
    fn no_cache_and_no_store() {
        let r = req(Some(0.0), None);
        assert_eq!(plan(&r, cc("no-cache")), Some(Plan { lookup: false, max_age: None, store: true }));
        assert_eq!(plan(&r, cc("max-age=0")).map(|p| p.lookup), Some(false));
        assert_eq!(plan(&r, cc("no-store")), Some(Plan { lookup: true, max_age: None, store: false }));
        assert_eq!(plan(&r, cc("no-cache, no-store")), None);
    }
}
