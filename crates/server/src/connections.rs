//! Accepting connections, bounded: a cap on open connections in all and per client
//! address (a connection over a cap gets a 503 and is closed, never left hanging),
//! a time limit for each request head, for each request body and for idleness, and a
//! stop in three steps at shutdown: first every connection finishes its requests (for
//! up to the grace period), then the answers still running are cut (`cut`: each ends
//! with its dialect's error event) and get [`FLUSH`] to leave, then whatever still runs
//! is dropped.
//!
//! hyper serves each connection directly (`axum::serve` has no timer, so hyper's header
//! timeout would be off, and its connection tasks outlive a dropped server). TLS
//! handshakes run in the connection's own task, bounded by
//! [`crate::tls::HANDSHAKE_TIMEOUT`], after the connection is admitted.
//!
//! The protocol is chosen before hyper sees the socket: by ALPN over TLS, and over plain
//! TCP by peeking (not reading) for HTTP/2's connection preface. Each connection then
//! holds only its own protocol's state, boxed: hyper-util's auto connection is an enum
//! as large as an HTTP/2 connection even when it serves HTTP/1, and its pre-read of the
//! preface made hyper grow every HTTP/1 read buffer from 8 to 16 KiB (its first read got
//! the 24 rewound bytes alone). Together that was ~14 KB of allocation per open
//! connection (little of it resident: an untouched page costs nothing; see the 8,000
//! streams in docs/benchmarks.md).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, extract::ConnectInfo};
use bytes::Bytes;
use futures_util::future::Either;
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request head; on a kept-alive HTTP/1 connection the clock starts
    /// when the previous response ends.
    pub header_read: Duration,
    /// Time to send a whole request body, from the end of its head.
    pub body_read: Duration,
    /// A connection with no request running and no byte read or written for this long
    /// is closed.
    pub idle: Duration,
    /// Open connections in all.
    pub max_total: usize,
    /// Open connections per client address (an IPv6 client: per /64).
    pub max_per_ip: usize,
}

impl Limits {
    /// The limits configured in `[server]`.
    pub fn from_config(c: &sluice_config::ServerConfig) -> Limits {
        Limits {
            header_read: c.header_read_timeout,
            body_read: c.body_read_timeout,
            idle: c.idle_timeout,
            max_total: c.max_connections,
            max_per_ip: c.max_connections_per_ip,
        }
    }
}

/// What a connection serves: the gateway's service stack (`api::app`), or a test's
/// router. Shared by the connections (each request clones its own), so `Sync` as well.
pub trait App:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// How long the answers cut at the end of the grace period have to write their last
/// event before their connections are dropped.
pub const FLUSH: Duration = Duration::from_millis(300);

/// When and how a server stops.
#[derive(Debug, Clone)]
pub struct Stop {
    /// Cancelled to stop accepting connections and start the grace period.
    pub shutdown: CancellationToken,
    /// How long open connections may finish their requests.
    pub grace: Duration,
    /// Cancelled by [`serve`] when the grace period is over: the answers still running
    /// end with an error event (they watch it; see `api::stream_body::Cut`).
    pub cut: CancellationToken,
}

/// Serves `app` on `listener` (with TLS when `tls` is given) until `stop.shutdown`, then
/// lets open connections finish their requests for up to `stop.grace`, then cuts the
/// answers still running (`stop.cut`), and drops what is still open [`FLUSH`] later.
/// Returns once every connection task has ended.
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: S,
    limits: Limits,
    stop: Stop,
) where
    S: App,
{
    let Stop { shutdown, grace, cut } = stop;
    let caps = Arc::new(Caps::new(limits.max_total, limits.max_per_ip));
    // Shared, not copied into every connection: the service stack is ~600 bytes, and
    // each connection's task held it twice (see `Conn::app`).
    let app = Arc::new(app);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    // Refusals write a few bytes each; past this many at once, a refused connection is
    // just closed.
    let refusing = Arc::new(Semaphore::new(64));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let permit = match caps.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(peer = %peer, reason = why.message(), "connection refused");
                if tls.is_none()
                    && let Ok(slot) = refusing.clone().try_acquire_owned()
                {
                    connections.spawn(async move {
                        refuse(tcp, why).await;
                        drop(slot);
                    });
                }
                continue;
            }
        };
        // Tokens are small writes: never let Nagle hold one back.
        let _ = tcp.set_nodelay(true);
        let conn =
            Conn { peer, app: app.clone(), limits, shutdown: shutdown.clone(), hard_stop: hard_stop.clone() };
        connections.spawn(accepted(conn, tcp, tls.clone(), permit));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "grace period over; ending the answers still running, then closing the connections still open"
        );
        cut.cancel();
        if tokio::time::timeout(FLUSH, connections.wait()).await.is_err() {
            hard_stop.cancel();
            connections.wait().await;
        }
    }
}

