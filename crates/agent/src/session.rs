//! One connection of the agent to the gateway: dial, Hello, then run pushed jobs until
//! the connection ends or the agent shuts down.
//!
//! The reader handles the gateway's frames (jobs, cancels, pings) and never waits on a
//! job; the writer drains the [`Outbox`]. The gateway pings every few seconds, so a
//! silence of three heartbeats means the gateway (or the path to it) is gone. On
//! shutdown the agent reports `draining`, refuses new jobs, lets the running ones
//! finish until the drain deadline, then closes.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use sluice_protocol::agent::{
    Hello, JobError, JobErrorKind, PROTOCOL_VERSION, RefuseCode, ToAgent, ToGateway,
};
use tokio::{task::JoinSet, time::Instant};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
};
use tokio_util::sync::CancellationToken;

use super::{Agent, outbox::Outbox, worker};

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

/// Connects once and runs until the connection ends.
pub async fn run(agent: &Agent, shutdown: &CancellationToken) -> Result<SessionEnd, SessionError> {
    let o = &agent.options;
    let config = WebSocketConfig::default().max_message_size(Some(16 << 20)).max_frame_size(Some(16 << 20));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        o.url.as_str(),
        Some(config),
        true,
        Some(agent.connector.clone()),
    );
    let (ws, _) = match tokio::time::timeout(o.connect_timeout, connecting).await {
        Err(_) => return Err(SessionError::Connect(format!("no connection within {:?}", o.connect_timeout))),
        Ok(Err(e)) => return Err(SessionError::Connect(e.to_string())),
        Ok(Ok(ws)) => ws,
    };
    let (mut sink, mut source) = ws.split();
    let hello = ToGateway::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        token: o.token.clone(),
        agent_id: o.agent_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        models: agent.models.clone(),
        slots: o.slots,
    });
    sink.send(encode(&hello)).await.map_err(|e| SessionError::Connect(e.to_string()))?;
    let heartbeat = match tokio::time::timeout(o.connect_timeout, source.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ToAgent>(&t) {
            Ok(ToAgent::Welcome { heartbeat_ms, .. }) => Duration::from_millis(heartbeat_ms.max(1)),
            Ok(ToAgent::Refused { code, reason }) => return Err(SessionError::Refused { code, reason }),
            Ok(_) => return Err(SessionError::Connect("the gateway did not answer the hello".into())),
            Err(e) => return Err(SessionError::Connect(format!("malformed answer to the hello: {e}"))),
        },
        Ok(Some(Ok(Message::Close(c)))) => {
            let why = c.map(|c| c.reason.to_string()).unwrap_or_default();
            return Err(SessionError::Connect(format!("the gateway closed the connection: {why}")));
        }
        Ok(Some(Ok(_))) => {
            return Err(SessionError::Connect("unexpected first frame from the gateway".into()));
        }
        Ok(Some(Err(e))) => return Err(SessionError::Connect(e.to_string())),
        Ok(None) => return Err(SessionError::Connect("the gateway closed the connection".into())),
        Err(_) => return Err(SessionError::Connect("no answer to the hello".into())),
    };
    tracing::info!(gateway = %o.url, models = ?agent.models, slots = o.slots, "connected to the gateway");
    agent.status.send_replace(super::AgentStatus::Connected);

    let outbox = Arc::new(Outbox::default());
    let writer = {
        let outbox = outbox.clone();
        async move {
            let mut batch = Vec::new();
            while outbox.next_batch(&mut batch).await {
                for f in batch.drain(..) {
                    sink.feed(encode(&f)).await?;
                }
                sink.flush().await?;
            }
            let close = CloseFrame { code: CloseCode::Away, reason: "agent shutting down".into() };
            sink.send(Message::Close(Some(close))).await
        }
    };
    tokio::pin!(writer);
    let mut writer_done = false;

    let mut jobs: HashMap<u64, CancellationToken> = HashMap::new();
    let mut workers = JoinSet::new();
    let silence = heartbeat * 3;
    let mut last_frame = Instant::now();
    let dead = tokio::time::sleep_until(last_frame + silence);
    tokio::pin!(dead);
    let mut drain_until: Option<Instant> = None;
    let load = |jobs: usize, draining: bool| ToGateway::Load {
        jobs: u32::try_from(jobs).unwrap_or(u32::MAX),
        slots: o.slots,
        draining,
    };

    let end = loop {
        tokio::select! {
            msg = source.next() => {
                last_frame = Instant::now();
                let frame = match msg {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ToAgent>(&t) {
                        Ok(f) => f,
                        Err(e) => break SessionEnd::Lost(format!("malformed frame from the gateway: {e}")),
                    },
                    Some(Ok(Message::Close(c))) => {
                        let why = c.map(|c| c.reason.to_string()).unwrap_or_default();
                        break SessionEnd::Lost(format!("closed by the gateway: {why}"));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break SessionEnd::Lost(format!("connection lost: {e}")),
                    None => break SessionEnd::Lost("connection lost".into()),
                };
                match frame {
                    ToAgent::Job { job, request } => {
                        if drain_until.is_some() {
                            let error = JobError { kind: JobErrorKind::Overloaded, message: "agent is shutting down".into(), status: None, prompt_tokens: None, context: None };
                            outbox.end(job, ToGateway::Error { job, error });
                            continue;
                        }
                        let cancel = CancellationToken::new();
                        jobs.insert(job, cancel.clone());
                        workers.spawn(worker::run(agent.registry.clone(), outbox.clone(), job, *request, cancel));
                        outbox.load(load(jobs.len(), false));
                    }
                    ToAgent::Cancel { job } => {
                        if let Some(c) = jobs.remove(&job) {
                            c.cancel();
                        }
                    }
                    ToAgent::Ping { nonce } => outbox.control(ToGateway::Pong { nonce }),
                    ToAgent::Welcome { .. } | ToAgent::Refused { .. } => {
                        break SessionEnd::Lost("unexpected handshake frame from the gateway".into());
                    }
                }
            }
            Some(done) = workers.join_next() => {
                if let Ok(job) = done {
                    jobs.remove(&job);
                }
                outbox.load(load(jobs.len(), drain_until.is_some()));
                if drain_until.is_some() && workers.is_empty() {
                    break SessionEnd::Shutdown;
                }
            }
            () = &mut dead => {
                if Instant::now() >= last_frame + silence {
                    break SessionEnd::Lost(format!("the gateway was silent for {silence:?}"));
                }
                dead.as_mut().reset(last_frame + silence);
            }
            r = &mut writer, if !writer_done => {
                writer_done = true;
                break SessionEnd::Lost(match r { Err(e) => format!("write failed: {e}"), Ok(()) => "writer stopped".into() });
            }
            () = shutdown.cancelled(), if drain_until.is_none() => {
                tracing::info!(jobs = workers.len(), deadline = ?o.drain_timeout, "draining: no new jobs, finishing the running ones");
                drain_until = Some(Instant::now() + o.drain_timeout);
                outbox.load(load(jobs.len(), true));
                if workers.is_empty() {
                    break SessionEnd::Shutdown;
                }
            }
            () = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                tracing::warn!(jobs = workers.len(), "drain deadline passed; abandoning the running jobs");
                break SessionEnd::Shutdown;
            }
        }
    };
    // Stop the remaining jobs (their upstream requests end), then flush and close.
    workers.abort_all();
    outbox.close();
    if !writer_done && matches!(end, SessionEnd::Shutdown) {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    agent.status.send_replace(super::AgentStatus::Disconnected);
    Ok(end)
}

fn encode(frame: &ToGateway) -> Message {
    // Serializing these plain structs cannot fail.
    Message::Text(serde_json::to_string(frame).unwrap_or_default().into())
}
