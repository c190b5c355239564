//! The connection limits over real sockets on 127.0.0.1, with Tokio's clock paused:
//! timers fire as soon as nothing else can happen, so each test shows a limit exists
//! (without it the test's own deadline, hours away, would fail it) and when it acts.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::{Router, extract::rejection::BytesRejection, routing::get, routing::post};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const LIMITS: Limits = Limits {
    header_read: Duration::from_secs(10),
    body_read: Duration::from_secs(30),
    idle: Duration::from_secs(60),
    max_total: 100,
    max_per_ip: 100,
};

/// A test deadline far past every limit: reaching it means a limit did not act.
const NEVER: Duration = Duration::from_secs(6 * 3600);

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn server(limits: Limits, grace: Duration) -> Server {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late"
            }),
        )
        .route("/never", get(std::future::pending::<&'static str>))
        .route(
            "/echo",
            post(|body: Result<Bytes, BytesRejection>| async move {
                match body {
                    Ok(b) => (http::StatusCode::OK, format!("{} bytes", b.len())),
                    Err(e) => (http::StatusCode::BAD_REQUEST, e.body_text()),
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = Stop { shutdown: shutdown.clone(), grace, cut: CancellationToken::new() };
    let task = tokio::spawn(serve(listener, None, app, limits, stop));
    Server { addr, shutdown, task }
}

/// Reads until the server closes the connection (or resets it).
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tcp.read_to_end(&mut out);
    let _ = tokio::time::timeout(NEVER, read).await.expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one whole response of a kept-alive connection (the tests' bodies are short
/// and end with a known text).
async fn read_response(tcp: &mut TcpStream, ends_with: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).ends_with(ends_with) {
        let n = tokio::time::timeout(NEVER, tcp.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let s = server(LIMITS, Duration::from_secs(5)).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    read_to_close(&mut tcp).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(11), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_body_that_does_not_arrive_in_time_is_refused() {
    let s = server(LIMITS, Duration::from_secs(5)).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789").await.unwrap();
    let answer = read_response(&mut tcp, "(server.body_read_timeout)").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within 30s"), "{answer}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(30) && took < Duration::from_secs(31), "{took:?}");
    // A body that arrives is read as usual.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc").await.unwrap();
    assert!(read_response(&mut tcp, "3 bytes").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_but_a_slow_answer_is_not() {
    let limits = Limits { header_read: Duration::from_secs(3600), idle: Duration::from_secs(60), ..LIMITS };
    let s = server(limits, Duration::from_secs(5)).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    // Ten minutes without a byte either way while the answer is being made.
    tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let answer = read_response(&mut tcp, "late").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Then nothing: closed after the idle timeout.
    let started = Instant::now();
    read_to_close(&mut tcp).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(60) && took < Duration::from_secs(61), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn connections_over_a_cap_get_503_at_once() {
    let limits = Limits { max_total: 3, max_per_ip: 2, ..LIMITS };
    let s = server(limits, Duration::from_secs(5)).await;
    let first = TcpStream::connect(s.addr).await.unwrap();
    let _second = TcpStream::connect(s.addr).await.unwrap();
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too many open connections from your address"), "{answer}");
    // A closed connection frees its place.
    drop(first);
    let mut again = loop {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        if &head == b"HTTP/1.1 200" {
            break tcp;
        }
        // The server may not have seen the close yet.
        tokio::task::yield_now().await;
    };
    read_response(&mut again, "hello").await;
}

#[test]
fn caps_count_in_all_and_per_address() {
    let caps = Arc::new(Caps::new(3, 2));
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let (a1, _a2) = (caps.admit(a).unwrap(), caps.admit(a).unwrap());
    assert_eq!(caps.admit(a).unwrap_err(), Refused::PerAddress);
    let _b1 = caps.admit(b).unwrap();
    assert_eq!(caps.admit(b).unwrap_err(), Refused::Total);
    drop(a1);
    assert_eq!(caps.open(), 2);
    let _a3 = caps.admit(a).unwrap();
    // One IPv6 host holds its whole /64.
    let caps = Arc::new(Caps::new(10, 1));
    let _v6 = caps.admit("2001:db8::1".parse().unwrap()).unwrap();
    assert_eq!(caps.admit("2001:db8::ffff:2".parse().unwrap()).unwrap_err(), Refused::PerAddress);
    assert!(caps.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
}

/// After the shutdown signal a running request may finish within the grace period;
/// past it, the connection is dropped and `serve` returns: nothing outlasts the grace.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_the_grace_period_and_no_longer() {
    let s = server(LIMITS, Duration::from_secs(5)).await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /never HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    read_response(&mut idle, "hello").await;
    tokio::task::yield_now().await;
    let started = Instant::now();
    s.shutdown.cancel();
    // The idle kept-alive connection closes at once.
    read_to_close(&mut idle).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    tokio::time::timeout(NEVER, s.task).await.expect("serve returns").unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(6), "{took:?}");
    read_to_close(&mut slow).await;
    assert!(TcpStream::connect(s.addr).await.is_err(), "no longer listening");
}

/// GET `/` over HTTP/2 on `io`, as hyper's client sends it.
async fn h2_get<I>(io: I) -> String
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://x/").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(NEVER, send.send_request(req)).await.expect("an answer").unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(start_paused = true)]
async fn http2_with_prior_knowledge_and_http1_share_the_port() {
    let s = server(LIMITS, Duration::from_secs(5)).await;
    assert_eq!(h2_get(TcpStream::connect(s.addr).await.unwrap()).await, "hello");
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_response(&mut tcp, "hello").await.starts_with("HTTP/1.1 200"));
    // A request line that starts like the preface ("P") is still HTTP/1.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc").await.unwrap();
    assert!(read_response(&mut tcp, "3 bytes").await.starts_with("HTTP/1.1 200"));
}

pin_project! {
    /// A socket whose first `skip` written bytes were already sent by the test.
    struct AlreadySent {
        #[pin]
        inner: TcpStream,
        skip: usize,
    }
}

impl AsyncRead for AlreadySent {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl AsyncWrite for AlreadySent {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        if *this.skip > 0 {
            let n = (*this.skip).min(buf.len());
            *this.skip -= n;
            return Poll::Ready(Ok(n));
        }
        this.inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The preface in two pieces with a pause between: the server has peeked a part, read
/// it, and hands it to hyper ahead of the rest.
#[tokio::test(start_paused = true)]
async fn an_http2_preface_in_pieces_is_still_http2() {
    let s = server(LIMITS, Duration::from_secs(5)).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&H2_PREFACE[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h2_get(AlreadySent { inner: tcp, skip: 10 }).await, "hello");
}

#[tokio::test]
async fn sniffing_peeks_and_reads_only_a_split_preface() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pair = || async {
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    };

    // HTTP/1: decided from the peeked bytes, which stay in the socket.
    let (mut client, mut server) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(sniff(&mut server).await.unwrap(), Sniffed { h2: false, prefix: None });
    let mut first = [0u8; 3];
    server.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"GET");

    // A split preface: the part that came is read, then the rest, and no more.
    let (mut client, mut server) = pair().await;
    client.write_all(&H2_PREFACE[..10]).await.unwrap();
    let sniffing = tokio::spawn(async move { (sniff(&mut server).await.unwrap(), server) });
    tokio::task::yield_now().await;
    client.write_all(&H2_PREFACE[10..]).await.unwrap();
    client.write_all(b"frames").await.unwrap();
    let (sniffed, mut server) = sniffing.await.unwrap();
    assert_eq!(sniffed, Sniffed { h2: true, prefix: Some(Bytes::from_static(H2_PREFACE)) });
    let mut rest = [0u8; 6];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"frames");

    // Something that only starts like the preface is HTTP/1, with what was read.
    let (mut client, mut server) = pair().await;
    client.write_all(b"PRI").await.unwrap();
    let sniffing = tokio::spawn(async move { sniff(&mut server).await.unwrap() });
    tokio::task::yield_now().await;
    client.write_all(b"X / HTTP/1.1\r\n").await.unwrap();
    let sniffed = sniffing.await.unwrap();
    assert!(!sniffed.h2);
    assert!(sniffed.prefix.as_deref().is_some_and(|p| p.starts_with(b"PRI")), "{sniffed:?}");
}

#[tokio::test]
async fn a_plain_connection_task_is_small() {
    // The gateway's own service stack, as `serve` gets it.
    let config = sluice_config::Config::from_toml("", &sluice_config::Overrides::default()).unwrap();
    let app = crate::api::app(crate::state::AppState::with_slots(config, Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (tcp, peer) = listener.accept().await.unwrap();
    let permit = Arc::new(Caps::new(1, 1)).admit(peer.ip()).unwrap();
    let stop = CancellationToken::new();
    let conn = Conn { peer, app: Arc::new(app), limits: LIMITS, shutdown: stop.clone(), hard_stop: stop };
    let task = accepted(conn, tcp, None, permit);
    // Every open connection holds its task for as long as it is open: 8,000 streams
    // hold 8,000. It was 3.5 KB, most of it two copies of the ~600-byte service stack
    // (now shared) and room for them in each await's state; 1.2 KB since.
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1536, "a plain connection's task is {size} bytes");
}
