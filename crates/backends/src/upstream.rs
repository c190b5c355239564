//! Turns an upstream HTTP body into a stream of [`Event`]s with a dialect-specific
//! [`StreamFormat`]. Bytes are decoded one event at a time, when the next event is
//! asked for: the first token of a read that holds the whole answer leaves before the
//! other 63 are parsed, and the encoder downstream still sees every event that is
//! already there (decoding the next one never waits) and can write them together.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::{Stream, StreamExt};

use super::{BackendError, EventStream, http_client::BodyStream};
use sluice_core::chat::Event;

/// Decoded events waiting to be taken.
pub type EventQueue = VecDeque<Result<Event, BackendError>>;

/// A dialect's stream decoding: bytes in, events out.
pub trait StreamFormat: Send + Unpin + 'static {
    /// Buffers one body frame.
    fn push(&mut self, chunk: &[u8]);
    /// Decodes the next complete unit of the buffered input (an SSE event, an NDJSON
    /// line), pushing the events it holds (possibly none); false when no complete unit
    /// is buffered or the terminal event was already pushed.
    fn decode_one(&mut self, out: &mut EventQueue) -> bool;
    /// Buffers `chunk` and decodes everything complete in it (for whole answers and tests).
    fn feed(&mut self, chunk: &[u8], out: &mut EventQueue) {
        self.push(chunk);
        while self.decode_one(out) {}
    }
    /// The body ended: push a final `Done` or an error if the answer was cut short.
    fn end(&mut self, out: &mut EventQueue);
    /// True once the terminal event (done or error) has been pushed.
    fn finished(&self) -> bool;
}

/// The event stream over one upstream response.
pub struct UpstreamEvents<F> {
    body: BodyStream,
    format: F,
    queue: EventQueue,
    ended: bool,
}

impl<F: StreamFormat> UpstreamEvents<F> {
    /// Wraps the body of a response whose status was already checked.
    pub fn boxed(body: BodyStream, format: F) -> EventStream {
        Box::pin(UpstreamEvents { body, format, queue: VecDeque::new(), ended: false })
    }
}

impl<F: StreamFormat> UpstreamEvents<F> {
    /// After the terminal event: read the body's end if it is already here (it usually
    /// arrived in the same read), so the connection goes back to the pool instead of
    /// being closed. Never waits for it.
    fn drain(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(Ok(_))) = self.body.poll_next_unpin(cx) {}
        self.ended = true;
    }
}

impl<F: StreamFormat> Stream for UpstreamEvents<F> {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.format.decode_one(&mut this.queue) {
                if this.format.finished() {
                    this.drain(cx);
                }
                continue;
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.format.push(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, cause = ?e, "upstream body failed");
                    this.queue.push_back(Err(e));
                    this.ended = true;
                }
                Poll::Ready(None) => {
                    this.format.end(&mut this.queue);
                    this.ended = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `Delta` per `\n`-terminated line; counts the lines it decoded.
    #[derive(Default)]
    struct Lines {
        buf: Vec<u8>,
        decoded: usize,
        done: bool,
    }

    impl StreamFormat for Lines {
        fn push(&mut self, chunk: &[u8]) {
            self.buf.extend_from_slice(chunk);
        }
        fn decode_one(&mut self, out: &mut EventQueue) -> bool {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else { return false };
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            self.decoded += 1;
            out.push_back(Ok(Event::Delta(String::from_utf8_lossy(&line[..nl]).into_owned())));
            true
        }
        fn end(&mut self, _: &mut EventQueue) {
            self.done = true;
        }
        fn finished(&self) -> bool {
            self.done
        }
    }

    #[tokio::test]
    async fn events_are_decoded_when_asked_for_not_a_whole_read_at_once() {
        let body: BodyStream =
            Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"a\nb\nc\n"))]));
        let mut events =
            UpstreamEvents { body, format: Lines::default(), queue: VecDeque::new(), ended: false };
        assert!(matches!(events.next().await, Some(Ok(Event::Delta(t))) if t == "a"));
        // The first event is out before the rest of the read is parsed.
        assert_eq!(events.format.decoded, 1);
        assert!(matches!(events.next().await, Some(Ok(Event::Delta(t))) if t == "b"));
        assert!(matches!(events.next().await, Some(Ok(Event::Delta(t))) if t == "c"));
        assert_eq!(events.format.decoded, 3);
        assert!(events.next().await.is_none());
    }
}
