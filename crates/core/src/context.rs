//! [`RequestContext`]: who is asking, and under which terms, for one request.
//!
//! The server's auth layer creates it once per request; it is then passed by value
//! down the whole path — cache, single-flight (into the flight's own task), admission,
//! dispatch, and every backend attempt (into agent jobs too). Nothing about a request
//! travels in task-locals.

use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

use http::{HeaderMap, header::CACHE_CONTROL};
use tokio::time::Instant;

/// Who a request acts for. Cloning costs at most one `Arc` clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Keyless mode: a fresh install (no user and no key exists), a request on
    /// loopback. Acts as the implicit admin.
    Local,
    /// No credential, let in by `auth.allow_anonymous`: a user, never an admin.
    Anonymous(IpAddr),
    /// A service key from `auth.api_key_sha256`, known by its SHA-256: admin role.
    ServiceKey([u8; 32]),
    /// A stored user, by session cookie or by one of their API keys.
    User(Arc<UserPrincipal>),
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May do everything, `/admin/*` included.
    Admin,
    /// May use models and manage their own keys.
    User,
}

impl Role {
    /// The role's name as stored and shown (`admin`, `user`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A stored user acting on a request, with the key they presented (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    /// The user's stable id.
    pub user_id: Arc<str>,
    /// The user's name.
    pub name: String,
    /// The user's role.
    pub role: Role,
    /// The API key presented; `None` for a session cookie.
    pub key: Option<KeyInfo>,
    /// The user's monthly spend budget, all keys and sessions together.
    pub budget: Option<sluice_protocol::budget::Budget>,
}

/// What the gateway knows about a stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's stable id.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// The models the key may use; `None`: all.
    pub models: Option<ModelGlobs>,
    /// The key's own limits.
    pub limits: KeyLimits,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<i64>,
}

/// Per-key limits (enforced by the limits layer); `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u32>,
    /// Concurrent streams.
    pub max_streams: Option<u32>,
    /// Tokens per day.
    pub daily_tokens: Option<u64>,
    /// Tokens per month.
    pub monthly_tokens: Option<u64>,
    /// Monthly spend budget of the key.
    pub budget: Option<sluice_protocol::budget::Budget>,
}

/// Who owns a request's effects: the cache scope and the usage record's owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantId {
    /// The implicit admin of keyless mode.
    Local,
    /// An anonymous client, by address.
    Anonymous(IpAddr),
    /// A service key, by its SHA-256.
    ServiceKey([u8; 32]),
    /// A stored user, by id (all of the user's keys and sessions).
    User(Arc<str>),
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantId::Local => f.write_str("local"),
            TenantId::Anonymous(ip) => write!(f, "anon:{ip}"),
            TenantId::ServiceKey(h) => {
                f.write_str("service:")?;
                h.iter().take(8).try_for_each(|b| write!(f, "{b:02x}"))
            }
            TenantId::User(id) => write!(f, "user:{id}"),
        }
    }
}

impl Principal {
    /// The SHA-256 of the key the principal presented, if it presented one.
    pub fn key_hash(&self) -> Option<&[u8; 32]> {
        match self {
            Principal::Local | Principal::Anonymous(_) => None,
            Principal::ServiceKey(h) => Some(h),
            Principal::User(u) => u.key.as_ref().map(|k| &k.sha256),
        }
    }

    /// True for the admin role: keyless mode, service keys and admin users.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Local | Principal::ServiceKey(_) => true,
            Principal::Anonymous(_) => false,
            Principal::User(u) => u.role == Role::Admin,
        }
    }

    /// True when the principal may use `model` (a key limited to globs must match one).
    pub fn may_use_model(&self, model: &str) -> bool {
        match self {
            Principal::User(u) => {
                u.key.as_ref().and_then(|k| k.models.as_ref()).is_none_or(|g| g.matches(model))
            }
            _ => true,
        }
    }

    /// The owner of the request's effects.
    pub fn tenant(&self) -> TenantId {
        match self {
            Principal::Local => TenantId::Local,
            Principal::Anonymous(ip) => TenantId::Anonymous(*ip),
            Principal::ServiceKey(h) => TenantId::ServiceKey(*h),
            Principal::User(u) => TenantId::User(u.user_id.clone()),
        }
    }
}

