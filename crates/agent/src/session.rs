//! One connection of the agent to the gateway: dial, Hello, then run pushed jobs until
//! the connection ends or the agent shuts down.
//!
//! The reader handles the gateway's frames (jobs, cancels, pings) and never waits on a
//! job; the writer drains the [`Outbox`]. The gateway pings every few seconds, so a
//! silence of three heartbeats means the gateway (or the path to it) is gone. On
//! shutdown the agent reports `draining`, refuses new jobs, lets the running ones
//! finish until the drain deadline, then closes.
//!
//! The frame codec, the reader with its dead-peer timer and the writer are the link's
//! ([`sluice_link::connection`]), shared with the gateway's end.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::{Sink, Stream, StreamExt};
use sluice_link::{
    connection::{FrameReader, FrameWriter, Incoming, ReadEnd},
    frame::{AgentCodec, LinkMessage, MAX_FRAME_BYTES},
    heartbeat::PeerTimer,
};
use sluice_protocol::agent::{
    Hello, JobError, JobErrorKind, PROTOCOL_VERSION, RefuseCode, ToAgent, ToGateway,
};
use tokio::{
    task::{JoinError, JoinSet},
    time::Instant,
};
use tokio_tungstenite::tungstenite::protocol::{WebSocketConfig, frame::coding::CloseCode};
use tokio_util::sync::CancellationToken;

use super::{
    Agent,
    outbox::Outbox,
    socket::{self, Socket},
    worker,
};

/// How a connection that was welcomed ended.
pub enum SessionEnd {
    /// The agent shut down.
    Shutdown,
    /// The connection was lost; reconnect.
    Lost(String),
}

/// Why a connection was not established.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The gateway could not be reached or the handshake broke.
    #[error("{0}")]
    Connect(String),
    /// The gateway refused the Hello.
    #[error("refused by the gateway ({code:?}): {reason}")]
    Refused {
        /// Machine-readable reason.
        code: RefuseCode,
        /// The gateway's explanation.
        reason: String,
    },
}

/// The agent's end of the link: sends [`ToGateway`], receives [`ToAgent`].
type Writer<S> = FrameWriter<S, ToGateway, ToAgent>;

/// Silent heartbeat intervals after which the gateway is presumed gone.
const SILENT_HEARTBEATS: u32 = 3;

/// Connects once and runs until the connection ends.
pub async fn run(agent: &Agent, shutdown: &CancellationToken) -> Result<SessionEnd, SessionError> {
    let (sink, mut source) = socket::split(connect(agent).await?);
    let mut writer = FrameWriter::new(sink, AgentCodec::default());
    let heartbeat = handshake(agent, &mut writer, &mut source).await?;
    let o = &agent.options;
    tracing::info!(gateway = %o.url, models = ?agent.models, slots = o.slots, "connected to the gateway");
    agent.status.send_replace(super::AgentStatus::Connected);

    let timer = PeerTimer::new(None, heartbeat * SILENT_HEARTBEATS);
    let reader = FrameReader::new(source, AgentCodec::default(), timer);
    let mut session = Session::new(agent);
    let writer = write_frames(writer, session.outbox.clone());
    tokio::pin!(writer);
    let (end, writer_done) = session.serve(reader, writer.as_mut(), shutdown).await;
    session.drain(&end, writer_done, writer).await;
    agent.status.send_replace(super::AgentStatus::Disconnected);
    Ok(end)
}

