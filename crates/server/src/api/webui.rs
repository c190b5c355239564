//! The web UI's files, embedded in the binary from `web/dist` (built by
//! `scripts/build-web.sh` and committed: `cargo build` needs no Node).
//!
//! Hashed files under `/assets/` are immutable and cached for a year; `index.html` is
//! served for every client-side route (`/`, `/c/{id}`, `/settings`, `/admin`, …) and
//! revalidated each time. Each file is sent pre-compressed (brotli or gzip, chosen by
//! `Accept-Encoding`) when the bundle has that variant. UI pages carry the security
//! headers ([`page_headers`]): a CSP without inline scripts, no framing, no referrer,
//! no sniffing. `GET /` answers API clients (no `text/html` in `Accept`) as before.

use axum::{
    body::Body,
    extract::Path,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rust_embed::RustEmbed;

/// The built bundle.
#[derive(RustEmbed)]
#[folder = "../../web/dist"]
struct Bundle;

/// The page's Content-Security-Policy: every script and style from this origin only
/// (no inline scripts, no `eval`), no plugins, no framing, no foreign connections.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The security headers of a UI page.
pub fn page_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
}

/// `GET /`: the UI for browsers, the old plain-text answer for API clients (Ollama
/// clients probe `/` to see a server is there).
pub async fn root(headers: HeaderMap) -> Response {
    if wants_html(&headers) { page(headers).await } else { super::ops::root().await.into_response() }
}

/// True when the client asks for HTML (a browser navigating).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.split(';').next().is_some_and(|t| t.trim() == "text/html")))
}

/// A client-side route: `index.html`, revalidated on every load.
pub async fn page(headers: HeaderMap) -> Response {
    let mut resp = file("index.html", &headers, "no-cache");
    page_headers(resp.headers_mut());
    resp
}

/// `GET /assets/{file}`: a content-hashed file, cached for a year.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    file(&format!("assets/{name}"), &headers, "public, max-age=31536000, immutable")
}

/// `GET /favicon.svg` (not hashed: revalidated).
pub async fn favicon(headers: HeaderMap) -> Response {
    file("favicon.svg", &headers, "no-cache")
}

/// The bundle's file `path` with `cache_control`, in the best encoding the client
/// accepts; 404 when the bundle has no such file.
fn file(path: &str, headers: &HeaderMap, cache_control: &'static str) -> Response {
    let Some(plain) = Bundle::get(path) else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "no such file")
            .into_response();
    };
    let (body, encoding) = [("br", ".br"), ("gzip", ".gz")]
        .into_iter()
        .filter(|(coding, _)| accepts(headers, coding))
        .find_map(|(coding, ext)| Bundle::get(&format!("{path}{ext}")).map(|f| (f.data, Some(coding))))
        .unwrap_or((plain.data, None));
    let body = match body {
        std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
        std::borrow::Cow::Owned(b) => Bytes::from(b),
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(coding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    resp
}

/// True when `Accept-Encoding` lists `coding` with a non-zero quality.
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            name.eq_ignore_ascii_case(coding) && !zero
        })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")));
        h
    }

    #[test]
    fn encodings_follow_accept_encoding() {
        let h = with(header::ACCEPT_ENCODING, "gzip, deflate, br;q=0");
        assert!(accepts(&h, "gzip") && !accepts(&h, "br"));
        let h = with(header::ACCEPT_ENCODING, "BR;q=0.5");
        assert!(accepts(&h, "br") && !accepts(&h, "gzip"));
        assert!(!accepts(&HeaderMap::new(), "gzip"));
    }

    #[test]
    fn browsers_get_html_and_api_clients_do_not() {
        assert!(wants_html(&with(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(!wants_html(&with(header::ACCEPT, "*/*")));
        assert!(!wants_html(&with(header::ACCEPT, "application/json")));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn the_bundle_has_an_index_and_hashed_assets() {
        assert!(Bundle::get("index.html").is_some(), "web/dist/index.html is embedded");
        assert!(Bundle::iter().any(|p| p.starts_with("assets/") && p.ends_with(".js")));
    }
}
