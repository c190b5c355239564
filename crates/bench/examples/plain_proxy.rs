//! A plain hyper reverse proxy: the reference row of the gateway benchmark.
//!
//! It is what the gateway issue compares Sluice with: a proxy that parses and
//! re-encodes every JSON body and every SSE event on its way through, over hyper's
//! server and hyper-util's pooled keep-alive client, with nothing else (no routing,
//! metrics, deadlines or auth). Measured in the same run as Sluice and the direct path
//! (`scripts/bench-gateway.sh`), it separates what this machine costs any proxy (two
//! more loopback hops, an idle core woken twice per request) from what Sluice adds.
//!
//! Usage: `plain_proxy LISTEN_ADDR UPSTREAM_BASE` (e.g. `127.0.0.1:18081 http://127.0.0.1:18001`).

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{body::Frame, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};

type Upstream = Client<HttpConnector, Full<Bytes>>;
type Body = BoxBody<Bytes, Infallible>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: plain_proxy LISTEN_ADDR UPSTREAM_BASE");
    };
    let upstream: &'static str = Box::leak(upstream.trim_end_matches('/').to_owned().into_boxed_str());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| proxy(client.clone(), upstream, req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

fn full(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed());
    *resp.status_mut() = status;
    resp
}

/// Parses and re-encodes a JSON document (what any translating proxy does).
fn reencode(json: &[u8]) -> Option<Vec<u8>> {
    serde_json::from_slice::<serde_json::Value>(json).ok().and_then(|v| serde_json::to_vec(&v).ok())
}

async fn proxy(
    client: Upstream,
    upstream: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(full(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let body = if body.is_empty() { body } else { reencode(&body).map(Bytes::from).unwrap_or(body) };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{upstream}{path}").parse::<Uri>() else {
        return Ok(full(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let mut up = Request::builder().method(parts.method).uri(uri);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        up = up.header(header::CONTENT_TYPE, ct);
    }
    let Ok(up) = up.body(Full::new(body)) else { return Ok(full(StatusCode::BAD_REQUEST, Bytes::new())) };
    let resp = match client.request(up).await {
        Ok(r) => r,
        Err(_) => return Ok(full(StatusCode::BAD_GATEWAY, Bytes::new())),
    };
    let (parts, body) = resp.into_parts();
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !sse {
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body = reencode(&body).map(Bytes::from).unwrap_or(body);
        let mut resp = full(parts.status, body);
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        return Ok(resp);
    }
    // One output frame per upstream frame: every complete event re-encoded.
    let mut pending = BytesMut::new();
    let frames = futures_util::stream::unfold(body, |mut body| async move {
        let frame = body.frame().await?.ok()?;
        Some((frame, body))
    })
    .filter_map(move |frame| {
        let out = frame.into_data().ok().map(|data| {
            pending.extend_from_slice(&data);
            let mut out = BytesMut::new();
            while let Some(end) = memchr::memmem::find(&pending, b"\n\n") {
                let event = pending.split_to(end + 2);
                let payload = event.strip_prefix(b"data: ").unwrap_or(&event);
                let payload = &payload[..payload.len().saturating_sub(2)];
                out.extend_from_slice(b"data: ");
                match reencode(payload) {
                    Some(json) => out.extend_from_slice(&json),
                    None => out.extend_from_slice(payload),
                }
                out.extend_from_slice(b"\n\n");
            }
            Ok::<_, Infallible>(Frame::data(out.freeze()))
        });
        std::future::ready(out)
    });
    let mut resp = Response::new(BoxBody::new(StreamBody::new(frames)));
    *resp.status_mut() = parts.status;
    resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    Ok(resp)
}
