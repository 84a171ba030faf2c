//! Middleware whose settings follow a configuration reload (SIGHUP) instead of being fixed
//! when the router is built. Today: CORS (`server.cors_origins`), and with it the security
//! headers (HSTS by `env`). Each request reads the
//! configuration in effect from the platform's `watch` channel; the CORS policy is rebuilt
//! only when a new configuration was published, not per request.
//!
//! Most requests carry no `Origin` (same-origin pages, servers, probes, load balancers). For
//! those, outside preflight, what tower-http's `Cors` adds to the response depends on the
//! policy alone, not on the request (keel's policies, `protect::cors`, use no predicates on
//! the request): [`CorsPolicy`] records it once, by running that very
//! layer on a request without `Origin`, and adds it the way the layer does (`Vary` appended,
//! the others set), without building the layer's header map and futures per request (~7 k
//! instructions, `docs/performance.md`). Requests with an `Origin`, and every `OPTIONS`, go
//! through the layer itself.
//!
//! The security headers (`protect::AddedHeaders`) are added in the same step, after CORS: to
//! a request without `Origin` both only add headers fixed by the configuration, so its
//! response starts from one map of both (round 25).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::Either;
use tokio::sync::watch;
use tower::{Layer, ServiceExt};
use tower_http::cors::CorsLayer;

use super::protect::{self, AddedHeaders};
use crate::config::Config;

/// The CORS policy of the configuration in effect.
#[derive(Clone)]
pub struct ReloadableCors {
    config: watch::Receiver<Arc<Config>>,
    /// The configuration the policy was built from, and the policy (shared, not cloned, by
    /// each request: a `CorsLayer` holds several lists).
    built: Arc<Mutex<(Arc<Config>, Arc<CorsPolicy>)>>,
}

/// One configuration's CORS and security headers: tower-http's layer, and what a response
/// gets added, with or without CORS's part.
pub struct CorsPolicy {
    layer: CorsLayer,
    /// Added to a response whose request went through the layer: the security headers.
    security: AddedHeaders,
    /// Added to a response to a request without `Origin` that is not a preflight: the
    /// security headers and what the layer adds to such a response; `None` if the layer did
    /// not answer at once (an asynchronous origin predicate), in which case every request
    /// goes through it.
    without_origin: Option<AddedHeaders>,
}

impl CorsPolicy {
    pub fn new(config: &Config) -> Self {
        let layer = protect::cors(config);
        let security = AddedHeaders::security(config);
        let without_origin = headers_without_origin(&layer).map(|cors| security.with_cors(&cors));
        Self {
            layer,
            security,
            without_origin,
        }
    }

    /// Runs `inner` for `request` under this policy and adds the headers above to its
    /// response. A request with an `Origin` (or a preflight) goes through the layer, whose
    /// future is boxed: it is the rare case, and its size would otherwise be in every
    /// request's future.
    pub fn handle(
        self: Arc<Self>,
        request: Request,
        inner: impl AsyncFnOnce(Request) -> Response,
    ) -> impl Future<Output = Response> {
        let without_origin = self.without_origin.is_some()
            && request.method() != Method::OPTIONS
            && !request.headers().contains_key(header::ORIGIN);
        if without_origin {
            return Either::Left(inner(request).map(move |mut response| {
                let added = self.without_origin.as_ref().unwrap_or(&self.security);
                added.add_to(response.headers_mut());
                response
            }));
        }
        let mut inner = Some(inner);
        let service = tower::service_fn(move |request: Request| {
            let inner = inner
                .take()
                .expect("`oneshot` calls its service exactly once");
            async move { Ok::<_, Infallible>(inner(request).await) }
        });
        let through_layer = self.layer.layer(service).oneshot(request);
        Either::Right(Box::pin(through_layer.map(move |outcome| {
            let mut response = match outcome {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            };
            self.security.add_to(response.headers_mut());
            response
        })))
    }
}

