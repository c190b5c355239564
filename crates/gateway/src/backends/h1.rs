//! A keep-alive HTTP/1.1 client for plain-`http://` upstreams whose connection is driven
//! inside the request's own task.
//!
//! hyper's pooled client runs each connection as a separate task that hands the body
//! over one chunk per scheduler turn, so tokens that arrived in one read leave the
//! gateway one write at a time. Polling the connection from the body's own `poll_next`
//! decodes everything already read in one go, and the encoder writes it together. TLS
//! upstreams keep using reqwest (ALPN, HTTP/2), where this matters less than the network.
//!
//! Connections are reused: a finished response returns its connection to a small
//! per-backend idle list; a connection the server closed is noticed at checkout, and a
//! request that fails on a reused connection before any response is retried once on a
//! fresh one.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use http_body::Body as _;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    client::conn::http1::{self, Connection, SendRequest},
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};

use super::{BackendError, Stage};

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 1024;
/// Idle connections older than this are not reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct Idle {
    tx: SendRequest<Full<Bytes>>,
    conn: Conn,
    since: Instant,
}

/// A pool of HTTP/1.1 connections to one `host:port`.
pub struct H1Client {
    authority: String,
    host: HeaderValue,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// Status, headers and the streamed body of a response.
pub struct H1Response {
    /// Status code.
    pub status: http::StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body; dropping it before the end closes the connection.
    pub body: H1Body,
}

impl H1Client {
    /// A client for `authority` (`host:port`).
    pub fn new(authority: &str, connect_timeout: Duration) -> Result<Arc<H1Client>, BackendError> {
        let host = HeaderValue::from_str(authority)
            .map_err(|_| BackendError::Connect(format!("bad authority {authority}")))?;
        Ok(Arc::new(H1Client {
            authority: authority.to_owned(),
            host,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }))
    }

    fn checkout(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut c) = idle.pop() {
            if c.since.elapsed() > IDLE_TIMEOUT || c.tx.is_closed() {
                continue;
            }
            // Let the connection notice a close that happened while it sat idle.
            let mut cx = Context::from_waker(Waker::noop());
            if Pin::new(&mut c.conn).poll(&mut cx).is_ready() || !c.tx.is_ready() {
                continue;
            }
            return Some(c);
        }
        None
    }

    fn checkin(&self, tx: SendRequest<Full<Bytes>>, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle { tx, conn, since: Instant::now() });
        }
    }

    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Conn), BackendError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(BackendError::Connect(format!("{}: {e}", self.authority))),
            Err(_) => return Err(BackendError::Timeout(Stage::Connect)),
        };
        let _ = tcp.set_nodelay(true);
        http1::handshake(TokioIo::new(tcp)).await.map_err(|e| BackendError::Connect(e.to_string()))
    }

    /// Sends one request; resolves at the response head.
    pub async fn send(
        self: &Arc<Self>,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<H1Response, BackendError> {
        let build = || {
            let mut req = Request::builder().method(method.clone()).uri(path);
            if let Some(h) = req.headers_mut() {
                h.insert(header::HOST, self.host.clone());
                for (k, v) in headers {
                    h.insert(k.clone(), v.clone());
                }
            }
            req.body(Full::new(body.clone())).map_err(|e| BackendError::Protocol(e.to_string()))
        };
        if let Some(idle) = self.checkout() {
            match self.exchange(idle.tx, idle.conn, build()?).await {
                Ok(r) => return Ok(r),
                // The server may have closed the idle connection just as we used it.
                Err(Attempt::Retryable(e)) => {
                    tracing::debug!(error = %e, "reused connection failed; retrying")
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        let (tx, conn) = self.connect().await?;
        self.exchange(tx, conn, build()?).await.map_err(Attempt::into_error)
    }

    async fn exchange(
        self: &Arc<Self>,
        mut tx: SendRequest<Full<Bytes>>,
        conn: Conn,
        req: Request<Full<Bytes>>,
    ) -> Result<H1Response, Attempt> {
        let mut conn = Some(conn);
        let mut response = std::pin::pin!(tx.send_request(req));
        let resp = std::future::poll_fn(|cx| {
            drive(&mut conn, cx);
            response.as_mut().poll(cx)
        })
        .await;
        match resp {
            Ok(resp) => {
                let (parts, incoming) = resp.into_parts();
                let body = H1Body { incoming, conn, tx: Some(tx), pool: self.clone(), finished: false };
                Ok(H1Response { status: parts.status, headers: parts.headers, body })
            }
            Err(e) if e.is_canceled() || e.is_incomplete_message() => {
                Err(Attempt::Retryable(BackendError::Connect(e.to_string())))
            }
            Err(e) => Err(Attempt::Failed(BackendError::Connect(e.to_string()))),
        }
    }
}

enum Attempt {
    Retryable(BackendError),
    Failed(BackendError),
}

impl Attempt {
    fn into_error(self) -> BackendError {
        match self {
            Attempt::Retryable(e) | Attempt::Failed(e) => e,
        }
    }
}

/// Polls the connection once; forgets it when it ended (the body then reports why).
fn drive(conn: &mut Option<Conn>, cx: &mut Context<'_>) {
    if let Some(c) = conn.as_mut()
        && Pin::new(c).poll(cx).is_ready()
    {
        *conn = None;
    }
}

/// A response body that drives its own connection.
pub struct H1Body {
    incoming: Incoming,
    conn: Option<Conn>,
    tx: Option<SendRequest<Full<Bytes>>>,
    pool: Arc<H1Client>,
    finished: bool,
}

impl Stream for H1Body {
    type Item = Result<Bytes, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            drive(&mut this.conn, cx);
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(BackendError::Interrupted(e.to_string()))));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    // Let the connection finish the message, then pool it.
                    drive(&mut this.conn, cx);
                    if let (Some(tx), Some(conn)) = (this.tx.take(), this.conn.take())
                        && tx.is_ready()
                    {
                        this.pool.checkin(tx, conn);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
