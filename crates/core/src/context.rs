//! [`RequestContext`]: who is asking, and under which terms, for one request.
//!
//! The server's auth layer creates it once per request; it is then passed by value
//! down the whole path — cache, single-flight (into the flight's own task), admission,
//! dispatch, and every backend attempt (into agent jobs too). Nothing about a request
//! travels in task-locals.

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, header::CACHE_CONTROL};
use tokio::time::Instant;

/// Who a request acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// No credential was needed: keyless mode (no key configured).
    Anonymous,
    /// A service key from `auth.api_key_sha256`, known by its SHA-256.
    ServiceKey([u8; 32]),
}

impl Principal {
    /// The SHA-256 of the key the principal presented, if it presented one.
    pub fn key_hash(&self) -> Option<&[u8; 32]> {
        match self {
            Principal::Anonymous => None,
            Principal::ServiceKey(h) => Some(h),
        }
    }
}

/// One request's identity and terms, created by the auth layer.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (`x-request-id`), for logs on both ends of every hop.
    pub request_id: Arc<str>,
    /// Who is asking.
    pub principal: Principal,
    /// Priority class for admission queues (0 = highest).
    pub class: usize,
    /// The client's `Cache-Control` directives.
    pub cache: Directives,
    /// When the gateway received the request: every deadline counts from here.
    pub received: Instant,
}

impl RequestContext {
    /// A context for `principal` in priority class `class`, received now, with no
    /// cache directives.
    pub fn new(request_id: impl Into<Arc<str>>, principal: Principal, class: usize) -> RequestContext {
        RequestContext {
            request_id: request_id.into(),
            principal,
            class,
            cache: Directives::default(),
            received: Instant::now(),
        }
    }

    /// A context for work the gateway starts itself (tests, warm-ups): anonymous,
    /// default class 0.
    pub fn internal() -> RequestContext {
        RequestContext::new("internal", Principal::Anonymous, 0)
    }
}

/// The client's `Cache-Control` request directives that Sluice honours (see
/// the cache policy for what each does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-cache`: generate afresh.
    pub no_cache: bool,
    /// `no-store`: do not keep the answer.
    pub no_store: bool,
    /// `max-age=N`: opt in, accepting stored answers up to N seconds old.
    pub max_age: Option<Duration>,
}

impl Directives {
    /// Reads every `Cache-Control` header; unknown or malformed directives are ignored,
    /// as HTTP caches do.
    pub fn from_headers(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                if name.eq_ignore_ascii_case("no-cache") {
                    d.no_cache = true;
                } else if name.eq_ignore_ascii_case("no-store") {
                    d.no_store = true;
                } else if name.eq_ignore_ascii_case("max-age")
                    && let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok())
                {
                    d.max_age = Some(Duration::from_secs(secs));
                }
            }
        }
        d
    }
}
