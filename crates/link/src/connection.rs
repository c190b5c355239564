//! The session skeleton both ends of the agent link share: a [`FrameReader`] that turns
//! incoming messages into frames and watches the peer's liveness, and a
//! [`FrameWriter`] that encodes frames and closes with a reason.
//!
//! Both are generic over a `Stream`/`Sink` of [`LinkMessage`]: each end adapts its own
//! socket type, and tests use channels or plain streams.

use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    frame::{Close, FrameCodec, FrameError, LinkMessage},
    heartbeat::{PeerTimer, Tick},
};

/// What the reader has for its end, besides the end of the connection.
#[derive(Debug)]
pub enum Incoming<F> {
    /// A frame from the peer.
    Frame(F),
    /// A binary message (the gateway treats it as a protocol error; the agent ignores it).
    Binary,
    /// Time to send a heartbeat ping.
    Ping,
}

/// Why the reader stopped: the connection is over.
#[derive(Debug)]
pub enum ReadEnd<E> {
    /// The peer sent a close message (with its code and reason, if any).
    Closed(Option<Close>),
    /// The socket failed.
    Failed(E),
    /// The socket ended without a close message.
    Ended,
    /// A text message was not a frame.
    BadFrame(FrameError),
    /// Nothing arrived for this long.
    Silent(Duration),
}

/// Reads frames of type `In` from a stream of link messages, and keeps the heartbeat.
#[derive(Debug)]
pub struct FrameReader<S, Out, In> {
    source: S,
    codec: FrameCodec<Out, In>,
    timer: PeerTimer,
}

impl<S, Out, In, E> FrameReader<S, Out, In>
where
    S: Stream<Item = Result<LinkMessage, E>> + Unpin,
    Out: Serialize,
    In: DeserializeOwned,
{
    /// A reader of `source` whose heartbeat starts now.
    pub fn new(source: S, codec: FrameCodec<Out, In>, timer: PeerTimer) -> Self {
        FrameReader { source, codec, timer }
    }

    /// The next frame, binary message or ping due; an error once the connection is
    /// over. Any message counts as a sign of life; socket pings and pongs are answered
    /// by the socket and skipped here. Cancel-safe: use it in `select!`.
    pub async fn next(&mut self) -> Result<Incoming<In>, ReadEnd<E>> {
        loop {
            let msg = tokio::select! {
                msg = self.source.next() => msg,
                tick = self.timer.tick() => match tick {
                    Tick::Ping => return Ok(Incoming::Ping),
                    Tick::Dead => return Err(ReadEnd::Silent(self.timer.dead_after())),
                },
            };
            self.timer.saw_message();
            return match msg {
                Some(Ok(LinkMessage::Text(text))) => {
                    self.codec.decode(&text).map(Incoming::Frame).map_err(ReadEnd::BadFrame)
                }
                Some(Ok(LinkMessage::Binary)) => Ok(Incoming::Binary),
                Some(Ok(LinkMessage::Ping | LinkMessage::Pong)) => continue,
                Some(Ok(LinkMessage::Close(close))) => Err(ReadEnd::Closed(close)),
                Some(Err(e)) => Err(ReadEnd::Failed(e)),
                None => Err(ReadEnd::Ended),
            };
        }
    }
}

/// Writes frames of type `Out` to a sink of link messages.
#[derive(Debug)]
pub struct FrameWriter<S, Out, In> {
    sink: S,
    codec: FrameCodec<Out, In>,
}

