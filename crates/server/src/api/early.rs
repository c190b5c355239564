//! Early headers for slow first tokens: a streamed answer whose first token has not
//! come after `server.early_headers_after` gets its status and headers sent at once,
//! then keep-alives (SSE comments, or Ollama's empty chunks on NDJSON), so proxies
//! with idle timeouts (nginx's 60 s `proxy_read_timeout`, load balancers) keep the
//! connection. From then on every failure, including an admission-queue timeout, is an
//! in-stream error event carrying the code and status it would have had.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use sluice_core::{error::GatewayError, reply::Reply};
use sluice_limits::RateHeaders;
use tokio::time::Sleep;

use super::{
    accounting::Metered,
    respond::{Dialect, Started},
    stream_body::{Cut, EventBody, shutting_down},
};

/// The answer being started: the cache, the admission queue, the first attempts.
pub type Starting = BoxFuture<'static, Result<Started, (GatewayError, RateHeaders)>>;

/// A streamed body whose headers left before the answer started.
pub struct EarlyBody<D: Dialect> {
    phase: Phase<D>,
    keepalive: Bytes,
    every: Duration,
    timer: Pin<Box<Sleep>>,
    stream_keepalive: Duration,
}

enum Phase<D: Dialect> {
    Waiting(Starting, Option<(D, Cut)>),
    // Boxed: the answer's body is large, and only early streams need this one.
    Streaming(Box<EventBody<D::Stream, Metered<Reply>>>),
    Ended,
}

impl<D: Dialect> EarlyBody<D> {
    /// A body that waits for `starting`, sending `dialect`'s keep-alive every `every`
    /// meanwhile, then streams the answer (with keep-alives every `stream_keepalive`);
    /// `cut` ends it with an error event, waiting or streaming.
    pub fn new(
        starting: Starting,
        dialect: D,
        every: Duration,
        stream_keepalive: Duration,
        cut: Cut,
    ) -> Self {
        let keepalive = dialect.early_keepalive();
        EarlyBody {
            phase: Phase::Waiting(starting, Some((dialect, cut))),
            keepalive,
            every,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            stream_keepalive,
        }
    }
}

impl<D: Dialect> Body for EarlyBody<D> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Ended => return Poll::Ready(None),
                Phase::Streaming(body) => return Pin::new(&mut **body).poll_frame(cx),
                Phase::Waiting(starting, waiting) => {
                    if waiting.as_mut().is_some_and(|(_, cut)| cut.poll(cx)) {
                        this.phase = Phase::Ended;
                        return Poll::Ready(Some(Ok(Frame::data(D::stream_error(&shutting_down())))));
                    }
                    match starting.as_mut().poll(cx) {
                        Poll::Ready(Ok(started)) => {
                            let Some((dialect, cut)) = waiting.take() else { return Poll::Ready(None) };
                            let encoder = dialect.stream(started.reply.get_ref());
                            let body = EventBody::new(started.reply, encoder, this.stream_keepalive, cut);
                            this.phase = Phase::Streaming(Box::new(body));
                        }
                        Poll::Ready(Err((err, _))) => {
                            tracing::info!(reason = %err, "refused after early headers");
                            this.phase = Phase::Ended;
                            return Poll::Ready(Some(Ok(Frame::data(D::stream_error(&err)))));
                        }
                        Poll::Pending => {
                            if this.timer.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            let next = tokio::time::Instant::now() + this.every;
                            this.timer.as_mut().reset(next);
                            return Poll::Ready(Some(Ok(Frame::data(this.keepalive.clone()))));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
