//! `GET /agent/v1/connect`: where agents dial in. The handler only checks that agents
//! are enabled and that this is a WebSocket upgrade; the session itself (handshake,
//! frames, heartbeats) is the hub's ([`crate::hub::session`]).

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    response::Response,
};
use http::Extensions;
use sluice_core::error::GatewayError;

use crate::{api::openai::encode::error_response, hub, state::AppState};

/// `GET /agent/v1/connect`: upgrades to the agent protocol.
pub async fn connect(
    State(state): State<AppState>,
    ext: Extensions,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !state.config.agents.enabled {
        return error_response(&GatewayError::NotFound("agents are disabled on this gateway".into()));
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(why) => {
            let msg =
                format!("this is the agent endpoint: connect with `sluice agent` ({})", why.body_text());
            return error_response(&GatewayError::bad_request(msg, None));
        }
    };
    let addr = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let max = state.config.agents.max_frame_bytes;
    let link = state.link();
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| hub::session::serve(link, socket, addr))
}
