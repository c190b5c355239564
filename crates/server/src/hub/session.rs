//! One agent connection, from the WebSocket upgrade to its end.
//!
//! Handshake: the first frame must be a Hello with our protocol version and a valid,
//! unrevoked token, within `agents.hello_timeout`; otherwise the agent gets a Refused
//! frame with the reason and the connection closes (logged on both sides). Then a
//! writer task sends queued frames (several per flush when they queue up) and the
//! reader dispatches the agent's frames to job inboxes without ever waiting on a
//! client. Pings go out every `agents.heartbeat`; a connection silent for
//! `agents.dead_after` is dead. Whatever ends the connection, only this connection
//! ends, its backend leaves the registry, and its jobs are failed (see
//! [`AgentConn::fail_all`]).

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use axum::extract::ws::{WebSocket, close_code};
use futures_util::{Sink, Stream, StreamExt};
use sluice_protocol::agent::{
    Hello, HelloVersion, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RefuseCode, ToAgent, ToGateway,
};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc},
    time::Instant,
};

use super::Link;
use super::backend::{AgentBackend, AgentConn, AgentInfo};
use super::socket;
use crate::connections::ReadCap;
use sluice_core::{backend::BackendError, chat::Event, registry::BackendSlot};
use sluice_link::{
    connection::{FrameReader, FrameWriter, Incoming, ReadEnd},
    convert,
    frame::{FrameError, GatewayCodec, LinkMessage},
    heartbeat::PeerTimer,
};

/// Serves one upgraded agent socket until it ends, as a task tracked by the gateway.
/// `handshake` holds the connection's place at the handshake gate until its Hello is
/// verified or refused; `cap`, the connection's read cap while it has no verified
/// Hello, is lifted then.
pub fn serve(
    link: Link,
    socket: WebSocket,
    addr: Option<SocketAddr>,
    handshake: OwnedSemaphorePermit,
    cap: Option<ReadCap>,
) -> impl Future<Output = ()> + Send {
    let tasks = link.core.tasks.clone();
    tasks.track_future(run(link, socket, addr, handshake, cap))
}

/// Frames queued to one agent, at most; an agent that does not read them is
/// disconnected (see [`AgentConn::send`]).
pub const FRAME_QUEUE: usize = 1024;

/// Longest Hello, in bytes: checked before it is parsed.
pub const MAX_HELLO_BYTES: usize = 64 << 10;

/// Most models one agent may announce, and the longest name and version.
const MAX_MODELS: usize = 256;
const MAX_NAME_BYTES: usize = 256;

/// A refused handshake.
#[derive(Debug)]
pub struct Refusal {
    /// What kind of refusal (the agent retries only some).
    pub code: RefuseCode,
    /// Why, in words, for the agent's log.
    pub reason: String,
}

impl Refusal {
    fn new(code: RefuseCode, reason: impl Into<String>) -> Self {
        Refusal { code, reason: reason.into() }
    }
}

/// Why a connection ended: a reason for the log and the close frame.
struct Ending {
    code: u16,
    reason: String,
}

impl Ending {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Ending { code, reason: reason.into() }
    }
}

/// The gateway's end of the link: sends [`ToAgent`], receives [`ToGateway`].
type Writer<S> = FrameWriter<S, ToAgent, ToGateway>;

