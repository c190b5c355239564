//! The agent link's frames on a WebSocket: the link-level messages both ends exchange
//! ([`LinkMessage`]), and the typed codec between a protocol frame and a text message
//! ([`FrameCodec`]).
//!
//! Every protocol frame is one JSON object in one text message. Each end adapts its own
//! socket's message type (axum's on the gateway, tungstenite's in the agent) to
//! [`LinkMessage`], so the rest of the session can be tested with channels.

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};
use sluice_protocol::agent::{ToAgent, ToGateway};

/// The largest frame either end accepts by default (`agents.max_frame_bytes`).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// Close reasons are limited to 123 bytes by the WebSocket spec.
const MAX_CLOSE_REASON: usize = 123;

/// One WebSocket message, as far as the agent link cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMessage {
    /// A text message: one protocol frame.
    Text(String),
    /// A binary message (not part of the protocol; each end decides what it means).
    Binary,
    /// A WebSocket ping (the socket answers it by itself).
    Ping,
    /// A WebSocket pong.
    Pong,
    /// A close message, with its code and reason when the peer gave one.
    Close(Option<Close>),
}

/// The code and reason of a close message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code (1000 normal, 1001 going away, ...).
    pub code: u16,
    /// Why, for the peer's log.
    pub reason: String,
}

impl Close {
    /// A close message; `reason` is cut to the 123 bytes a close frame can carry (on a
    /// character boundary).
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        while reason.len() > MAX_CLOSE_REASON {
            reason.pop();
        }
        Close { code, reason }
    }
}

/// Why a text message is not a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The message is larger than the configured limit.
    #[error("frame of {size} bytes is larger than the {max}-byte limit")]
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The message is not valid JSON for a frame of this direction.
    #[error("{0}")]
    Malformed(#[from] serde_json::Error),
}

/// Encodes the frames one end sends (`Out`) and decodes those it receives (`In`).
pub struct FrameCodec<Out, In> {
    max_bytes: usize,
    _frames: PhantomData<fn(Out) -> In>,
}

// By hand: derives would require the frame types to be `Copy` and `Debug` too.
impl<Out, In> Clone for FrameCodec<Out, In> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Out, In> Copy for FrameCodec<Out, In> {}

impl<Out, In> std::fmt::Debug for FrameCodec<Out, In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCodec").field("max_bytes", &self.max_bytes).finish()
    }
}

/// The agent's codec: sends [`ToGateway`], receives [`ToAgent`].
pub type AgentCodec = FrameCodec<ToGateway, ToAgent>;

/// The gateway's codec: sends [`ToAgent`], receives [`ToGateway`].
pub type GatewayCodec = FrameCodec<ToAgent, ToGateway>;

impl<Out: Serialize, In: DeserializeOwned> FrameCodec<Out, In> {
    /// A codec that refuses received frames over `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        FrameCodec { max_bytes, _frames: PhantomData }
    }

    /// The largest frame this codec decodes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// `frame` as a text message.
    pub fn encode(&self, frame: &Out) -> LinkMessage {
        // Serializing the protocol's plain structs cannot fail.
        LinkMessage::Text(serde_json::to_string(frame).unwrap_or_default())
    }

    /// The frame in `text`, checked against the size limit first.
    pub fn decode(&self, text: &str) -> Result<In, FrameError> {
        if text.len() > self.max_bytes {
            return Err(FrameError::TooLarge { size: text.len(), max: self.max_bytes });
        }
        Ok(serde_json::from_str(text)?)
    }
}

impl<Out: Serialize, In: DeserializeOwned> Default for FrameCodec<Out, In> {
    /// A codec with the default limit, [`MAX_FRAME_BYTES`].
    fn default() -> Self {
        FrameCodec::new(MAX_FRAME_BYTES)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_round_trip_as_json_text() {
        let codec = GatewayCodec::default();
        let LinkMessage::Text(text) = codec.encode(&ToAgent::Ping { nonce: 7 }) else { panic!("not text") };
        assert_eq!(text, r#"{"type":"ping","nonce":7}"#);
        let back = AgentCodec::default().decode(&text).unwrap();
        assert!(matches!(back, ToAgent::Ping { nonce: 7 }));
    }

    #[test]
    fn an_oversized_frame_is_refused_before_parsing() {
        let codec = GatewayCodec::new(32);
        let pong = serde_json::to_string(&ToGateway::Pong { nonce: 1 }).unwrap();
        assert!(codec.decode(&pong).is_ok(), "{} bytes fit", pong.len());
        // Too long, and not even JSON: the size is what is reported.
        let big = "x".repeat(33);
        let err = codec.decode(&big).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { size: 33, max: 32 }), "{err:?}");
        assert_eq!(err.to_string(), "frame of 33 bytes is larger than the 32-byte limit");
    }

    #[test]
    fn a_malformed_frame_says_what_is_wrong() {
        let codec = GatewayCodec::default();
        let err = codec.decode(r#"{"type":"chunk"}"#).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err:?}");
        assert!(err.to_string().starts_with("missing field"), "{err}");
        let err = codec.decode("not json").unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err:?}");
        // A frame of the other direction is malformed too.
        let err = codec.decode(r#"{"type":"cancel","job":1}"#).unwrap_err();
        assert!(err.to_string().starts_with("unknown variant `cancel`"), "{err}");
    }

    #[test]
    fn close_reasons_are_cut_to_what_a_close_frame_holds() {
        let close = Close::new(1001, "é".repeat(100));
        assert_eq!(close.reason.len(), 122, "cut on a character boundary");
        assert_eq!(Close::new(1000, "bye").reason, "bye");
    }
}
