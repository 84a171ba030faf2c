//! Steps 8 and 9 of the chassis: the request body's limit (`server.body_limit` → 413
//! `payload_too_large`) and the response's compression (gzip when the client accepts it), in
//! front of the router.
//!
//! Both do what tower-http's `RequestBodyLimit` and `Compression` layers do (the tests below
//! compare them), without their cost where there is nothing to do: a request with no body is
//! not wrapped in a limit, and a request without `Accept-Encoding` — which can only be answered
//! as it is — skips the compression layer, its response only marked `Vary: accept-encoding`
//! where the layer would mark it. Each layer wrapped every request's or response's body in a
//! boxed body of its own, which hyper then read through (`docs/performance.md`, round 26).
//! Requests that accept an encoding go through tower-http's layer.

use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{Compression, CompressionLayer};

/// The router with axum's 2 MB extractor default replaced by the chassis's own limit.
type Unlimited = <DefaultBodyLimit as Layer<Router>>::Service;

/// The router behind steps 8 and 9, as the services a request may take: behind tower-http's
/// compression if it accepts an encoding; otherwise without it, and (having no body to read)
/// without axum's extractor limit switched off, one extension less to insert.
pub(super) struct Bodies {
    limit: usize,
    router: Router,
    unlimited: Unlimited,
    compressing: Compression<Unlimited, Compressible>,
}

impl Bodies {
    pub(super) fn new(router: Router, limit: usize) -> Self {
        let unlimited = DefaultBodyLimit::disable().layer(router.clone());
        let compressing = CompressionLayer::new()
            .compress_when(Compressible)
            .layer(unlimited.clone());
        Self {
            limit,
            router,
            unlimited,
            compressing,
        }
    }

    /// Answers `request` through the router, with the body limit and compression around it.
    pub(super) async fn handle(&self, mut request: Request) -> Response {
        // Step 8, as `RequestBodyLimit`: a declared length over the limit is refused before
        // anything reads the body; any other body is read through the limit (or its declared
        // length, if smaller), so a body sent without a length is cut off at the limit.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        let limit = match declared {
            Some(length) if length > self.limit => return length_limit_exceeded(),
            Some(length) => self.limit.min(length),
            None => self.limit,
        };
        let has_body = !request.body().is_end_stream();
        if has_body {
            request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
        }
        // Step 9.
        if request.headers().contains_key(header::ACCEPT_ENCODING) {
            return answer(self.compressing.clone(), request).await;
        }
        let mut response = if has_body {
            answer(self.unlimited.clone(), request).await
        } else {
            answer(self.router.clone(), request).await
        };
        mark_vary(&mut response);
        response
    }
}

/// What `service`, which cannot fail, answers `request` with.
async fn answer<S, B>(service: S, request: Request) -> Response
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    axum::http::Response<B>: IntoResponse,
{
    match service.oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(infallible) => match infallible {},
    }
}

/// What `RequestBodyLimit` answers a declared length over the limit with; the error envelope
/// (step 5) makes it the JSON `payload_too_large`.
fn length_limit_exceeded() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "length limit exceeded",
    )
        .into_response()
}

/// `Vary: accept-encoding` on a response the compression layer would have compressed had the
/// client asked (the layer marks those whatever the request's encodings), unless a `Vary`
/// value names it already.
fn mark_vary(response: &mut Response) {
    let headers = response.headers();
    let compressible = !headers.contains_key(header::CONTENT_ENCODING)
        && !headers.contains_key(header::CONTENT_RANGE)
        && Compressible.should_compress(response);
    let named = || {
        headers
            .get_all(header::VARY)
            .iter()
            .any(|value| contains_ignoring_case(value.as_bytes(), b"accept-encoding"))
    };
    if compressible && !named() {
        response.headers_mut().append(
            header::VARY,
            HeaderValue::from_static(header::ACCEPT_ENCODING.as_str()),
        );
    }
}

/// Whether `needle` (lowercase) occurs in `haystack` in any case, as the layer checks `Vary`.
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Which responses compression may encode (and so mark `vary: accept-encoding`): tower-http's
/// `DefaultPredicate` — 32 bytes or more, not gRPC (but gRPC-Web), not an image (but SVG), not
/// server-sent events — with the `content-type` looked up once rather than by each of its
/// three content-type checks (~450 instructions on every response).
#[derive(Debug, Clone, Copy)]
pub(super) struct Compressible;

