//! tungstenite's WebSocket as the agent link sees it: a sink and a stream of
//! [`LinkMessage`]s, so the session is written against the link's types.

use futures_util::{Sink, SinkExt, Stream, StreamExt, future};
use sluice_link::frame::{Close, LinkMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Error, Message, protocol::CloseFrame},
};

/// The agent's connection to the gateway.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Splits a connected socket into a sink and a stream of link messages.
pub fn split(
    socket: Socket,
) -> (
    impl Sink<LinkMessage, Error = Error> + Send + Unpin,
    impl Stream<Item = Result<LinkMessage, Error>> + Send + Unpin,
) {
    let (sink, source) = socket.split();
    let sink = sink.with(|m| future::ready(Ok::<_, Error>(to_tungstenite(m))));
    (sink, source.map(|m| m.map(from_tungstenite)))
}

fn to_tungstenite(m: LinkMessage) -> Message {
    match m {
        LinkMessage::Text(t) => Message::Text(t.into()),
        LinkMessage::Binary => Message::Binary(Default::default()),
        LinkMessage::Ping => Message::Ping(Default::default()),
        LinkMessage::Pong => Message::Pong(Default::default()),
        LinkMessage::Close(c) => {
            Message::Close(c.map(|c| CloseFrame { code: c.code.into(), reason: c.reason.into() }))
        }
    }
}

fn from_tungstenite(m: Message) -> LinkMessage {
    match m {
        Message::Text(t) => LinkMessage::Text(t.as_str().to_owned()),
        // A raw frame only appears when writing; the link has no use for either.
        Message::Binary(_) | Message::Frame(_) => LinkMessage::Binary,
        Message::Ping(_) => LinkMessage::Ping,
        Message::Pong(_) => LinkMessage::Pong,
        Message::Close(c) => {
            LinkMessage::Close(c.map(|c| Close { code: c.code.into(), reason: c.reason.as_str().to_owned() }))
        }
    }
}
