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
//! then 404 and 405 answer through `ApiError` too. Session, rate-limit and auth layers (API
//! issue) belong *inside* the chassis: add them to the application router before calling
//! `chassis` (`router.layer(session)`; per-route ones with `route_layer`), so they run after
//! compression in the list above and see the request id, span and client IP (`ClientIp`
//! extension). Probes are mounted with `probes::routes`.

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

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;

pub use error::{ApiError, FieldError};
pub use observe::ClientIp;
pub use operator::OperatorAccess;
pub use request_id::RequestId;
pub use response::{Created, Data, DataText, JsonText, List, ListText};
pub use server::{ConnectionLimits, serve};

use crate::Platform;
use crate::config::{Config, IpRange};

/// Wraps `router` (all application routes, already merged) in keel's middleware stack, with
/// the settings of `config` fixed for the router's life.
pub fn chassis<S>(router: Router<S>, config: &Config) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (_, fixed) = tokio::sync::watch::channel(Arc::new(config.clone()));
    build_chassis(router, config, reloadable::ReloadableCors::new(fixed))
}

/// `chassis`, with the settings that reload on SIGHUP (CORS) following the configuration
/// `platform` publishes. What `keel serve` runs.
pub fn chassis_live<S>(router: Router<S>, platform: &Platform) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let cors = reloadable::ReloadableCors::new(platform.watch_config());
    build_chassis(router, &platform.config(), cors)
}

fn build_chassis<S>(
    router: Router<S>,
    config: &Config,
    cors: reloadable::ReloadableCors,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let trusted_proxies: Arc<[IpRange]> = config.server.trusted_proxies.clone().into();
    let body_limit = usize::try_from(config.server.body_limit).unwrap_or(usize::MAX);
    let stack = ServiceBuilder::new()
        .layer(from_fn(request_id::assign_request_id))
        .layer(from_fn(observe::request_span))
        .layer(from_fn_with_state(trusted_proxies, observe::log_request))
        .layer(from_fn(protect::catch_panic))
        .layer(from_fn(protect::error_envelope))
        .layer(from_fn_with_state(
            config.server.request_timeout,
            protect::timeout,
        ))
        .layer(from_fn_with_state(
            protect::SecurityHeaders::for_config(config),
            protect::security_headers,
        ))
        .layer(from_fn_with_state(cors, reloadable::reloadable_cors))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(CompressionLayer::new());
    router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // The chassis's own limit (step 9) replaces axum's 2 MB extractor default.
        .layer(DefaultBodyLimit::disable())
        .layer(stack)
}
