//! Rates and quotas shared by every replica through Redis.
//!
//! One Lua script admits a request: it reads the time from Redis' `TIME` (so the
//! replicas' clocks do not matter), checks every GCRA state and quota counter the
//! request touches, and writes them only if all pass. Completion corrections and
//! seeding are scripts too. Keys: `{prefix}rpm:{subject}` and `{prefix}tpm:{subject}`
//! hold a theoretical arrival time in µs (expiring once it is in the past),
//! `{prefix}day:{n}:{subject}` and `{prefix}month:{n}:{subject}` a token count (expiring
//! a day after their period). All keys of one call must live on one Redis (no cluster).
//!
//! Every call runs under the configured deadline. Whether Redis is used at all is
//! decided by [`Health`]: after a failure the limiter counts alone and Redis is tried
//! again at most once a second, by the next request that comes (nothing polls).

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::{clock::Period, error::LimitsError, gcra, local::Check, refusal::LimitKind};

/// One minute in µs, the unit of shared GCRA state.
const MINUTE_US: u64 = 60_000_000;
/// Quota counters outlive their period by this much.
const QUOTA_GRACE_MS: u64 = 86_400_000;
/// How long a failed Redis is left alone, in ms.
pub(crate) const RETRY_EVERY_MS: u64 = 1000;

const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local pending, out = {}, {1}
for i = 1, #KEYS do
  local a, k = 2 + (i - 1) * 4, KEYS[i]
  local cur = pending[k] or tonumber(redis.call('GET', k) or '0')
  local cost = tonumber(ARGV[a + 2])
  if ARGV[a] == 'g' then
    local backlog = math.max(cur - now, 0)
    local new = math.max(cur, now) + cost
    if new - now > window and backlog > 0 then return {0, i, math.min(new - now - window, backlog)} end
    pending[k] = new
    out[i + 1] = new - now
  else
    local limit = tonumber(ARGV[a + 1])
    if cur >= limit or (cur + cost > limit and cur > 0) then return {0, i, cur} end
    pending[k] = cur + cost
    out[i + 1] = cur + cost
  end
end
for i = 1, #KEYS do
  local a, k = 2 + (i - 1) * 4, KEYS[i]
  local ttl = ARGV[a + 3]
  if ARGV[a] == 'g' then ttl = string.format('%.0f', math.floor((pending[k] - now) / 1000) + 1000) end
  redis.call('SET', k, string.format('%.0f', pending[k]), 'PX', ttl)
end
return out
";

const CORRECT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local k, kind, delta = KEYS[i], ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if kind == 'g' then
    local new = tonumber(redis.call('GET', k) or '0') + delta
    if new > now then
      redis.call('SET', k, string.format('%.0f', new), 'PX', string.format('%.0f', math.floor((new - now) / 1000) + 1000))
    else
      redis.call('DEL', k)
    end
  elseif redis.call('EXISTS', k) == 1 then
    if redis.call('INCRBY', k, ARGV[2 * i]) < 0 then redis.call('SET', k, '0', 'KEEPTTL') end
  end
end
return 1
";

const SEED: &str = r"
for i = 1, #KEYS do
  if tonumber(ARGV[2 * i - 1]) > tonumber(redis.call('GET', KEYS[i]) or '0') then
    redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i])
  end
end
return 1
";

/// What one key of an admission is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A GCRA state of `kind` (Rpm or Tpm) under `limit` per minute.
    Rate { check: usize, kind: LimitKind, limit: u64 },
    /// A quota counter of `period` number `index` under `limit`.
    Quota { check: usize, period: Period, index: u64, limit: u64 },
}

/// The keys one admission touches, kept by the admission for its correction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Redis keys, one per entry.
    pub keys: Vec<String>,
    /// What each key is.
    pub entries: Vec<Entry>,
}

/// The script's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Charged; per entry: the backlog in µs (rates) or the usage after (quotas).
    Admitted(Vec<u64>),
    /// Entry `entry` refused; `value`: µs to wait (rates) or the usage (quotas).
    Refused { entry: usize, value: u64 },
}

