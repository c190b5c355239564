//! Who a request is limited and recorded as: the one place that maps a
//! [`Principal`] to limit subjects and to the owner of its usage records (which
//! `api::owner` must agree with).

use std::sync::Arc;

use sluice_core::{
    chat::KeepAlive,
    context::{KeyLimits, Principal},
    error::GatewayError,
};
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

/// The keep-alive `principal` may set for a model it asked for `asked` (Ollama's
/// `keep_alive`): it changes the model's lifetime for everyone, so unloading (`0`) is
/// for admins, and nobody asks for longer than `[engine] max_keep_alive`.
pub fn keep_alive_for(
    principal: &Principal,
    asked: KeepAlive,
    max: KeepAlive,
) -> Result<KeepAlive, GatewayError> {
    if asked == KeepAlive::For(std::time::Duration::ZERO) && !principal.is_admin() {
        return Err(GatewayError::Forbidden(
            "keep_alive 0 unloads the model for everyone: only an admin may do that".into(),
        ));
    }
    Ok(asked.at_most(max))
}

/// The stored owner of `principal`'s usage records and the key it used, if any.
pub fn usage_owner(principal: &Principal) -> (Option<Arc<str>>, Option<String>) {
    match principal {
        Principal::Local | Principal::Anonymous(_) => (None, None),
        Principal::ServiceKey(h) => (None, Some(format!("service:{}", hex::encode(&h[..8])))),
        Principal::User(u) => (Some(u.user_id.clone()), u.key.as_ref().map(|k| k.id.clone())),
    }
}

/// After a restart, tells the limiter how many tokens each key (and, when
/// `[limits] user` has quotas, each user) already used this UTC day and month, from the
/// stored usage records, so a quota is not reset by restarting the gateway.
pub async fn seed_quotas(
    store: &sluice_store::Store,
    limiter: &sluice_limits::Limiter,
) -> Result<usize, sluice_store::StoreError> {
    use sluice_limits::Period;
    use sluice_store::UsageGroup;
    let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
    let since = |p: Period| i64::try_from(p.start(now)).unwrap_or(i64::MAX);
    let (day, month) = (since(Period::Day), since(Period::Month));
    let used = |m: &std::collections::HashMap<String, u64>, id: &str| m.get(id).copied().unwrap_or(0);
    let mut seeded = 0;
    let keys: Vec<_> = store
        .load_api_keys()
        .await?
        .into_iter()
        .filter(|k| {
            k.revoked_at.is_none() && (k.limits.daily_tokens.is_some() || k.limits.monthly_tokens.is_some())
        })
        .collect();
    if !keys.is_empty() {
        // Four grouped queries in all, however many keys there are.
        let (by_day, by_month) = (
            store.tokens_since_by(UsageGroup::Key, day).await?,
            store.tokens_since_by(UsageGroup::Key, month).await?,
        );
        for key in keys {
            let (d, m) = (used(&by_day, &key.id), used(&by_month, &key.id));
            limiter.seed_usage(&Subject::key(&key.id), d, m).await;
            seeded += 1;
        }
    }
    let user = &limiter.config().user;
    if user.daily_tokens.is_some() || user.monthly_tokens.is_some() {
        let (by_day, by_month) = (
            store.tokens_since_by(UsageGroup::User, day).await?,
            store.tokens_since_by(UsageGroup::User, month).await?,
        );
        for u in store.list_users().await? {
            let (d, m) = (used(&by_day, &u.id), used(&by_month, &u.id));
            limiter.seed_usage(&Subject::user(&u.id), d, m).await;
            seeded += 1;
        }
    }
    Ok(seeded)
}

/// Requests and tokens per (user, key), for `/metrics` (`[usage] per_key_metrics`).
#[derive(Default)]
pub struct KeyCounters {
    counts: std::sync::Mutex<std::collections::HashMap<(String, String), [u64; 3]>>,
}

impl KeyCounters {
    /// Counts one request of `user` with `key`.
    pub fn add(&self, user: &str, key: &str, prompt: u64, completion: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = counts.entry((user.to_owned(), key.to_owned())).or_default();
        c[0] += 1;
        c[1] += prompt;
        c[2] += completion;
    }

    /// Appends the counters to a Prometheus text exposition (before its `# EOF`).
    pub fn render_into(&self, text: String) -> String {
        use std::fmt::Write as _;
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let families = [
            ("sluice_key_requests", "Requests per user and API key."),
            ("sluice_key_prompt_tokens", "Prompt tokens per user and API key."),
            ("sluice_key_completion_tokens", "Completion tokens per user and API key."),
        ];
        crate::exposition::append(text, |out| {
            for (i, (name, help)) in families.iter().enumerate() {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
                for ((user, key), c) in counts.iter() {
                    let _ = writeln!(out, "{name}_total{{user=\"{user}\",key=\"{key}\"}} {}", c[i]);
                }
            }
        })
    }
}
