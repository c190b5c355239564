//! The rules that turn a request's credentials into a [`Principal`], or refuse it.
//!
//! In order: a presented key (`Authorization: Bearer`, `x-api-key`: a user's key from
//! the directory, then a service key); else the session cookie (state changes then
//! need `x-csrf-token`); else keyless mode — only while no user and no key exists, on a
//! loopback listener, for a loopback `Host` and any `Origin` loopback too; else an
//! anonymous user when `auth.allow_anonymous`; else 401.

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, Method, header};
use sluice_core::{context::Principal, error::GatewayError};
use subtle::ConstantTimeEq;

use super::{ApiKeys, directory::Directory, presented_key};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sluice_session";
/// The header carrying the session's CSRF token on cookie-authenticated state changes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a credential.
    Public,
    /// Any authenticated principal (anonymous ones included, when allowed).
    User,
    /// The admin role only.
    Admin,
}

/// What the rules need to know about this gateway.
pub struct Rules<'a> {
    /// Service keys from the configuration.
    pub keys: &'a ApiKeys,
    /// Users and their keys.
    pub directory: &'a Directory,
    /// True when the listener is on a loopback address.
    pub loopback_listener: bool,
    /// `auth.allow_anonymous`.
    pub allow_anonymous: bool,
}

/// The parts of a request the rules read.
pub struct Presented<'a> {
    /// The method (state changes need CSRF tokens).
    pub method: &'a Method,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// `Host`, or the URI's authority (HTTP/2).
    pub host: Option<&'a str>,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// True for `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub fn loopback_host(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "[::1]"
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// True for an `Origin` on a loopback host (`null` and other schemes are not).
pub fn loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| !rest.contains('/') && loopback_host(rest))
}

fn is_state_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Rules<'_> {
    /// True while keyless mode is possible: no user, no stored key, no service key,
    /// and a loopback listener.
    pub fn keyless(&self) -> bool {
        self.loopback_listener && self.keys.is_open() && !self.directory.any_credential()
    }

    /// Keyless mode's checks on the request itself (DNS rebinding, cross-site posts).
    fn local(&self, req: &Presented<'_>) -> Result<Principal, GatewayError> {
        if !req.host.is_some_and(loopback_host) {
            return Err(GatewayError::Forbidden(
                "this Sluice has no users or keys yet and answers only requests to localhost: use http://localhost or http://127.0.0.1, or create a user (`sluice user create`)".into(),
            ));
        }
        let origin = req.headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or(""));
        if origin.is_some_and(|o| !loopback_origin(o)) {
            return Err(GatewayError::Forbidden(
                "cross-site request refused: this Sluice has no users or keys yet and accepts requests only from local pages".into(),
            ));
        }
        Ok(Principal::Local)
    }

    /// Who `req` acts for, or why it is refused.
    pub async fn resolve(&self, req: &Presented<'_>) -> Result<Principal, GatewayError> {
        if let Some(key) = presented_key(req.headers) {
            if let Some(found) = self.directory.key(key) {
                return found.map_err(|why| GatewayError::Unauthorized(why.to_string()));
            }
            let digest = super::key_digest(key);
            if self.keys.accepts_hash(&digest) {
                return Ok(Principal::ServiceKey(digest));
            }
            // Clients that insist on sending some key still work on a fresh install.
            if self.keyless() {
                return self.local(req);
            }
            if !self.directory.is_loaded() {
                // The store has not been read yet (it was down at start): the key may
                // well be valid.
                return Err(GatewayError::Unavailable(
                    "API keys cannot be checked now (the store is unreachable); try again".into(),
                ));
            }
            return Err(GatewayError::Unauthorized("invalid API key".into()));
        }
        if let Some(token) = session_cookie(req.headers) {
            let session = self.directory.session(token).await.map_err(|e| {
                tracing::error!(error = %e, "session lookup failed");
                GatewayError::Unavailable("sessions cannot be checked now; try again".into())
            })?;
            match session {
                Some(s) => {
                    let principal = match self.directory.user(&s.user_id) {
                        Some(found) => found.map_err(|why| GatewayError::Unauthorized(why.to_string()))?,
                        None => {
                            return Err(GatewayError::Unauthorized("session expired: log in again".into()));
                        }
                    };
                    if is_state_change(req.method) {
                        let sent = req.headers.get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
                        if !bool::from(sent.ct_eq(s.csrf_token.as_bytes())) {
                            return Err(GatewayError::Forbidden(format!(
                                "missing or wrong {CSRF_HEADER} header: send the csrf_token from login"
                            )));
                        }
                    }
                    return Ok(principal);
                }
                None if !self.keyless() => {
                    return Err(GatewayError::Unauthorized("session expired: log in again".into()));
                }
                None => {}
            }
        }
        if self.keyless() {
            return match self.local(req) {
                Err(_) if self.allow_anonymous => Ok(Principal::Anonymous(anonymous_addr(req.client))),
                r => r,
            };
        }
        if self.allow_anonymous {
            return Ok(Principal::Anonymous(anonymous_addr(req.client)));
        }
        Err(GatewayError::Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' (or log in)".into(),
        ))
    }
}

fn anonymous_addr(client: Option<IpAddr>) -> IpAddr {
    client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// 403 unless `principal` may call a route of `access`.
pub fn authorize(principal: &Principal, access: Access) -> Result<(), GatewayError> {
    if access == Access::Admin && !principal.is_admin() {
        return Err(GatewayError::Forbidden("this route requires the admin role".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for yes in [
            "localhost",
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(loopback_host(yes), "{yes}");
        }
        for no in
            ["evil.com", "evil.com:8080", "localhost.evil.com", "10.0.0.1", "[::2]:80", "", "0.0.0.0:8080"]
        {
            assert!(!loopback_host(no), "{no}");
        }
        assert!(loopback_origin("http://localhost:3000") && loopback_origin("https://127.0.0.1"));
        for no in ["null", "http://evil.com", "file://", "http://localhost.evil.com", "http://localhost/x"] {
            assert!(!loopback_origin(no), "{no}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(session_cookie(&h), None);
        h.insert(header::COOKIE, "a=1; sluice_session=abc; b=2".parse().unwrap());
        assert_eq!(session_cookie(&h), Some("abc"));
        h.insert(header::COOKIE, "sluice_sessionx=1; sluice_session=".parse().unwrap());
        assert_eq!(session_cookie(&h), None);
    }
}
