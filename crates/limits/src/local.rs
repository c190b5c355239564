//! Admission against this replica's own counters, all or nothing: every subject of a
//! request is locked (in address order, so two requests cannot deadlock), every limit
//! is checked on a copy, and the copies are written back only if nothing refused.
//! Also the per-subject updates that need no such care: completion corrections,
//! stream release, seeding and mirroring quota usage read from Redis.

use std::{
    sync::{
        Arc, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use crate::{
    clock::Period,
    config::Subject,
    gcra::{self, Decision, MINUTE_NS},
    headers::{HeaderLimit, RateHeaders},
    refusal::{LimitKind, Refusal, STREAMS_RETRY},
    table::{Counters, Now, QuotaUse, SubjectState},
};

/// One subject's limits for one request, resolved to numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check<'a> {
    /// Whose limits.
    pub subject: &'a Subject,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Concurrent generations on this replica.
    pub streams: u32,
    /// Tokens per UTC day.
    pub daily: Option<u64>,
    /// Tokens per UTC month.
    pub monthly: Option<u64>,
}

/// Which limits an admission pass checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Streams, the global cap, rates and quotas: counting alone.
    Everything,
    /// Streams and the global cap; rates and quotas are left to Redis.
    StreamsOnly,
    /// Rates and quotas; streams were taken already (Redis failed mid-admission).
    RatesOnly,
}

/// The gateway-wide generation counter and its cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Global<'a> {
    /// Generations in flight.
    pub count: &'a AtomicU32,
    /// The cap.
    pub cap: u32,
}

struct Worst {
    kind: LimitKind,
    check: usize,
    amount: u64,
    retry: Duration,
}

/// Keeps the refusal with the longest wait: by then the others have passed too.
fn consider(worst: &mut Option<Worst>, candidate: Worst) {
    if worst.as_ref().is_none_or(|w| candidate.retry > w.retry) {
        *worst = Some(candidate);
    }
}

/// One check's view of its subject: the lock (held by the first check on each
/// subject) and the counters before and after this request.
struct Lane<'s> {
    /// The first check on the same subject; its copy is shared.
    slot: usize,
    guard: Option<MutexGuard<'s, Counters>>,
    before: Counters,
    work: Counters,
}

/// Checks `checks` (with `states[i]` the state of `checks[i].subject`) and charges
/// them all, or none. `share`: while counting alone, the replica's share of what
/// remains of each quota (1 = all of it).
#[expect(clippy::result_large_err, reason = "a refusal is the slow path; moved once, then answered")]
pub(crate) fn admit(
    states: &[Arc<SubjectState>],
    checks: &[Check<'_>],
    estimate: u64,
    now: Now,
    scope: Scope,
    global: Global<'_>,
    share: u32,
) -> Result<RateHeaders, Refusal> {
    let n = checks.len();
    let mut lanes: Vec<Lane<'_>> = (0..n)
        .map(|i| Lane {
            slot: (0..i).find(|&j| Arc::ptr_eq(&states[i], &states[j])).unwrap_or(i),
            guard: None,
            before: Counters::default(),
            work: Counters::default(),
        })
        .collect();
    // Lock each distinct subject in address order, so two requests cannot deadlock
    // (quadratic, but a request names two or three subjects).
    while let Some(i) = (0..n)
        .filter(|&i| lanes[i].slot == i && lanes[i].guard.is_none())
        .min_by_key(|&i| Arc::as_ptr(&states[i]) as usize)
    {
        let guard = states[i].lock();
        (lanes[i].before, lanes[i].work) = (*guard, *guard);
        lanes[i].guard = Some(guard);
    }

    let mut worst: Option<Worst> = None;
    for (i, c) in checks.iter().enumerate() {
        let slot = lanes[i].slot;
        let first = slot == i;
        let w = &mut lanes[slot].work;
        if scope != Scope::RatesOnly {
            // A subject named twice holds one stream; later checks see it taken.
            let others = w.streams.saturating_sub(u32::from(!first));
            if others >= c.streams {
                let retry = STREAMS_RETRY;
                consider(
                    &mut worst,
                    Worst { kind: LimitKind::Streams, check: i, amount: u64::from(c.streams), retry },
                );
            } else if first {
                w.streams += 1;
            }
        }
        if scope == Scope::StreamsOnly {
            continue;
        }
        for (limit, kind, units) in [(c.rpm, LimitKind::Rpm, 1), (c.tpm, LimitKind::Tpm, estimate)] {
            let Some(l) = limit else { continue };
            let tat = if kind == LimitKind::Rpm { &mut w.rpm_tat } else { &mut w.tpm_tat };
            match gcra::decide(*tat, now.ns, gcra::cost(units, l, MINUTE_NS), MINUTE_NS) {
                Decision::Admit(t) => *tat = t,
                Decision::Refuse(wait) => {
                    let retry = Duration::from_nanos(wait);
                    consider(&mut worst, Worst { kind, check: i, amount: l, retry });
                }
            }
        }
        for (limit, kind, period, idx) in [
            (c.daily, LimitKind::DailyTokens, Period::Day, now.day),
            (c.monthly, LimitKind::MonthlyTokens, Period::Month, now.month),
        ] {
            let Some(l) = limit else { continue };
            let q = if period == Period::Day { &mut w.day } else { &mut w.month };
            let cur = q.rolled(idx);
            let allowed = cur.seen + l.saturating_sub(cur.seen) / u64::from(share.max(1));
            // Like GCRA, an estimate above the whole quota passes once, when nothing is used.
            if cur.used >= allowed || (cur.used + estimate > allowed && cur.used > 0) {
                let retry = Duration::from_millis(period.ms_until_next(now.unix_ms));
                consider(&mut worst, Worst { kind, check: i, amount: l, retry });
            } else {
                *q = QuotaUse { used: cur.used + estimate, ..cur };
            }
        }
    }
    if worst.is_none() && scope != Scope::RatesOnly {
        let taken = global
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| (g < global.cap).then_some(g + 1));
        if taken.is_err() {
            let retry = STREAMS_RETRY;
            consider(
                &mut worst,
                Worst { kind: LimitKind::Global, check: 0, amount: u64::from(global.cap), retry },
            );
        }
    }
    if let Some(w) = worst {
        let subject = (w.kind != LimitKind::Global).then(|| checks[w.check].subject.clone());
        let headers = headers(checks, &lanes, false, now.ns);
        return Err(Refusal::new(w.kind, subject, w.amount, w.retry, headers));
    }
    for lane in &mut lanes {
        if let Some(g) = lane.guard.as_mut() {
            **g = lane.work;
        }
    }
    Ok(headers(checks, &lanes, true, now.ns))
}

