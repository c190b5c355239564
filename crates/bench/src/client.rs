//! One worker: a persistent HTTP/1.1 keep-alive connection that sends requests one
//! after another and measures each reply.
//!
//! The hyper connection driver is polled inside the worker's own task (no task per
//! connection, no cross-task wake-ups per body frame). A lost connection is
//! re-established for the next request; a request that was never written on a
//! reused connection (the server closed it while idle) is retried once.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Sleep;

use crate::budget::Shared;
use crate::parse::{self, StreamEvent, StreamParser, Usage, WholeReplyError};
use crate::request::Plan;
use crate::stats::{ErrorKind, Stats, Success, micros};

/// Largest whole reply (or error body) read; bigger ones count as malformed.
const MAX_BODY: usize = 64 << 20;
/// Backoff after a failed connect, so a dead target is not hammered in a hot loop.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

type Body = Full<Bytes>;
type Driver = Connection<TokioIo<TcpStream>, Body>;

/// State shared by the workers of one runtime thread (single-threaded: no locks).
#[derive(Debug)]
pub struct ThreadCtx {
    /// What to send, where.
    pub plan: Arc<Plan>,
    /// Request budget and progress counters shared by all threads.
    pub shared: Arc<Shared>,
    /// This thread's measurements.
    pub stats: RefCell<Stats>,
    /// Recorded requests currently in flight (aborted if the run ends now).
    pub in_flight: Cell<u64>,
}

/// Runs one worker until the request budget is spent; cancelled by dropping.
pub async fn worker(ctx: Rc<ThreadCtx>, start_at: Instant) {
    tokio::time::sleep_until(start_at.into()).await;
    let mut worker = Worker {
        plan: ctx.plan.clone(),
        conn: None,
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        parser: StreamParser::new(ctx.plan.dialect),
        gaps: Vec::new(),
    };
    let mut backoff = MIN_BACKOFF;
    while let Some(ticket) = ctx.shared.claim() {
        if ticket.measured {
            ctx.in_flight.set(ctx.in_flight.get() + 1);
        }
        let result = worker.request(ticket.index).await;
        if ticket.measured {
            ctx.in_flight.set(ctx.in_flight.get() - 1);
            let mut stats = ctx.stats.borrow_mut();
            match &result {
                Ok(success) => stats.record_success(success, &worker.gaps),
                Err(kind) => stats.record_error(*kind),
            }
            ctx.shared.record_done(result.is_ok());
        }
        if matches!(result, Err(ErrorKind::Connect)) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
        }
    }
}

struct Worker {
    plan: Arc<Plan>,
    conn: Option<Conn>,
    /// Per-request timeout, reset for each request instead of allocating a new one.
    timer: Pin<Box<Sleep>>,
    parser: StreamParser,
    /// Inter-token gaps (µs) of the current request; recorded only if it succeeds.
    gaps: Vec<u64>,
}

struct Conn {
    sender: SendRequest<Body>,
    /// `None` once the connection has ended.
    driver: Option<Pin<Box<Driver>>>,
    reused: bool,
}

/// How one attempt on a connection ended.
enum Exchange {
    /// The request was never written; it may be retried on a fresh connection.
    NotSent,
    /// The request ran; `keep` says whether the connection is still usable.
    Finished { result: Result<Success, ErrorKind>, keep: bool },
}

impl Worker {
    async fn request(&mut self, index: u64) -> Result<Success, ErrorKind> {
        let start = Instant::now();
        self.gaps.clear();
        self.timer.as_mut().reset((start + self.plan.timeout).into());
        for attempt in 0..2 {
            if self.conn.as_ref().is_none_or(|c| c.driver.is_none() || c.sender.is_closed()) {
                self.conn = None;
                let conn = tokio::select! {
                    biased;
                    conn = Conn::open(self.plan.addr, self.plan.local) => conn.map_err(|_| ErrorKind::Connect)?,
                    () = self.timer.as_mut() => return Err(ErrorKind::Timeout),
                };
                self.conn = Some(conn);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(ErrorKind::Connect);
            };
            let reused = std::mem::replace(&mut conn.reused, true);
            let request = self.plan.request(index);
            let exchange =
                exchange(&mut conn.sender, request, &self.plan, &mut self.parser, &mut self.gaps, start);
            let outcome = race(&mut conn.driver, self.timer.as_mut(), exchange).await;
            match outcome {
                None => {
                    self.conn = None;
                    return Err(ErrorKind::Timeout);
                }
                Some(Exchange::NotSent) => {
                    self.conn = None;
                    if !(reused && attempt == 0) {
                        return Err(ErrorKind::ConnectionLost);
                    }
                }
                Some(Exchange::Finished { result, keep }) => {
                    if !keep {
                        self.conn = None;
                    }
                    return result;
                }
            }
        }
        Err(ErrorKind::ConnectionLost)
    }
}