/// Why a Redis call did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    /// Redis answered with an error, or the connection failed.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The script answered something unexpected.
    #[error("unexpected script reply")]
    Reply,
}

/// Whether Redis is in use, and the counters behind the fallback metrics.
#[derive(Debug, Default)]
pub(crate) struct Health {
    fallback: AtomicBool,
    /// Calendar ms: the injected clock, so tests can step over the pause.
    retry_at_ms: AtomicU64,
    /// Times the limiter switched from Redis to counting alone.
    pub fallbacks: AtomicU64,
    /// Failed Redis calls.
    pub errors: AtomicU64,
}

impl Health {
    /// Whether this request should use Redis: yes unless it failed within the last
    /// second; after that, only the one request that claims the retry.
    /// A wall clock stepped back by more than the pause does not stall the retries.
    pub fn should_try(&self, now_ms: u64) -> bool {
        if !self.fallback.load(Ordering::Acquire) {
            return true;
        }
        let at = self.retry_at_ms.load(Ordering::Acquire);
        let due = now_ms >= at || at - now_ms > RETRY_EVERY_MS;
        due && self
            .retry_at_ms
            .compare_exchange(at, now_ms + RETRY_EVERY_MS, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records a failed call at `now_ms`: count alone for a while.
    pub fn failed(&self, now_ms: u64, err: &SharedError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.retry_at_ms.store(now_ms + RETRY_EVERY_MS, Ordering::Release);
        if !self.fallback.swap(true, Ordering::AcqRel) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %err, "Redis limits unavailable; each replica enforces its share alone");
        }
    }

    /// Records a call that worked.
    pub fn succeeded(&self) {
        if self.fallback.swap(false, Ordering::AcqRel) {
            tracing::info!("Redis limits reachable again; limits are shared");
        }
    }

    /// Whether the limiter is counting alone because Redis failed.
    pub fn fallback_active(&self) -> bool {
        self.fallback.load(Ordering::Acquire)
    }
}

struct Script {
    text: &'static str,
    sha: OnceCell<String>,
}

/// The Redis side of the limiter.
pub(crate) struct Shared {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    admit: Script,
    correct: Script,
    seed: Script,
    /// Whether Redis is in use.
    pub health: Health,
}

