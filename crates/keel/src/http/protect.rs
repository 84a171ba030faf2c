//! The protective steps of the chassis: catch panic, error envelope, timeout, security
//! headers, CORS. Each is a small function around the rest of the chassis (`inner`) that maps
//! its own work onto the rest's future (why not an `async fn`: `request_id::assign_request_id`),
//! so its behaviour is readable here; `http/mod.rs` composes them into one middleware.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
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

/// The headers keel adds to a response besides its own, held as the map the response's
/// headers start from: helmet's defaults (plus HSTS in production) and, for a request without
/// `Origin`, what CORS adds (`reloadable.rs`). Cloning the map copies its entries with their
/// hashes, where inserting each name hashed and probed it again on every response
/// (`docs/performance.md`, round 25).
#[derive(Debug, Clone)]
pub struct AddedHeaders(Arc<Added>);

#[derive(Debug)]
struct Added {
    /// The headers, with room for a response's own.
    map: HeaderMap,
    /// The names whose values here replace the response's (what CORS sets); on the others
    /// (the security policy's) the response's own win.
    forced: Vec<HeaderName>,
    /// `Vary` values added after the response's own (CORS's).
    vary: Vec<HeaderValue>,
}

/// helmet's default policy: resources from our own origin only, no plugins, no framing by others.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self';base-uri 'self';\
font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;\
object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';\
upgrade-insecure-requests";

/// How many headers of its own a response may have before adding them regrows the map.
const OWN_HEADERS_ROOM: usize = 16;

/// Never sent (helmet removes it too). A `HeaderName` rather than a `&str`, which the map
/// would parse on every response.
const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

impl AddedHeaders {
    /// helmet's defaults, plus HSTS in production.
    pub fn security(config: &Config) -> Self {
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
        // Room for a response's own headers besides (a clone keeps it): adding them does not
        // regrow the map's index on every response.
        let mut map = HeaderMap::with_capacity(headers.len() + OWN_HEADERS_ROOM);
        for (name, value) in headers {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        AddedHeaders(Arc::new(Added {
            map,
            forced: Vec::new(),
            vary: Vec::new(),
        }))
    }

    /// These headers and `cors`, added as tower-http's `Cors` adds its own: `Vary` appended
    /// to the response's, every other header set over the response's.
    pub fn with_cors(&self, cors: &[(HeaderName, HeaderValue)]) -> Self {
        let mut added = Added {
            map: self.0.map.clone(),
            forced: self.0.forced.clone(),
            vary: self.0.vary.clone(),
        };
        for (name, value) in cors {
            if name == header::VARY {
                added.vary.push(value.clone());
                continue;
            }
            added.map.insert(name.clone(), value.clone());
            if !added.forced.contains(name) {
                added.forced.push(name.clone());
            }
        }
        AddedHeaders(Arc::new(added))
    }

    /// Adds these headers to `headers` (a response's), which then hold: these first, in
    /// order, with the response's own values where it sets a name that is not forced, then
    /// the response's other names in its order, `x-powered-by` dropped; `Vary` values
    /// after the response's own.
    pub fn add_to(&self, headers: &mut HeaderMap) {
        let own = std::mem::replace(headers, self.0.map.clone());
        headers.reserve(own.len());
        // The entry of the name whose values are being moved (`into_iter` gives a name once,
        // then `None` for each further value of it); `None` while a skipped name's are.
        let mut current: Option<header::OccupiedEntry<'_, HeaderValue>> = None;
        for (name, value) in own {
            let Some(name) = name else {
                if let Some(entry) = current.as_mut() {
                    entry.append(value);
                }
                continue;
            };
            current = None;
            if name == X_POWERED_BY || self.0.forced.contains(&name) {
                continue;
            }
            current = Some(match headers.entry(name) {
                header::Entry::Occupied(mut entry) => {
                    entry.insert(value);
                    entry
                }
                header::Entry::Vacant(entry) => entry.insert_entry(value),
            });
        }
        for value in &self.0.vary {
            headers.append(header::VARY, value.clone());
        }
    }
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

    fn all(headers: &HeaderMap, name: HeaderName) -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_policy_fills_in_what_a_response_does_not_set_and_x_powered_by_is_dropped() {
        let policy = AddedHeaders::security(&Config::default());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        headers.append(X_POWERED_BY, HeaderValue::from_static("Express"));
        headers.append(X_POWERED_BY, HeaderValue::from_static("PHP"));
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.append(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
        policy.add_to(&mut headers);
        assert_eq!(all(&headers, header::CONTENT_TYPE), ["text/html"]);
        assert_eq!(all(&headers, header::VARY), ["origin", "accept-encoding"]);
        assert_eq!(
            all(&headers, header::CONTENT_SECURITY_POLICY),
            ["default-src 'none'"]
        );
        assert_eq!(
            all(&headers, header::X_FRAME_OPTIONS),
            ["DENY", "SAMEORIGIN"]
        );
        assert!(!headers.contains_key(X_POWERED_BY));
        for (name, value) in policy.0.map.iter() {
            if *name != header::CONTENT_SECURITY_POLICY && *name != header::X_FRAME_OPTIONS {
                assert_eq!(
                    all(&headers, name.clone()),
                    [value.to_str().unwrap()],
                    "{name}"
                );
            }
        }
        // The policy's eleven names outside production and the response's two new ones; the
        // policy's eleven values, one more `x-frame-options`, `content-type` and two `vary`.
        assert_eq!(headers.keys_len(), 11 + 2);
        assert_eq!(headers.len(), 11 + 1 + 1 + 2);
    }

    #[test]
    fn cors_headers_are_set_over_the_responses_and_its_vary_comes_after_the_responses() {
        let mut config = Config::default();
        config.env = crate::config::Environment::Production;
        let cors = [
            (header::VARY, HeaderValue::from_static("origin")),
            (
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ),
            (
                header::VARY,
                HeaderValue::from_static("access-control-request-method"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ];
        let added = AddedHeaders::security(&config).with_cors(&cors);
        let mut headers = HeaderMap::new();
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("false"),
        );
        headers.append(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("maybe"),
        );
        headers.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        added.add_to(&mut headers);
        assert_eq!(
            all(&headers, header::VARY),
            ["accept-encoding", "origin", "access-control-request-method"]
        );
        assert_eq!(
            all(&headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            ["true"]
        );
        assert_eq!(
            all(&headers, header::X_FRAME_OPTIONS),
            ["DENY"],
            "CORS set it last"
        );
        assert_eq!(all(&headers, header::CACHE_CONTROL), ["no-store"]);
        assert_eq!(
            all(&headers, header::STRICT_TRANSPORT_SECURITY),
            ["max-age=31536000; includeSubDomains"]
        );
        // The security headers keep their place, first; the response's other names follow.
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names[0], "content-security-policy");
        assert_eq!(names.last(), Some(&"cache-control"));
    }
}