impl Predicate for Compressible {
    fn should_compress<B: HttpBody>(&self, response: &axum::http::Response<B>) -> bool {
        if !SizeAbove::new(32).should_compress(response) {
            return false;
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let allowed_except = |kind: &str, but: &str| {
            content_type.starts_with(but) || !content_type.starts_with(kind)
        };
        allowed_except("application/grpc", "application/grpc-web")
            && allowed_except("image/", "image/svg+xml")
            && !content_type.starts_with("text/event-stream")
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderName, Method};
    use axum::routing::any;
    use tower::ServiceBuilder;
    use tower_http::compression::DefaultPredicate;
    use tower_http::limit::RequestBodyLimitLayer;

    use super::*;

    #[test]
    fn compressible_answers_as_tower_https_default_predicate() {
        let types = [
            None,
            Some("application/json"),
            Some("text/html; charset=utf-8"),
            Some("application/grpc"),
            Some("application/grpc+proto"),
            Some("application/grpc-web"),
            Some("application/grpc-web+proto"),
            Some("image/png"),
            Some("image/svg+xml"),
            Some("image/"),
            Some("text/event-stream"),
            Some("text/event-streaming"),
            Some(""),
        ];
        let mut compressed = 0;
        for content_type in types {
            for size in [0, 31, 32, 33, 4096] {
                for exact in [true, false] {
                    let response = response_of(content_type, size, exact);
                    let expected = DefaultPredicate::new().should_compress(&response);
                    assert_eq!(
                        Compressible.should_compress(&response),
                        expected,
                        "{content_type:?}, {size} bytes, size known: {exact}"
                    );
                    compressed += usize::from(expected);
                }
            }
        }
        // Both answers occur: the table is not all one case.
        assert!(compressed > 0 && compressed < types.len() * 10);
    }

    fn response_of(content_type: Option<&str>, size: usize, exact: bool) -> Response {
        let body = if exact {
            Body::from(vec![b'x'; size])
        } else {
            Body::from_stream(futures::stream::iter([Ok::<_, Infallible>(vec![
                b'x';
                size
            ])]))
        };
        let mut response = Response::new(body);
        if let Some(content_type) = content_type {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
        }
        response
    }

    const LIMIT: usize = 64;

    /// A router whose one route answers as the request's `x-answer-*` headers say (content
    /// type, size, whether the size is known, `Vary`, `Content-Encoding`, `Content-Range`),
    /// after reading the request's body with axum's `Bytes` extractor (its length in
    /// `x-read`, or the extractor's rejection).
    fn router() -> Router {
        Router::new().route(
            "/",
            any(async |headers: HeaderMap, body: axum::body::Bytes| {
                let text = |name: &str| {
                    headers
                        .get(name)
                        .map(|value| value.to_str().unwrap().to_owned())
                };
                let size = text("x-answer-size").map_or(0, |size| size.parse().unwrap());
                let exact = text("x-answer-unsized").is_none();
                let content_type = text("x-answer-type");
                let mut response = response_of(content_type.as_deref(), size, exact);
                for (asked, name) in [
                    ("x-answer-vary", header::VARY),
                    ("x-answer-encoding", header::CONTENT_ENCODING),
                    ("x-answer-range", header::CONTENT_RANGE),
                ] {
                    for value in headers.get_all(asked) {
                        response.headers_mut().append(name.clone(), value.clone());
                    }
                }
                response
                    .headers_mut()
                    .insert("x-read", HeaderValue::from(body.len()));
                response
            }),
        )
    }

    /// What the tower-http layers answer `request` with, and what `Bodies` does.
    async fn both(
        request: impl Fn() -> Request,
    ) -> [(StatusCode, Vec<(HeaderName, HeaderValue)>, Vec<u8>); 2] {
        let layered = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(LIMIT))
            .layer(CompressionLayer::new().compress_when(Compressible))
            .layer(DefaultBodyLimit::disable())
            .service(router());
        let theirs = layered.oneshot(request()).await.unwrap().into_response();
        let ours = Bodies::new(router(), LIMIT).handle(request()).await;
        let mut answers = Vec::new();
        for response in [theirs, ours] {
            let (parts, body) = response.into_parts();
            let headers = parts
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            answers.push((parts.status, headers, body.to_vec()));
        }
        answers.try_into().unwrap()
    }

