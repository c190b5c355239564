//! Why a request was refused: which limit, of which subject, and when to come back.

use std::time::Duration;

use crate::{config::Subject, headers::RateHeaders};

/// The limit a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
    /// Concurrent generations of one subject.
    Streams,
    /// Tokens per UTC day.
    DailyTokens,
    /// Tokens per UTC month.
    MonthlyTokens,
    /// Concurrent generations of the whole gateway.
    Global,
}

impl LimitKind {
    /// Stable lowercase name, for metric labels and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Rpm => "rpm",
            LimitKind::Tpm => "tpm",
            LimitKind::Streams => "streams",
            LimitKind::DailyTokens => "daily_tokens",
            LimitKind::MonthlyTokens => "monthly_tokens",
            LimitKind::Global => "global",
        }
    }
}

/// A refused request (HTTP 429).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The limit hit.
    pub limit: LimitKind,
    /// Whose limit; `None` for the gateway-wide cap.
    pub subject: Option<Subject>,
    /// When the same request may be admitted (for streams and the global cap: a guess).
    pub retry_after: Duration,
    /// For the client, naming the limit, e.g. "rate limit: 60 requests per minute for
    /// this key; retry in 3 s".
    pub message: String,
    /// Rate headers, with `retry-after` set.
    pub headers: RateHeaders,
}

/// How long to suggest waiting after a stream cap refusal: a generation's end cannot
/// be predicted.
pub(crate) const STREAMS_RETRY: Duration = Duration::from_secs(1);

impl Refusal {
    pub(crate) fn new(
        limit: LimitKind,
        subject: Option<Subject>,
        amount: u64,
        retry_after: Duration,
        mut headers: RateHeaders,
    ) -> Refusal {
        let whose = subject.as_ref().map_or("", Subject::kind);
        let wait = human(retry_after);
        let message = match limit {
            LimitKind::Rpm => {
                format!("rate limit: {amount} requests per minute for this {whose}; retry in {wait}")
            }
            LimitKind::Tpm => {
                format!("rate limit: {amount} tokens per minute for this {whose}; retry in {wait}")
            }
            LimitKind::Streams => {
                format!(
                    "concurrency limit: {amount} generations at once for this {whose}; retry when one ends"
                )
            }
            LimitKind::DailyTokens => {
                format!("quota: {amount} tokens per day for this {whose}; resets in {wait}")
            }
            LimitKind::MonthlyTokens => {
                format!("quota: {amount} tokens per month for this {whose}; resets in {wait}")
            }
            LimitKind::Global => {
                format!("the gateway is at its limit of {amount} concurrent generations; retry in {wait}")
            }
        };
        headers.retry_after = Some(retry_after);
        Refusal { limit, subject, retry_after, message, headers }
    }
}

/// "3 s", "5 min", "7 h" (rounded up).
fn human(d: Duration) -> String {
    let secs = crate::headers::retry_after_secs(d);
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h", secs.div_ceil(3600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit() {
        let r = Refusal::new(
            LimitKind::Rpm,
            Some(Subject::key("k")),
            60,
            Duration::from_millis(2100),
            RateHeaders::default(),
        );
        assert_eq!(r.message, "rate limit: 60 requests per minute for this key; retry in 3 s");
        assert_eq!(r.headers.retry_after, Some(Duration::from_millis(2100)));
        let q = Refusal::new(
            LimitKind::DailyTokens,
            Some(Subject::user("u")),
            1000,
            Duration::from_secs(5 * 3600),
            RateHeaders::default(),
        );
        assert_eq!(q.message, "quota: 1000 tokens per day for this user; resets in 5 h");
    }
}
