//! The HTTP chassis: the layers every keel API runs behind, and the server loop.
//!
//! `chassis(router, &config)` wraps an application router in this order (outermost first):
//!
//! 1. request id (`x-request-id` generated or propagated, echoed) — `request_id.rs`
//! 2. trace span (`http.request`, W3C `traceparent` as parent) — `observe.rs`
//! 3. request log (one line per request, level by status) — `observe.rs`
//! 4. catch panic (500 envelope with the request id) — `protect.rs`
//! 5. error envelope (plain-text errors from extractors and layers become JSON) — `protect.rs`
//! 6. timeout (`server.request_timeout` → 503 `timeout`) — `protect.rs`
//! 7. security headers (helmet's list; HSTS only in production) — `protect.rs`
//! 8. CORS (`server.cors_origins`, follows SIGHUP reloads) — `protect.rs`, `reloadable.rs`
//! 9. body limit (`server.body_limit` → 413 `payload_too_large`)
//! 10. compression (gzip)
//!
//! Steps 1–8 are async functions around the rest of the chassis, composed by `run_chassis`
//! into one middleware; 9 and 10 are tower-http layers. Then 404 and 405 answer through
//! `ApiError` too. Session, rate-limit and auth layers belong *inside* the chassis: add them
//! to the application router before calling `chassis` (`router.layer(session)`; per-route ones
//! with `route_layer`), so they run after compression in the list above and see the request
//! id, span and client IP (`ClientIp` extension). Probes are mounted with `probes::routes`.

pub mod csrf;
pub mod error;
pub mod idempotency;
pub mod json;
pub mod json_text;
pub mod listen;
pub mod observe;
pub mod openapi;
pub mod operator;
pub mod probes;
pub mod protect;
pub mod rate_limit;
pub mod reloadable;
pub mod request_id;
pub mod response;
pub mod server;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;

pub use error::{ApiError, FieldError};
pub use observe::ClientIp;
pub use operator::OperatorAccess;
pub use request_id::RequestId;
pub use response::{Created, Data, DataText, JsonText, JsonTextWriter, List, ListText};
pub use server::{ConnectionLimits, serve};

use crate::Platform;
use crate::config::{Config, IpRange};

/// Wraps `router` (all application routes, already merged, their state given) in keel's
/// middleware stack, with the settings of `config` fixed for the router's life.
pub fn chassis(router: Router, config: &Config) -> Router {
    let (_, fixed) = tokio::sync::watch::channel(Arc::new(config.clone()));
    build_chassis(router, config, reloadable::ReloadableCors::new(fixed))
}

/// `chassis`, with the settings that reload on SIGHUP (CORS) following the configuration
/// `platform` publishes. What `keel serve` runs.
pub fn chassis_live(router: Router, platform: &Platform) -> Router {
    let cors = reloadable::ReloadableCors::new(platform.watch_config());
    build_chassis(router, &platform.config(), cors)
}

/// The stack wraps the routed router once, as one service, rather than being added with
/// `Router::layer`: that applies a layer to every route separately, so a request cloned each
/// layer's boxed service, recursively, and boxed each one's future again after routing
/// (`docs/performance.md`, round 9). Nothing in the stack reads what routing adds (`MatchedPath`):
/// the layers that do (metrics, sessions, rate limits) stay inside, on the router.
fn build_chassis(router: Router, config: &Config, cors: reloadable::ReloadableCors) -> Router {
    let chassis = Arc::new(Chassis {
        trusted_proxies: config.server.trusted_proxies.clone().into(),
        request_timeout: config.server.request_timeout,
        security_headers: protect::SecurityHeaders::for_config(config),
        cors,
    });
    let body_limit = usize::try_from(config.server.body_limit).unwrap_or(usize::MAX);
    let routed = router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let stack = ServiceBuilder::new()
        .layer(from_fn_with_state(chassis, run_chassis))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(CompressionLayer::new())
        // The chassis's own limit (step 9) replaces axum's 2 MB extractor default.
        .layer(DefaultBodyLimit::disable())
        .service(routed);
    Router::new().fallback_service(stack)
}

/// The settings of steps 1–8 of the chassis.
struct Chassis {
    trusted_proxies: Arc<[IpRange]>,
    request_timeout: Duration,
    security_headers: protect::SecurityHeaders,
    cors: reloadable::ReloadableCors,
}

/// Steps 1–8 of the chassis as one middleware: each step is a function around the rest
/// (`inner`), so a request passes them as one future. As eight `from_fn` layers each step
/// cloned the whole stack below it and boxed its own future, on every request
/// (`docs/performance.md`).
async fn run_chassis(
    State(chassis): State<Arc<Chassis>>,
    request: Request,
    next: Next,
) -> Response {
    let chassis = &*chassis;
    request_id::assign_request_id(request, move |request| {
        observe::request_span(request, move |request| {
            observe::log_request(&chassis.trusted_proxies, request, move |request| {
                protect::catch_panic(request, move |request| {
                    protect::error_envelope(request, move |request| {
                        protect::timeout(chassis.request_timeout, request, move |request| {
                            protect::security_headers(
                                &chassis.security_headers,
                                request,
                                move |request| {
                                    let cors = chassis.cors.current();
                                    cors.handle(request, |request| next.run(request))
                                },
                            )
                        })
                    })
                })
            })
        })
    })
    .await
}
