//! The protective steps of the chassis: catch panic, error envelope, timeout, security
//! headers, CORS. Each is a small function around the rest of the chassis (`inner`) that maps
//! its own work onto the rest's future (why not an `async fn`: `request_id::assign_request_id`),
//! so its behaviour is readable here; `http/mod.rs` composes them into one middleware.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::Either;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use super::error::ApiError;
use crate::config::Config;

/// A panicking handler answers 500 (with the request id) instead of dropping the connection;
/// the panic is logged with the request's span, and the process keeps serving.
pub fn catch_panic(
    request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    // The rest of the chassis is built here and then polled: a panic in either is caught.
    match std::panic::catch_unwind(AssertUnwindSafe(|| inner(request))) {
        Ok(rest) => Either::Left(
            AssertUnwindSafe(rest)
                .catch_unwind()
                .map(|outcome| outcome.unwrap_or_else(panicked)),
        ),
        Err(payload) => Either::Right(std::future::ready(panicked(payload))),
    }
}

fn panicked(payload: Box<dyn std::any::Any + Send>) -> Response {
    let message = crate::shutdown::panic_message(&*payload);
    ApiError::internal(format!("request handler panicked: {message}")).into_response()
}

/// A response extension that keeps an error response's own body: the HTML 401 and 403 pages
/// of the ops console are meant for a person, not rewritten into the JSON envelope.
#[derive(Debug, Clone, Copy)]
pub struct KeepErrorBody;

/// Responses that are errors but not JSON (axum extractor rejections, tower layers) are
/// rewritten into the envelope, keeping their status. A 4xx's text is kept as the message;
/// a 5xx's text is dropped (it may hold internals).
pub fn error_envelope(
    request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    inner(request).then(into_envelope)
}

async fn into_envelope(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let keep = response.extensions().get::<KeepErrorBody>().is_some();
    if !(status.is_client_error() || status.is_server_error()) || is_json || keep {
        return response;
    }
    let is_encoded = response.headers().contains_key(header::CONTENT_ENCODING);
    let (parts, body) = response.into_parts();
    let message = if status.is_client_error() && !is_encoded {
        axum::body::to_bytes(body, 2048)
            .await
            .ok()
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
    } else {
        None
    };
    let mut rewritten = ApiError::from_status(status, message).into_response();
    *rewritten.status_mut() = status;
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// A request still running after `server.request_timeout` is abandoned: 503 `timeout`.
pub fn timeout(
    limit: Duration,
    request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    tokio::time::timeout(limit, inner(request)).map(move |outcome| {
        outcome.unwrap_or_else(|_| {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            ApiError::Timeout.into_response()
        })
    })
}

/// The response headers of helmet's defaults, plus HSTS in production.
#[derive(Debug, Clone)]
pub struct SecurityHeaders(Arc<[(HeaderName, HeaderValue)]>);

/// helmet's default policy: resources from our own origin only, no plugins, no framing by others.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self';base-uri 'self';\
font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;\
object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';\
upgrade-insecure-requests";

impl SecurityHeaders {
    pub fn for_config(config: &Config) -> Self {
        let mut headers = vec![
            ("content-security-policy", CONTENT_SECURITY_POLICY),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
            ("origin-agent-cluster", "?1"),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
            ("x-dns-prefetch-control", "off"),
            ("x-download-options", "noopen"),
            ("x-frame-options", "SAMEORIGIN"),
            ("x-permitted-cross-domain-policies", "none"),
            ("x-xss-protection", "0"),
        ];
        // HSTS pins browsers to HTTPS for a year: only where HTTPS is guaranteed.
        if config.env.is_production() {
            headers.push((
                "strict-transport-security",
                "max-age=31536000; includeSubDomains",
            ));
        }
        SecurityHeaders(
            headers
                .into_iter()
                .map(|(name, value)| {
                    (
                        HeaderName::from_static(name),
                        HeaderValue::from_static(value),
                    )
                })
                .collect(),
        )
    }
}

/// Never sent (helmet removes it too). A `HeaderName` rather than a `&str`, which the map
/// would parse on every response.
const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// Runs `inner` and adds the policy's headers its response does not set itself.
pub fn security_headers(
    policy: &SecurityHeaders,
    request: Request,
    inner: impl AsyncFnOnce(Request) -> Response,
) -> impl Future<Output = Response> {
    inner(request).map(move |mut response| {
        let headers = response.headers_mut();
        // One allocation for the dozen headers below instead of a regrowth every few inserts,
        // and one hash and probe per header (`entry`), not two (`contains_key`, `insert`).
        headers.reserve(policy.0.len());
        for (name, value) in policy.0.iter() {
            if let header::Entry::Vacant(vacant) = headers.entry(name) {
                vacant.insert(value.clone());
            }
        }
        headers.remove(X_POWERED_BY);
        response
    })
}

/// CORS from `server.cors_origins`: none listed → no cross-origin access; `*` (development
/// only, enforced by config validation) → any origin without credentials; otherwise exactly
/// the listed origins, with credentials (session cookies).
pub fn cors(config: &Config) -> CorsLayer {
    let origins = &config.server.cors_origins;
    let exposed = [
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("retry-after"),
        HeaderName::from_static("ratelimit-limit"),
        HeaderName::from_static("ratelimit-remaining"),
        HeaderName::from_static("ratelimit-reset"),
    ];
    let base = CorsLayer::new()
        .expose_headers(exposed)
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return base
            .allow_origin(AllowOrigin::any())
            .allow_methods(AllowMethods::any())
            .allow_headers(AllowHeaders::any());
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    base.allow_origin(AllowOrigin::list(allowed))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("idempotency-key"),
        ])
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;

    use super::*;

    #[tokio::test]
    async fn a_panic_while_the_rest_is_built_or_while_it_runs_is_a_500() {
        let building = catch_panic(
            Request::new(Body::empty()),
            |_| -> std::future::Ready<Response> { panic!("the rest panicked while it was built") },
        );
        assert_eq!(building.await.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let running = catch_panic(Request::new(Body::empty()), |_| async {
            if true {
                panic!("the rest panicked while it ran");
            }
            Response::new(Body::empty())
        });
        assert_eq!(running.await.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let fine = catch_panic(Request::new(Body::empty()), |_| async {
            Response::new(Body::empty())
        });
        assert_eq!(fine.await.status(), StatusCode::OK);
    }
}
