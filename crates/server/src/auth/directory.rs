//! The [`Directory`]: every user and API key in memory, so no request waits on the
//! database to learn who it is.
//!
//! It is loaded before the port is bound (an unreadable store stops `sluice serve`:
//! it is never taken for an empty one) and reloaded whole on every change: at once
//! when this process made it ([`Directory::reload`]), and for changes made elsewhere
//! (another replica, `sluice user …`) when the store's change feed wakes it.
//! Sessions are read from the store on a cookie's first use and kept for a short while;
//! whether their user is still enabled comes from the snapshot on every request.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockReadGuard, atomic::AtomicBool, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sluice_core::context::{KeyInfo, KeyLimits, ModelGlobs, Principal, Role, UserPrincipal};
use sluice_store::{ApiKey, Store, StoreError, User};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::key_digest;

/// How long a looked-up session is trusted before the store is asked again.
const SESSION_CACHE_TTL: Duration = Duration::from_secs(30);
/// How long to wait before watching again after the change feed broke.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

/// Why a presented credential is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("API key expired")]
    Expired,
    /// The key's or session's user is disabled.
    #[error("user disabled")]
    UserDisabled,
}

/// One stored key, ready to answer a request.
struct KeyEntry {
    principal: Arc<UserPrincipal>,
    revoked: bool,
    user_disabled: bool,
}

struct UserEntry {
    principal: Arc<UserPrincipal>,
    disabled: bool,
}

/// One consistent view of users and keys.
#[derive(Default)]
struct Snapshot {
    keys: HashMap<[u8; 32], KeyEntry>,
    users: HashMap<String, UserEntry>,
}

/// A session as cached: enough to resolve a cookie and check its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// The signed-in user.
    pub user_id: String,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Users and keys in memory; see the module docs.
pub struct Directory {
    store: Arc<Store>,
    snapshot: RwLock<Option<Snapshot>>,
    sessions: moka::sync::Cache<[u8; 32], Option<Arc<SessionEntry>>>,
    reloads: watch::Sender<u64>,
    started: AtomicBool,
}

fn unix_now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn role(admin: bool) -> Role {
    if admin { Role::Admin } else { Role::User }
}

fn limit<T: TryFrom<i64>>(v: Option<i64>) -> Option<T> {
    v.and_then(|v| T::try_from(v).ok())
}

fn build(users: Vec<User>, keys: Vec<ApiKey>) -> Snapshot {
    let users: HashMap<String, UserEntry> = users
        .into_iter()
        .map(|u| {
            let principal = UserPrincipal {
                user_id: u.id.as_str().into(),
                name: u.name,
                role: role(u.admin),
                key: None,
                budget: u.budget,
            };
            (u.id, UserEntry { principal: Arc::new(principal), disabled: u.disabled })
        })
        .collect();
    let keys = keys
        .into_iter()
        .filter_map(|k| {
            let sha256 = <[u8; 32]>::try_from(hex::decode(&k.key_sha256).ok()?.as_slice()).ok()?;
            let owner = users.get(&k.user_id)?;
            let info = KeyInfo {
                id: k.id,
                sha256,
                models: k.models.map(ModelGlobs::new),
                limits: KeyLimits {
                    rpm: limit(k.limits.rpm),
                    tpm: limit(k.limits.tpm),
                    max_streams: limit(k.limits.max_streams),
                    daily_tokens: limit(k.limits.daily_tokens),
                    monthly_tokens: limit(k.limits.monthly_tokens),
                    budget: k.limits.budget,
                },
                expires_at: k.expires_at,
            };
            let principal = Arc::new(UserPrincipal { key: Some(info), ..(*owner.principal).clone() });
            let entry =
                KeyEntry { principal, revoked: k.revoked_at.is_some(), user_disabled: owner.disabled };
            Some((sha256, entry))
        })
        .collect();
    Snapshot { keys, users }
}