/// One admitted connection's task: the protocol is found (by peeking over plain TCP, by
/// ALPN after a TLS handshake), then the connection is served.
///
/// Every open connection holds this task for as long as it is open, so its size counts
/// (test `a_plain_connection_task_is_small`). The TLS path runs boxed: a handshake in
/// progress holds a whole `rustls` session (~1.2 KB), which plain connections need not
/// carry room for.
async fn accepted<S>(conn: Conn<S>, tcp: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, permit: Permit)
where
    S: App,
{
    let peer = conn.peer;
    match tls {
        None => {
            let mut tcp = tcp;
            // The first bytes say which protocol; a client that sends none within
            // the header timeout is closed, as one that sends half a head is.
            // (hyper's head timer starts after this: a client that waits before
            // its first byte has at most twice the limit for its first head.)
            let sniffed = tokio::select! {
                r = tokio::time::timeout(conn.limits.header_read, sniff(&mut tcp)) => r,
                () = conn.shutdown.cancelled() => return,
            };
            match sniffed {
                Ok(Ok(Sniffed { h2, prefix })) => conn.serve(tcp, h2, prefix, permit).await,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "connection ended before a request")
                }
                Err(_) => tracing::debug!(peer = %peer, "no request within the header timeout"),
            }
        }
        Some(acceptor) => Box::pin(conn.serve_tls(tcp, acceptor, permit)).await,
    }
}

/// One accepted connection and what serving it needs.
struct Conn<S> {
    peer: SocketAddr,
    /// The service stack, shared: each request clones its own from it. Held by value,
    /// the connection's task carried it twice (the connection, then the closure hyper
    /// calls), ~1.2 KB of every open connection's ~3.5 KB task.
    app: Arc<S>,
    limits: Limits,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
}

impl<S> Conn<S>
where
    S: App,
{
    /// Completes the TLS handshake (bounded by [`crate::tls::HANDSHAKE_TIMEOUT`]), then
    /// serves the protocol ALPN chose.
    async fn serve_tls(self, tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor, permit: Permit) {
        let peer = self.peer;
        let handshake = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
        let stream = tokio::select! {
            r = handshake => r,
            () = self.hard_stop.cancelled() => return,
        };
        match stream {
            Ok(Ok(stream)) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve(stream, h2, None, permit).await;
            }
            Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP/2 (`h2`) or HTTP/1 (with upgrades, for agents' WebSockets) on `io`
    /// until the client leaves, a limit ends it, or the shutdown does. `prefix`: bytes
    /// already read from `io`, which hyper reads first.
    async fn serve<I>(self, io: I, h2: bool, prefix: Option<Bytes>, permit: Permit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let cap = ReadCap::default();
        // The permit rides with the socket, so an upgraded WebSocket still counts.
        let io = TokioIo::new(Watched {
            inner: io,
            prefix,
            activity: activity.clone(),
            cap: cap.clone(),
            _permit: permit,
        });
        let (peer, app, body_read) = (self.peer, self.app, self.limits.body_read);
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = S::clone(&app);
            let running = Running::start(&requests);
            // Only an HTTP/1 request owns its socket (an upgrade takes it whole); HTTP/2
            // streams share theirs, so none may cap its reads.
            let cap = (req.version() <= http::Version::HTTP_11).then(|| cap.clone());
            async move {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                if let Some(cap) = cap {
                    parts.extensions.insert(cap);
                }
                let body = if body.is_end_stream() {
                    Body::new(body)
                } else {
                    Body::new(TimedBody::new(body, body_read))
                };
                let resp = tower::ServiceExt::oneshot(app, Request::from_parts(parts, body)).await?;
                Ok::<_, Infallible>(resp.map(|body| Body::new(Tracked { inner: body, _running: running })))
            }
        });
        macro_rules! shut {
            ($conn:ident) => {
                match &mut $conn {
                    Either::Left(c) => c.as_mut().graceful_shutdown(),
                    Either::Right(c) => c.as_mut().graceful_shutdown(),
                }
            };
        }
        // Each protocol's connection in its own box: the task holds only the one it serves.
        let mut conn = if h2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            // CONNECT is how WebSockets ride HTTP/2.
            builder.timer(TokioTimer::new()).enable_connect_protocol();
            Either::Left(Box::pin(builder.serve_connection(io, service)))
        } else {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(self.limits.header_read).max_headers(100);
            Either::Right(Box::pin(builder.serve_connection(io, service).with_upgrades()))
        };
        let idle = self.limits.idle;
        let check = tokio::time::sleep(idle);
        let mut check = std::pin::pin!(check);
        let mut closing = false;
        loop {
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %peer, error = %e, "connection ended");
                    }
                    return;
                }
                () = self.shutdown.cancelled(), if !closing => {
                    closing = true;
                    shut!(conn);
                }
                () = self.hard_stop.cancelled() => return,
                () = check.as_mut(), if !closing => {
                    match activity.idle_for(idle) {
                        None => {
                            tracing::debug!(peer = %peer, "idle connection closed");
                            closing = true;
                            shut!(conn);
                        }
                        Some(next) => check.as_mut().reset(Instant::now() + next),
                    }
                }
            }
        }
    }
}

