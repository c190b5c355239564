//! UI generations, under `/v1/conversations/{id}/generations`: answers that run in the
//! gateway, not in the browser's connection, so a reload re-attaches to them.
//!
//! - `POST …/generations` `{parent_id?, content?, model, system?, temperature?,
//!   max_tokens?}`: stores the user message `content` (a child of `parent_id`) —
//!   durably, before anything else — or, without `content`, answers `parent_id` again
//!   (regenerate); starts the answer as a gateway task ([`crate::runs`]) and answers
//!   202 with the user message id, which names the generation.
//! - `GET …/generations`: the caller's generations in the conversation.
//! - `GET …/generations/{message_id}[?model=M]`: SSE — `delta` events (`{"text"}`, `id` = bytes
//!   so far; `Last-Event-ID` or `?from=` resumes after them), then one `done`
//!   (`{"finish_reason", "message_id"}`) or `error` (`{"message", "status",
//!   "message_id"}`) event. Everything so far first, then live.
//! - `POST …/generations/{message_id}/stop[?model=M]`: stops it (the upstream
//!   request is dropped); the partial answer is stored, marked as stopped.
//!
//! Several models may answer one message at once (side by side): `?model=` picks
//! one; without it, the one started last.
//!
//! The answer goes through [`respond::start`]: limited and metered like an API request,
//! and stored as a child of the user message when it ends, however it ends. Another
//! owner's conversation or generation is a 404.

use std::{collections::HashMap, convert::Infallible, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State, rejection::BytesRejection, rejection::QueryRejection},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use sluice_core::{
    chat::{ChatRequest, Event, Input, Message, Role, Sampling},
    context::RequestContext,
    error::GatewayError,
};
use sluice_store::NewMessage;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{
    Ctx, allowed_model, body_or_error,
    conversation::{Answer, Recording},
    data_error::DataError,
    owner::signed_in,
    parse_json,
    respond::{self, Storing},
};
use crate::{
    runs::{End, Refused, Run},
    state::AppState,
};

type Result<T, E = DataError> = std::result::Result<T, E>;

/// Body of `POST …/generations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    /// The message the new user message follows; without `content`, the user message
    /// to answer again.
    parent_id: Option<String>,
    /// The new user message.
    content: Option<String>,
    model: String,
    /// A system prompt sent first (not stored as a message).
    system: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

/// A refused start: 429 while the owner's generations are at their cap.
fn too_many(e: Refused) -> DataError {
    match e {
        Refused::TooMany(_) => DataError::Gateway(GatewayError::RateLimited {
            message: "too many answers are being generated for you: wait for one to end or stop one".into(),
            retry_after: Some(std::time::Duration::from_secs(1)),
        }),
        Refused::Busy => DataError::bad(e.to_string(), "parent_id"),
    }
}

fn not_found(what: &str) -> DataError {
    DataError::NotFound(format!("no {what}"))
}