impl Shared {
    /// Redis at `url` (not contacted until first use).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Shared, LimitsError> {
        let script = |text| Script { text, sha: OnceCell::new() };
        Ok(Shared {
            client: redis::Client::open(url).map_err(LimitsError::RedisUrl)?,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
            timeout,
            admit: script(ADMIT),
            correct: script(CORRECT),
            seed: script(SEED),
            health: Health::default(),
        })
    }

    /// The keys and arguments of an admission of `checks` at calendar time `unix_ms`.
    pub fn plan(&self, checks: &[Check<'_>], unix_ms: u64) -> Plan {
        let mut plan = Plan::default();
        for (i, c) in checks.iter().enumerate() {
            for (limit, kind) in [(c.rpm, LimitKind::Rpm), (c.tpm, LimitKind::Tpm)] {
                if let Some(limit) = limit {
                    plan.keys.push(format!("{}{}:{}", self.prefix, kind.as_str(), c.subject));
                    plan.entries.push(Entry::Rate { check: i, kind, limit });
                }
            }
            for (limit, period) in [(c.daily, Period::Day), (c.monthly, Period::Month)] {
                if let Some(limit) = limit {
                    let index = period.index(unix_ms);
                    plan.keys.push(self.quota_key(period, index, c.subject.as_str()));
                    plan.entries.push(Entry::Quota { check: i, period, index, limit });
                }
            }
        }
        plan
    }

    /// The counter of a quota period.
    pub fn quota_key(&self, period: Period, index: u64, subject: &str) -> String {
        let name = if period == Period::Day { "day" } else { "month" };
        format!("{}{name}:{index}:{subject}", self.prefix)
    }

    /// Runs the admission script for `plan` with `estimate` tokens.
    pub async fn admit(&self, plan: &Plan, estimate: u64, unix_ms: u64) -> Result<Answer, SharedError> {
        let mut args: Vec<String> = Vec::with_capacity(1 + plan.entries.len() * 4);
        args.push(MINUTE_US.to_string());
        for e in &plan.entries {
            match *e {
                Entry::Rate { kind, limit, .. } => {
                    let units = if kind == LimitKind::Rpm { 1 } else { estimate };
                    args.extend([
                        "g".to_owned(),
                        "0".to_owned(),
                        gcra::cost(units, limit, MINUTE_US).to_string(),
                    ]);
                    args.push("0".to_owned());
                }
                Entry::Quota { period, limit, .. } => {
                    let ttl = period.ms_until_next(unix_ms) + QUOTA_GRACE_MS;
                    args.extend(["q".to_owned(), limit.to_string(), estimate.to_string(), ttl.to_string()]);
                }
            }
        }
        let reply: Vec<i64> = self.eval(&self.admit, &plan.keys, &args).await?;
        let num = |v: i64| u64::try_from(v).unwrap_or(0);
        match reply.as_slice() {
            [1, rest @ ..] if rest.len() == plan.entries.len() => {
                Ok(Answer::Admitted(rest.iter().map(|&v| num(v)).collect()))
            }
            [0, entry, value] if *entry >= 1 && num(*entry) as usize <= plan.entries.len() => {
                Ok(Answer::Refused { entry: num(*entry) as usize - 1, value: num(*value) })
            }
            _ => Err(SharedError::Reply),
        }
    }

    /// Moves the token entries of `plan` by `delta` tokens (actual − estimate).
    pub async fn correct(&self, plan: &Plan, delta: i64) -> Result<(), SharedError> {
        let (mut keys, mut args) = (Vec::new(), Vec::new());
        for (key, e) in plan.keys.iter().zip(&plan.entries) {
            let (kind, amount) = match *e {
                Entry::Rate { kind: LimitKind::Tpm, limit, .. } => {
                    let us =
                        i64::try_from(gcra::cost(delta.unsigned_abs(), limit, MINUTE_US)).unwrap_or(i64::MAX);
                    ("g", if delta < 0 { -us } else { us })
                }
                Entry::Quota { .. } => ("q", delta),
                Entry::Rate { .. } => continue,
            };
            keys.push(key.clone());
            args.extend([kind.to_owned(), amount.to_string()]);
        }
        if keys.is_empty() {
            return Ok(());
        }
        self.eval::<i64>(&self.correct, &keys, &args).await.map(drop)
    }

    /// Raises the day and month counters of `subject` to at least the given usage.
    pub async fn seed(&self, subject: &str, unix_ms: u64, day: u64, month: u64) -> Result<(), SharedError> {
        let mut keys = Vec::new();
        let mut args = Vec::new();
        for (period, used) in [(Period::Day, day), (Period::Month, month)] {
            keys.push(self.quota_key(period, period.index(unix_ms), subject));
            args.extend([used.to_string(), (period.ms_until_next(unix_ms) + QUOTA_GRACE_MS).to_string()]);
        }
        self.eval::<i64>(&self.seed, &keys, &args).await.map(drop)
    }

    /// Deletes the rate states of `subject` (its quota usage stays).
    pub async fn forget(&self, subject: &str) -> Result<(), SharedError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(format!("{}rpm:{subject}", self.prefix)).arg(format!("{}tpm:{subject}", self.prefix));
        self.timed(async { cmd.query_async::<i64>(&mut self.connection().await?).await }).await.map(drop)
    }

    /// `EVALSHA` (loading the script on first use, and again after a Redis restart).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, SharedError> {
        self.timed(async {
            let mut conn = self.connection().await?;
            let sha = script
                .sha
                .get_or_try_init(|| async {
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(script.text)
                        .query_async::<String>(&mut conn.clone())
                        .await
                })
                .await?;
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha).arg(keys.len()).arg(keys).arg(args);
            match cmd.query_async::<T>(&mut conn).await {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(script.text).arg(keys.len()).arg(keys).arg(args);
                    cmd.query_async::<T>(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, SharedError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map_err(SharedError::from),
            Err(_) => Err(SharedError::Timeout(self.timeout)),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
            })
            .await?;
        Ok(conn.clone())
    }
}
