//! Limits for a multi-user gateway: no tenant may starve another.
//!
//! A request is admitted by [`Limiter::admit`] against several subjects at once (its
//! API key, its user, or the client address of an anonymous caller), each with a
//! [`LimitSpec`]: requests and tokens per minute (GCRA), concurrent generations, and
//! daily and monthly token quotas (UTC). Either everything is charged or, with a
//! [`Refusal`] naming the limit hit, nothing. The [`Admission`] holds the request's
//! streams until it drops and corrects the token estimate at completion; both carry
//! OpenAI-style [`RateHeaders`].
//!
//! With `redis_url`, rates and quotas are shared by all replicas; concurrent streams
//! are always counted per replica (`max_concurrent_generations` and `max_streams` are
//! per-gateway numbers). While Redis is unreachable each replica counts alone at
//! `1/replicas` of each rate and of what remains of each quota.
//!
//! # Layout
//! - `config`: [`LimitSpec`], [`LimitsConfig`], [`Subject`].
//! - `clock`: the injectable calendar [`Clock`] and UTC day/month arithmetic.
//! - `gcra`: the rate algorithm, pure.
//! - `table`: per-subject counters in a sharded map.
//! - `local`: all-or-nothing admission against this replica's counters.
//! - `shared`: the same through Redis Lua scripts, and the fallback health.
//! - `headers`, `refusal`: what the client is told; `error`: bad configuration.
//! - `limiter`: [`Limiter`] and [`Admission`], tying it together.

mod clock;
mod config;
mod error;
mod gcra;
mod headers;
mod limiter;
mod local;
mod refusal;
mod shared;
mod table;

pub use clock::{Clock, ManualClock, Period, SystemClock};
pub use config::{LimitSpec, LimitsConfig, Subject};
pub use error::LimitsError;
pub use headers::{HeaderLimit, RateHeaders, format_reset, retry_after_secs};
pub use limiter::{Admission, Limiter};
pub use refusal::{LimitKind, Refusal};
