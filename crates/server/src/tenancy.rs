//! Who a request is limited and recorded as: the one place that maps a
//! [`Principal`] to limit subjects and to the owner of its usage records (which
//! `api::owner` must agree with).

use std::sync::Arc;

use sluice_core::context::{KeyLimits, Principal};
use sluice_limits::{LimitSpec, LimitsConfig, Subject};

/// The subjects `principal` is limited as, each with its limits: a user's key (its own
/// limits) and the user (`[limits] user`), or an anonymous client's address
/// (`[limits] anonymous`). Operator principals (keyless mode, service keys) have none:
/// only the gateway-wide cap applies to them.
pub fn limit_checks(cfg: &LimitsConfig, principal: &Principal) -> Vec<(Subject, LimitSpec)> {
    match principal {
        Principal::Local | Principal::ServiceKey(_) => Vec::new(),
        Principal::Anonymous(ip) => vec![(Subject::ip(ip), cfg.anonymous)],
        Principal::User(u) => {
            let user = (Subject::user(&u.user_id), cfg.user);
            match &u.key {
                Some(k) => vec![(Subject::key(&k.id), spec(&k.limits)), user],
                None => vec![user],
            }
        }
    }
}

/// A key's stored limits as the limiter reads them.
fn spec(l: &KeyLimits) -> LimitSpec {
    LimitSpec {
        rpm: l.rpm.map(u64::from),
        tpm: l.tpm.map(u64::from),
        max_streams: l.max_streams,
        daily_tokens: l.daily_tokens,
        monthly_tokens: l.monthly_tokens,
    }
}

/// The stored owner of `principal`'s usage records and the key it used, if any.
pub fn usage_owner(principal: &Principal) -> (Option<Arc<str>>, Option<String>) {
    match principal {
        Principal::Local | Principal::Anonymous(_) => (None, None),
        Principal::ServiceKey(h) => (None, Some(format!("service:{}", hex::encode(&h[..8])))),
        Principal::User(u) => (Some(u.user_id.clone()), u.key.as_ref().map(|k| k.id.clone())),
    }
}