async fn run(
    state: Link,
    socket: WebSocket,
    addr: Option<SocketAddr>,
    place: OwnedSemaphorePermit,
    cap: Option<ReadCap>,
) {
    let (sink, mut source) = socket::split(socket);
    let codec = GatewayCodec::new(state.config.max_frame_bytes);
    let mut writer = FrameWriter::new(sink, codec);
    let peer = addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let checked = handshake(&state, &codec, &mut source, cap.as_ref()).await;
    drop(place);
    if checked.is_ok()
        && let Some(cap) = &cap
    {
        cap.lift();
    }
    let (hello, token_id) = match checked {
        Ok(h) => h,
        Err(r) => {
            tracing::warn!(peer = %peer, code = ?r.code, reason = %r.reason, "agent refused");
            state.core.metrics.agents.refused(r.code);
            let frame = ToAgent::Refused { code: r.code, reason: r.reason.clone() };
            let close = match r.code {
                RefuseCode::Unauthorized => close_code::POLICY,
                RefuseCode::Unavailable => close_code::AGAIN,
                _ => close_code::PROTOCOL,
            };
            let _ = writer.send(&frame).await;
            close_with(&mut writer, Ending::new(close, r.reason)).await;
            return;
        }
    };
    let cfg = &state.config;
    let info = AgentInfo {
        id: hello.agent_id,
        addr,
        version: hello.version,
        models: hello.models,
        slots: hello.slots,
        protocol: hello.protocol,
        capabilities: hello.capabilities,
        token_id,
        connected_at: SystemTime::now(),
    };
    let (tx, rx) = mpsc::channel(FRAME_QUEUE);
    let jobs_gauge = state
        .core
        .metrics
        .agents
        .jobs_in_flight
        .get_or_create(&sluice_core::metrics::BackendLabels { backend: format!("agent:{}", info.id) })
        .clone();
    let conn = Arc::new(AgentConn::new(info, tx, jobs_gauge));
    let heartbeat_ms = u64::try_from(cfg.heartbeat.as_millis()).unwrap_or(u64::MAX);
    // The session speaks the agent's version (never above ours: checked in the handshake).
    conn.send(ToAgent::Welcome { protocol: conn.info.protocol, heartbeat_ms });
    let writer = state.core.tasks.spawn(write_frames(writer, rx, conn.clone()));
    let models = conn.info.models.iter().map(|m| (m.clone(), m.clone())).collect();
    let backend = Arc::new(AgentBackend::new(conn.clone()));
    let slot = Arc::new(BackendSlot::with_models(backend, cfg.timeouts, models));
    // Routable before it is counted as connected, so a caller that waits for the count
    // can use the agent at once.
    state.core.registry.add(slot.clone());
    state.agents.join(conn.clone(), slot.clone());
    state.core.metrics.agents.joined(&conn.info.id, conn.info.slots);
    tracing::info!(agent = %conn.info.id, peer = %peer, version = %conn.info.version, models = ?conn.info.models, slots = conn.info.slots, "agent connected");

    let watch = state.core.tasks.spawn(watch_token(state.clone(), conn.clone()));
    let ending = read_frames(&state, &conn, &slot, source).await;
    watch.abort();
    state.core.registry.remove(&slot);
    let replaced = state.agents.leave(&conn);
    let jobs = conn.jobs_in_flight();
    conn.fail_all(&ending.reason);
    state.core.metrics.agents.left(&conn.info.id, replaced);
    if ending.code == close_code::NORMAL && jobs == 0 {
        tracing::info!(agent = %conn.info.id, peer = %peer, reason = %ending.reason, "agent disconnected");
    } else {
        tracing::warn!(agent = %conn.info.id, peer = %peer, reason = %ending.reason, jobs_failed = jobs, "agent disconnected");
    }
    if let Ok(Some(mut writer)) = writer.await {
        close_with(&mut writer, ending).await;
    }
}

/// Ends the connection within one heartbeat of its token being revoked or expiring,
/// whichever replica revoked it: the token is checked again at every heartbeat (one
/// indexed lookup per connected agent per heartbeat).
async fn watch_token(state: Link, conn: Arc<AgentConn>) {
    let mut tick = tokio::time::interval(state.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match state.store.agent_token_in_force(&conn.info.token_id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(agent = %conn.info.id, "agent token revoked or expired: disconnecting");
                conn.close("the agent token was revoked or expired");
                return;
            }
            // A store hiccup is not a revocation: check again at the next heartbeat.
            Err(e) => tracing::warn!(error = %e, "agent token check failed"),
        }
    }
}

