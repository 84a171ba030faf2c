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
//! 7. CORS (`server.cors_origins`, follows SIGHUP reloads) and then the security headers
//!    (helmet's list; HSTS only in production), one step — `protect.rs`, `reloadable.rs`
//! 8. body limit (`server.body_limit` → 413 `payload_too_large`) — `bodies.rs`
//! 9. compression (gzip, when the client accepts it) — `bodies.rs`
//!
//! Steps 1–7 are async functions around the rest of the chassis, composed by `run_chassis`;
//! 8 and 9 are one step in front of the router, taking tower-http's compression layer only
//! for requests that accept an encoding; all of it is one service, `Chassis`, which `serve`
//! runs.
//! Then 404 and 405 answer through `ApiError` too. Session, rate-limit and auth layers belong
//! *inside* the chassis: add them to the application router before calling `chassis`
//! (`router.layer(session)`; per-route ones with `route_layer`), so they run after compression
//! in the list above and see the request id, span and client IP (`ClientIp` extension). Probes
//! are mounted with `probes::routes`.

mod bodies;
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

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use futures::FutureExt;
use futures::future::BoxFuture;
use tower::Service;

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
pub fn chassis(router: Router, config: &Config) -> Chassis {
    let (_, fixed) = tokio::sync::watch::channel(Arc::new(config.clone()));
    build_chassis(router, config, reloadable::ReloadableCors::new(fixed))
}

/// `chassis`, with the settings that reload on SIGHUP (CORS) following the configuration
/// `platform` publishes. What `keel serve` runs.
pub fn chassis_live(router: Router, platform: &Platform) -> Chassis {
    let cors = reloadable::ReloadableCors::new(platform.watch_config());
    build_chassis(router, &platform.config(), cors)
}

/// An application router inside keel's middleware stack: the service `serve` runs. To add a
/// layer outside the whole stack, make it a router: `Router::new().fallback_service(chassis)`.
///
/// The stack is a service of its own rather than layers on a `Router`: `Router::layer`
/// applies a layer to every route separately, so a request cloned each layer's boxed service,
/// recursively, and boxed each one's future again after routing (`docs/performance.md`, round
/// 9); and as an axum `from_fn` middleware inside an outer router, each request was routed
/// twice, cloned and boxed the stack below the middleware, and boxed three futures (round 14).
/// Here a request costs three boxed futures: the stack's; inside it the rest below the request
/// id (`request_id.rs`); and the router's (`bodies.rs`), boxed so that the steps' futures stay
/// small. Nothing in the stack reads what routing adds (`MatchedPath`): the layers that do
/// (metrics, sessions, rate limits) stay inside, on the router.
#[derive(Clone)]
pub struct Chassis {
    run: Arc<dyn Fn(Request) -> BoxFuture<'static, Response> + Send + Sync>,
}

impl Service<Request> for Chassis {
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Map<
        BoxFuture<'static, Response>,
        fn(Response) -> Result<Response, Infallible>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        (self.run)(request).map(Ok)
    }
}

fn build_chassis(router: Router, config: &Config, cors: reloadable::ReloadableCors) -> Chassis {
    let settings = Settings {
        trusted_proxies: config.server.trusted_proxies.clone().into(),
        request_timeout: config.server.request_timeout,
        cors,
    };
    let body_limit = usize::try_from(config.server.body_limit).unwrap_or(usize::MAX);
    let routed = router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    // One `Arc` for both: a request clones it (two atomic operations on a shared count).
    let stack = Arc::new((settings, bodies::Bodies::new(routed, body_limit)));
    Chassis {
        run: Arc::new(move |request| {
            let stack = stack.clone();
            Box::pin(async move {
                let (settings, bodies) = &*stack;
                // Boxed, the steps' futures above stay small: each is built by value and
                // moved into place, and with the stack's futures inline those copies cost
                // more than the allocation (callgrind, round 14). A closure that returns the
                // box rather than an `async` one that awaits it: that one's future held the
                // request beside the box, and was moved with it (round 27).
                run_chassis(settings, request, |request| {
                    Box::pin(bodies.handle(request))
                })
                .await
            })
        }),
    }
}

/// The settings of steps 1–7 of the chassis.
struct Settings {
    trusted_proxies: Arc<[IpRange]>,
    request_timeout: Duration,
    cors: reloadable::ReloadableCors,
}

/// Steps 1–7 of the chassis around `next` (steps 8 and 9, then the router): each step is a
/// function around the rest (`inner`), so a request passes them as one future. As eight
/// `from_fn` layers each step cloned the whole stack below it and boxed its own future, on
/// every request (`docs/performance.md`).
async fn run_chassis(
    settings: &Settings,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    request_id::assign_request_id(request, move |request| {
        observe::request_span(request, move |request| {
            observe::log_request(&settings.trusted_proxies, request, move |request| {
                protect::catch_panic(request, move |request| {
                    protect::error_envelope(request, move |request| {
                        protect::timeout(settings.request_timeout, request, move |request| {
                            settings.cors.current().handle(request, next)
                        })
                    })
                })
            })
        })
    })
    .await
}
