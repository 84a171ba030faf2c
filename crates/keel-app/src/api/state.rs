//! `ApiState`: what the API's handlers reach — the platform and one service per component,
//! the session manager, the rate limiter's windows and the idempotency keys. Built once from
//! the platform's store by `api::router`.
//!
//! axum clones the state for every extractor and route layer of every request: `ApiState` is
//! one `Arc` around [`ApiServices`], so that is one reference count, not the dozens of `Arc`s
//! and store handles inside (cloning and dropping those was ~20,000 instructions a getData
//! request, `docs/performance.md`).

use std::sync::Arc;

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

use crate::auth::repository::AuthFailureRepository;
use crate::auth::service::AuthService;
use crate::brands::service::BrandService;
use crate::items::service::ItemService;
use crate::orders::service::OrderService;
use crate::surveys::service::SurveyService;

#[derive(Clone)]
pub struct ApiState(Arc<ApiServices>);

impl std::ops::Deref for ApiState {
    type Target = ApiServices;

    fn deref(&self) -> &ApiServices {
        &self.0
    }
}

#[derive(Clone)]
pub struct ApiServices {
    pub platform: Platform,
    pub auth: AuthService,
    pub auth_failures: AuthFailureRepository,
    pub brands: BrandService,
    pub items: ItemService,
    pub orders: OrderService,
    pub surveys: SurveyService,
    pub sessions: SessionManager,
    pub rate_limiter: Arc<RateLimiter>,
    pub idempotency_keys: IdempotencyKeys,
    /// The OpenAPI document as served, set once when the router is built.
    pub openapi: super::OpenApiText,
    /// Worker pool and job queue (`POST /api/orders/process`); `None` only without a store.
    pub background: Option<crate::background::Background>,
    /// The ops console (`/ops`, `/api/ops/*`); `None` only without a store.
    pub ops: Option<crate::ops::OpsService>,
}

impl ApiState {
    pub fn new(platform: Platform, store: &Store) -> Self {
        let config = platform.config();
        let auth = AuthService::new(store, &config.auth);
        // Development and test configs ship a secret; production refuses to start without one.
        let secret =
            config.session.secret.clone().unwrap_or_else(|| {
                Secret::new("development-only-session-secret-not-for-production")
            });
        let brands = BrandService::new(store);
        Self(Arc::new(ApiServices {
            auth,
            auth_failures: AuthFailureRepository::new(store),
            items: ItemService::new(store, brands.clone()),
            brands,
            orders: OrderService::new(store, &config.orders),
            surveys: SurveyService::new(store),
            sessions: SessionManager::new(store, &secret, SessionSettings::from_config(&config)),
            rate_limiter: Arc::new(RateLimiter::new()),
            idempotency_keys: IdempotencyKeys::new(store),
            openapi: Default::default(),
            background: None,
            ops: None,
            platform,
        }))
    }

    /// Gives the API the process's worker pool and job queue (before the router shares it).
    pub fn with_background(self, background: Option<crate::background::Background>) -> Self {
        let mut services = Arc::unwrap_or_clone(self.0);
        services.background = background;
        Self(Arc::new(services))
    }

    /// Gives the API the ops console's service.
    pub fn with_ops(self, ops: crate::ops::OpsService) -> Self {
        let mut services = Arc::unwrap_or_clone(self.0);
        services.ops = Some(ops);
        Self(Arc::new(services))
    }

    /// Puts a route behind the rate limit of `tier` (documented: it can answer 429).
    pub fn limited(
        &self,
        tier: Tier,
        route: UtoipaMethodRouter<ApiState>,
    ) -> UtoipaMethodRouter<ApiState> {
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
    pub fn idempotent(&self, route: UtoipaMethodRouter<ApiState>) -> UtoipaMethodRouter<ApiState> {
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

/// Applies `f` to the documented operations of `route`.
fn document(
    (schemas, mut paths, method_router): UtoipaMethodRouter<ApiState>,
    mut f: impl FnMut(&mut Operation),
) -> UtoipaMethodRouter<ApiState> {
    openapi::operations_mut(&mut paths).for_each(&mut f);
    (schemas, paths, method_router)
}

fn map_method_router(
    (schemas, paths, method_router): UtoipaMethodRouter<ApiState>,
    f: impl FnOnce(MethodRouter<ApiState>) -> MethodRouter<ApiState>,
) -> UtoipaMethodRouter<ApiState> {
    (schemas, paths, f(method_router))
}
