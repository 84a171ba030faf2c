//! What the API's handlers reach. [`ApiState`] holds the parts every component shares — the
//! platform and its store, the session manager, the rate limiter's windows, the idempotency
//! keys, the process's roles and background machinery — and knows no component. A component's
//! handlers take a [`ComponentState`]: that, plus the component's own services.
//!
//! axum clones the state for every extractor and route layer of every request: both are one
//! `Arc`, so that is one reference count, not the dozens of `Arc`s and store handles inside
//! (cloning and dropping those was ~20,000 instructions a getData request,
//! `docs/performance.md`).

use std::sync::Arc;

use axum::extract::FromRef;
use axum::middleware::from_fn_with_state;
use axum::routing::MethodRouter;
use http::StatusCode;
use keel::Platform;
use keel::http::idempotency::{IdempotencyKeys, idempotency};
use keel::http::openapi;
use keel::http::rate_limit::{RateLimitLayerState, RateLimiter, Tier, rate_limit};
use keel::http::session::{SessionManager, SessionSettings};
use keel::secrets::Secret;
use keel::store::Store;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::Role;
use crate::background::Background;

#[derive(Clone)]
pub struct ApiState(Arc<ApiShared>);

impl std::ops::Deref for ApiState {
    type Target = ApiShared;

    fn deref(&self) -> &ApiShared {
        &self.0
    }
}

pub struct ApiShared {
    pub platform: Platform,
    pub sessions: SessionManager,
    pub rate_limiter: Arc<RateLimiter>,
    pub idempotency_keys: IdempotencyKeys,
    /// The OpenAPI document as served, set once when the router is built.
    pub openapi: super::OpenApiText,
    /// What this process runs (`keel serve --role`).
    pub roles: Arc<[Role]>,
    /// Worker pool, job queue, task runner, watcher health.
    pub background: Background,
}

impl ApiState {
    pub fn new(platform: Platform, roles: &[Role], background: Background) -> Self {
        let config = platform.config();
        let store = platform.store();
        // Development and test configs ship a secret; production refuses to start without one.
        let secret =
            config.session.secret.clone().unwrap_or_else(|| {
                Secret::new("development-only-session-secret-not-for-production")
            });
        Self(Arc::new(ApiShared {
            sessions: SessionManager::new(store, &secret, SessionSettings::from_config(&config)),
            rate_limiter: Arc::new(RateLimiter::new()),
            idempotency_keys: IdempotencyKeys::new(store),
            openapi: Default::default(),
            roles: roles.into(),
            background,
            platform,
        }))
    }

    /// The platform's store, for the components' services.
    pub fn store(&self) -> &Store {
        self.platform.store()
    }

    /// Puts a route behind the rate limit of `tier` (documented: it can answer 429). `S`: the
    /// route's state — `ApiState`, or a component's own (docs/architecture.md).
    pub fn limited<S>(&self, tier: Tier, route: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let layer_state = RateLimitLayerState {
            limiter: self.rate_limiter.clone(),
            platform: self.platform.clone(),
            tier,
        };
        let route = document(route, |operation| {
            openapi::answers(operation, StatusCode::TOO_MANY_REQUESTS);
        });
        map_method_router(route, |m| {
            m.route_layer(from_fn_with_state(layer_state, rate_limit))
        })
    }

    /// Makes a creating route honour `Idempotency-Key` (inside its rate limit). Documented:
    /// the header, 409 while the first request with the key is in flight, 422 when the key
    /// comes back with another body.
    pub fn idempotent<S>(&self, route: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let keys = self.idempotency_keys.clone();
        let route = document(route, |operation| {
            let header = Parameter::builder()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(keel::http::idempotency::MAX_KEY_LEN))
                        .pattern(Some("^[!-~]+$")),
                ))
                .description(Some(
                    "Retry-safe creation: the same key and body within 24 h replays the first \
                     response; the key with another body is 422, while the first is in flight 409",
                ))
                .build();
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(header.into());
            openapi::answers(operation, StatusCode::CONFLICT);
            openapi::answers(operation, StatusCode::UNPROCESSABLE_ENTITY);
        });
        map_method_router(route, |m| {
            m.route_layer(from_fn_with_state(keys, idempotency))
        })
    }
}

/// A component's handler state: the shared [`ApiState`] and the component's own services `T`
/// (reached through `Deref`), behind one `Arc`. `AuthUser` and the route layers find the
/// `ApiState` in it (`FromRef`).
pub struct ComponentState<T>(Arc<(ApiState, T)>);

impl<T> ComponentState<T> {
    pub fn new(api: &ApiState, services: T) -> Self {
        Self(Arc::new((api.clone(), services)))
    }

    pub fn api(&self) -> &ApiState {
        &self.0.0
    }
}

impl<T> Clone for ComponentState<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> std::ops::Deref for ComponentState<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.1
    }
}

impl<T> FromRef<ComponentState<T>> for ApiState {
    fn from_ref(state: &ComponentState<T>) -> ApiState {
        state.api().clone()
    }
}

/// Applies `f` to the documented operations of `route`.
fn document<S>(
    (schemas, mut paths, method_router): UtoipaMethodRouter<S>,
    mut f: impl FnMut(&mut Operation),
) -> UtoipaMethodRouter<S> {
    openapi::operations_mut(&mut paths).for_each(&mut f);
    (schemas, paths, method_router)
}

fn map_method_router<S>(
    (schemas, paths, method_router): UtoipaMethodRouter<S>,
    f: impl FnOnce(MethodRouter<S>) -> MethodRouter<S>,
) -> UtoipaMethodRouter<S> {
    (schemas, paths, f(method_router))
}
