//! Response compression that never wraps a token stream.
//!
//! tower-http's compression body holds every encoder's state inline (kilobytes), and
//! it wraps a response whether or not it ends up compressed. Token streams are never
//! compressed (SSE and NDJSON are excluded: a compressor would hold tokens back), so
//! for them the wrapper is pure cost: about 6 KB for every open stream, a large part
//! of a gateway's memory when thousands of slow streams are open. On the generating
//! routes the decision is therefore made once the answer is there: a stream goes out
//! as it is, a whole answer is compressed as on every other route.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::{
    FutureExt as _,
    future::{BoxFuture, Either, Map},
};
use http::header;
use tower::{Layer as _, ServiceExt as _};
use tower_http::compression::{Compression, CompressionLayer, ResponseFuture, predicate::Predicate};

/// True for the routes whose answers are model output (streamed or whole).
pub fn generates(path: &str) -> bool {
    matches!(
        path,
        "/v1/chat/completions" | "/v1/completions" | "/v1/responses" | "/api/chat" | "/api/generate"
    ) || (path.starts_with("/v1/conversations/") && path.contains("/generations/"))
}

/// [`Compression`] that lets streams from the [`generates`] routes through unwrapped.
#[derive(Clone)]
pub struct SkipGenerating<S, P> {
    inner: Compression<S, P>,
    layer: CompressionLayer<P>,
}

impl<S, P: Predicate> SkipGenerating<S, P> {
    /// Compresses `inner`'s answers as `layer` says; streams of the generating routes
    /// are never wrapped.
    pub fn new(inner: S, layer: &CompressionLayer<P>) -> Self {
        SkipGenerating { inner: layer.layer(inner), layer: layer.clone() }
    }
}

/// True for a token stream (SSE or NDJSON).
fn is_stream(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream") || t.starts_with("application/x-ndjson"))
}

/// `resp`, compressed as `layer` says for a client that accepts `accept`.
async fn compress_ready<P: Predicate>(
    layer: CompressionLayer<P>,
    accept: http::HeaderValue,
    resp: Response,
) -> Result<Response, Infallible> {
    let mut probe = Request::new(axum::body::Body::empty());
    probe.headers_mut().insert(header::ACCEPT_ENCODING, accept);
    let mut once = Some(resp);
    let ready = tower::service_fn(move |_: Request| std::future::ready(Ok(once.take().unwrap_or_default())));
    layer.layer(ready).oneshot(probe).await.map(IntoResponse::into_response)
}

type Compressed<F, P> = Map<
    ResponseFuture<F, P>,
    fn(
        Result<http::Response<tower_http::compression::CompressionBody<axum::body::Body>>, Infallible>,
    ) -> Result<Response, Infallible>,
>;

fn boxed(
    r: Result<http::Response<tower_http::compression::CompressionBody<axum::body::Body>>, Infallible>,
) -> Result<Response, Infallible> {
    r.map(IntoResponse::into_response)
}

impl<S, P> tower::Service<Request> for SkipGenerating<S, P>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
    P: Predicate + Send + Sync + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, Compressed<S::Future, P>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The compression service's readiness is its inner service's.
        tower::Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if generates(req.uri().path()) {
            let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
            let answer = self.inner.get_mut().call(req);
            let layer = self.layer.clone();
            Either::Left(Box::pin(async move {
                let resp = answer.await?;
                match accept {
                    Some(accept) if !is_stream(&resp) => compress_ready(layer, accept, resp).await,
                    _ => Ok(resp),
                }
            }))
        } else {
            Either::Right(self.inner.call(req).map(boxed as fn(_) -> _))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::generates;

    #[test]
    fn generating_routes_are_named_exactly() {
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/responses",
            "/api/chat",
            "/api/generate",
            "/v1/conversations/c1/generations/m1",
        ] {
            assert!(generates(path), "{path}");
        }
        for path in
            ["/v1/models", "/api/tags", "/v1/conversations/c1", "/v1/conversations/c1/generations", "/"]
        {
            assert!(!generates(path), "{path}");
        }
    }
}