/// HTTP/2's connection preface (RFC 9113, 3.4): what a client speaking HTTP/2 without
/// TLS sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What [`sniff`] found.
#[derive(Debug, PartialEq, Eq)]
struct Sniffed {
    /// The client speaks HTTP/2.
    h2: bool,
    /// Bytes read from the socket to decide (only when the preface arrived in pieces).
    prefix: Option<Bytes>,
}

/// Which protocol a plain connection speaks, from its first bytes, peeked so they stay
/// in the socket for hyper's first read. A preface arriving in pieces is read instead
/// (peeking again would not wait for more), and handed back as the prefix.
async fn sniff(tcp: &mut TcpStream) -> std::io::Result<Sniffed> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let n = tcp.peek(&mut buf).await?;
    if n == 0 || buf[..n] != H2_PREFACE[..n] {
        return Ok(Sniffed { h2: false, prefix: None });
    }
    if n == H2_PREFACE.len() {
        return Ok(Sniffed { h2: true, prefix: None });
    }
    let mut read = 0;
    // The bytes read are the peeked ones, then more.
    while read < H2_PREFACE.len() {
        let n = tcp.read(&mut buf[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
        if buf[..read] != H2_PREFACE[..read] {
            break;
        }
    }
    let h2 = buf[..read] == H2_PREFACE[..];
    Ok(Sniffed { h2, prefix: Some(Bytes::copy_from_slice(&buf[..read])) })
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from this address.
    PerAddress,
}

impl Refused {
    fn message(self) -> &'static str {
        match self {
            Refused::Total => "the gateway has too many open connections; retry later",
            Refused::PerAddress => "too many open connections from your address; retry later",
        }
    }
}

/// Open connections, in all and per client address.
#[derive(Debug)]
pub struct Caps {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Caps {
    /// Caps of `max_total` connections, `max_per_ip` of them from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Caps {
        Caps { max_total, max_per_ip, open: Mutex::default() }
    }

    /// Counts a connection from `ip` unless a cap is reached; the count lasts as long
    /// as the permit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = subject(ip);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = open.per_ip.entry(ip).or_default();
        if *n >= self.max_per_ip {
            return Err(Refused::PerAddress);
        }
        *n += 1;
        open.total += 1;
        Ok(Permit { caps: self.clone(), ip })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total
    }
}

