//! The HTTP API of the reference application: every component's routes, the session layer
//! around them, and the OpenAPI document generated from the same route declarations.
//!
//! Each component gives its routes (`Component::routes`), every one declared
//! with `routes!` — which registers the handler with axum *and* its `#[utoipa::path]` with the
//! document — so a route cannot exist without being documented.
//! Per route, outermost first: session (here, for all) → rate-limit tier → idempotency (creating
//! routes) → the handler, whose `AuthUser` argument is the auth check.

mod state;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use keel::http::rate_limit::Tier;
use keel::http::session::session_layer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use state::{ApiState, ComponentState};

use crate::component::Component;

/// The document's fixed parts; paths and schemas come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keel API",
        description = "Every success is `{\"success\": true, \"data\": …}` (lists add `\"total\"`); every error is `{\"success\": false, \"error\": {\"code\", \"message\", \"details\"?}}`. Log in to get the `sessionId` cookie. Responses of rate-limited routes carry `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (and `Retry-After` on 429)."
    ),
    modifiers(&SessionCookie),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "brands", description = "Brands items belong to"),
        (name = "items", description = "Items, including the guides' getData and createItem"),
        (name = "orders", description = "The caller's orders"),
        (name = "surveys", description = "Surveys and NPS statistics"),
        (name = "ops", description = "The ops console (admin role): tasks, jobs, watchers, locks, replicas, runtime"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("sessionId"))),
        );
    }
}

/// The error envelope every error response has (`keel::http::ApiError` writes it).
pub use keel::http::openapi::ErrorBody;

/// The routes of `components` with their layers, ready to merge into the application router,
/// plus the OpenAPI document (also served at `/api/openapi.json`).
pub fn router<S>(
    state: ApiState,
    components: &[&dyn Component],
) -> (Router<S>, Arc<utoipa::openapi::OpenApi>)
where
    S: Clone + Send + Sync + 'static,
{
    let (router, document) = components
        .iter()
        .fold(
            OpenApiRouter::with_openapi(ApiDoc::openapi()),
            |router, component| router.merge(component.routes(&state)),
        )
        .routes(state.limited(Tier::Public, routes!(openapi_json)))
        .split_for_parts();
    let document = Arc::new(with_shared_answers(document));
    // Set once, before the router serves its first request.
    let _ = state
        .openapi
        .set(serde_json::to_string(&*document).unwrap_or_default());
    let router = router
        .layer(from_fn_with_state(state.sessions.clone(), session_layer))
        .with_state(state);
    (router, document)
}

/// Completes the generated document with what every route can answer besides its own
/// statuses (the chassis's 500/503, `ApiJson`'s 400/413/415, a session's 401/403: see
/// `keel::http::openapi::add_chassis_answers`), as references to shared error responses.
fn with_shared_answers(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    keel::http::openapi::add_chassis_answers(&mut document.paths);
    keel::http::openapi::add_error_components(
        document.components.get_or_insert_with(Default::default),
    );
    document
}

/// The OpenAPI 3.1 document of this API, generated from the route declarations.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", body = serde_json::Value, content_type = "application/json")))]
async fn openapi_json(State(api): State<ApiState>) -> Response {
    let body = api.openapi.get().cloned().unwrap_or_default();
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Holder for the served document (filled by [`router`]).
pub type OpenApiText = Arc<OnceLock<String>>;
