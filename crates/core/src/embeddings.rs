//! Routing an embeddings request to a backend, under the backend's total deadline.

use crate::{
    backend::{BackendError, Stage},
    chat::{EmbedRequest, Embeddings},
    dispatch::Outstanding,
    error::GatewayError,
    gateway::Gateway,
    registry::Served,
};

/// Embeds `req.input` with a backend serving `req.model`.
pub async fn embed(state: &Gateway, mut req: EmbedRequest) -> Result<(Embeddings, Served), GatewayError> {
    let route = state.registry.resolve(&req.model).await?;
    let served = Served { model: std::mem::take(&mut req.model), backend: route.slot.name().to_owned() };
    req.model = route.upstream_model.clone();
    let slot = &route.slot;
    let _outstanding = Outstanding::new(state, slot);
    let deadline = slot.timeouts.first_token.min(slot.timeouts.total);
    let res = tokio::time::timeout(deadline, slot.backend.embed(req)).await;
    match res {
        Ok(Ok(e)) => Ok((e, served)),
        Ok(Err(e)) => {
            state.metrics.upstream_error(&served.backend, e.metric_kind());
            Err(e.into())
        }
        Err(_) => {
            let e = BackendError::Timeout(Stage::FirstToken);
            state.metrics.upstream_error(&served.backend, e.metric_kind());
            Err(e.into())
        }
    }
}