/// Reads and checks the Hello; returns it with the id of the token it presented.
async fn handshake<E>(
    state: &Link,
    codec: &GatewayCodec,
    source: &mut (impl Stream<Item = Result<LinkMessage, E>> + Unpin),
    cap: Option<&ReadCap>,
) -> Result<(Hello, String), Refusal> {
    let first = tokio::time::timeout(state.config.hello_timeout, source.next()).await;
    let text = match first {
        Err(_) => return Err(Refusal::new(RefuseCode::BadHello, "no hello within the hello timeout")),
        Ok(Some(Ok(LinkMessage::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            return Err(Refusal::new(RefuseCode::BadHello, "the first frame must be a text hello"));
        }
        Ok(Some(Err(_)) | None) if cap.is_some_and(ReadCap::exceeded) => {
            return Err(Refusal::new(
                RefuseCode::BadHello,
                format!("the hello is longer than {MAX_HELLO_BYTES} bytes"),
            ));
        }
        Ok(Some(Err(_)) | None) => {
            return Err(Refusal::new(RefuseCode::BadHello, "connection closed before hello"));
        }
    };
    let hello = read_hello(codec, &text)?;
    let token = match state.store.verify_agent_token(&hello.token).await {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Err(Refusal::new(
                RefuseCode::Unauthorized,
                "unknown or revoked agent token (or an expired one)",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "agent token check failed");
            return Err(Refusal::new(RefuseCode::Unavailable, "the gateway cannot check tokens right now"));
        }
    };
    if let Some(model) = hello.models.iter().find(|m| !may_serve(state, &token, m)) {
        let why = match &token.models {
            Some(globs) => format!("this agent token may serve only {globs:?}, not '{model}'"),
            None => format!("'{model}' is served by a configured backend; this agent token may not serve it"),
        };
        return Err(Refusal::new(RefuseCode::ModelNotAllowed, why));
    }
    if state.agents.held_by_other_token(&hello.agent_id, &token.id) {
        return Err(Refusal::new(
            RefuseCode::AgentIdTaken,
            format!("agent id '{}' is connected with another token", hello.agent_id),
        ));
    }
    Ok((hello, token.id))
}

/// Parses and checks a Hello as far as the text alone allows (size, protocol version,
/// field formats and bounds); the token and the models it may serve are checked next.
pub fn read_hello(codec: &GatewayCodec, text: &str) -> Result<Hello, Refusal> {
    if text.len() > MAX_HELLO_BYTES {
        return Err(Refusal::new(
            RefuseCode::BadHello,
            format!("the hello is longer than {MAX_HELLO_BYTES} bytes"),
        ));
    }
    let hello = match codec.decode(text) {
        Ok(ToGateway::Hello(h)) => h,
        Ok(_) => return Err(Refusal::new(RefuseCode::BadHello, "the first frame must be a hello")),
        Err(e) => {
            return Err(match serde_json::from_str::<HelloVersion>(text) {
                Ok(v) if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&v.protocol) => {
                    version_mismatch(v.protocol)
                }
                _ => Refusal::new(RefuseCode::BadHello, format!("malformed hello: {e}")),
            });
        }
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol) {
        return Err(version_mismatch(hello.protocol));
    }
    let id_ok = !hello.agent_id.is_empty()
        && hello.agent_id.len() <= 128
        && hello.agent_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    if !id_ok {
        return Err(Refusal::new(
            RefuseCode::BadHello,
            "agent_id must be 1-128 characters of letters, digits and -_.:@",
        ));
    }
    if hello.slots == 0 || hello.slots > 4096 {
        return Err(Refusal::new(RefuseCode::BadHello, "slots must be between 1 and 4096"));
    }
    if hello.models.is_empty() {
        return Err(Refusal::new(RefuseCode::BadHello, "the agent serves no model"));
    }
    let name_ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME_BYTES && !s.chars().any(char::is_control);
    if hello.models.len() > MAX_MODELS || !hello.models.iter().all(|m| name_ok(m)) {
        return Err(Refusal::new(
            RefuseCode::BadHello,
            format!(
                "an agent announces 1-{MAX_MODELS} models, each named in 1-{MAX_NAME_BYTES} bytes without control characters"
            ),
        ));
    }
    let caps_ok = hello.capabilities.len() <= MAX_MODELS
        && hello.capabilities.iter().all(|(m, caps)| {
            hello.models.contains(m)
                && caps.len() <= 16
                && caps.iter().all(|c| !c.is_empty() && c.len() <= 32)
        });
    if !caps_ok {
        return Err(Refusal::new(
            RefuseCode::BadHello,
            "capabilities name announced models only, each with at most 16 names of 1-32 bytes",
        ));
    }
    if !name_ok(&hello.version) {
        return Err(Refusal::new(
            RefuseCode::BadHello,
            format!("version must be 1-{MAX_NAME_BYTES} bytes without control characters"),
        ));
    }
    Ok(hello)
}

/// Whether an agent of `token` may announce `model`: one of the token's globs matches,
/// or (no globs) no configured backend serves that name.
fn may_serve(state: &Link, token: &sluice_store::AgentToken, model: &str) -> bool {
    match &token.models {
        Some(globs) => sluice_core::context::ModelGlobs::new(globs).matches(model),
        None => {
            let table = state.core.registry.table();
            table.routes(model).is_none_or(|routes| routes.iter().all(|r| r.slot.backend.kind() == "agent"))
        }
    }
}

fn version_mismatch(theirs: u32) -> Refusal {
    Refusal::new(
        RefuseCode::VersionMismatch,
        format!(
            "protocol version mismatch: the gateway speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}, the agent {theirs}"
        ),
    )
}

/// Dispatches the agent's frames until the connection ends; returns why it ended.
async fn read_frames<E: std::fmt::Display>(
    state: &Link,
    conn: &Arc<AgentConn>,
    slot: &Arc<BackendSlot>,
    source: impl Stream<Item = Result<LinkMessage, E>> + Unpin,
) -> Ending {
    let cfg = &state.config;
    let timer = PeerTimer::new(Some(cfg.heartbeat), cfg.dead_after);
    let mut reader = FrameReader::new(source, GatewayCodec::new(cfg.max_frame_bytes), timer);
    let mut nonce = 0u64;
    let mut draining_since: Option<Instant> = None;
    loop {
        tokio::select! {
            incoming = reader.next() => {
                let frame = match incoming {
                    Ok(Incoming::Frame(frame)) => frame,
                    Ok(Incoming::Ping) => {
                        nonce += 1;
                        conn.send(ToAgent::Ping { nonce });
                        continue;
                    }
                    Ok(Incoming::Binary) => {
                        return Ending::new(close_code::UNSUPPORTED, "malformed frame: binary frames are not part of the protocol");
                    }
                    Err(end) => return read_ending(end),
                };
                if let Err(e) = dispatch(state, conn, slot, frame) {
                    return e;
                }
                if draining_since.is_some() && conn.jobs_in_flight() == 0 {
                    return Ending::new(close_code::AWAY, "gateway shutting down");
                }
            }
            () = conn.closed.cancelled() => {
                let why = conn.close_reason().unwrap_or_else(|| "closed by the gateway".to_owned());
                return Ending::new(close_code::POLICY, why);
            }
            () = state.core.shutdown.cancelled(), if draining_since.is_none() => {
                // No new jobs; the running ones may finish within the grace period.
                state.core.registry.remove(slot);
                draining_since = Some(Instant::now());
                if conn.jobs_in_flight() == 0 {
                    return Ending::new(close_code::AWAY, "gateway shutting down");
                }
            }
            () = tokio::time::sleep_until(draining_since.map_or_else(Instant::now, |t| t + state.grace)), if draining_since.is_some() => {
                return Ending::new(close_code::AWAY, "gateway shutting down");
            }
        }
    }
}

/// The close code and reason for a connection whose reading ended.
fn read_ending<E: std::fmt::Display>(end: ReadEnd<E>) -> Ending {
    match end {
        ReadEnd::Closed(c) => {
            let why = c.map(|c| c.reason).filter(|r| !r.is_empty());
            Ending::new(
                close_code::NORMAL,
                format!("closed by the agent ({})", why.as_deref().unwrap_or("no reason")),
            )
        }
        ReadEnd::Failed(e) => Ending::new(close_code::ERROR, format!("connection lost ({e})")),
        ReadEnd::Ended => Ending::new(close_code::ERROR, "connection lost"),
        // The socket refuses oversized messages first; this only guards a smaller limit.
        ReadEnd::BadFrame(e @ FrameError::TooLarge { .. }) => {
            Ending::new(close_code::SIZE, format!("malformed frame: {e}"))
        }
        ReadEnd::BadFrame(e) => Ending::new(close_code::PROTOCOL, format!("malformed frame: {e}")),
        ReadEnd::Silent(d) => {
            Ending::new(close_code::AWAY, format!("no frame for {d:?}: agent presumed dead"))
        }
    }
}

/// Handles one frame; an error ends the connection.
fn dispatch(
    state: &Link,
    conn: &Arc<AgentConn>,
    slot: &Arc<BackendSlot>,
    frame: ToGateway,
) -> Result<(), Ending> {
    match frame {
        ToGateway::Chunk { job, delta } => {
            if let Some(inbox) = conn.inbox(job)
                && !inbox.push(delta)
                && conn.finish(job).is_some()
            {
                conn.send(ToAgent::Cancel { job });
            }
        }
        ToGateway::Reasoning { job, delta } => {
            let size = delta.len();
            deliver(conn, job, Ok(Event::Reasoning(delta)), size);
        }
        ToGateway::ToolCall { job, call } => {
            let size = call.to_string().len();
            deliver(conn, job, convert::tool_call_event(call), size);
        }
        ToGateway::Logprobs { job, logprobs } => {
            let size = logprobs.to_string().len();
            deliver(conn, job, convert::logprobs_event(logprobs), size);
        }
        ToGateway::Done { job, finish_reason, usage, details } => {
            if let Some(inbox) = conn.finish(job) {
                let tokens = usage.map_or(inbox.chunks(), |u| u64::from(u.completion_tokens));
                conn.tokens_served.fetch_add(tokens, std::sync::atomic::Ordering::Relaxed);
                state.core.metrics.agents.tokens(&conn.info.id, tokens);
                inbox.end(Ok(convert::done_event(&finish_reason, usage, details)));
            }
        }
        ToGateway::Error { job, error } => {
            if let Some(inbox) = conn.finish(job) {
                let streaming = inbox.delivered();
                inbox.end(Err(convert::backend_error(&conn.info.id, error, streaming)));
            }
        }
        ToGateway::Load { draining, .. } => {
            if draining && !conn.draining.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(agent = %conn.info.id, "agent draining: no new jobs");
                state.core.registry.remove(slot);
            }
        }
        ToGateway::Pong { .. } => {
            *conn.last_heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
            state.core.metrics.agents.heartbeat(&conn.info.id);
        }
        ToGateway::Hello(_) => {
            return Err(Ending::new(close_code::PROTOCOL, "malformed frame: hello sent twice"));
        }
    }
    Ok(())
}

