//! What is measured: latency histograms (microseconds, 3 significant digits), counts
//! and errors by kind. Each runtime thread owns one [`Stats`] (no locks, no atomics
//! per sample); the threads' stats are merged when the run ends.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest recordable latency: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection (or HTTP handshake) could not be established.
    Connect,
    /// The connection broke before the response head arrived.
    ConnectionLost,
    /// The request took longer than `--timeout`.
    Timeout,
    /// The response status was not 200.
    Http(u16),
    /// An error object (or `event: error`) inside the reply.
    StreamError,
    /// The reply ended (or broke) without `[DONE]` / `done: true`.
    Truncated,
    /// The reply was not the expected JSON / SSE / NDJSON.
    Malformed,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::ConnectionLost => f.write_str("connection_lost"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Http(status) => write!(f, "http_{status}"),
            ErrorKind::StreamError => f.write_str("stream_error"),
            ErrorKind::Truncated => f.write_str("truncated"),
            ErrorKind::Malformed => f.write_str("malformed"),
        }
    }
}

/// Measurements of one successful request; inter-token gaps are passed alongside.
#[derive(Debug, Clone, Copy, Default)]
pub struct Success {
    /// Time to the first content event (streams only).
    pub ttft: Option<Duration>,
    /// Time to the end of the reply.
    pub e2e: Duration,
    /// Output tokens: the server's usage count if given, else content events.
    pub output_tokens: u64,
    /// Whether `output_tokens` came from the server's usage numbers.
    pub from_usage: bool,
    /// Prompt tokens reported by the server.
    pub prompt_tokens: u64,
}

/// Everything one runtime thread measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Time to first token, µs.
    pub ttft: Histogram<u64>,
    /// Gaps between successive content events, µs.
    pub inter_token: Histogram<u64>,
    /// End-to-end latency of successful requests, µs.
    pub e2e: Histogram<u64>,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Output tokens of successful requests.
    pub output_tokens: u64,
    /// Prompt tokens reported for successful requests.
    pub prompt_tokens: u64,
    /// Successful requests whose token count came from usage numbers.
    pub usage_requests: u64,
}

impl Stats {
    /// Empty stats.
    pub fn new() -> Stats {
        let histogram =
            || Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds are valid");
        Stats {
            ttft: histogram(),
            inter_token: histogram(),
            e2e: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            output_tokens: 0,
            prompt_tokens: 0,
            usage_requests: 0,
        }
    }

    /// Records a successful request and its inter-token gaps (µs).
    pub fn record_success(&mut self, success: &Success, gaps_micros: &[u64]) {
        self.ok += 1;
        self.e2e.saturating_record(micros(success.e2e));
        if let Some(ttft) = success.ttft {
            self.ttft.saturating_record(micros(ttft));
        }
        for &gap in gaps_micros {
            self.inter_token.saturating_record(gap);
        }
        self.output_tokens += success.output_tokens;
        self.prompt_tokens += success.prompt_tokens;
        self.usage_requests += u64::from(success.from_usage);
    }

    /// Records a failed request.
    pub fn record_error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.ttft.add(&other.ttft);
        let _ = self.inter_token.add(&other.inter_token);
        let _ = self.e2e.add(&other.e2e);
        self.ok += other.ok;
        for (kind, count) in &other.errors {
            *self.errors.entry(*kind).or_default() += count;
        }
        self.output_tokens += other.output_tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.usage_requests += other.usage_requests;
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// `d` in whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        let ok = Success {
            ttft: Some(Duration::from_millis(2)),
            e2e: Duration::from_millis(5),
            output_tokens: 3,
            from_usage: true,
            prompt_tokens: 1,
        };
        a.record_success(&ok, &[100, 200]);
        b.record_success(&ok, &[0, 300]);
        b.record_error(ErrorKind::Http(503));
        b.record_error(ErrorKind::Timeout);
        a.merge(&b);
        assert_eq!(a.ok, 2);
        assert_eq!(a.inter_token.len(), 4);
        assert_eq!(a.ttft.len(), 2);
        assert_eq!(a.output_tokens, 6);
        assert_eq!(a.failed(), 2);
        assert_eq!(ErrorKind::Http(503).to_string(), "http_503");
        assert_eq!(a.inter_token.max(), a.inter_token.highest_equivalent(300));
    }
}
