//! The HTTP body of a streamed answer.
//!
//! Each poll takes every event the generation already has, encodes them all into one
//! buffer and hands hyper one frame: a token is written the moment it exists, and tokens
//! that arrived together are written together (one syscall, not one per token). The
//! first token is the exception: it leaves alone, at once, because it is what the user
//! is waiting for. hyper asks for the next frame before it flushes, so after the first
//! frame the body yields once (waking itself): hyper writes the first token, then comes
//! back for the rest. No timers decide when to flush. Idle streams get keep-alive
//! comments when the encoder has them (SSE). A failure becomes the dialect's error event, then the end.
//! So does the end of the shutdown grace period ([`Cut`]): a stream still running then
//! ends with an error event saying so, never silently. An encoder may hold the last
//! frame until its own work is done ([`Encoder::before_end`]): a stored response is
//! stored before the client reads that it is complete.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, future::BoxFuture};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use sluice_core::{
    answer::{Answer, AnswerBuilder},
    backend::BackendError,
    chat::Event,
    error::GatewayError,
    generation::Generation,
};

/// Stop batching once a frame holds this much.
const MAX_FRAME: usize = 64 * 1024;

/// Turns events into a dialect's bytes.
pub trait Encoder: Send + Unpin + 'static {
    /// Appends the encoding of one event.
    fn event(&mut self, ev: &Event, buf: &mut BytesMut);
    /// Appends the dialect's in-stream error event.
    fn error(&mut self, err: &GatewayError, buf: &mut BytesMut);
    /// A keep-alive line, if the framing has one.
    fn keepalive(&self) -> Option<&'static [u8]> {
        None
    }
    /// Work the end of the stream waits for, asked once the last event is encoded: the
    /// frame holding that event leaves when it is done (a client may refer to what the
    /// stream stored as soon as it reads the end).
    fn before_end(&mut self) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// The error a request still running at the end of the shutdown grace period ends
/// with.
pub fn shutting_down() -> GatewayError {
    GatewayError::Unavailable("the gateway is shutting down; retry the request".into())
}

/// The end of the shutdown grace period as a stream body sees it: one atomic load per
/// poll, and the body's waker registered again only when it changes (registering
/// takes a lock every stream shares).
pub struct Cut {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: Option<Waker>,
}

impl Cut {
    /// Watches `token` (the gateway's [`sluice_core::gateway::Inner::cut`]).
    pub fn new(token: CancellationToken) -> Cut {
        let wait = Box::pin(token.clone().cancelled_owned());
        Cut { token, wait, registered: None }
    }

    /// Whether the grace period is over; if not, `cx` is woken when it is.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if self.token.is_cancelled() {
            return true;
        }
        if !self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if self.wait.as_mut().poll(cx).is_ready() {
                return true;
            }
            self.registered = Some(cx.waker().clone());
        }
        false
    }
}

/// A streamed response body over a generation (or a replay of one).
pub struct EventBody<E, S = Generation> {
    generation: S,
    encoder: E,
    cut: Cut,
    ended: bool,
    /// Whether the first frame was handed over (it carries the first token only).
    sent_first: bool,
    /// Whether the body yielded once after the first frame, so hyper flushed it.
    flushed_first: bool,
    keepalive: Option<(Duration, Pin<Box<Sleep>>)>,
    last_write: Instant,
    /// The last frame, held until the encoder's work before the end is done.
    holding: Option<(BoxFuture<'static, ()>, Bytes)>,
}

impl<E: Encoder, S: Stream<Item = Result<Event, BackendError>> + Unpin> EventBody<E, S> {
    /// A body streaming `generation` through `encoder`, with keep-alives every
    /// `keepalive` of silence (when the encoder has them), ended with an error event
    /// by `cut`.
    pub fn new(generation: S, encoder: E, keepalive: Duration, cut: Cut) -> Self {
        let now = Instant::now();
        let keepalive =
            encoder.keepalive().map(|_| (keepalive, Box::pin(tokio::time::sleep_until(now + keepalive))));
        EventBody {
            generation,
            encoder,
            cut,
            ended: false,
            sent_first: false,
            flushed_first: false,
            keepalive,
            last_write: now,
            holding: None,
        }
    }