/// Hands a job's event (other than text) to its stream. A malformed one ends the job
/// with a protocol error; a client too far behind ends it as `Inbox::push` does;
/// either way the agent is told to stop it.
fn deliver(conn: &AgentConn, job: u64, event: Result<Event, String>, size: usize) {
    let Some(inbox) = conn.inbox(job) else { return };
    let delivered = match event {
        Ok(ev) => inbox.push_event(ev, size),
        Err(e) => {
            inbox.end(Err(BackendError::Protocol(format!("agent {} sent {e}", conn.info.id))));
            false
        }
    };
    if !delivered && conn.finish(job).is_some() {
        conn.send(ToAgent::Cancel { job });
    }
}

/// Sends queued frames until the connection closes; every frame already queued when
/// a write starts goes out in the same flush. Returns the writer to close it, unless a
/// write failed.
async fn write_frames<S>(
    mut writer: Writer<S>,
    mut rx: mpsc::Receiver<ToAgent>,
    conn: Arc<AgentConn>,
) -> Option<Writer<S>>
where
    S: Sink<LinkMessage, Error = axum::Error> + Unpin,
{
    loop {
        let first = tokio::select! {
            f = rx.recv() => f,
            () = conn.closed.cancelled() => return Some(writer),
        };
        let Some(first) = first else { return Some(writer) };
        let write = async {
            writer.feed(&first).await?;
            while let Ok(f) = rx.try_recv() {
                writer.feed(&f).await?;
            }
            writer.flush().await
        };
        let written = tokio::select! {
            r = write => r,
            () = conn.closed.cancelled() => return None,
        };
        if let Err(e) = written {
            conn.close(format!("connection lost (write failed: {e})"));
            return None;
        }
    }
}