impl Conn {
    async fn open(addr: SocketAddr, local: Option<IpAddr>) -> Result<Conn, Box<dyn std::error::Error>> {
        let tcp = match local {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        let (sender, driver) = http1::Builder::new().handshake(TokioIo::new(tcp)).await?;
        Ok(Conn { sender, driver: Some(Box::pin(driver)), reused: false })
    }
}

/// Polls `fut` while also driving the connection; `None` if `timer` fires first.
async fn race<F: Future>(
    driver: &mut Option<Pin<Box<Driver>>>,
    mut timer: Pin<&mut Sleep>,
    fut: F,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx: &mut Context<'_>| {
        drive(driver, cx);
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

fn drive(driver: &mut Option<Pin<Box<Driver>>>, cx: &mut Context<'_>) {
    if let Some(conn) = driver
        && conn.as_mut().poll(cx).is_ready()
    {
        // Closed or failed: pending and future requests see the error.
        *driver = None;
    }
}

async fn exchange(
    sender: &mut SendRequest<Body>,
    request: http::Request<Body>,
    plan: &Plan,
    parser: &mut StreamParser,
    gaps: &mut Vec<u64>,
    start: Instant,
) -> Exchange {
    if sender.ready().await.is_err() {
        return Exchange::NotSent;
    }
    let response = match sender.try_send_request(request).await {
        Ok(response) => response,
        Err(mut err) => {
            return match err.take_message() {
                Some(_) => Exchange::NotSent,
                None => Exchange::Finished { result: Err(ErrorKind::ConnectionLost), keep: false },
            };
        }
    };
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        let keep = Limited::new(body, MAX_BODY).collect().await.is_ok();
        return Exchange::Finished { result: Err(ErrorKind::Http(status.as_u16())), keep };
    }
    if plan.stream {
        read_stream(body, parser, gaps, start).await
    } else {
        read_whole(body, plan, start).await
    }
}

/// Progress of one streamed reply.
struct StreamState {
    first: Option<Instant>,
    last: Instant,
    content_events: u64,
    usage: Option<Usage>,
    done: bool,
    failure: Option<ErrorKind>,
}

impl StreamState {
    fn on(&mut self, event: StreamEvent, now: Instant, gaps: &mut Vec<u64>) {
        match event {
            StreamEvent::Content if !self.done => {
                self.content_events += 1;
                if self.first.is_some() {
                    gaps.push(micros(now - self.last));
                } else {
                    self.first = Some(now);
                }
                self.last = now;
            }
            StreamEvent::Content => {}
            StreamEvent::Usage(usage) => self.usage = Some(usage),
            StreamEvent::Done => self.done = true,
            StreamEvent::Error => {
                self.failure.get_or_insert(ErrorKind::StreamError);
            }
            StreamEvent::Malformed => {
                self.failure.get_or_insert(ErrorKind::Malformed);
            }
        }
    }
}

async fn read_stream(
    mut body: Incoming,
    parser: &mut StreamParser,
    gaps: &mut Vec<u64>,
    start: Instant,
) -> Exchange {
    parser.reset();
    gaps.clear();
    let mut state =
        StreamState { first: None, last: start, content_events: 0, usage: None, done: false, failure: None };
    let mut keep = true;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let now = Instant::now();
                    parser.feed(&data, &mut |event| state.on(event, now, gaps));
                }
            }
            Some(Err(_)) => {
                keep = false;
                break;
            }
        }
    }
    let end = Instant::now();
    parser.finish(&mut |event| state.on(event, end, gaps));
    let result = match state.failure {
        Some(kind) => Err(kind),
        None if !state.done => Err(ErrorKind::Truncated),
        None => Ok(success(state.first.map(|t| t - start), end - start, state.usage, state.content_events)),
    };
    Exchange::Finished { result, keep }
}

async fn read_whole(body: Incoming, plan: &Plan, start: Instant) -> Exchange {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let kind = if err.is::<LengthLimitError>() { ErrorKind::Malformed } else { ErrorKind::Truncated };
            return Exchange::Finished { result: Err(kind), keep: false };
        }
    };
    let e2e = start.elapsed();
    let result = match parse::parse_whole(plan.dialect, &bytes) {
        Ok(reply) => Ok(success(None, e2e, Some(reply.usage), u64::from(reply.has_text))),
        Err(WholeReplyError::Error) => Err(ErrorKind::StreamError),
        Err(WholeReplyError::Malformed) => Err(ErrorKind::Malformed),
    };
    Exchange::Finished { result, keep: true }
}

fn success(ttft: Option<Duration>, e2e: Duration, usage: Option<Usage>, counted: u64) -> Success {
    let usage = usage.unwrap_or_default();
    Success {
        ttft,
        e2e,
        output_tokens: usage.completion_tokens.unwrap_or(counted),
        from_usage: usage.completion_tokens.is_some(),
        prompt_tokens: usage.prompt_tokens.unwrap_or(0),
    }
}
