//! Runs one pushed job on the agent's own backends and reports it through the outbox.
//!
//! The gateway owns the attempt policy: it picks the agent, retries elsewhere, and
//! enforces the deadlines. The agent runs each job exactly once on the backend its
//! registry picks for the model and reports a typed failure, so attempts never
//! multiply across the link. Cancelling the job drops the stream, which stops the
//! upstream request at once.

use std::sync::Arc;

use futures_util::StreamExt;
use sluice_core::{
    backend::BackendError,
    capabilities,
    chat::{ChatRequest, Event},
    context::{Principal, RequestContext},
    error::GatewayError,
    registry::{Registry, Route},
};
use sluice_link::convert;
use sluice_protocol::agent::{JobError, JobErrorKind, JobRequest, ToGateway};
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;

/// Runs `job` until it ends or `cancel` fires; returns the job id.
pub async fn run(
    registry: Arc<Registry>,
    outbox: Arc<Outbox>,
    job: u64,
    request: JobRequest,
    cancel: CancellationToken,
) -> u64 {
    tokio::select! {
        () = generate(&registry, &outbox, job, request) => {}
        () = cancel.cancelled() => tracing::debug!(job, "job cancelled by the gateway"),
    }
    job
}

fn error(job: u64, err: &GatewayError) -> ToGateway {
    ToGateway::Error { job, error: convert::error_frame(err) }
}

async fn generate(registry: &Registry, outbox: &Outbox, job: u64, request: JobRequest) {
    // The gateway already authenticated and admitted the request: here it only names it.
    let ctx = RequestContext::new(request.request_id.clone().unwrap_or_default(), Principal::Local, 0);
    tracing::debug!(job, request_id = %ctx.request_id, model = %request.model, "job started");
    let mut req = match convert::chat_request(request) {
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
    let route = match capable_route(registry, &req).await {
        Ok(r) => r,
        Err(e) => return outbox.end(job, error(job, &e)),
    };
    req.model.clone_from(&route.upstream_model);
    let mut stream = match route.slot.backend.chat(&ctx, req).await {
        Ok(s) => s,
        Err(e) => return outbox.end(job, error(job, &GatewayError::Backend(e))),
    };
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Delta(text)) => outbox.delta(job, text),
            Ok(ev @ (Event::Reasoning(_) | Event::ToolCall(_) | Event::Logprobs(_))) => {
                if let Some(frame) = convert::event_frame(job, ev) {
                    outbox.event(job, frame);
                }
            }
            Ok(Event::Done { finish_reason, usage, details, .. }) => {
                return outbox.end(job, convert::done_frame(job, finish_reason, usage, details.as_deref()));
            }
            Err(e) => return outbox.end(job, error(job, &GatewayError::Backend(e))),
        }
    }
    let lost = BackendError::Interrupted("stream ended before the answer finished".into());
    outbox.end(job, error(job, &GatewayError::Backend(lost)));
}

/// The route for `req`: among its model's routes, the first that can take everything
/// the request asks for (tools, images, formats, ...), else the registry's usual pick
/// (whose upstream then decides, as the gateway would).
async fn capable_route(registry: &Registry, req: &ChatRequest) -> Result<Route, GatewayError> {
    let needs = capabilities::needs(req);
    if !needs.is_empty() {
        let routes = registry.routes(&req.model).await?;
        let capable = routes
            .iter()
            .find(|r| capabilities::satisfies(r.slot.capabilities(&r.upstream_model).as_deref(), &needs));
        if let Some(r) = capable {
            return Ok(r.clone());
        }
    }
    registry.resolve(&req.model).await
}
