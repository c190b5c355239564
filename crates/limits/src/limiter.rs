//! The [`Limiter`] a gateway holds, and the [`Admission`] each admitted request holds
//! until its generation ends.
//!
//! An admission takes one stream of each subject and one of the gateway (released when
//! the `Admission` drops, however the request ends), charges a request and the token
//! estimate to each rate, and the estimate to each quota. With Redis, streams are
//! counted on this replica and rates and quotas in Redis; without it, or while it is
//! unreachable, everything is counted here at `1/replicas` of each amount.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use tokio::time::Instant;

use crate::{
    clock::{Clock, Period},
    config::{LimitSpec, LimitsConfig, Subject},
    error::LimitsError,
    gcra,
    headers::{HeaderLimit, RateHeaders},
    local::{self, Check, Correction, Global, Scope},
    refusal::{LimitKind, Refusal},
    shared::{Answer, Entry, Plan, Shared},
    table::{Now, SubjectState, Table},
};

/// Admits requests against their subjects' limits. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LimitsConfig,
    clock: Arc<dyn Clock>,
    start: Instant,
    table: Table,
    generations: AtomicU32,
    shared: Option<Shared>,
}

impl Limiter {
    /// A limiter for `cfg` (validated here), with `clock` as the calendar of the
    /// quotas. Redis, if configured, is not contacted until the first request.
    pub fn new(cfg: LimitsConfig, clock: Arc<dyn Clock>) -> Result<Limiter, LimitsError> {
        cfg.validate()?;
        let shared = match &cfg.redis_url {
            Some(url) => Some(Shared::new(url, &cfg.redis_prefix, cfg.redis_timeout())?),
            None => None,
        };
        let inner = Inner {
            cfg,
            clock,
            start: Instant::now(),
            table: Table::default(),
            generations: AtomicU32::new(0),
            shared,
        };
        Ok(Limiter { inner: Arc::new(inner) })
    }

    /// The configuration.
    pub fn config(&self) -> &LimitsConfig {
        &self.inner.cfg
    }

    /// Admits a request checked against every `(subject, spec)` at once, charging
    /// `estimate_tokens`; a refusal by one limit charges nothing anywhere. A subject
    /// whose spec sets no `max_streams` gets `default_key_streams`.
    pub async fn admit(
        &self,
        checks: &[(Subject, &LimitSpec)],
        estimate_tokens: u64,
    ) -> Result<Admission, Refusal> {
        let inner = &self.inner;
        let now = inner.now();
        let states: Vec<Arc<SubjectState>> = checks.iter().map(|(s, _)| inner.table.get(s, now)).collect();
        let global = Global { count: &inner.generations, cap: inner.cfg.max_concurrent_generations };
        let replicas = inner.cfg.replicas.max(1);
        // Only streams to check: nothing to ask Redis (and no claim on its retry slot).
        let counted_shared = checks.iter().any(|(_, s)| {
            s.rpm.is_some() || s.tpm.is_some() || s.daily_tokens.is_some() || s.monthly_tokens.is_some()
        });
        let shared = inner.shared.as_ref().filter(|s| counted_shared && s.health.should_try(now.unix_ms));
        let Some(shared) = shared else {
            let resolved = inner.resolve(checks, replicas);
            let headers =
                local::admit(&states, &resolved, estimate_tokens, now, Scope::Everything, global, replicas)?;
            let mut admission = Admission::holding(inner, states, estimate_tokens);
            admission.charge_locally(&resolved, now);
            admission.headers = headers;
            return Ok(admission);
        };
        let resolved = inner.resolve(checks, 1);
        local::admit(&states, &resolved, estimate_tokens, now, Scope::StreamsOnly, global, 1)?;
        // From here a cancelled or refused admission gives its streams back on drop.
        let mut admission = Admission::holding(inner, states, estimate_tokens);
        let plan = shared.plan(&resolved, now.unix_ms);
        match shared.admit(&plan, estimate_tokens, now.unix_ms).await {
            Ok(Answer::Admitted(values)) => {
                shared.health.succeeded();
                admission.headers = shared_headers(&plan, &values, &admission.held);
                admission.charge = Charge::Shared(plan);
                Ok(admission)
            }
            Ok(Answer::Refused { entry, value }) => {
                shared.health.succeeded();
                Err(shared_refusal(&resolved, plan.entries[entry], value, now.unix_ms))
            }
            Err(e) => {
                shared.health.failed(now.unix_ms, &e);
                let resolved = inner.resolve(checks, replicas);
                let states: Vec<_> = admission.held.iter().map(|h| Arc::clone(&h.state)).collect();
                admission.headers = local::admit(
                    &states,
                    &resolved,
                    estimate_tokens,
                    now,
                    Scope::RatesOnly,
                    global,
                    replicas,
                )?;
                admission.charge_locally(&resolved, now);
                Ok(admission)
            }
        }
    }