/// Dials the gateway within the connect timeout.
async fn connect(agent: &Agent) -> Result<Socket, SessionError> {
    let o = &agent.options;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        o.url.as_str(),
        Some(config),
        true,
        Some(agent.connector.clone()),
    );
    match tokio::time::timeout(o.connect_timeout, connecting).await {
        Err(_) => Err(SessionError::Connect(format!("no connection within {:?}", o.connect_timeout))),
        Ok(Err(e)) => {
            Err(SessionError::Connect(sluice_link::tls::explain(&e).unwrap_or_else(|| e.to_string())))
        }
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// Sends the Hello and waits for the Welcome; returns the gateway's heartbeat period.
async fn handshake<S, E>(
    agent: &Agent,
    writer: &mut Writer<S>,
    source: &mut (impl Stream<Item = Result<LinkMessage, E>> + Unpin),
) -> Result<Duration, SessionError>
where
    S: Sink<LinkMessage, Error = E> + Unpin,
    E: std::fmt::Display,
{
    let o = &agent.options;
    let hello = ToGateway::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        token: o.token.clone(),
        agent_id: o.agent_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        models: agent.models.clone(),
        slots: o.slots,
        capabilities: agent.capabilities.clone(),
    });
    writer.send(&hello).await.map_err(|e| SessionError::Connect(e.to_string()))?;
    let connect = |why: String| Err(SessionError::Connect(why));
    match tokio::time::timeout(o.connect_timeout, source.next()).await {
        Ok(Some(Ok(LinkMessage::Text(t)))) => match AgentCodec::default().decode(&t) {
            Ok(ToAgent::Welcome { heartbeat_ms, .. }) => Ok(Duration::from_millis(heartbeat_ms.max(1))),
            Ok(ToAgent::Refused { code, reason }) => Err(SessionError::Refused { code, reason }),
            Ok(_) => connect("the gateway did not answer the hello".into()),
            Err(e) => connect(format!("malformed answer to the hello: {e}")),
        },
        Ok(Some(Ok(LinkMessage::Close(c)))) => {
            let why = c.map(|c| c.reason).unwrap_or_default();
            connect(format!("the gateway closed the connection: {why}"))
        }
        Ok(Some(Ok(_))) => connect("unexpected first frame from the gateway".into()),
        Ok(Some(Err(e))) => connect(e.to_string()),
        Ok(None) => connect("the gateway closed the connection".into()),
        Err(_) => connect("no answer to the hello".into()),
    }
}

/// Writes what the outbox holds, a batch per flush, until it is closed; then closes
/// the connection as going away.
async fn write_frames<S>(mut writer: Writer<S>, outbox: Arc<Outbox>) -> Result<(), S::Error>
where
    S: Sink<LinkMessage> + Unpin,
{
    let mut batch = Vec::new();
    while outbox.next_batch(&mut batch).await {
        for f in batch.drain(..) {
            writer.feed(&f).await?;
        }
        writer.flush().await?;
    }
    writer.close(CloseCode::Away.into(), "agent shutting down").await
}

/// The running jobs of one welcomed connection.
struct Session<'a> {
    agent: &'a Agent,
    outbox: Arc<Outbox>,
    jobs: HashMap<u64, CancellationToken>,
    workers: JoinSet<u64>,
    /// Set once the agent shuts down: no new jobs, the running ones end by then.
    drain_until: Option<Instant>,
}

impl<'a> Session<'a> {
    fn new(agent: &'a Agent) -> Self {
        Session {
            agent,
            outbox: Arc::new(Outbox::default()),
            jobs: HashMap::new(),
            workers: JoinSet::new(),
            drain_until: None,
        }
    }

    /// Reads the gateway's frames and runs jobs until the connection ends; also says
    /// whether the writer has finished.
    async fn serve<S, E, W, WE>(
        &mut self,
        mut reader: FrameReader<S, ToGateway, ToAgent>,
        mut writer: std::pin::Pin<&mut W>,
        shutdown: &CancellationToken,
    ) -> (SessionEnd, bool)
    where
        S: Stream<Item = Result<LinkMessage, E>> + Unpin,
        E: std::fmt::Display,
        W: Future<Output = Result<(), WE>>,
        WE: std::fmt::Display,
    {
        loop {
            let end = tokio::select! {
                incoming = reader.next() => match incoming {
                    Ok(Incoming::Frame(frame)) => self.on_frame(frame),
                    // The gateway does not ping at this level, nor send binary messages.
                    Ok(Incoming::Binary | Incoming::Ping) => None,
                    Err(end) => Some(lost(end)),
                },
                Some(done) = self.workers.join_next() => self.on_job_ended(done),
                r = &mut writer => {
                    let why = match r { Err(e) => format!("write failed: {e}"), Ok(()) => "writer stopped".into() };
                    return (SessionEnd::Lost(why), true);
                }
                () = shutdown.cancelled(), if self.drain_until.is_none() => self.start_draining(),
                () = tokio::time::sleep_until(self.drain_until.unwrap_or_else(Instant::now)), if self.drain_until.is_some() => {
                    tracing::warn!(jobs = self.workers.len(), "drain deadline passed; abandoning the running jobs");
                    Some(SessionEnd::Shutdown)
                }
            };
            if let Some(end) = end {
                return (end, false);
            }
        }
    }