/// `POST /v1/conversations/{id}/generations`.
pub async fn start(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let req: Start = parse_json(&body_or_error(&state, body)?)?;
    let max_content = state.config.ui.max_message_bytes;
    if req.content.as_ref().is_some_and(|c| c.len() > max_content || c.trim().is_empty()) {
        return Err(DataError::bad(format!("content must be 1 to {max_content} bytes"), "content"));
    }
    if req.model.trim().is_empty() {
        return Err(DataError::bad("choose a model", "model"));
    }
    allowed_model(&ctx, &req.model)?;
    if !state.runs.has_room(&owner.id) {
        return Err(too_many(Refused::TooMany(0)));
    }
    let conv =
        state.store.get_conversation(&owner.id, &id).await?.ok_or_else(|| not_found("conversation"))?;
    let by_id: HashMap<&str, &sluice_store::Message> =
        conv.messages.iter().map(|m| (m.id.as_str(), m)).collect();
    let parent = match req.parent_id.as_deref() {
        Some(p) => Some(*by_id.get(p).ok_or_else(|| DataError::bad("no such message here", "parent_id"))?),
        None => None,
    };
    // The user message the answer answers: new (stored first, durably), or the parent.
    let (user_id, mut path) = match (&req.content, parent) {
        (Some(content), parent) => {
            let new = NewMessage {
                parent_id: parent.map(|p| p.id.clone()),
                role: Role::User.as_str().to_owned(),
                content: content.clone(),
                ..NewMessage::default()
            };
            let stored = state
                .store
                .append_message(&owner.id, &id, new)
                .await?
                .ok_or_else(|| not_found("conversation"))?;
            let mut path = parent.map(|p| lineage(&by_id, p)).unwrap_or_default();
            path.push(Message::new(Role::User, stored.content));
            (stored.id, path)
        }
        (None, Some(p)) if p.role == Role::User.as_str() => (p.id.clone(), lineage(&by_id, p)),
        (None, _) => return Err(DataError::bad("regenerate answers a user message: name it", "parent_id")),
    };
    if let Some(system) = req.system.as_deref().filter(|s| !s.trim().is_empty()) {
        path.insert(0, Message::new(Role::System, system));
    }
    let run = state.runs.begin(&owner.id, &id, &user_id, &req.model).map_err(too_many)?;
    let chat = ChatRequest {
        model: req.model.clone(),
        input: Input::Chat(path),
        sampling: Sampling {
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            ..Sampling::default()
        },
        stream: true,
        ..ChatRequest::default()
    };
    let to = AnswerTo { owner: owner.id, conversation_id: id.clone(), parent_id: user_id.clone() };
    let task_state = state.clone();
    state.core.tasks.spawn(drive(task_state, ctx, chat, to, run));
    let body = json!({ "conversation_id": id, "message_id": user_id, "model": req.model });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The messages from the conversation's root down to `last`, oldest first (answers
/// that failed without text are left out).
fn lineage(by_id: &HashMap<&str, &sluice_store::Message>, last: &sluice_store::Message) -> Vec<Message> {
    let mut chain = Vec::new();
    let mut at = Some(last);
    while let Some(m) = at {
        // A tree cannot loop, but a bad row must not hang the request.
        if chain.len() > by_id.len() {
            break;
        }
        if let Some(role) = Role::parse(&m.role)
            && !(m.error.is_some() && m.content.is_empty())
        {
            chain.push(Message::new(role, m.content.clone()));
        }
        at = m.parent_id.as_deref().and_then(|p| by_id.get(p).copied());
    }
    chain.reverse();
    chain
}

/// Where an answer is stored: under a user message of the owner's conversation.
struct AnswerTo {
    owner: String,
    conversation_id: String,
    parent_id: String,
}

impl AnswerTo {
    /// A recording of the answer, and the receiver told its stored id.
    fn recording(&self, state: &AppState) -> (Recording, oneshot::Receiver<Option<String>>) {
        let (tell, stored) = oneshot::channel();
        let (owner, conv, parent) =
            (self.owner.clone(), self.conversation_id.clone(), self.parent_id.clone());
        (Recording::to_message(state, owner, conv, parent, tell), stored)
    }
}

/// The generation task: runs the answer to its end (or a stop, or shutdown), feeding
/// `run`; then waits until the answer is stored and says how it ended.
async fn drive(state: AppState, ctx: RequestContext, req: ChatRequest, to: AnswerTo, run: Arc<Run>) {
    // On shutdown an answer may go on for the grace period, like an API request.
    let grace = state.config.server.shutdown_grace;
    let shutdown = state.core.shutdown.clone();
    let over = async move {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let (recording, mut stored) = to.recording(&state);
    let model = req.model.clone();
    let (end, recorded) = answer(&state, &ctx, req, recording, &run, over).await;
    if !recorded {
        // Cut before the upstream answered at all: the recording went with the request,
        // so the failure is stored here, and the conversation shows why it has no answer.
        let (recording, receiver) = to.recording(&state);
        let message = match &end {
            End::Failed { message, .. } => message.clone(),
            _ => SHUT_DOWN.to_owned(),
        };
        let duration_ms = u64::try_from(ctx.received.elapsed().as_millis()).unwrap_or(u64::MAX);
        recording.finish(Answer {
            text: String::new(),
            model,
            tokens: (0, 0),
            ttft_ms: None,
            duration_ms,
            finish_reason: None,
            error: Some(message),
        });
        stored = receiver;
    }
    // The answer's row is written by a tracked task once the stream is settled.
    let answer_id = stored.await.ok().flatten();
    run.finish(end, answer_id);
}

/// Streams the answer into `run` until it ends, is stopped, or `over` resolves; says
/// how it ended and whether `recording` stores it (`false`: `over` came before the
/// upstream answered, and the recording was dropped with the request).
async fn answer(
    state: &AppState,
    ctx: &RequestContext,
    req: ChatRequest,
    recording: Recording,
    run: &Run,
    over: impl std::future::Future<Output = ()>,
) -> (End, bool) {
    let shut_down = || End::Failed { message: SHUT_DOWN.into(), status: 503 };
    tokio::pin!(over);
    let start = respond::start(state, ctx, req, "ui", Storing::Into(recording));
    let mut started = tokio::select! {
        s = start => match s {
            Ok(s) => s,
            Err((e, _)) => return (failed(&e), true),
        },
        () = &mut over => return (shut_down(), false),
    };
    (stream_into(&mut started, run, over).await, true)
}

/// The answer's events into `run`, until it ends, is stopped or `over` resolves.
async fn stream_into(
    started: &mut respond::Started,
    run: &Run,
    mut over: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> End {
    let shut_down = || End::Failed { message: SHUT_DOWN.into(), status: 503 };
    loop {
        let item = tokio::select! {
            item = started.reply.next() => item,
            () = run.stopped() => {
                started.reply.interrupt("stopped");
                return End::Stopped;
            }
            () = &mut over => {
                started.reply.interrupt(SHUT_DOWN);
                return shut_down();
            }
        };
        match item {
            Some(Ok(Event::Delta(text))) => {
                if !run.push(&text) {
                    let message = "the answer is too long for the web UI".to_owned();
                    started.reply.interrupt(&message);
                    return End::Failed { message, status: 502 };
                }
            }
            // The web UI shows and stores the answer's text; it asks for no tools, and
            // a thinking model's reasoning is not part of the stored answer.
            Some(Ok(Event::Reasoning(_) | Event::ToolCall(_) | Event::Logprobs(_))) => {}
            Some(Ok(Event::Done { finish_reason, .. })) => {
                return End::Done { finish_reason: finish_reason.as_str().to_owned() };
            }
            Some(Err(e)) => return failed(&GatewayError::Backend(e)),
            None => {
                return End::Failed { message: "the answer ended without finishing".into(), status: 502 };
            }
        }
    }
}

/// Why an answer cut by shutdown ended.
const SHUT_DOWN: &str = "the gateway shut down before the answer ended";

fn failed(e: &GatewayError) -> End {
    End::Failed { message: e.client_message(), status: e.status_code().as_u16() }
}

/// `GET /v1/conversations/{id}/generations`: the caller's generations in it.
pub async fn list(State(state): State<AppState>, Ctx(ctx): Ctx, Path(id): Path<String>) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    // Another user's conversation, or none: 404, as for every other conversation route.
    if !state.store.conversation_exists(&owner.id, &id).await? {
        return Err(not_found("conversation"));
    }
    let data: Vec<_> = state
        .runs
        .of_conversation(&owner.id, &id)
        .iter()
        .map(|r| json!({ "message_id": r.message_id, "model": r.model, "running": r.running() }))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

/// Query of the attach route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachQuery {
    /// Resume after this many bytes of text (as `Last-Event-ID`).
    from: Option<usize>,
    /// Which model's answer, when several answer the message.
    model: Option<String>,
}

/// Query of the stop route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopQuery {
    /// Which model's answer, when several answer the message.
    model: Option<String>,
}

/// `GET /v1/conversations/{id}/generations/{message_id}`: SSE from `Last-Event-ID` (or
/// `?from=`) bytes on.
pub async fn attach(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, message_id)): Path<(String, String)>,
    headers: HeaderMap,
    q: std::result::Result<Query<AttachQuery>, QueryRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let q = super::conversations::query(q)?;
    let run = find(&state, &owner.id, &id, &message_id, q.model.as_deref())?;
    let last_event = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let from = last_event.or(q.from).unwrap_or(0);
    {
        let p = run.subscribe();
        let text = &p.borrow().text;
        if from > text.len() || !text.is_char_boundary(from) {
            return Err(DataError::bad(format!("no text position {from} in this answer"), "from"));
        }
    }
    let keepalive = KeepAlive::new().interval(state.config.server.sse_keepalive);
    let cut = state.core.cut.clone();
    let mut resp = Sse::new(events(run, from, cut)).keep_alive(keepalive).into_response();
    resp.headers_mut().insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    Ok(resp)
}

