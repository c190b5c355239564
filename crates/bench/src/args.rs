//! Command-line flags of `sluice bench` and the parsers for their values
//! (durations such as `1m30s`, headers such as `Authorization: Bearer …`).

use std::time::Duration;

use clap::ValueEnum;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Which API dialect the target speaks.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI-compatible: `/v1/chat/completions`, `/v1/completions`, SSE streams.
    Openai,
    /// Ollama: `/api/chat`, `/api/generate`, NDJSON streams.
    Ollama,
}

/// Which endpoint of the dialect to call.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// Chat (`messages`): `/v1/chat/completions` or `/api/chat`.
    Chat,
    /// Plain completion (`prompt`): `/v1/completions` or `/api/generate`.
    Completions,
}

impl Api {
    /// The request path for `endpoint` in this dialect.
    pub fn path(self, endpoint: Endpoint) -> &'static str {
        match (self, endpoint) {
            (Api::Openai, Endpoint::Chat) => "/v1/chat/completions",
            (Api::Openai, Endpoint::Completions) => "/v1/completions",
            (Api::Ollama, Endpoint::Chat) => "/api/chat",
            (Api::Ollama, Endpoint::Completions) => "/api/generate",
        }
    }
}

/// One `-H 'Name: value'` flag, validated at parse time.
#[derive(Debug, Clone)]
pub struct HeaderArg {
    /// Header name.
    pub name: HeaderName,
    /// Header value; marked sensitive so `Debug` never prints secrets.
    pub value: HeaderValue,
}

/// Flags of `sluice bench`; the `sluice` binary flattens them into its subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Base URL of the target, e.g. `http://127.0.0.1:8080` (plain HTTP).
    #[arg(long)]
    pub url: String,
    /// API dialect of the target.
    #[arg(long, value_enum, default_value_t = Api::Openai)]
    pub api: Api,
    /// Endpoint to call; the path follows from --api unless --path is given.
    #[arg(long, value_enum, default_value_t = Endpoint::Chat)]
    pub endpoint: Endpoint,
    /// Request path overriding the one derived from --api/--endpoint.
    #[arg(long)]
    pub path: Option<String>,
    /// Model name sent in every request.
    #[arg(long, default_value = "mock-model")]
    pub model: String,
    /// Source address of the connections (e.g. `127.0.0.2`), so that the gateway sees
    /// this client apart from other load on the same machine.
    #[arg(long, value_name = "IP")]
    pub local_address: Option<std::net::IpAddr>,
    /// Number of workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,
    /// Total number of recorded requests (the run stops at this or --duration).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Time cap of the run, e.g. `30s`, `2m`, `1m30s` or plain seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Ask for streamed replies (the default).
    #[arg(long, overrides_with = "no_stream")]
    pub stream: bool,
    /// Ask for whole (non-streamed) replies.
    #[arg(long = "no-stream", overrides_with = "stream")]
    pub no_stream: bool,
    /// Prompt text sent in every request.
    #[arg(long, default_value = "Write a short story about a river.")]
    pub prompt: String,
    /// Append the request index to the prompt so that every prompt differs.
    #[arg(long)]
    pub unique_prompts: bool,
    /// Cap on generated tokens (`max_tokens`, or `num_predict` for Ollama).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Extra request header `Name: value` (repeatable), e.g. Authorization.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<HeaderArg>,
    /// A file of API keys, one per line: request number N sends the Nth key (round
    /// robin) as `Authorization: Bearer`, to load a gateway with many tenants.
    #[arg(long, value_name = "PATH")]
    pub keys_file: Option<std::path::PathBuf>,
    /// Per-request timeout (connect + reply), e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Requests sent first and not recorded.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Spread the start of the workers evenly over this period.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp_up: Duration,
    /// OS threads driving the workers, each with its own single-threaded runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Print nothing (implies --no-progress).
    #[arg(long)]
    pub quiet: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    /// Whether replies are streamed: `--stream` unless `--no-stream` came last.
    pub fn streaming(&self) -> bool {
        !self.no_stream
    }
}

/// Parses `1h`, `2m`, `30s`, `250ms`, `10us`, `5ns`, sums such as `1m30s`, and plain
/// (possibly fractional) seconds such as `1.5`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (h, m, s, ms, us, ns)"))?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len =
            tail.find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| format!("{text:?}: bad number {number:?}"))?;
        let scale = match unit {
            "h" => 3600.0,
            "m" | "min" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(format!("{text:?}: unknown unit {unit:?}")),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Parses `Name: value` into a validated header; the value is marked sensitive.
pub fn parse_header(text: &str) -> Result<HeaderArg, String> {
    let (name, value) =
        text.split_once(':').ok_or_else(|| format!("header {text:?} is not `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("header name {:?}: {e}", name.trim()))?;
    let mut value =
        HeaderValue::from_str(value.trim()).map_err(|e| format!("value of header {name}: {e}"))?;
    value.set_sensitive(true);
    Ok(HeaderArg { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn headers() {
        let h = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!(h.name, http::header::AUTHORIZATION);
        assert_eq!(h.value, "Bearer abc");
        assert!(!format!("{h:?}").contains("abc"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
