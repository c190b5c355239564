//! The report: everything measured, as a serializable struct and as text tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::args::{Api, BenchArgs, Endpoint};
use crate::request::Plan;
use crate::stats::Stats;

/// Everything one run measured, plus the configuration that produced it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// The flags of the run (header names only: values may be secrets).
    pub config: RunConfig,
    /// Which cap ended the run.
    pub stopped_by: StopReason,
    /// Seconds from the first recorded request to the end of the run.
    pub elapsed_s: f64,
    /// Recorded requests by outcome.
    pub requests: RequestCounts,
    /// Rates over `elapsed_s`.
    pub throughput: Throughput,
    /// Token totals of successful requests.
    pub tokens: TokenCounts,
    /// Time to first token (first content event) of successful streamed requests.
    pub ttft_ms: LatencySummary,
    /// Every gap between successive content events of successful requests.
    pub inter_token_ms: LatencySummary,
    /// End-to-end latency of successful requests.
    pub e2e_ms: LatencySummary,
    /// Failed requests by kind (`connect`, `timeout`, `http_503`, …).
    pub errors: BTreeMap<String, u64>,
}

/// Echo of the run's flags.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Full URL requests were sent to.
    pub url: String,
    /// API dialect.
    pub api: Api,
    /// Endpoint kind.
    pub endpoint: Endpoint,
    /// Model name sent.
    pub model: String,
    /// Number of workers (connections).
    pub concurrency: u64,
    /// Request cap (recorded requests).
    pub requests: u64,
    /// Time cap, seconds.
    pub duration_s: f64,
    /// Whether replies were streamed.
    pub stream: bool,
    /// Prompt text (before the index suffix of unique prompts).
    pub prompt: String,
    /// Whether every prompt was made unique.
    pub unique_prompts: bool,
    /// Requested token cap.
    pub max_tokens: Option<u32>,
    /// Names of the extra headers sent.
    pub headers: Vec<String>,
    /// Per-request timeout, seconds.
    pub timeout_s: f64,
    /// Unrecorded warmup requests.
    pub warmup: u64,
    /// Ramp-up period, seconds.
    pub ramp_up_s: f64,
    /// Runtime threads.
    pub threads: u64,
}

/// Which cap ended the run.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// All `--requests` completed.
    Requests,
    /// `--duration` elapsed; requests still in flight were aborted.
    Duration,
    /// Ctrl-C.
    Interrupted,
}

/// Recorded requests by outcome.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests that finished (`ok + failed`).
    pub completed: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (see `errors`).
    pub failed: u64,
    /// Requests in flight when the run was cut short (not counted as failed).
    pub aborted: u64,
}

/// Rates over the measured period.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Successful requests per second.
    pub ok_requests_per_s: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
}

/// Token totals of successful requests.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounts {
    /// Output tokens: usage numbers where the server sent them, else content events.
    pub output: u64,
    /// Prompt tokens reported by the server.
    pub prompt: u64,
    /// Successful requests whose output count came from usage numbers.
    pub requests_with_usage: u64,
}

/// Summary of one latency histogram, in milliseconds (µs resolution).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean: h.mean() / 1000.0,
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

impl Report {
    /// Builds the report of a finished run.
    pub(crate) fn new(
        args: &BenchArgs,
        plan: &Plan,
        stats: &Stats,
        aborted: u64,
        elapsed: Duration,
        stopped_by: StopReason,
    ) -> Report {
        let secs = elapsed.as_secs_f64();
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let failed = stats.failed();
        let completed = stats.ok + failed;
        Report {
            config: RunConfig {
                url: plan.url.clone(),
                api: args.api,
                endpoint: args.endpoint,
                model: args.model.clone(),
                concurrency: args.concurrency,
                requests: args.requests,
                duration_s: args.duration.as_secs_f64(),
                stream: args.streaming(),
                prompt: args.prompt.clone(),
                unique_prompts: args.unique_prompts,
                max_tokens: args.max_tokens,
                headers: args.headers.iter().map(|h| h.name.to_string()).collect(),
                timeout_s: args.timeout.as_secs_f64(),
                warmup: args.warmup,
                ramp_up_s: args.ramp_up.as_secs_f64(),
                threads: args.threads,
            },
            stopped_by,
            elapsed_s: secs,
            requests: RequestCounts { completed, ok: stats.ok, failed, aborted },
            throughput: Throughput {
                requests_per_s: rate(completed),
                ok_requests_per_s: rate(stats.ok),
                output_tokens_per_s: rate(stats.output_tokens),
            },
            tokens: TokenCounts {
                output: stats.output_tokens,
                prompt: stats.prompt_tokens,
                requests_with_usage: stats.usage_requests,
            },
            ttft_ms: LatencySummary::from_micros(&stats.ttft),
            inter_token_ms: LatencySummary::from_micros(&stats.inter_token),
            e2e_ms: LatencySummary::from_micros(&stats.e2e),
            errors: stats.errors.iter().map(|(kind, n)| (kind.to_string(), *n)).collect(),
        }
    }

    /// The report as text tables.
    pub fn render(&self) -> String {
        let c = &self.config;
        let r = &self.requests;
        let t = &self.throughput;
        let mut out = String::new();
        let mode = if c.stream { "stream" } else { "no-stream" };
        let _ = writeln!(out, "POST {}  model={}  {mode}  concurrency={}", c.url, c.model, c.concurrency);
        let _ = writeln!(
            out,
            "requests   {} completed: {} ok, {} failed, {} aborted  (stopped by {:?}, {:.3} s)",
            r.completed, r.ok, r.failed, r.aborted, self.stopped_by, self.elapsed_s
        );
        let _ = writeln!(
            out,
            "throughput {:.1} req/s, {:.1} output tok/s  ({} output tokens, usage reported by {} requests)",
            t.requests_per_s, t.output_tokens_per_s, self.tokens.output, self.tokens.requests_with_usage
        );
        let _ = writeln!(
            out,
            "\n{:<14}{:>10}{:>12}{:>12}{:>12}{:>12}{:>12}",
            "latency (ms)", "count", "mean", "p50", "p90", "p99", "max"
        );
        for (name, s) in
            [("ttft", &self.ttft_ms), ("inter-token", &self.inter_token_ms), ("end-to-end", &self.e2e_ms)]
        {
            let _ = writeln!(
                out,
                "{name:<14}{:>10}{:>12.3}{:>12.3}{:>12.3}{:>12.3}{:>12.3}",
                s.count, s.mean, s.p50, s.p90, s.p99, s.max
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\n{:<24}{:>10}", "errors", "count");
            for (kind, count) in &self.errors {
                let _ = writeln!(out, "{kind:<24}{count:>10}");
            }
        }
        out
    }
}