/// Sends a close frame with the reason, giving up after a second (the peer may be gone).
async fn close_with<S: Sink<LinkMessage> + Unpin>(writer: &mut Writer<S>, ending: Ending) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer.close(ending.code, ending.reason))
        .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use futures_util::stream;

    use super::*;
    use sluice_config::AgentsConfig;
    use sluice_core::{
        cache::config::CacheConfig,
        config::RoutingConfig,
        gateway::{Gateway, Settings},
    };
    use sluice_store::StoreConfig;

    fn link() -> Link {
        let (routing, cache) = (RoutingConfig::default(), CacheConfig::default());
        let core = Gateway::new(Settings { routing: &routing, models: &[], cache: &cache }, vec![]);
        let store = Arc::new(sluice_store::Store::new(&StoreConfig::default()));
        Link {
            core,
            store,
            agents: Arc::default(),
            config: AgentsConfig::default(),
            grace: Duration::from_secs(30),
        }
    }

    fn connection(state: &Link) -> (Arc<AgentConn>, Arc<BackendSlot>, mpsc::Receiver<ToAgent>) {
        let info = AgentInfo {
            id: "a".into(),
            addr: None,
            version: "t".into(),
            models: vec!["m".into()],
            slots: 1,
            protocol: PROTOCOL_VERSION,
            capabilities: Default::default(),
            token_id: "t".into(),
            connected_at: SystemTime::now(),
        };
        let (tx, rx) = mpsc::channel(FRAME_QUEUE);
        let conn = Arc::new(AgentConn::new(info, tx, Default::default()));
        let backend = Arc::new(AgentBackend::new(conn.clone()));
        let slot = Arc::new(BackendSlot::with_models(backend, state.config.timeouts, vec![]));
        (conn, slot, rx)
    }

    fn pings(rx: &mut mpsc::Receiver<ToAgent>) -> usize {
        std::iter::from_fn(|| rx.try_recv().ok()).filter(|f| matches!(f, ToAgent::Ping { .. })).count()
    }

    /// With the default settings, a silent agent is pinged every 3 s and declared dead
    /// after 9 s: within the 10 s the issue allows.
    #[tokio::test(start_paused = true)]
    async fn a_silent_agent_is_dead_within_ten_seconds() {
        let state = link();
        let (conn, slot, mut rx) = connection(&state);
        let started = Instant::now();
        let ending =
            read_frames(&state, &conn, &slot, stream::pending::<Result<LinkMessage, axum::Error>>()).await;
        let took = started.elapsed();
        assert!(ending.reason.contains("presumed dead"), "{}", ending.reason);
        assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(10), "{took:?}");
        // At 3 s and 6 s; the one due at 9 s races the verdict.
        assert!((2..=3).contains(&pings(&mut rx)));
    }

    /// Any frame is a sign of life: pongs every 2 s keep the agent, and only the
    /// silence after the last one counts.
    #[tokio::test(start_paused = true)]
    async fn frames_keep_an_agent_alive() {
        let state = link();
        let (conn, slot, _rx) = connection(&state);
        let pongs = stream::unfold(0u64, |n| async move {
            if n == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let pong = serde_json::to_string(&ToGateway::Pong { nonce: n }).unwrap();
            Some((Ok::<_, axum::Error>(LinkMessage::Text(pong)), n + 1))
        })
        .chain(stream::pending());
        let started = Instant::now();
        let ending = read_frames(&state, &conn, &slot, Box::pin(pongs)).await;
        assert!(ending.reason.contains("presumed dead"), "{}", ending.reason);
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(29) && took < Duration::from_secs(30), "{took:?}");
    }

    /// The queue of frames to an agent is bounded: an agent that reads none of them is
    /// disconnected with the reason, instead of the gateway buffering without end.
    #[tokio::test]
    async fn an_agent_that_reads_no_frame_is_disconnected_saying_why() {
        let state = link();
        let (conn, _slot, _rx) = connection(&state);
        for nonce in 0..FRAME_QUEUE as u64 {
            conn.send(ToAgent::Ping { nonce });
        }
        assert!(!conn.closed.is_cancelled());
        conn.send(ToAgent::Ping { nonce: 0 });
        assert!(conn.closed.is_cancelled());
        let why = conn.close_reason().unwrap();
        assert!(why.contains("not reading") && why.contains("1024 frames"), "{why}");
    }

    /// A job's inbox holds at most 4 MiB a client has not taken; past it the job ends
    /// with an error instead of growing.
    #[test]
    fn a_job_inbox_is_bounded() {
        let inbox = super::super::backend::Inbox::default();
        assert!(inbox.push("x".repeat(3 << 20)));
        assert!(!inbox.push("y".repeat(2 << 20)), "over the bound");
        assert!(inbox.push("z".into()), "an ended job ignores more text");
    }

    #[tokio::test(start_paused = true)]
    async fn a_malformed_frame_ends_the_connection_with_the_reason() {
        let state = link();
        let (conn, slot, _rx) = connection(&state);
        let frames = stream::iter([Ok::<_, axum::Error>(LinkMessage::Text(r#"{"type":"chunk"}"#.into()))])
            .chain(stream::pending());
        let ending = read_frames(&state, &conn, &slot, frames).await;
        assert_eq!(ending.code, close_code::PROTOCOL);
        assert!(ending.reason.starts_with("malformed frame: missing field"), "{}", ending.reason);
    }
}