/// A list of model-name globs (`*` any run of characters, `?` one character),
/// compiled once when the key is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelGlobs {
    patterns: Vec<Box<str>>,
}

impl ModelGlobs {
    /// The globs, in the order given.
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> ModelGlobs {
        ModelGlobs { patterns: patterns.into_iter().map(|p| p.as_ref().into()).collect() }
    }

    /// The patterns as given.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| &**p)
    }

    /// True when `model` (or `model` without a `:latest` tag) matches one of the globs.
    pub fn matches(&self, model: &str) -> bool {
        let bare = model.strip_suffix(":latest").unwrap_or(model);
        self.patterns
            .iter()
            .any(|p| glob_match(p.as_bytes(), model.as_bytes()) || glob_match(p.as_bytes(), bare.as_bytes()))
    }
}

/// Iterative wildcard matching with one backtrack point: linear in practice.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
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
    /// `x-sluice-conversation`: store this chat in the caller's conversation of this
    /// id, or in a new one (`new`). Unset: API chats are not stored.
    pub conversation: Option<Arc<str>>,
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
            conversation: None,
        }
    }

    /// A context for work the gateway starts itself (tests, warm-ups): the local
    /// principal, default class 0.
    pub fn internal() -> RequestContext {
        RequestContext::new("internal", Principal::Local, 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let g = ModelGlobs::new(["llama*", "qwen?.5", "exact"]);
        for yes in ["llama", "llama-3.1-8b", "qwen2.5", "exact", "exact:latest", "llama3:8b"] {
            assert!(g.matches(yes), "{yes}");
        }
        for no in ["xllama", "qwen2.55", "exactly", "", "gpt-4o"] {
            assert!(!g.matches(no), "{no}");
        }
        assert!(ModelGlobs::new(["*"]).matches("anything"));
        assert!(ModelGlobs::new(["a*b*c"]).matches("aXbYbZc"));
        assert!(!ModelGlobs::new(Vec::<String>::new()).matches("m"));
    }

    #[test]
    fn roles_and_model_scopes() {
        let key = |models: Option<ModelGlobs>| KeyInfo {
            id: "k".into(),
            sha256: [7; 32],
            models,
            limits: KeyLimits::default(),
            expires_at: None,
        };
        let user = |role, key| {
            Principal::User(Arc::new(UserPrincipal {
                user_id: "u1".into(),
                name: "ann".into(),
                role,
                key,
                budget: None,
            }))
        };
        assert!(Principal::Local.is_admin() && Principal::ServiceKey([1; 32]).is_admin());
        assert!(!Principal::Anonymous(IpAddr::from([10, 0, 0, 1])).is_admin());
        assert!(user(Role::Admin, None).is_admin() && !user(Role::User, None).is_admin());
        let scoped = user(Role::User, Some(key(Some(ModelGlobs::new(["llama*"])))));
        assert!(scoped.may_use_model("llama3") && !scoped.may_use_model("gpt-4o"));
        assert!(user(Role::User, Some(key(None))).may_use_model("gpt-4o"));
        assert_eq!(scoped.key_hash(), Some(&[7; 32]));
        assert_eq!(scoped.tenant(), TenantId::User("u1".into()));
        assert_eq!(
            user(Role::User, None).tenant(),
            scoped.tenant(),
            "keys and sessions share the user's tenant"
        );
        assert_eq!(TenantId::Anonymous(IpAddr::from([10, 0, 0, 1])).to_string(), "anon:10.0.0.1");
    }
}