    /// The held last frame once the work before the end is done (the end itself if
    /// that frame is empty).
    fn poll_holding(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some((wait, _)) = &mut self.holding else { return Poll::Ready(None) };
        if wait.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match self.holding.take() {
            Some((_, frame)) if !frame.is_empty() => Poll::Ready(Some(Ok(Frame::data(frame)))),
            _ => Poll::Ready(None),
        }
    }

    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let line = self.encoder.keepalive()?;
        let (every, timer) = self.keepalive.as_mut()?;
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            let due = self.last_write + *every;
            let now = Instant::now();
            if now >= due {
                self.last_write = now;
                timer.as_mut().reset(now + *every);
                return Some(Bytes::from_static(line));
            }
            timer.as_mut().reset(due);
        }
    }
}

impl<E: Encoder, S: Stream<Item = Result<Event, BackendError>> + Unpin> Body for EventBody<E, S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.holding.is_some() {
            // Bounded by the store's own timeouts; a cut does not interrupt it.
            return this.poll_holding(cx);
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if this.cut.poll(cx) {
            // Dropping the generation cancels its upstream work.
            tracing::info!("stream cut at the end of the shutdown grace period");
            let mut buf = BytesMut::new();
            this.encoder.error(&shutting_down(), &mut buf);
            this.ended = true;
            return Poll::Ready(Some(Ok(Frame::data(buf.freeze()))));
        }
        if this.sent_first && !this.flushed_first {
            // hyper flushes what it holds when the body is pending: the first token
            // leaves now, and this wake brings hyper back for the rest at once.
            this.flushed_first = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut buf = BytesMut::new();
        loop {
            match this.generation.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(ev))) => {
                    this.encoder.event(&ev, &mut buf);
                    if matches!(ev, Event::Done { .. }) {
                        this.ended = true;
                        break;
                    }
                    // The first token goes out alone: it is what the user waits for. An
                    // event that wrote nothing (a tool-call piece an encoder holds until
                    // the call is whole) is no first token: read on.
                    if !this.sent_first && !buf.is_empty() {
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.encoder.error(&GatewayError::Backend(e), &mut buf);
                    this.ended = true;
                    break;
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    break;
                }
                Poll::Pending => break,
            }
            if buf.len() >= MAX_FRAME {
                break;
            }
        }
        if this.ended
            && let Some(wait) = this.encoder.before_end()
        {
            this.holding = Some((wait, buf.freeze()));
            return this.poll_holding(cx);
        }
        if !buf.is_empty() {
            if this.keepalive.is_some() {
                this.last_write = Instant::now();
            }
            this.sent_first = true;
            return Poll::Ready(Some(Ok(Frame::data(buf.freeze()))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        match this.poll_keepalive(cx) {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.holding.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Drains a generation into a whole answer, for non-streamed responses.
pub async fn collect(
    mut generation: impl Stream<Item = Result<Event, BackendError>> + Unpin,
) -> Result<Answer, GatewayError> {
    let mut answer = AnswerBuilder::default();
    while let Some(ev) = generation.next().await {
        if answer.push(ev?) {
            return Ok(answer.finish());
        }
    }
    Err(GatewayError::Backend(sluice_core::backend::BackendError::Interrupted("no end event".into())))
}

/// Appends `s` as a JSON string literal (quotes included).
pub fn push_json_str(buf: &mut BytesMut, s: &str) {
    use bytes::BufMut;
    // Writing JSON into a BytesMut cannot fail.
    let _ = serde_json::to_writer((&mut *buf).writer(), s);
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::Wake,
    };

    use super::*;
    use sluice_core::chat::FinishReason;

    /// Writes `text|` per token and `.` at the end.
    struct Plain;

    impl Encoder for Plain {
        fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
            match ev {
                Event::Delta(t) => {
                    buf.extend_from_slice(t.as_bytes());
                    buf.extend_from_slice(b"|");
                }
                Event::Done { .. } => buf.extend_from_slice(b"."),
                _ => {}
            }
        }
        fn error(&mut self, _: &GatewayError, buf: &mut BytesMut) {
            buf.extend_from_slice(b"!");
        }
    }

    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn data(p: Poll<Option<Result<Frame<Bytes>, Infallible>>>) -> Option<Bytes> {
        match p {
            Poll::Ready(Some(Ok(f))) => f.into_data().ok(),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_leaves_alone_then_everything_ready_leaves_together() {
        let mut events: Vec<Result<Event, BackendError>> =
            (0..4).map(|i| Ok(Event::Delta(format!("t{i}")))).collect();
        events.push(Ok(Event::Done {
            finish_reason: FinishReason::Stop,
            usage: None,
            timings: None,
            details: None,
        }));
        let cut = Cut::new(CancellationToken::new());
        let mut body =
            EventBody::new(futures_util::stream::iter(events), Plain, Duration::from_secs(15), cut);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);

        let first = data(Pin::new(&mut body).poll_frame(&mut cx));
        assert_eq!(first.as_deref(), Some(&b"t0|"[..]), "the first frame holds the first token only");
        // The body is pending once so hyper flushes the first token, and asks to be
        // polled again at once: nothing waits for a timer or for more input.
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let rest = data(Pin::new(&mut body).poll_frame(&mut cx));
        assert_eq!(rest.as_deref(), Some(&b"t1|t2|t3|."[..]), "the events already there leave in one frame");
        assert!(matches!(Pin::new(&mut body).poll_frame(&mut cx), Poll::Ready(None)));
        assert!(body.is_end_stream());
    }

    /// Writes like [`Plain`]; the end waits for `wait` (taken once).
    struct Holding(Option<tokio::sync::oneshot::Receiver<()>>);

    impl Encoder for Holding {
        fn event(&mut self, ev: &Event, buf: &mut BytesMut) {
            Plain.event(ev, buf);
        }
        fn error(&mut self, err: &GatewayError, buf: &mut BytesMut) {
            Plain.error(err, buf);
        }
        fn before_end(&mut self) -> Option<BoxFuture<'static, ()>> {
            let wait = self.0.take()?;
            Some(Box::pin(async move {
                let _ = wait.await;
            }))
        }
    }

    /// The frame with the end leaves only once the encoder's work before the end is
    /// done, and the body does not say it ended before that.
    #[tokio::test]
    async fn the_last_frame_waits_for_the_work_before_the_end() {
        let done =
            Event::Done { finish_reason: FinishReason::Stop, usage: None, timings: None, details: None };
        let events = futures_util::stream::iter([Ok(Event::Delta("t0".into())), Ok(done)]);
        let (stored, wait) = tokio::sync::oneshot::channel();
        let cut = Cut::new(CancellationToken::new());
        let mut body = EventBody::new(events, Holding(Some(wait)), Duration::from_secs(15), cut);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(data(Pin::new(&mut body).poll_frame(&mut cx)).as_deref(), Some(&b"t0|"[..]));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending(), "the first token's flush");
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending(), "the end waits");
        assert!(!body.is_end_stream(), "not ended while a frame is held");
        let before = wakes.0.load(Ordering::SeqCst);
        stored.send(()).unwrap();
        assert!(wakes.0.load(Ordering::SeqCst) > before, "the work's end wakes the body");
        assert_eq!(data(Pin::new(&mut body).poll_frame(&mut cx)).as_deref(), Some(&b"."[..]));
        assert!(matches!(Pin::new(&mut body).poll_frame(&mut cx), Poll::Ready(None)));
        assert!(body.is_end_stream());
    }

    /// A stream still waiting for its next token when the grace period ends gets the
    /// dialect's error event and ends.
    #[tokio::test]
    async fn the_end_of_the_grace_period_ends_a_waiting_stream_with_an_error_event() {
        let token = CancellationToken::new();
        let events = futures_util::stream::iter([Ok(Event::Delta("t0".into()))])
            .chain(futures_util::stream::pending::<Result<Event, BackendError>>());
        let mut body =
            EventBody::new(Box::pin(events), Plain, Duration::from_secs(15), Cut::new(token.clone()));
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(data(Pin::new(&mut body).poll_frame(&mut cx)).as_deref(), Some(&b"t0|"[..]));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending(), "the first token's flush");
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending(), "waiting for a token");
        let before = wakes.0.load(Ordering::SeqCst);
        token.cancel();
        assert!(wakes.0.load(Ordering::SeqCst) > before, "the cut wakes the waiting body");
        assert_eq!(data(Pin::new(&mut body).poll_frame(&mut cx)).as_deref(), Some(&b"!"[..]));
        assert!(matches!(Pin::new(&mut body).poll_frame(&mut cx), Poll::Ready(None)));
        assert!(body.is_end_stream());
    }
}
