//! Runs one pushed job on the agent's own backends and reports it through the outbox.
//!
//! A job is an ordinary generation on the agent's local gateway core (same routing,
//! deadlines and metrics as `sluice serve`), so any backend kind the agent is
//! configured with works here. Cancelling the job drops the generation, which stops
//! the upstream request at once.

use std::sync::Arc;

use futures_util::StreamExt;
use sluice_protocol::agent::{JobError, JobErrorKind, JobRequest, ToGateway};
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use crate::{agents::convert, chat::Event, error::GatewayError, generation, state::AppState};

/// Runs `job` until it ends or `cancel` fires; returns the job id.
pub async fn run(
    state: AppState,
    outbox: Arc<Outbox>,
    job: u64,
    request: JobRequest,
    cancel: CancellationToken,
) -> u64 {
    tokio::select! {
        () = generate(&state, &outbox, job, request) => {}
        () = cancel.cancelled() => tracing::debug!(job, "job cancelled by the gateway"),
    }
    job
}

fn error(job: u64, err: &GatewayError) -> ToGateway {
    ToGateway::Error { job, error: convert::error_frame(err) }
}

async fn generate(state: &AppState, outbox: &Outbox, job: u64, request: JobRequest) {
    let req = match convert::chat_request(request) {
        Ok(r) => r,
        Err(message) => {
            let error = JobError {
                kind: JobErrorKind::Unsupported,
                message,
                status: None,
                prompt_tokens: None,
                context: None,
            };
            return outbox.end(job, ToGateway::Error { job, error });
        }
    };
    let mut generation = match generation::start(state, req).await {
        Ok(g) => g,
        Err(e) => return outbox.end(job, error(job, &e)),
    };
    while let Some(ev) = generation.next().await {
        match ev {
            Ok(Event::Delta(text)) => outbox.delta(job, text),
            Ok(Event::Done { finish_reason, usage, .. }) => {
                return outbox.end(job, convert::done_frame(job, finish_reason, usage));
            }
            Err(e) => return outbox.end(job, error(job, &GatewayError::Backend(e))),
        }
    }
}
