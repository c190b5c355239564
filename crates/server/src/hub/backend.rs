//! A connected agent as a [`Backend`]: `chat()` takes one of the agent's slots, pushes a
//! Job frame and returns the job's event stream; dropping the stream sends Cancel at
//! once and frees the slot.
//!
//! The connection's reader never waits for a client: it appends each chunk to the job's
//! [`Inbox`] and wakes the job's stream. Deltas pile up in the inbox only while the
//! client has not taken the previous ones, and are then handed over as one event, so a
//! slow client costs memory for its own text and never stalls other jobs.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::SystemTime,
};

use futures_util::{Stream, future::BoxFuture};
use prometheus_client::metrics::gauge::Gauge;
use sluice_protocol::agent::ToAgent;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use sluice_core::{
    backend::{Backend, BackendError, EventStream, ModelInfo},
    chat::{ChatRequest, EmbedRequest, Embeddings, Event},
};
use sluice_link::convert;

/// What an agent said about itself in its Hello, and where it connected from.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// Agent id.
    pub id: String,
    /// Peer address, when known.
    pub addr: Option<SocketAddr>,
    /// Agent software version.
    pub version: String,
    /// Models it serves.
    pub models: Vec<String>,
    /// Jobs it runs at once.
    pub slots: u32,
    /// The protocol version it speaks (see [`sluice_protocol::agent::PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// What each model can do beyond text, as the agent knows it (protocol 2).
    pub capabilities: std::collections::BTreeMap<String, Vec<String>>,
    /// Id of the token it authenticated with.
    pub token_id: String,
    /// When it connected.
    pub connected_at: SystemTime,
}

/// One live agent connection, shared by its session task and its backend.
pub struct AgentConn {
    /// The agent's Hello.
    pub info: AgentInfo,
    tx: mpsc::Sender<ToAgent>,
    jobs: Mutex<HashMap<u64, Arc<Inbox>>>,
    next_job: AtomicU64,
    permits: Arc<Semaphore>,
    /// Cancelled when the connection ends (or must end).
    pub closed: CancellationToken,
    /// Tokens relayed from this agent.
    pub tokens_served: AtomicU64,
    /// When the agent last answered a ping.
    pub last_heartbeat: Mutex<SystemTime>,
    /// Set once the agent announced it is draining.
    pub draining: AtomicBool,
    jobs_gauge: Gauge,
    close_reason: Mutex<Option<String>>,
}

impl AgentConn {
    /// A connection for `info`, writing frames into `tx`, publishing its job count in
    /// `jobs_gauge`.
    pub fn new(info: AgentInfo, tx: mpsc::Sender<ToAgent>, jobs_gauge: Gauge) -> Self {
        let slots = usize::try_from(info.slots).unwrap_or(1);
        AgentConn {
            info,
            tx,
            jobs: Mutex::new(HashMap::new()),
            next_job: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(slots)),
            closed: CancellationToken::new(),
            tokens_served: AtomicU64::new(0),
            last_heartbeat: Mutex::new(SystemTime::now()),
            draining: AtomicBool::new(false),
            jobs_gauge,
            close_reason: Mutex::new(None),
        }
    }

    /// Asks the session to end the connection, for `reason` (the first reason wins).
    pub fn close(&self, reason: impl Into<String>) {
        self.close_reason.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| reason.into());
        self.closed.cancel();
    }

    /// Why [`AgentConn::close`] was called, if it was.
    pub fn close_reason(&self) -> Option<String> {
        self.close_reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Jobs pushed and not yet finished.
    pub fn jobs_in_flight(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queues a frame to the agent (dropped silently once the connection is gone). An
    /// agent whose queue is full is not reading: its connection is closed, saying so.
    pub fn send(&self, frame: ToAgent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            let max = self.tx.max_capacity();
            self.close(format!("the agent is not reading: its queue of {max} frames is full"));
        }
    }

    /// The inbox of a running job.
    pub fn inbox(&self, job: u64) -> Option<Arc<Inbox>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(&job).cloned()
    }

    /// Removes a finished job and returns its inbox.
    pub fn finish(&self, job: u64) -> Option<Arc<Inbox>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let inbox = jobs.remove(&job);
        self.publish(jobs.len());
        inbox
    }

    fn publish(&self, jobs: usize) {
        self.jobs_gauge.set(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    /// Ends every job because the connection is gone: jobs that delivered no token yet
    /// fail with a retryable `Connect` error (they can run elsewhere), the others with
    /// `Interrupted` (their client already has part of the answer).
    pub fn fail_all(&self, why: &str) {
        self.closed.cancel();
        // `closed` is set before the map is emptied, and `chat` checks it under the same
        // lock, so no job can be added after this and never be failed.
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()));
        self.publish(0);
        for inbox in jobs.into_values() {
            let err = if inbox.delivered() {
                BackendError::Interrupted(format!("agent {} {why} mid-answer", self.info.id))
            } else {
                BackendError::Connect(format!("agent {} {why} before the job produced a token", self.info.id))
            };
            inbox.end(Err(err));
        }
    }
}

/// Events of one job waiting for its stream to take them.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    /// Events other than text (reasoning, tool calls, log probabilities), with any
    /// text that came before them, in order; `text` holds what came after.
    events: VecDeque<(Event, usize)>,
    /// Bytes held in `events` and `text`.
    held: usize,
    text: String,
    end: Option<Result<Event, BackendError>>,
    delivered: bool,
    chunks: u64,
    waker: Option<Waker>,
}