impl Directory {
    /// An empty directory over `store`; nothing is loaded until [`Directory::reload`]
    /// or [`Directory::start`], and until then every lookup fails closed.
    pub fn new(store: Arc<Store>) -> Directory {
        Directory {
            store,
            snapshot: RwLock::new(None),
            sessions: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SESSION_CACHE_TTL)
                .build(),
            reloads: watch::Sender::new(0),
            started: AtomicBool::new(false),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Snapshot>> {
        // A panic while swapping snapshots leaves the old or the new one: both whole.
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every user and key from the store and swaps them in.
    pub async fn reload(&self) -> Result<(), StoreError> {
        // An in-memory store not opened yet is empty: no need to open it (tests under
        // paused time, gateways that never store anything).
        let snapshot = if self.store.is_unopened_memory() {
            Snapshot::default()
        } else {
            build(self.store.list_users().await?, self.store.load_api_keys().await?)
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
        self.reloads.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Counts reloads; tests wait on it instead of sleeping.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// True once loaded.
    pub fn is_loaded(&self) -> bool {
        self.read().is_some()
    }

    /// True when some user or key exists (or nothing is loaded yet: fail closed), so
    /// keyless mode is over.
    pub fn any_credential(&self) -> bool {
        self.read().as_ref().is_none_or(|s| !s.users.is_empty() || !s.keys.is_empty())
    }

    /// The principal of a presented key: `None` when no stored key has this hash.
    pub fn key(&self, key: &str) -> Option<Result<Principal, Refusal>> {
        let presented = key_digest(key);
        let guard = self.read();
        let entry = guard.as_ref()?.keys.get(&presented)?;
        let stored = entry.principal.key.as_ref().map(|k| k.sha256)?;
        if !bool::from(stored.ct_eq(&presented)) {
            return None;
        }
        Some(if entry.revoked {
            Err(Refusal::Revoked)
        } else if entry.user_disabled {
            Err(Refusal::UserDisabled)
        } else if entry.principal.key.as_ref().and_then(|k| k.expires_at).is_some_and(|t| t <= unix_now()) {
            Err(Refusal::Expired)
        } else {
            Ok(Principal::User(entry.principal.clone()))
        })
    }

    /// The principal of user `user_id` signed in by session, unless disabled or gone.
    pub fn user(&self, user_id: &str) -> Option<Result<Principal, Refusal>> {
        let guard = self.read();
        let entry = guard.as_ref()?.users.get(user_id)?;
        Some(if entry.disabled {
            Err(Refusal::UserDisabled)
        } else {
            Ok(Principal::User(entry.principal.clone()))
        })
    }

    /// The unexpired session whose cookie value is `token`.
    pub async fn session(&self, token: &str) -> Result<Option<Arc<SessionEntry>>, StoreError> {
        let digest = key_digest(token);
        let cached = match self.sessions.get(&digest) {
            Some(c) => c,
            None => {
                let found = self.store.session_by_token(token).await?.map(|s| {
                    Arc::new(SessionEntry {
                        user_id: s.user_id,
                        csrf_token: s.csrf_token,
                        expires_at: s.expires_at,
                    })
                });
                self.sessions.insert(digest, found.clone());
                found
            }
        };
        Ok(cached.filter(|s| s.expires_at > unix_now()))
    }

    /// Forgets a cached session (logout).
    pub fn forget_session(&self, token: &str) {
        self.sessions.invalidate(&key_digest(token));
    }

    /// Forgets every cached session (a password change or a disabled user: their
    /// sessions were deleted from the store).
    pub fn forget_all_sessions(&self) {
        self.sessions.invalidate_all();
    }

    /// Loads the directory, then keeps it current from the store's change feed in a
    /// task on `tasks` until `shutdown`. Fails when the store cannot be read. Does
    /// nothing the second time.
    pub async fn start(
        self: &Arc<Self>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Watch before loading, so no change between the two is missed.
        let changes = match self.store.watch_auth().await {
            // Reading would wait as long again for the same server.
            Err(e) if e.is_unreachable() => {
                self.started.store(false, Ordering::SeqCst);
                return Err(e);
            }
            changes => changes,
        };
        if let Err(e) = self.reload().await {
            self.started.store(false, Ordering::SeqCst);
            return Err(e);
        }
        let changes = match changes {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the store for user and key changes; retrying");
                None
            }
        };
        let this = self.clone();
        tasks.spawn(async move { this.follow(changes, shutdown).await });
        Ok(())
    }

    async fn follow(&self, mut changes: Option<sluice_store::AuthChanges>, shutdown: CancellationToken) {
        loop {
            // `Ok(Some(feed))`: watching again after a break.
            let woke = match changes.as_mut() {
                Some(c) => tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = c.changed(&self.store) => r.map(|()| None),
                },
                None => tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(REWATCH_AFTER) => self.store.watch_auth().await.map(Some),
                },
            };
            match woke {
                Ok(Some(feed)) => changes = Some(feed),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "user and key change feed broke; watching again");
                    changes = None;
                }
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "cannot reload users and keys; keeping the last ones");
            }
        }
    }
}