    /// Sets `subject`'s usage of the current UTC day and month to at least these
    /// amounts (from stored usage, after a restart).
    pub async fn seed_usage(&self, subject: &Subject, day_tokens: u64, month_tokens: u64) {
        let now = self.inner.now();
        let unix_ms = now.unix_ms;
        let state = self.inner.table.get(subject, now);
        local::observe(&state, Period::Day, Period::Day.index(unix_ms), day_tokens);
        local::observe(&state, Period::Month, Period::Month.index(unix_ms), month_tokens);
        if let Some(shared) = &self.inner.shared
            && let Err(e) = shared.seed(subject.as_str(), unix_ms, day_tokens, month_tokens).await
        {
            shared.health.failed(unix_ms, &e);
        }
    }

    /// Forgets `subject` (a revoked key): its counters here and its rates in Redis.
    /// Admissions in flight still release their streams.
    pub async fn forget(&self, subject: &Subject) {
        self.inner.table.remove(subject);
        if let Some(shared) = &self.inner.shared
            && let Err(e) = shared.forget(subject.as_str()).await
        {
            shared.health.failed(self.inner.clock.unix_ms(), &e);
        }
    }

    /// Whether Redis is configured but unreachable, so this replica counts alone.
    pub fn fallback_active(&self) -> bool {
        self.inner.shared.as_ref().is_some_and(|s| s.health.fallback_active())
    }

    /// How many times this replica switched from Redis to counting alone.
    pub fn fallbacks_total(&self) -> u64 {
        self.inner.shared.as_ref().map_or(0, |s| s.health.fallbacks.load(Ordering::Relaxed))
    }

    /// Failed Redis calls.
    pub fn redis_errors_total(&self) -> u64 {
        self.inner.shared.as_ref().map_or(0, |s| s.health.errors.load(Ordering::Relaxed))
    }

    /// Generations admitted and not yet ended on this replica.
    pub fn active_generations(&self) -> u32 {
        self.inner.generations.load(Ordering::Relaxed)
    }

    /// Subjects with counters on this replica.
    pub fn subjects(&self) -> usize {
        self.inner.table.len()
    }
}

impl Inner {
    fn now(&self) -> Now {
        let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Now::new(ns, self.clock.unix_ms())
    }

    fn resolve<'a>(&self, checks: &'a [(Subject, &LimitSpec)], replicas: u32) -> Vec<Check<'a>> {
        checks
            .iter()
            .map(|(subject, spec)| {
                let spec = if replicas > 1 { spec.scaled(replicas) } else { **spec };
                Check {
                    subject,
                    rpm: spec.rpm,
                    tpm: spec.tpm,
                    streams: spec.max_streams.unwrap_or(self.cfg.default_key_streams),
                    daily: spec.daily_tokens,
                    monthly: spec.monthly_tokens,
                }
            })
            .collect()
    }
}

fn shared_headers(plan: &Plan, values: &[u64], held: &[Held]) -> RateHeaders {
    let mut h = RateHeaders::default();
    for (e, &v) in plan.entries.iter().zip(values) {
        match *e {
            Entry::Rate { kind, limit, .. } => {
                let l = HeaderLimit {
                    limit,
                    remaining: gcra::remaining(v, 0, limit, 60_000_000),
                    reset: std::time::Duration::from_micros(v),
                };
                if kind == LimitKind::Rpm { h.offer_requests(l) } else { h.offer_tokens(l) }
            }
            Entry::Quota { check, period, index, .. } => local::observe(&held[check].state, period, index, v),
        }
    }
    h
}