    /// Handles one frame from the gateway; `Some` ends the connection.
    fn on_frame(&mut self, frame: ToAgent) -> Option<SessionEnd> {
        match frame {
            ToAgent::Job { job, request } => {
                if self.drain_until.is_some() {
                    let error = JobError {
                        kind: JobErrorKind::Overloaded,
                        message: "agent is shutting down".into(),
                        status: None,
                        prompt_tokens: None,
                        context: None,
                    };
                    self.outbox.end(job, ToGateway::Error { job, error });
                    return None;
                }
                let cancel = CancellationToken::new();
                self.jobs.insert(job, cancel.clone());
                let registry = self.agent.registry.clone();
                self.workers.spawn(worker::run(registry, self.outbox.clone(), job, *request, cancel));
                self.outbox.load(self.load());
            }
            ToAgent::Cancel { job } => {
                if let Some(c) = self.jobs.remove(&job) {
                    c.cancel();
                }
            }
            ToAgent::Ping { nonce } => self.outbox.control(ToGateway::Pong { nonce }),
            ToAgent::Welcome { .. } | ToAgent::Refused { .. } => {
                return Some(SessionEnd::Lost("unexpected handshake frame from the gateway".into()));
            }
        }
        None
    }

    /// A job's worker ended; `Some` when that was the last job of a drain.
    fn on_job_ended(&mut self, done: Result<u64, JoinError>) -> Option<SessionEnd> {
        if let Ok(job) = done {
            self.jobs.remove(&job);
        }
        self.outbox.load(self.load());
        (self.drain_until.is_some() && self.workers.is_empty()).then_some(SessionEnd::Shutdown)
    }

    /// The agent is shutting down: report draining; `Some` when no job runs.
    fn start_draining(&mut self) -> Option<SessionEnd> {
        let timeout = self.agent.options.drain_timeout;
        tracing::info!(jobs = self.workers.len(), deadline = ?timeout, "draining: no new jobs, finishing the running ones");
        self.drain_until = Some(Instant::now() + timeout);
        self.outbox.load(self.load());
        self.workers.is_empty().then_some(SessionEnd::Shutdown)
    }

    /// The load report for now.
    fn load(&self) -> ToGateway {
        ToGateway::Load {
            jobs: u32::try_from(self.jobs.len()).unwrap_or(u32::MAX),
            slots: self.agent.options.slots,
            draining: self.drain_until.is_some(),
        }
    }

    /// Stops the remaining jobs (their upstream requests end), then, on shutdown, lets
    /// the writer flush and close for up to two seconds.
    async fn drain<W: Future>(mut self, end: &SessionEnd, writer_done: bool, writer: std::pin::Pin<&mut W>) {
        self.workers.abort_all();
        self.outbox.close();
        if !writer_done && matches!(end, SessionEnd::Shutdown) {
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        }
    }
}

/// Why the connection is lost, from why reading ended.
fn lost<E: std::fmt::Display>(end: ReadEnd<E>) -> SessionEnd {
    SessionEnd::Lost(match end {
        ReadEnd::Closed(c) => format!("closed by the gateway: {}", c.map(|c| c.reason).unwrap_or_default()),
        ReadEnd::Failed(e) => format!("connection lost: {e}"),
        ReadEnd::Ended => "connection lost".into(),
        ReadEnd::BadFrame(e) => format!("malformed frame from the gateway: {e}"),
        ReadEnd::Silent(d) => format!("the gateway was silent for {d:?}"),
    })
}
