//! `GET /agent/v1/connect`: where agents dial in. The handler checks that agents are
//! enabled, that this is a WebSocket upgrade, and that the handshake gate has room
//! ([`crate::hub::handshakes`]); the session itself (handshake, frames, heartbeats) is
//! the hub's ([`crate::hub::session`]).
//!
//! Until its Hello is verified, a connection may send only a Hello's worth of bytes
//! ([`PRE_HELLO_BYTES`], enforced on the socket by [`ReadCap`]); then frames up to
//! `agents.max_frame_bytes`.
//!
//! An idle agent socket keeps small buffers ([`SOCKET_BUFFER_BYTES`] each way instead
//! of tungstenite's 128 KiB): thousands of connected agents cost little memory.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    response::Response,
};
use http::Extensions;
use sluice_core::error::GatewayError;

use crate::{
    api::openai::encode::error_response, connections::ReadCap, hub, hub::handshakes::Busy, state::AppState,
};

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
    let handshake = match state.agents.handshakes.begin(addr.map(|a| a.ip())) {
        Ok(permit) => permit,
        Err(busy) => {
            state.core.metrics.agents.refused(sluice_protocol::agent::RefuseCode::Unavailable);
            return error_response(&match busy {
                Busy::Handshakes => {
                    GatewayError::Unavailable("too many agents are connecting at once; retry shortly".into())
                }
                Busy::Attempts => GatewayError::RateLimited {
                    message: "too many agent connection attempts from your address; retry in a minute".into(),
                    retry_after: Some(std::time::Duration::from_secs(60)),
                },
            });
        }
    };
    let cap = ext.get::<ReadCap>().cloned();
    if let Some(cap) = &cap {
        cap.limit(PRE_HELLO_BYTES);
    }
    let max = state.config.agents.max_frame_bytes;
    let link = state.link();
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| hub::session::serve(link, socket, addr, handshake, cap))
}

/// What a connection may send before its Hello is verified: the longest Hello, its
/// frame header and a few control frames.
pub const PRE_HELLO_BYTES: u64 = hub::session::MAX_HELLO_BYTES as u64 + 1024;

/// Read and write buffer of an agent socket; larger messages still pass (up to
/// `agents.max_frame_bytes`), in more reads.
pub const SOCKET_BUFFER_BYTES: usize = 4096;
