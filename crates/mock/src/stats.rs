//! What the mock has seen: counters a test reads, the last request it recorded, and
//! event-driven waiters (no polling) built on one [`Notify`].
//!
//! A *generation* is a chat, completions or generate request that passed validation and
//! was not answered by an injected status. Its life is tracked by a [`Tracker`] that
//! travels with the reply (into the streaming body when there is one), so a reply
//! dropped early, because the client went away, counts as cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Counters and the last request. The mock is the only writer; read the counters with
/// `load` or through [`MockStats::snapshot`].
#[derive(Debug, Default)]
pub struct MockStats {
    /// Chat, completions and generate requests received (valid or not).
    pub requests: AtomicU64,
    /// Generations begun (including `Hang`, which begins and never answers).
    pub streams_started: AtomicU64,
    /// Generations whose reply was sent to the end (final chunk, `[DONE]`, `done:true`).
    pub streams_completed: AtomicU64,
    /// Generations abandoned by the client before the reply ended: the response body (or,
    /// before the response head, the handler) was dropped.
    pub streams_cancelled: AtomicU64,
    /// Generation requests received and not yet finished, answered or dropped.
    pub in_flight: AtomicU64,
    /// The last POST request to any route (generation, embeddings, show).
    pub last_request: Mutex<Option<RecordedRequest>>,
    changed: Notify,
}

/// A request as the mock received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers, names lowercased; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or `Null` if the body was not JSON.
    pub body: serde_json::Value,
}

/// A plain copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// See [`MockStats::requests`].
    pub requests: u64,
    /// See [`MockStats::streams_started`].
    pub streams_started: u64,
    /// See [`MockStats::streams_completed`].
    pub streams_completed: u64,
    /// See [`MockStats::streams_cancelled`].
    pub streams_cancelled: u64,
    /// See [`MockStats::in_flight`].
    pub in_flight: u64,
}

impl MockStats {
    /// The counters, read one after the other.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::SeqCst),
            streams_started: self.streams_started.load(Ordering::SeqCst),
            streams_completed: self.streams_completed.load(Ordering::SeqCst),
            streams_cancelled: self.streams_cancelled.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst),
        }
    }

    /// A copy of the last recorded request.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.last_request.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Waits until `done(snapshot)` holds; checks now, then after every change.
    pub async fn wait_until(&self, done: impl Fn(&StatsSnapshot) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a change between the check and the await is
            // not lost.
            changed.as_mut().enable();
            if done(&self.snapshot()) {
                return;
            }
            changed.await;
        }
    }

    /// Waits until at least `n` generation requests have been received.
    pub async fn wait_requests(&self, n: u64) {
        self.wait_until(|s| s.requests >= n).await;
    }

    /// Waits until at least `n` generations have begun.
    pub async fn wait_started(&self, n: u64) {
        self.wait_until(|s| s.streams_started >= n).await;
    }

    /// Waits until at least `n` replies have been sent to the end.
    pub async fn wait_completed(&self, n: u64) {
        self.wait_until(|s| s.streams_completed >= n).await;
    }

    /// Waits until at least `n` generations have been cancelled by their client.
    pub async fn wait_cancelled(&self, n: u64) {
        self.wait_until(|s| s.streams_cancelled >= n).await;
    }

    /// Waits until exactly `n` generation requests are in flight.
    pub async fn wait_in_flight(&self, n: u64) {
        self.wait_until(|s| s.in_flight == n).await;
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        *self.last_request.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(request);
    }

    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// How a tracked generation request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Still running: dropping it now means the client went away.
    Open,
    /// Answered without a generation (bad request, injected status, 401, 404).
    Answered,
    /// The reply was sent to the end.
    Completed,
    /// The mock itself aborted the reply (`DropAfter`).
    Aborted,
}

/// Tracks one generation request from receipt to its end; see the module docs.
#[derive(Debug)]
pub(crate) struct Tracker {
    stats: Arc<MockStats>,
    started: bool,
    fate: Fate,
}

impl Tracker {
    /// Counts a generation request received and in flight.
    pub(crate) fn receive(stats: Arc<MockStats>) -> Tracker {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        stats.bump(&stats.requests);
        Tracker { stats, started: false, fate: Fate::Open }
    }

    /// The request passed validation and its generation begins.
    pub(crate) fn start(&mut self) {
        if !self.started {
            self.started = true;
            self.stats.bump(&self.stats.streams_started);
        }
    }

    /// The request was answered without a generation.
    pub(crate) fn answered(mut self) {
        self.fate = Fate::Answered;
    }

    /// The reply was sent to the end.
    pub(crate) fn complete(&mut self) {
        if self.fate == Fate::Open {
            self.fate = Fate::Completed;
            self.stats.bump(&self.stats.streams_completed);
        }
    }

    /// The mock aborts the reply on purpose; not a client cancellation.
    pub(crate) fn abort(&mut self) {
        self.fate = Fate::Aborted;
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.fate == Fate::Open && self.started {
            self.stats.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.stats.changed.notify_waiters();
    }
}
