//! Single-flight: identical requests in flight at the same time share one upstream
//! generation.
//!
//! The first request for a key opens a [`Flight`] and starts its driver, a tracked task
//! that runs the one `generation::start` and records every event into the flight. Every
//! client, the first included, holds a [`Reader`] that reads the recording from its
//! start and then live: a reader with nothing new registers its waker, and the driver
//! wakes every reader on each event (no polling, no broadcast channel that could lag
//! and drop events). A reader that goes away leaves the others untouched; when the
//! last one goes, the driver drops the generation, which cancels the upstream request.
//! A failure reaches every reader and closes the flight, so a later identical request
//! starts afresh; only an answer that completed is stored.

use std::{
    collections::HashMap,
    future::poll_fn,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use futures_util::Stream;
use tokio::sync::{Notify, watch};

use super::key::Key;
use crate::{backend::BackendError, chat::Event, error::GatewayError, registry::Served};

/// The flights in progress, by key.
pub struct Flights {
    table: Mutex<HashMap<Key, Arc<Flight>>>,
    joined: watch::Sender<u64>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights { table: Mutex::default(), joined: watch::Sender::new(0) }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent even if a holder panicked: every update is one step.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A place in a flight: the reader, and whether the caller must start the driver.
pub enum Seat {
    /// A new flight: start [`drive`] with [`Reader::flight`].
    Leader(Reader),
    /// Joined a flight already under way.
    Follower(Reader),
}

impl Flights {
    /// Joins the open flight for `key`, or opens one.
    pub fn join(&self, key: Key) -> Seat {
        let mut table = lock(&self.table);
        if let Some(reader) = table.get(&key).and_then(|f| f.attach()) {
            drop(table);
            self.joined.send_modify(|n| *n += 1);
            return Seat::Follower(reader);
        }
        let (flight, reader) = Flight::open(key);
        table.insert(key, flight);
        Seat::Leader(reader)
    }

    /// A flight of its own that nobody can join (the client asked for a fresh answer).
    pub fn private(key: Key) -> Seat {
        Seat::Leader(Flight::open(key).1)
    }

    /// Requests that joined a flight instead of starting their own, so far.
    pub fn joined(&self) -> u64 {
        *self.joined.borrow()
    }

    /// Waits until at least `n` requests have joined a flight.
    pub async fn wait_joined(&self, n: u64) {
        let mut rx = self.joined.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|joined| *joined >= n).await;
    }

    pub(crate) fn remove(&self, flight: &Arc<Flight>) {
        let mut table = lock(&self.table);
        if table.get(&flight.key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            table.remove(&flight.key);
        }
    }
}

/// One upstream generation and its recording.
pub struct Flight {
    pub(crate) key: Key,
    pub(crate) progress: Mutex<Progress>,
    pub(crate) abandoned: Notify,
}

#[derive(Default)]
pub(crate) struct Progress {
    /// Who serves it, once the first event is in; or why it could not start.
    pub(crate) head: Option<Result<Served, GatewayError>>,
    pub(crate) events: Vec<Event>,
    /// Why it failed after starting.
    pub(crate) failure: Option<BackendError>,
    /// The `Done` event is recorded.
    pub(crate) done: bool,
    /// No one may join: every reader left, or it failed.
    pub(crate) closed: bool,
    pub(crate) readers: usize,
    /// One slot per reader ever attached, by reader id.
    pub(crate) wakers: Vec<Option<Waker>>,
}

impl Progress {
    fn wake_all(&mut self) {
        for w in self.wakers.iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }

    fn finished(&self) -> bool {
        self.done || self.failure.is_some() || matches!(self.head, Some(Err(_)))
    }
}

impl Flight {
    fn open(key: Key) -> (Arc<Flight>, Reader) {
        let progress = Progress { readers: 1, wakers: vec![None], ..Progress::default() };
        let flight = Arc::new(Flight { key, progress: Mutex::new(progress), abandoned: Notify::new() });
        let reader = Reader { flight: flight.clone(), id: 0, next: 0, ended: false };
        (flight, reader)
    }

    fn attach(self: &Arc<Self>) -> Option<Reader> {
        let mut p = lock(&self.progress);
        if p.closed {
            return None;
        }
        p.readers += 1;
        let id = p.wakers.len();
        p.wakers.push(None);
        Some(Reader { flight: self.clone(), id, next: 0, ended: false })
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut p = lock(&self.progress);
        f(&mut p);
        p.wake_all();
    }
}

/// One client's view of a flight: the head, then every event from the first.
pub struct Reader {
    flight: Arc<Flight>,
    id: usize,
    next: usize,
    ended: bool,
}

impl Reader {
    /// The flight, for its driver.
    pub fn flight(&self) -> Arc<Flight> {
        self.flight.clone()
    }

    /// Waits for the generation to start: who serves it, or why it failed.
    pub async fn head(&mut self) -> Result<Served, GatewayError> {
        poll_fn(|cx| {
            let mut p = lock(&self.flight.progress);
            match &p.head {
                Some(head) => Poll::Ready(head.clone()),
                None => {
                    p.wakers[self.id] = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Stream for Reader {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut p = lock(&this.flight.progress);
        if let Some(ev) = p.events.get(this.next) {
            let ev = ev.clone();
            this.next += 1;
            this.ended = matches!(ev, Event::Done { .. });
            return Poll::Ready(Some(Ok(ev)));
        }
        if let Some(e) = &p.failure {
            this.ended = true;
            return Poll::Ready(Some(Err(e.clone())));
        }
        p.wakers[this.id] = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut p = lock(&self.flight.progress);
        p.readers -= 1;
        p.wakers[self.id] = None;
        if p.readers == 0 && !p.finished() {
            p.closed = true;
            drop(p);
            // Stores a permit if the driver is not waiting right now.
            self.flight.abandoned.notify_one();
        }
    }
}
