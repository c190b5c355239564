//! Executes a [`Plan`] for either dialect: the token loop with its pacing and injected
//! faults, streamed (one `Bytes` per event, written as produced) or collected into one
//! JSON object. Dialects only supply an [`Encoder`] that pre-formats their events.

use std::convert::Infallible;
use std::io;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::Instant;

use crate::config::{Behavior, Pace};
use crate::error::{Dialect, MockError};
use crate::plan::{Finish, Interrupt, Plan};
use crate::stats::Tracker;

/// When the reply's milestones happened, for Ollama's duration fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// The request arrived.
    pub(crate) received: Instant,
    /// The first token was released (or the end, for an empty reply).
    pub(crate) first_token: Instant,
}

/// One dialect's wire format for a reply.
pub(crate) trait Encoder: Send + 'static {
    /// The dialect, for error bodies.
    const DIALECT: Dialect;
    /// `Content-Type` of a streamed reply.
    const STREAM_CONTENT_TYPE: &'static str;
    /// An event sent once, just before the first token (OpenAI's role chunk).
    fn preamble(&mut self) -> Option<Bytes> {
        None
    }
    /// The event carrying token `index`.
    fn token(&mut self, index: usize) -> Bytes;
    /// A line the client cannot parse.
    fn garbage(&self) -> Bytes;
    /// The closing events after `produced` tokens.
    fn end(&mut self, produced: usize, finish: Finish, timing: Timing) -> Vec<Bytes>;
    /// The non-streamed reply holding `produced` tokens.
    fn whole(&self, produced: usize, finish: Finish, timing: Timing) -> Bytes;
}

/// Answers a validated generation request according to `plan`.
pub(crate) async fn execute<E: Encoder>(
    plan: Plan,
    encoder: E,
    mut tracker: Tracker,
    received: Instant,
    stream: bool,
) -> Response {
    if let Behavior::Status(code) = plan.behavior {
        tracker.answered();
        return MockError::Injected(code).render(E::DIALECT);
    }
    tracker.start();
    if plan.behavior == Behavior::Hang {
        match hang(tracker).await {}
    }
    if stream {
        let body = streamed(plan, encoder, tracker, received);
        return ([(header::CONTENT_TYPE, E::STREAM_CONTENT_TYPE), (header::CACHE_CONTROL, "no-cache")], body)
            .into_response();
    }
    whole(plan, encoder, tracker, received).await
}

/// Holds the request open forever; the tracker notices when the client gives up.
async fn hang(_tracker: Tracker) -> Infallible {
    std::future::pending().await
}

fn streamed<E: Encoder>(plan: Plan, mut encoder: E, mut tracker: Tracker, received: Instant) -> Body {
    let events = async_stream::stream! {
        let mut preamble = encoder.preamble();
        let mut first_token = None;
        for index in 0..=plan.tokens {
            match plan.interrupt_at(index) {
                Some(Interrupt::Hang) => std::future::pending::<()>().await,
                Some(Interrupt::Drop) => {
                    tracker.abort();
                    // Pending once so hyper flushes the tokens already written; a body
                    // error discards its write buffer.
                    tokio::task::yield_now().await;
                    // The error makes hyper close the connection without the
                    // terminating chunk: the client sees a truncated stream.
                    yield Err(io::Error::other("mock drop_after"));
                    return;
                }
                Some(Interrupt::Malformed) => yield Ok(encoder.garbage()),
                None => {}
            }
            if index == plan.tokens {
                break;
            }
            plan.gate(index, received).await;
            first_token.get_or_insert_with(Instant::now);
            if let Some(event) = preamble.take() {
                yield Ok(event);
            }
            yield Ok(encoder.token(index));
        }
        if let Some(event) = preamble.take() {
            yield Ok(event);
        }
        let timing = Timing { received, first_token: first_token.unwrap_or_else(Instant::now) };
        let mut closing = encoder.end(plan.tokens, plan.finish, timing);
        let last = closing.pop();
        for event in closing {
            yield Ok(event);
        }
        // Count completion before the last event leaves, so a client that has read the
        // end of the stream always sees it counted.
        tracker.complete();
        if let Some(event) = last {
            yield Ok(event);
        }
    };
    Body::from_stream(events)
}

async fn whole<E: Encoder>(plan: Plan, encoder: E, mut tracker: Tracker, received: Instant) -> Response {
    let interrupt = (0..=plan.tokens).find_map(|i| plan.interrupt_at(i).map(|what| (i, what)));
    let stop = interrupt.map_or(plan.tokens, |(at, _)| at);
    let first_token = wait_for_tokens(&plan, stop, received).await;
    match interrupt.map(|(_, what)| what) {
        Some(Interrupt::Hang) => match hang(tracker).await {},
        Some(Interrupt::Drop) => {
            tracker.abort();
            let broken =
                futures_util::stream::once(async { Err::<Bytes, _>(io::Error::other("mock drop_after")) });
            json_response(Body::from_stream(broken))
        }
        Some(Interrupt::Malformed) => {
            tracker.complete();
            json_response(Body::from(&b"{not json"[..]))
        }
        None => {
            let timing = Timing { received, first_token };
            let body = encoder.whole(plan.tokens, plan.finish, timing);
            tracker.complete();
            json_response(Body::from(body))
        }
    }
}

/// Waits out the pacing of the first `count` tokens; returns when the first was released.
async fn wait_for_tokens(plan: &Plan, count: usize, received: Instant) -> Instant {
    let mut first_token = None;
    match plan.pace {
        // Delays are deadlines from `received`, so waiting for the first and the last
        // token is the same as waiting for each.
        Pace::Auto => {
            if count > 0 {
                plan.gate(0, received).await;
                first_token = Some(Instant::now());
                plan.gate(count - 1, received).await;
            }
        }
        Pace::Manual(_) => {
            for index in 0..count {
                plan.gate(index, received).await;
                first_token.get_or_insert_with(Instant::now);
            }
        }
    }
    first_token.unwrap_or_else(Instant::now)
}

fn json_response(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
