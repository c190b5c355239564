//! CORS: which browser origins may read the gateway's answers.
//!
//! Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered before
//! authentication, as browsers send them without credentials. Allowed origins come
//! from `server.cors_origins` (Ollama's localhost and desktop-app set by default; a
//! trailing `*` matches any rest, `"*"` any origin). Credentials are never allowed
//! across origins (no `Access-Control-Allow-Credentials`): a browser client presents
//! its API key in `Authorization`, never the UI's session cookie; an origin outside
//! the list gets no CORS header at all.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

/// Response headers a browser client may read.
const EXPOSED: &str = "x-request-id, x-sluice-cache, x-sluice-dropped, x-sluice-usage, x-sluice-served-by, \
    x-sluice-version, retry-after, retry-after-ms, x-should-retry, openai-processing-ms, \
    x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
    x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens";

/// Request headers allowed when the preflight names none (or too many to echo).
const ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key, x-request-id, x-sluice-conversation, \
    x-sluice-cache, cache-control, openai-organization, openai-project, openai-beta";

/// The allowed origins, parsed once.
#[derive(Debug, Clone)]
pub struct Cors {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Exact(String),
    Prefix(String),
}

impl Cors {
    /// The policy for configured `origins` (case-insensitive; `*` at the end matches any rest).
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Cors {
        let patterns = origins
            .iter()
            .map(|o| {
                let o = o.as_ref().trim().to_ascii_lowercase();
                match o.strip_suffix('*') {
                    Some("") => Pattern::Any,
                    Some(prefix) => Pattern::Prefix(prefix.to_owned()),
                    None => Pattern::Exact(o.trim_end_matches('/').to_owned()),
                }
            })
            .collect();
        Cors { patterns }
    }

    /// True when pages of `origin` may read answers.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(o) => *o == origin,
            Pattern::Prefix(p) => origin.starts_with(p.as_str()) && origin.len() > p.len(),
        })
    }

    /// The allowed `Origin` of a request, if it has one.
    pub fn origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        origin.to_str().ok().filter(|o| self.allows(o)).map(|_| origin)
    }

    /// The answer to a preflight request, or `None` when `method`/`headers` are not one.
    /// An origin outside the list gets a 204 without CORS headers: the browser then
    /// refuses the real request itself.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static("Origin, Access-Control-Request-Headers"));
        let Some(origin) = self.origin(headers) else { return Some(resp) };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        // The headers the client asked for, when they are few and plain.
        let asked = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|v| v.len() <= 1024 && v.to_str().is_ok())
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(ALLOWED_HEADERS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        Some(resp)
    }

    /// Lets a page of the request's origin read `resp`, when the origin is allowed.
    pub fn decorate(&self, origin: Option<HeaderValue>, resp: &mut Response) {
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(cors: &Cors, origin: &str) -> Response {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("POST"));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        cors.preflight(&Method::OPTIONS, &h).unwrap()
    }

    #[test]
    fn the_default_set_is_ollamas() {
        let cors = Cors::new(sluice_config::DEFAULT_CORS_ORIGINS);
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "app://obsidian.md",
            "vscode-webview://abc",
            "tauri://localhost",
        ] {
            assert!(cors.allows(ok), "{ok}");
        }
        for no in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://127.0.0.1.nip.io",
            "http://localhost:",
        ] {
            assert!(!cors.allows(no), "{no}");
        }
    }

    #[test]
    fn preflight_answers_allowed_origins_only_and_never_allows_credentials() {
        let cors = Cors::new(&["https://chat.example.com", "http://localhost:*"]);
        let ok = preflight(&cors, "https://chat.example.com");
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://chat.example.com");
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "authorization, content-type");
        assert!(ok.headers().get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        let no = preflight(&cors, "https://evil.example");
        assert_eq!(no.status(), StatusCode::NO_CONTENT);
        assert!(no.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(cors.preflight(&Method::OPTIONS, &HeaderMap::new()).is_none(), "not a preflight");
        assert!(Cors::new(&["*"]).allows("https://anything.example"));
    }
}
