//! axum's WebSocket as the agent link sees it: a sink and a stream of
//! [`LinkMessage`]s, so the session is written (and tested) against the link's types.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt, future};
use sluice_link::frame::{Close, LinkMessage};

/// Splits an upgraded socket into a sink and a stream of link messages.
pub fn split(
    socket: WebSocket,
) -> (
    impl Sink<LinkMessage, Error = axum::Error> + Send + Unpin + 'static,
    impl Stream<Item = Result<LinkMessage, axum::Error>> + Send + Unpin + 'static,
) {
    let (sink, source) = socket.split();
    let sink = sink.with(|m| future::ready(Ok::<_, axum::Error>(to_axum(m))));
    (sink, source.map(|m| m.map(from_axum)))
}

fn to_axum(m: LinkMessage) -> Message {
    match m {
        LinkMessage::Text(t) => Message::Text(t.into()),
        LinkMessage::Binary => Message::Binary(Bytes::new()),
        LinkMessage::Ping => Message::Ping(Bytes::new()),
        LinkMessage::Pong => Message::Pong(Bytes::new()),
        LinkMessage::Close(c) => {
            Message::Close(c.map(|c| CloseFrame { code: c.code, reason: c.reason.into() }))
        }
    }
}

fn from_axum(m: Message) -> LinkMessage {
    match m {
        Message::Text(t) => LinkMessage::Text(t.as_str().to_owned()),
        Message::Binary(_) => LinkMessage::Binary,
        Message::Ping(_) => LinkMessage::Ping,
        Message::Pong(_) => LinkMessage::Pong,
        Message::Close(c) => {
            LinkMessage::Close(c.map(|c| Close { code: c.code, reason: c.reason.as_str().to_owned() }))
        }
    }
}
