//! Who a request is limited and recorded as: the one place that maps a
//! [`Principal`] to limit subjects and to the owner of its usage records.

use sluice_core::context::Principal;
use sluice_limits::{LimitSpec, LimitsConfig, Subject};

/// The subjects `principal` is limited as, each with its limits. Operator principals
/// (keyless mode, service keys) have none: only the gateway-wide cap applies.
pub fn limit_checks(_cfg: &LimitsConfig, principal: &Principal) -> Vec<(Subject, LimitSpec)> {
    match principal {
        Principal::Anonymous | Principal::ServiceKey(_) => Vec::new(),
    }
}

/// The stored owner of `principal`'s usage records and the key it used, if any.
pub fn usage_owner(principal: &Principal) -> (Option<std::sync::Arc<str>>, Option<String>) {
    match principal {
        Principal::Anonymous => (None, None),
        Principal::ServiceKey(h) => (None, Some(format!("service:{}", hex::encode(&h[..8])))),
    }
}