/// The run's events from byte `from` on: what is there at once, then each change; one
/// `done` or `error` event last (an `error` when the shutdown's grace period ends,
/// `cut`, before the answer does).
fn events(
    run: Arc<Run>,
    from: usize,
    cut: CancellationToken,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    let rx = run.subscribe();
    futures_util::stream::unfold((rx, from, false, cut), |(mut rx, sent, over, cut)| async move {
        if over {
            return None;
        }
        loop {
            let (chunk, end) = {
                let p = rx.borrow_and_update();
                let chunk = p.text.get(sent..).filter(|c| !c.is_empty()).map(str::to_owned);
                (chunk, p.end.clone())
            };
            if let Some(text) = chunk {
                let next = sent + text.len();
                let ev = SseEvent::default()
                    .event("delta")
                    .id(next.to_string())
                    .data(json!({ "text": text }).to_string());
                return Some((Ok(ev), (rx, next, false, cut)));
            }
            if let Some((end, answer_id)) = end {
                return Some((Ok(end_event(&end, answer_id)), (rx, sent, true, cut)));
            }
            let changed = tokio::select! {
                r = rx.changed() => Some(r.is_ok()),
                () = cut.cancelled() => None,
            };
            let Some(changed) = changed else {
                let data = json!({ "message": "the gateway is shutting down; attach again later", "status": 503, "message_id": null });
                return Some((
                    Ok(SseEvent::default().event("error").data(data.to_string())),
                    (rx, sent, true, cut),
                ));
            };
            if !changed {
                let data = json!({ "message": "the answer is gone", "status": 410, "message_id": null });
                return Some((
                    Ok(SseEvent::default().event("error").data(data.to_string())),
                    (rx, sent, true, cut),
                ));
            }
        }
    })
}

