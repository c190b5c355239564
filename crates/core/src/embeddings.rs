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

/// Embeds `req.input` with a backend serving `req.model`.
pub async fn embed(
    state: &Gateway,
    ctx: &RequestContext,
    req: EmbedRequest,
) -> Result<(Embeddings, Served), GatewayError> {
    let _admission = dispatch::admit(state, ctx, &req.model).await?;
    let Landed { out, served, outstanding, metrics } = dispatch::embed(state, ctx, &req).await?;
    drop(outstanding);
    metrics.duration.observe(ctx.received.elapsed().as_secs_f64());
    metrics.prompt_tokens.inc_by(u64::from(out.prompt_tokens));
    Ok((out, served))
}