impl<S, Out, In> FrameWriter<S, Out, In>
where
    S: Sink<LinkMessage> + Unpin,
    Out: Serialize,
    In: DeserializeOwned,
{
    /// A writer to `sink`.
    pub fn new(sink: S, codec: FrameCodec<Out, In>) -> Self {
        FrameWriter { sink, codec }
    }

    /// Queues `frame` without flushing (several frames, then one [`FrameWriter::flush`]).
    pub async fn feed(&mut self, frame: &Out) -> Result<(), S::Error> {
        self.sink.feed(self.codec.encode(frame)).await
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> Result<(), S::Error> {
        self.sink.flush().await
    }

    /// Writes `frame` now.
    pub async fn send(&mut self, frame: &Out) -> Result<(), S::Error> {
        self.sink.send(self.codec.encode(frame)).await
    }

    /// Sends a close message with `code` and `reason` (cut to fit a close frame).
    pub async fn close(&mut self, code: u16, reason: impl Into<String>) -> Result<(), S::Error> {
        self.sink.send(LinkMessage::Close(Some(Close::new(code, reason)))).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures_util::stream;
    use sluice_protocol::agent::{ToAgent, ToGateway};

    use super::*;
    use crate::frame::{AgentCodec, GatewayCodec};

    const SEC: Duration = Duration::from_secs(1);

    type Msg = Result<LinkMessage, &'static str>;

    fn text(frame: &ToGateway) -> Msg {
        Ok(LinkMessage::Text(serde_json::to_string(frame).unwrap()))
    }

    #[tokio::test(start_paused = true)]
    async fn frames_then_the_peer_closes() {
        let close = Close::new(1001, "bye");
        let msgs: Vec<Msg> = vec![
            Ok(LinkMessage::Ping),
            text(&ToGateway::Pong { nonce: 1 }),
            Ok(LinkMessage::Binary),
            Ok(LinkMessage::Close(Some(close.clone()))),
        ];
        let timer = PeerTimer::new(Some(3 * SEC), 9 * SEC);
        let mut reader = FrameReader::new(stream::iter(msgs), GatewayCodec::default(), timer);
        assert!(matches!(reader.next().await, Ok(Incoming::Frame(ToGateway::Pong { nonce: 1 }))));
        assert!(matches!(reader.next().await, Ok(Incoming::Binary)));
        assert!(matches!(reader.next().await, Err(ReadEnd::Closed(Some(c))) if c == close));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_frame_or_a_socket_error_ends_reading() {
        let msgs: Vec<Msg> = vec![Ok(LinkMessage::Text("{".into()))];
        let mut reader =
            FrameReader::new(stream::iter(msgs), GatewayCodec::new(8), PeerTimer::new(None, SEC));
        assert!(matches!(reader.next().await, Err(ReadEnd::BadFrame(FrameError::Malformed(_)))));
        let msgs: Vec<Msg> = vec![Ok(LinkMessage::Text("{}".repeat(5)))];
        let mut reader =
            FrameReader::new(stream::iter(msgs), GatewayCodec::new(8), PeerTimer::new(None, SEC));
        assert!(matches!(
            reader.next().await,
            Err(ReadEnd::BadFrame(FrameError::TooLarge { size: 10, max: 8 }))
        ));
        let msgs: Vec<Msg> = vec![Err("reset")];
        let mut reader =
            FrameReader::new(stream::iter(msgs), GatewayCodec::new(8), PeerTimer::new(None, SEC));
        assert!(matches!(reader.next().await, Err(ReadEnd::Failed("reset"))));
        assert!(matches!(reader.next().await, Err(ReadEnd::Ended)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_pinged_then_given_up() {
        let start = tokio::time::Instant::now();
        let source = stream::pending::<Msg>();
        let mut reader =
            FrameReader::new(source, GatewayCodec::default(), PeerTimer::new(Some(3 * SEC), 9 * SEC));
        assert!(matches!(reader.next().await, Ok(Incoming::Ping)));
        assert!(matches!(reader.next().await, Ok(Incoming::Ping)));
        assert!(matches!(reader.next().await, Err(ReadEnd::Silent(d)) if d == 9 * SEC));
        assert_eq!(start.elapsed(), 9 * SEC);
    }

    #[tokio::test]
    async fn the_writer_sends_frames_then_a_close_over_a_channel() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<LinkMessage>();
        let mut writer = FrameWriter::new(tx, AgentCodec::default());
        writer.feed(&ToGateway::Pong { nonce: 1 }).await.unwrap();
        writer.feed(&ToGateway::Pong { nonce: 2 }).await.unwrap();
        writer.flush().await.unwrap();
        writer.close(1001, "x".repeat(200)).await.unwrap();
        drop(writer);
        let sent: Vec<LinkMessage> = rx.collect().await;
        let codec = GatewayCodec::default();
        let LinkMessage::Text(first) = &sent[0] else { panic!("{sent:?}") };
        assert!(matches!(codec.decode(first).unwrap(), ToGateway::Pong { nonce: 1 }));
        assert_eq!(sent.len(), 3);
        assert!(matches!(&sent[2], LinkMessage::Close(Some(c)) if c.code == 1001 && c.reason.len() == 123));
        // The agent's codec decodes what the gateway sends.
        let ping = GatewayCodec::default().encode(&ToAgent::Ping { nonce: 3 });
        let LinkMessage::Text(ping) = ping else { panic!() };
        assert!(matches!(AgentCodec::default().decode(&ping).unwrap(), ToAgent::Ping { nonce: 3 }));
    }
}