fn end_event(end: &End, answer_id: Option<String>) -> SseEvent {
    let (name, data) = match end {
        End::Done { finish_reason } => {
            ("done", json!({ "finish_reason": finish_reason, "message_id": answer_id }))
        }
        End::Stopped => ("done", json!({ "finish_reason": "stopped", "message_id": answer_id })),
        End::Failed { message, status } => {
            ("error", json!({ "message": message, "status": status, "message_id": answer_id }))
        }
    };
    SseEvent::default().event(name).data(data.to_string())
}

/// The caller's generation answering `message_id` in conversation `id` (by `model`,
/// or the last one started), or a 404.
fn find(state: &AppState, owner: &str, id: &str, message_id: &str, model: Option<&str>) -> Result<Arc<Run>> {
    state
        .runs
        .get(owner, message_id, model)
        .filter(|r| r.conversation_id == id)
        .ok_or_else(|| not_found("generation for this message"))
}

/// `POST /v1/conversations/{id}/generations/{message_id}/stop`.
pub async fn stop(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, message_id)): Path<(String, String)>,
    q: std::result::Result<Query<StopQuery>, QueryRejection>,
) -> Result<Response> {
    let owner = signed_in(&ctx)?;
    let q = super::conversations::query(q)?;
    let run = find(&state, &owner.id, &id, &message_id, q.model.as_deref())?;
    let was_running = run.running();
    run.stop();
    Ok(Json(json!({ "stopped": was_running })).into_response())
}