fn shared_refusal(checks: &[Check<'_>], entry: Entry, value: u64, unix_ms: u64) -> Refusal {
    let mut h = RateHeaders::default();
    let (kind, check, limit, retry) = match entry {
        Entry::Rate { check, kind, limit } => {
            let retry = std::time::Duration::from_micros(value);
            let l = HeaderLimit { limit, remaining: 0, reset: retry };
            if kind == LimitKind::Rpm {
                h.offer_requests(l)
            } else {
                h.offer_tokens(l)
            }
            (kind, check, limit, retry)
        }
        Entry::Quota { check, period, limit, .. } => {
            let kind = if period == Period::Day { LimitKind::DailyTokens } else { LimitKind::MonthlyTokens };
            (kind, check, limit, std::time::Duration::from_millis(period.ms_until_next(unix_ms)))
        }
    };
    Refusal::new(kind, Some(checks[check].subject.clone()), limit, retry, h)
}

/// Where an admission's tokens were charged, for the correction at completion.
enum Charge {
    None,
    /// Here, by each [`Held::fix`].
    Local,
    Shared(Plan),
}

/// One subject of an admission.
struct Held {
    state: Arc<SubjectState>,
    /// Whether this admission holds a stream of it (once per distinct subject).
    stream: bool,
    /// What a local charge corrects at completion.
    fix: Correction,
}

/// An admitted request. Holds one stream of each subject and of the gateway until it
/// drops; [`Admission::complete`] replaces the token estimate by the real count
/// (dropped without it, the estimate stands).
#[must_use = "dropping an Admission ends the generation's stream permits"]
pub struct Admission {
    limiter: Arc<Inner>,
    /// One per check, in order.
    held: Vec<Held>,
    estimate: u64,
    headers: RateHeaders,
    charge: Charge,
}

impl Admission {
    /// The admission of a request whose streams were just taken on `states`.
    fn holding(limiter: &Arc<Inner>, states: Vec<Arc<SubjectState>>, estimate: u64) -> Admission {
        let mut held: Vec<Held> = Vec::with_capacity(states.len());
        for state in states {
            let stream = !held.iter().any(|h| Arc::ptr_eq(&h.state, &state));
            held.push(Held { state, stream, fix: Correction::default() });
        }
        Admission {
            limiter: Arc::clone(limiter),
            held,
            estimate,
            headers: RateHeaders::default(),
            charge: Charge::None,
        }
    }

    /// Records that `checks` were charged here at `now`.
    fn charge_locally(&mut self, checks: &[Check<'_>], now: Now) {
        for (h, c) in self.held.iter_mut().zip(checks) {
            h.fix =
                Correction { tpm: c.tpm, day: c.daily.map(|_| now.day), month: c.monthly.map(|_| now.month) };
        }
        self.charge = Charge::Local;
    }

    /// The rate headers of the most constraining subject after this admission.
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Corrects the token charges by `actual_tokens − estimate` and ends the admission.
    pub async fn complete(mut self, actual_tokens: u64) {
        let delta = i64::try_from(actual_tokens).unwrap_or(i64::MAX)
            - i64::try_from(self.estimate).unwrap_or(i64::MAX);
        if delta == 0 {
            return;
        }
        match std::mem::replace(&mut self.charge, Charge::None) {
            Charge::None => {}
            Charge::Local => {
                for h in &self.held {
                    local::correct(&h.state, h.fix, delta);
                }
            }
            Charge::Shared(plan) => {
                if let Some(shared) = &self.limiter.shared
                    && let Err(e) = shared.correct(&plan, delta).await
                {
                    shared.health.failed(self.limiter.clock.unix_ms(), &e);
                }
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for h in self.held.iter().filter(|h| h.stream) {
            local::release_stream(&h.state);
        }
        self.limiter.generations.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("shared", &self.inner.shared.is_some())
            .field("fallback_active", &self.fallback_active())
            .field("active_generations", &self.active_generations())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("estimate", &self.estimate).field("headers", &self.headers).finish()
    }
}
