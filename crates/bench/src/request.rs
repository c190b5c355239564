//! The resolved target (address, path, headers) and the request bodies, built once
//! so that each request costs a clone of shared bytes (or one splice for
//! `--unique-prompts`).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::args::{Api, BenchArgs, Endpoint};
use crate::parse::Dialect;

/// Placeholder serialized in place of the prompt, then split on.
const MARKER: &str = "\u{1}sluice-bench-prompt\u{1}";

/// Everything a worker needs to build and send requests; shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// Resolved address of the target.
    pub addr: SocketAddr,
    /// Source address to bind before connecting (`--local-address`).
    pub local: Option<std::net::IpAddr>,
    /// Full URL of the requests (for the report).
    pub url: String,
    /// Origin-form URI (path) sent on the request line.
    pub uri: Uri,
    /// Headers of every request (host, content type, user headers).
    pub headers: HeaderMap,
    /// How replies are framed and which field carries text.
    pub dialect: Dialect,
    /// Whether replies are streamed.
    pub stream: bool,
    /// Per-request timeout.
    pub timeout: std::time::Duration,
    body: BodyTemplate,
    /// `Authorization` values used round robin (`--keys-file`); empty: none.
    keys: Vec<HeaderValue>,
}

/// A request body split around the prompt's JSON string contents.
#[derive(Debug)]
struct BodyTemplate {
    /// The whole body for repeated prompts.
    fixed: Bytes,
    head: Bytes,
    prompt: Bytes,
    tail: Bytes,
    unique: bool,
}

impl Plan {
    /// Resolves the URL and builds the headers and body template from `args`.
    pub async fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
        let base: Uri = args.url.parse().with_context(|| format!("--url {:?} is not a URL", args.url))?;
        match base.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("--url scheme {other:?} is not supported (plain http only)"),
            None => bail!("--url {:?} needs a scheme, e.g. http://127.0.0.1:8080", args.url),
        }
        let authority = base.authority().context("--url has no host")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;

        let path = match &args.path {
            Some(path) => path.clone(),
            None => {
                let prefix = base.path().trim_end_matches('/');
                format!("{prefix}{}", args.api.path(args.endpoint))
            }
        };
        let uri: Uri = path.parse().with_context(|| format!("bad request path {path:?}"))?;

        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let accept = match (args.streaming(), args.api) {
            (true, Api::Openai) => "text/event-stream",
            (true, Api::Ollama) => "application/x-ndjson",
            (false, _) => "application/json",
        };
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        for header in &args.headers {
            headers.insert(header.name.clone(), header.value.clone());
        }

        let keys = match &args.keys_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --keys-file {}", path.display()))?;
                let keys = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|k| HeaderValue::from_str(&format!("Bearer {k}")))
                    .collect::<Result<Vec<_>, _>>()
                    .context("a key in --keys-file is not a valid header value")?;
                if keys.is_empty() {
                    bail!("--keys-file {} holds no key", path.display());
                }
                keys
            }
            None => Vec::new(),
        };

        Ok(Plan {
            keys,
            addr,
            local: args.local_address,
            url: format!("http://{authority}{uri}"),
            uri,
            headers,
            dialect: Dialect::new(args.api, args.endpoint),
            stream: args.streaming(),
            timeout: args.timeout,
            body: BodyTemplate::new(args)?,
        })
    }

    /// Builds request number `index` (the index makes unique prompts unique).
    pub fn request(&self, index: u64) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.render(index)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        if !self.keys.is_empty() {
            // The modulo keeps the index in range, so the cast back cannot truncate.
            let key = &self.keys[(index % self.keys.len() as u64) as usize];
            request.headers_mut().insert(http::header::AUTHORIZATION, key.clone());
        }
        request
    }
}

impl BodyTemplate {
    fn new(args: &BenchArgs) -> anyhow::Result<BodyTemplate> {
        let body = body_json(args, MARKER);
        let text = serde_json::to_string(&body)?;
        let quoted_marker = serde_json::to_string(MARKER)?;
        let (head, tail) =
            text.split_once(&quoted_marker).context("prompt placeholder missing from the body")?;
        // Keep the quotes in head/tail so `prompt` holds only escaped contents.
        let quoted_prompt = serde_json::to_string(&args.prompt)?;
        let prompt = &quoted_prompt[1..quoted_prompt.len() - 1];
        let fixed = format!("{head}\"{prompt}\"{tail}");
        Ok(BodyTemplate {
            fixed: Bytes::from(fixed),
            head: Bytes::from(format!("{head}\"")),
            prompt: Bytes::copy_from_slice(prompt.as_bytes()),
            tail: Bytes::from(format!("\"{tail}")),
            unique: args.unique_prompts,
        })
    }

    fn render(&self, index: u64) -> Bytes {
        if !self.unique {
            return self.fixed.clone();
        }
        let suffix = format!(" {index}");
        let len = self.head.len() + self.prompt.len() + suffix.len() + self.tail.len();
        let mut body = BytesMut::with_capacity(len);
        body.extend_from_slice(&self.head);
        body.extend_from_slice(&self.prompt);
        body.extend_from_slice(suffix.as_bytes());
        body.extend_from_slice(&self.tail);
        body.freeze()
    }
}

/// The JSON body for `args`, with `prompt` as the user text.
fn body_json(args: &BenchArgs, prompt: &str) -> Value {
    let stream = args.streaming();
    let mut body = json!({ "model": args.model, "stream": stream });
    let messages = json!([{ "role": "user", "content": prompt }]);
    match args.endpoint {
        Endpoint::Chat => body["messages"] = messages,
        Endpoint::Completions => body["prompt"] = json!(prompt),
    }
    match args.api {
        Api::Openai => {
            if stream {
                body["stream_options"] = json!({ "include_usage": true });
            }
            if let Some(max) = args.max_tokens {
                body["max_tokens"] = json!(max);
            }
        }
        Api::Ollama => {
            if let Some(max) = args.max_tokens {
                body["options"] = json!({ "num_predict": max });
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn template(extra: &[&str]) -> BodyTemplate {
        let mut argv = vec!["bench", "--url", "http://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        BodyTemplate::new(&Cli::parse_from(argv).args).unwrap()
    }

    #[test]
    fn repeated_prompt_body_is_fixed_json() {
        let t = template(&["--prompt", "say \"hi\"", "--max-tokens", "7"]);
        let body: Value = serde_json::from_slice(&t.render(3)).unwrap();
        assert_eq!(body["messages"][0]["content"], "say \"hi\"");
        assert_eq!(body["max_tokens"], 7);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn unique_prompts_append_the_index() {
        let t =
            template(&["--unique-prompts", "--api", "ollama", "--endpoint", "completions", "--no-stream"]);
        let body: Value = serde_json::from_slice(&t.render(42)).unwrap();
        assert!(body["prompt"].as_str().unwrap().ends_with(" 42"));
        assert_eq!(body["stream"], false);
        assert!(body.get("stream_options").is_none());
    }
}