/// The address a connection counts against: IPv4 as is, IPv6 by its /64 (one host
/// usually holds a whole /64).
fn subject(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One open connection, counted in [`Caps`] until dropped.
#[derive(Debug)]
pub struct Permit {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection over a cap with a 503 (OpenAI's error shape; the path is not
/// read) and closes it; never more than a second on it.
async fn refuse(mut tcp: TcpStream, why: Refused) {
    let body = serde_json::json!({"error": {"message": why.message(), "type": "service_unavailable", "param": null, "code": null}})
        .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client sent until it closes, so closing does not reset the
        // connection before the client has read the answer.
        let mut sink = [0u8; 1024];
        while tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// When a connection last read or wrote, and how many of its requests are running.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last read or write.
    last: AtomicU64,
    running: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { origin: Instant::now(), last: AtomicU64::new(0), running: AtomicUsize::new(0) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// `None` when the connection has been idle (nothing running, no byte moved) for
    /// `limit`; otherwise how long until it could be.
    fn idle_for(&self, limit: Duration) -> Option<Duration> {
        if self.running.load(Ordering::Relaxed) > 0 {
            return Some(limit);
        }
        let idle = Duration::from_millis(self.now_ms().saturating_sub(self.last.load(Ordering::Relaxed)));
        limit.checked_sub(idle).filter(|left| !left.is_zero())
    }
}

/// A request of a connection, counted as running until its response body is dropped.
struct Running(Arc<Activity>);

impl Running {
    fn start(activity: &Arc<Activity>) -> Running {
        activity.running.fetch_add(1, Ordering::Relaxed);
        Running(activity.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A cap on what an HTTP/1 connection may still read, which a handler can set for the
/// rest of the connection (an upgraded one included): the agent endpoint lets a
/// stranger send only a Hello's worth of bytes until the Hello is verified. Reading
/// past the cap fails the connection. Found in the request's extensions.
#[derive(Debug, Clone)]
pub struct ReadCap(Arc<CapState>);

#[derive(Debug)]
struct CapState {
    /// Bytes the connection may still read; `u64::MAX`: no cap.
    left: AtomicU64,
    exceeded: AtomicBool,
}

impl Default for ReadCap {
    fn default() -> ReadCap {
        ReadCap(Arc::new(CapState { left: AtomicU64::new(u64::MAX), exceeded: AtomicBool::new(false) }))
    }
}

impl ReadCap {
    /// From now on the connection may read at most `bytes` more.
    pub fn limit(&self, bytes: u64) {
        self.0.left.store(bytes.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// Lifts the cap.
    pub fn lift(&self) {
        self.0.left.store(u64::MAX, Ordering::Relaxed);
    }

    /// Whether a read went past the cap.
    pub fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes read; `false` when they go past the cap.
    fn take(&self, n: usize) -> bool {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let counted = self.0.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| match left {
            u64::MAX => None,
            _ => Some(left.saturating_sub(n)),
        });
        match counted {
            Ok(left) if n > left => {
                self.0.exceeded.store(true, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }
}

pin_project! {
    /// A socket that notes each read and write in its connection's [`Activity`], holds
    /// the connection's [`Permit`] and keeps its reads within its [`ReadCap`].
    struct Watched<I> {
        #[pin]
        inner: I,
        // Bytes already taken from `inner` (a split HTTP/2 preface), read first.
        prefix: Option<Bytes>,
        activity: Arc<Activity>,
        cap: ReadCap,
        _permit: Permit,
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = match this.prefix.take() {
            None => this.inner.poll_read(cx, buf),
            Some(mut prefix) => {
                let n = prefix.len().min(buf.remaining());
                buf.put_slice(&prefix.split_to(n));
                if prefix.is_empty() {
                    // And whatever else has arrived, so the reader gets it all at once.
                    if buf.remaining() > 0 {
                        let _ = this.inner.poll_read(cx, buf);
                    }
                } else {
                    *this.prefix = Some(prefix);
                }
                Poll::Ready(Ok(()))
            }
        };
        if r.is_ready() {
            this.activity.touch();
            if !this.cap.take(buf.filled().len() - before) {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the client sent more than it may before authenticating",
                )));
            }
        }
        r
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if r.is_ready() {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if r.is_ready() {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// A request body that did not arrive within `server.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s (server.body_read_timeout)", .0.as_secs_f64())]
pub struct BodyTimeout(Duration);

pin_project! {
    /// A request body that fails with [`BodyTimeout`] once its time is up.
    struct TimedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        limit: Duration,
    }
}

impl<B> TimedBody<B> {
    fn new(inner: B, limit: Duration) -> TimedBody<B> {
        TimedBody { inner, deadline: tokio::time::sleep(limit), limit }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(*this.limit).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that keeps its request counted as running until dropped.
    struct Tracked<B> {
        #[pin]
        inner: B,
        _running: Running,
    }
}

impl<B: HttpBody> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
