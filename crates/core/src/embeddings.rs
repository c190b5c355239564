//! Embeddings, through the same admission and attempts as a chat: per-model caps,
//! breakers, retries within the budget, deadlines and metrics (see
//! [`dispatch::embed`]).

use crate::{
    chat::{EmbedRequest, Embeddings},
    context::RequestContext,
    dispatch::{self, Landed},
    error::GatewayError,
    gateway::Gateway,
    registry::Served,
};

/// Most inputs in one embedding request (OpenAI's limit too); backends bound the
/// tokens (the embedded engine: 300,000 in all).
pub const MAX_INPUTS: usize = 2048;

/// Embeds `req.input` with a backend serving `req.model`.
pub async fn embed(
    state: &Gateway,
    ctx: &RequestContext,
    req: EmbedRequest,
) -> Result<(Embeddings, Served), GatewayError> {
    if req.input.len() > MAX_INPUTS {
        return Err(GatewayError::bad_request(
            format!("input: at most {MAX_INPUTS} inputs per request, got {}", req.input.len()),
            Some("input"),
        ));
    }
    let _admission = dispatch::admit(state, ctx, &req.model).await?;
    let Landed { out, served, outstanding, metrics, .. } = dispatch::embed(state, ctx, &req).await?;
    drop(outstanding);
    metrics.duration.observe(ctx.received.elapsed().as_secs_f64());
    metrics.prompt_tokens.inc_by(u64::from(out.prompt_tokens));
    Ok((out, served))
}