impl InboxState {
    /// Counts `bytes` more held for the client; past [`MAX_INBOX_BYTES`] the job ends
    /// with an error instead (and the stream is woken to say so).
    fn hold(&mut self, bytes: usize) -> bool {
        if self.held + bytes > MAX_INBOX_BYTES {
            self.end = Some(Err(BackendError::Interrupted(format!(
                "the client did not read the answer: more than {MAX_INBOX_BYTES} bytes waited for it"
            ))));
            self.text.clear();
            self.events.clear();
            if let Some(w) = self.waker.take() {
                w.wake();
            }
            return false;
        }
        self.held += bytes;
        self.delivered = true;
        true
    }
}

/// Text a job's inbox holds for a client that does not take it, at most; past it the
/// job ends with an error (see [`Inbox::push`]).
pub const MAX_INBOX_BYTES: usize = 4 << 20;

impl Inbox {
    /// Appends generated text and wakes the stream. Returns `false` when the client has
    /// left [`MAX_INBOX_BYTES`] untaken: the job then ends with an error, and the agent
    /// should be told to stop it.
    pub fn push(&self, delta: String) -> bool {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.end.is_some() {
                return true;
            }
            if !s.hold(delta.len()) {
                return false;
            }
            s.chunks += 1;
            if s.text.is_empty() {
                s.text = delta
            } else {
                s.text.push_str(&delta)
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Appends an event other than text (reasoning, a tool call piece, log
    /// probabilities) of about `size` bytes, after the text before it, and wakes the
    /// stream. Returns `false` like [`Inbox::push`].
    pub fn push_event(&self, event: Event, size: usize) -> bool {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.end.is_some() {
                return true;
            }
            if !s.hold(size) {
                return false;
            }
            if !s.text.is_empty() {
                let text = std::mem::take(&mut s.text);
                let len = text.len();
                s.events.push_back((Event::Delta(text), len));
            }
            s.events.push_back((event, size));
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Ends the job (the first end wins) and wakes the stream.
    pub fn end(&self, result: Result<Event, BackendError>) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.end.is_some() {
                return;
            }
            s.end = Some(result);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Chunk frames received for this job.
    pub fn chunks(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).chunks
    }

    /// True once the agent sent text for this job.
    pub fn delivered(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).delivered
    }
}

/// An agent as a backend.
pub struct AgentBackend {
    name: String,
    conn: Arc<AgentConn>,
}

impl AgentBackend {
    /// The backend of `conn`, named `agent:<id>`.
    pub fn new(conn: Arc<AgentConn>) -> Self {
        AgentBackend { name: format!("agent:{}", conn.info.id), conn }
    }
}

impl Backend for AgentBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "agent"
    }

    fn slots(&self) -> Option<u32> {
        Some(self.conn.info.slots)
    }

    fn chat(
        &self,
        ctx: &sluice_core::context::RequestContext,
        req: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        let conn = self.conn.clone();
        let request = convert::job_request(ctx, req, conn.info.protocol);
        Box::pin(async move {
            let request = request?;
            let gone = || BackendError::Connect(format!("agent {} disconnected", conn.info.id));
            // Waits for a free slot: an agent never holds more jobs than it has slots.
            let permit = tokio::select! {
                p = conn.permits.clone().acquire_owned() => p.map_err(|_| gone())?,
                () = conn.closed.cancelled() => return Err(gone()),
            };
            let job = conn.next_job.fetch_add(1, Ordering::Relaxed);
            let inbox = Arc::new(Inbox::default());
            {
                let mut jobs = conn.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if conn.closed.is_cancelled() {
                    return Err(gone());
                }
                jobs.insert(job, inbox.clone());
                conn.publish(jobs.len());
            }
            conn.send(ToAgent::Job { job, request: Box::new(request) });
            let stream = JobStream { conn, job, inbox, ended: false, _permit: permit };
            Ok(Box::pin(stream) as EventStream)
        })
    }

    fn embed(&self, _req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        Box::pin(async {
            Err(BackendError::Unsupported("embeddings are not available through agents yet".into()))
        })
    }

    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        let models =
            self.conn.info.models.iter().map(|m| ModelInfo { name: m.clone(), ..Default::default() });
        let models: Vec<_> = models.collect();
        Box::pin(async move { Ok(models) })
    }

    /// Protocol 1 carries text only: a request asking for more goes elsewhere. A
    /// protocol 2 agent says what each model can do; where it does not know, its own
    /// upstream decides.
    fn capabilities(&self, model: &str) -> Option<Vec<String>> {
        if self.conn.info.protocol < 2 {
            return Some(vec!["completion".to_owned()]);
        }
        self.conn.info.capabilities.get(model).cloned()
    }

    fn health(&self) -> BoxFuture<'static, Result<(), BackendError>> {
        let up = !self.conn.closed.is_cancelled();
        let id = self.conn.info.id.clone();
        Box::pin(async move {
            if up { Ok(()) } else { Err(BackendError::Connect(format!("agent {id} disconnected"))) }
        })
    }
}

/// The events of one pushed job.
struct JobStream {
    conn: Arc<AgentConn>,
    job: u64,
    inbox: Arc<Inbox>,
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl Stream for JobStream {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let mut s = this.inbox.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((ev, size)) = s.events.pop_front() {
            s.held = s.held.saturating_sub(size);
            return Poll::Ready(Some(Ok(ev)));
        }
        if !s.text.is_empty() {
            let text = std::mem::take(&mut s.text);
            s.held = s.held.saturating_sub(text.len());
            return Poll::Ready(Some(Ok(Event::Delta(text))));
        }
        if let Some(end) = s.end.take() {
            this.ended = true;
            return Poll::Ready(Some(end));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for JobStream {
    fn drop(&mut self) {
        if self.conn.finish(self.job).is_some() && !self.ended {
            // The client went away while the agent is still working: stop it now.
            self.conn.send(ToAgent::Cancel { job: self.job });
        }
    }
}