    #[tokio::test]
    async fn responses_are_marked_and_compressed_as_by_tower_https_layer() {
        let types = [None, Some("application/json"), Some("image/png")];
        let varies: [&[&str]; 4] = [
            &[],
            &["origin"],
            &["Origin, Accept-Encoding"],
            &["origin", "ACCEPT-ENCODING"],
        ];
        let encodings = [None, Some("gzip"), Some("identity;q=0"), Some("br")];
        let mut marked = 0;
        for content_type in types {
            for size in [0, 31, 32, 2048] {
                for unsized_body in [false, true] {
                    for vary in varies {
                        for (encoded, ranged) in [(false, false), (true, false), (false, true)] {
                            for accept in encodings {
                                let request = || {
                                    let mut request = Request::get("/");
                                    if let Some(content_type) = content_type {
                                        request = request.header("x-answer-type", content_type);
                                    }
                                    request = request.header("x-answer-size", size);
                                    if unsized_body {
                                        request = request.header("x-answer-unsized", "1");
                                    }
                                    for value in vary {
                                        request = request.header("x-answer-vary", *value);
                                    }
                                    if encoded {
                                        request = request.header("x-answer-encoding", "br");
                                    }
                                    if ranged {
                                        request = request.header("x-answer-range", "bytes 0-1/2");
                                    }
                                    if let Some(accept) = accept {
                                        request = request.header(header::ACCEPT_ENCODING, accept);
                                    }
                                    request.body(Body::empty()).unwrap()
                                };
                                let [theirs, ours] = both(request).await;
                                assert_eq!(
                                    ours, theirs,
                                    "{content_type:?}, {size} bytes (unsized: {unsized_body}), \
                                     vary {vary:?}, encoded {encoded}, ranged {ranged}, \
                                     accepting {accept:?}"
                                );
                                marked += usize::from(theirs.1.iter().any(|(name, value)| {
                                    name == header::VARY && value == "accept-encoding"
                                }));
                            }
                        }
                    }
                }
            }
        }
        // Both cases occur: marked and not.
        assert!(marked > 0);
    }

    #[tokio::test]
    async fn bodies_are_limited_as_by_tower_https_layer() {
        let mut refused = 0;
        for size in [0, 1, LIMIT - 1, LIMIT, LIMIT + 1, 10 * LIMIT] {
            // Sent with its length, with a smaller or larger length than it has, and streamed
            // in chunks with none.
            for declared in [Some(size), Some(size / 2), Some(size + 1), None] {
                for method in [Method::POST, Method::GET] {
                    let request = || {
                        let mut request = Request::builder().method(method.clone()).uri("/");
                        if let Some(declared) = declared {
                            request = request.header(header::CONTENT_LENGTH, declared);
                        }
                        let chunks: Vec<Result<Vec<u8>, Infallible>> =
                            (0..size).map(|_| Ok(vec![b'x'])).collect();
                        let body = match declared {
                            Some(_) => Body::from(vec![b'x'; size]),
                            None => Body::from_stream(futures::stream::iter(chunks)),
                        };
                        request.body(body).unwrap()
                    };
                    let [theirs, ours] = both(request).await;
                    assert_eq!(
                        ours, theirs,
                        "{method} of {size} bytes, declared {declared:?}"
                    );
                    refused += usize::from(theirs.0 == StatusCode::PAYLOAD_TOO_LARGE);
                }
            }
        }
        assert!(refused > 0);
    }

    #[test]
    fn vary_is_searched_in_any_case() {
        assert!(contains_ignoring_case(
            b"Origin, Accept-Encoding",
            b"accept-encoding"
        ));
        assert!(!contains_ignoring_case(b"origin", b"accept-encoding"));
        assert!(!contains_ignoring_case(b"", b"accept-encoding"));
    }
}