/// What `layer` adds to the response of a non-preflight request without `Origin`, in order:
/// read off the layer itself (answering an empty response to `GET /`), so it cannot drift
/// from it.
fn headers_without_origin(layer: &CorsLayer) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let service = layer.layer(tower::service_fn(|_: Request| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let probe = Request::new(Body::empty());
    let response = service.oneshot(probe).now_or_never()?.ok()?;
    Some(
        response
            .headers()
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    )
}

impl ReloadableCors {
    pub fn new(config: watch::Receiver<Arc<Config>>) -> Self {
        let current = config.borrow().clone();
        let policy = Arc::new(CorsPolicy::new(&current));
        Self {
            config,
            built: Arc::new(Mutex::new((current, policy))),
        }
    }

    /// The policy of the configuration in effect.
    pub fn current(&self) -> Arc<CorsPolicy> {
        let config = self.config.borrow().clone();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&built.0, &config) {
            let policy = Arc::new(CorsPolicy::new(&config));
            *built = (config, policy);
        }
        Arc::clone(&built.1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::HeaderMap;

    use super::*;
    use axum::Router;
    use axum::extract::State;
    use axum::middleware::{Next, from_fn_with_state};
    use axum::routing::get;
    use http::StatusCode;

    async fn reloadable_cors(
        State(cors): State<ReloadableCors>,
        request: Request,
        next: Next,
    ) -> Response {
        cors.current()
            .handle(request, |request| next.run(request))
            .await
    }

    /// A handler's response that already has a `Vary` and a header CORS also sets.
    async fn answer(_: Request) -> Response {
        let mut response = Response::new(Body::from("x"));
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-own"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Each name with its values in order (the order of different names carries no meaning).
    fn listed(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
        let mut listed = BTreeMap::<String, Vec<String>>::new();
        for (name, value) in headers {
            listed
                .entry(name.to_string())
                .or_default()
                .push(value.to_str().unwrap().to_owned());
        }
        listed
    }

    /// Every request gets the headers of tower-http's layer and then the security headers the
    /// response does not set, whether it went through the layer or not.
    #[tokio::test]
    async fn requests_without_origin_get_exactly_the_headers_of_the_layer() {
        let configs: [&[&str]; 3] = [&[], &["https://app.example.com"], &["*"]];
        for origins in configs {
            let mut config = Config::default();
            config.server.cors_origins = origins.iter().map(|o| (*o).to_owned()).collect();
            let layer = protect::cors(&config);
            let security = AddedHeaders::security(&config);
            let policy = Arc::new(CorsPolicy::new(&config));
            assert!(policy.without_origin.is_some(), "{origins:?}");
            for method in [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS] {
                for origin in [
                    None,
                    Some("https://app.example.com"),
                    Some("https://x.test"),
                ] {
                    let request = || {
                        let mut builder = http::Request::builder().method(method.clone()).uri("/x");
                        if let Some(origin) = origin {
                            builder = builder.header(header::ORIGIN, origin);
                        }
                        builder.body(Body::empty()).unwrap()
                    };
                    let ours = Arc::clone(&policy).handle(request(), answer).await;
                    let mut theirs = layer
                        .layer(tower::service_fn(|r| async {
                            Ok::<_, Infallible>(answer(r).await)
                        }))
                        .oneshot(request())
                        .await
                        .unwrap();
                    security.add_to(theirs.headers_mut());
                    assert_eq!(
                        ours.status(),
                        theirs.status(),
                        "{origins:?} {method} {origin:?}"
                    );
                    assert_eq!(
                        listed(ours.headers()),
                        listed(theirs.headers()),
                        "{origins:?} {method} {origin:?}"
                    );
                }
            }
        }
    }

    async fn preflight(app: &Router, origin: &str) -> Option<String> {
        let request = http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/x")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_published_configuration_changes_the_allowed_origins() {
        let mut config = Config::default();
        config.server.cors_origins = vec!["https://old.example.com".into()];
        let (sender, receiver) = watch::channel(Arc::new(config.clone()));
        let app = Router::new()
            .route("/x", get(|| async { "x" }))
            .layer(from_fn_with_state(
                ReloadableCors::new(receiver),
                reloadable_cors,
            ));

        let old = "https://old.example.com";
        let new = "https://new.example.com";
        assert_eq!(preflight(&app, old).await.as_deref(), Some(old));
        assert_eq!(preflight(&app, new).await, None);

        config.server.cors_origins = vec![new.into()];
        sender.send_replace(Arc::new(config));
        assert_eq!(preflight(&app, new).await.as_deref(), Some(new));
        assert_eq!(preflight(&app, old).await, None);
    }
}