/// The rate headers of the most constraining subject, from the counters before or
/// after this request.
fn headers(checks: &[Check<'_>], lanes: &[Lane<'_>], after: bool, now_ns: u64) -> RateHeaders {
    let mut h = RateHeaders::default();
    for (i, c) in checks.iter().enumerate() {
        let lane = &lanes[lanes[i].slot];
        let w = if after { &lane.work } else { &lane.before };
        let limit = |l: u64, tat: u64| HeaderLimit {
            limit: l,
            remaining: gcra::remaining(tat, now_ns, l, MINUTE_NS),
            reset: Duration::from_nanos(gcra::reset(tat, now_ns)),
        };
        if let Some(l) = c.rpm {
            h.offer_requests(limit(l, w.rpm_tat));
        }
        if let Some(l) = c.tpm {
            h.offer_tokens(limit(l, w.tpm_tat));
        }
    }
    h
}

/// Gives back one stream of `state`.
pub(crate) fn release_stream(state: &SubjectState) {
    let mut c = state.lock();
    c.streams = c.streams.saturating_sub(1);
}

/// What a completed request corrects on one subject: `delta` = actual − estimate.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Correction {
    /// The tpm the estimate was charged under.
    pub tpm: Option<u64>,
    /// The day charged, if the daily quota was.
    pub day: Option<u64>,
    /// The month charged, if the monthly quota was.
    pub month: Option<u64>,
}

/// Applies `delta` tokens to `state` (quotas only within the period charged).
pub(crate) fn correct(state: &SubjectState, fix: Correction, delta: i64) {
    let mut guard = state.lock();
    let c = &mut *guard;
    if let Some(l) = fix.tpm {
        c.tpm_tat = gcra::correct(c.tpm_tat, delta, l, MINUTE_NS);
    }
    for (period, q) in [(fix.day, &mut c.day), (fix.month, &mut c.month)] {
        if period == Some(q.period) {
            q.used = q.used.saturating_add_signed(delta);
        }
    }
}

/// Records the shared usage of a quota period (seeded from storage, or read from
/// Redis): this replica's count becomes at least `used`.
pub(crate) fn observe(state: &SubjectState, period: Period, index: u64, used: u64) {
    let mut c = state.lock();
    let q = if period == Period::Day { &mut c.day } else { &mut c.month };
    let cur = q.rolled(index);
    *q = QuotaUse { period: index, used: cur.used.max(used), seen: used };
}
