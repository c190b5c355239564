//! The rate-limit headers of a response, in OpenAI's names and formats:
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and, on a refusal,
//! `retry-after` in whole seconds.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// One limit's state as shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimit {
    /// The configured amount per minute.
    pub limit: u64,
    /// What may still be used now.
    pub remaining: u64,
    /// Time until the limit is back to its initial state.
    pub reset: Duration,
}

/// The headers of the most constraining subject, each dimension on its own: the
/// request headers come from the subject with the fewest requests left, the token
/// headers from the one with the fewest tokens left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// Requests per minute; `None` when no subject limits requests.
    pub requests: Option<HeaderLimit>,
    /// Tokens per minute; `None` when no subject limits tokens.
    pub tokens: Option<HeaderLimit>,
    /// Set on refusals: when to come back.
    pub retry_after: Option<Duration>,
}

impl RateHeaders {
    /// Keeps `candidate` for requests if it is more constraining than the current one.
    pub(crate) fn offer_requests(&mut self, candidate: HeaderLimit) {
        offer(&mut self.requests, candidate);
    }

    /// Keeps `candidate` for tokens if it is more constraining than the current one.
    pub(crate) fn offer_tokens(&mut self, candidate: HeaderLimit) {
        offer(&mut self.tokens, candidate);
    }

    /// Writes the headers into `headers`, replacing any present.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (limit, suffix) in [(&self.requests, "requests"), (&self.tokens, "tokens")] {
            let Some(l) = limit else { continue };
            insert(headers, "x-ratelimit-limit-", suffix, l.limit.to_string());
            insert(headers, "x-ratelimit-remaining-", suffix, l.remaining.to_string());
            insert(headers, "x-ratelimit-reset-", suffix, format_reset(l.reset));
        }
        if let Some(after) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
        }
    }
}

fn offer(slot: &mut Option<HeaderLimit>, candidate: HeaderLimit) {
    let tighter = slot.is_none_or(|cur| {
        (candidate.remaining, candidate.limit, std::cmp::Reverse(candidate.reset))
            < (cur.remaining, cur.limit, std::cmp::Reverse(cur.reset))
    });
    if tighter {
        *slot = Some(candidate);
    }
}

fn insert(headers: &mut HeaderMap, prefix: &str, suffix: &str, value: String) {
    let name = HeaderName::try_from(format!("{prefix}{suffix}")).expect("header names are lowercase ASCII");
    headers
        .insert(name, HeaderValue::try_from(value).expect("digits and unit letters are valid header text"));
}

/// `retry-after` seconds: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

/// A reset time as OpenAI writes it (Go's duration format at millisecond precision):
/// `120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    if ms < 1000 {
        return if ms == 0 { "0s".to_owned() } else { format!("{ms}ms") };
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (s, frac) = (ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_format_like_openai() {
        assert_eq!(format_reset(Duration::from_millis(120)), "120ms");
        assert_eq!(format_reset(Duration::from_micros(119_001)), "120ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_reset(Duration::ZERO), "0s");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
    }

    #[test]
    fn apply_writes_the_six_headers_and_retry_after() {
        let mut h = RateHeaders::default();
        h.offer_requests(HeaderLimit { limit: 60, remaining: 10, reset: Duration::from_secs(50) });
        h.offer_requests(HeaderLimit { limit: 600, remaining: 500, reset: Duration::from_secs(6) });
        h.offer_tokens(HeaderLimit { limit: 1000, remaining: 0, reset: Duration::from_millis(120) });
        h.retry_after = Some(Duration::from_millis(2500));
        let mut map = HeaderMap::new();
        h.apply(&mut map);
        let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(get("x-ratelimit-limit-requests").as_deref(), Some("60"));
        assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("10"));
        assert_eq!(get("x-ratelimit-reset-requests").as_deref(), Some("50s"));
        assert_eq!(get("x-ratelimit-limit-tokens").as_deref(), Some("1000"));
        assert_eq!(get("x-ratelimit-remaining-tokens").as_deref(), Some("0"));
        assert_eq!(get("x-ratelimit-reset-tokens").as_deref(), Some("120ms"));
        assert_eq!(get("retry-after").as_deref(), Some("3"));
    }
}
