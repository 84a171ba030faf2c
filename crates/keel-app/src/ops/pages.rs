//! `GET /ops`: the console page and its two assets, embedded in the binary (`include_str!`),
//! so the console needs no CDN, no network and no JavaScript toolchain at build time.
//!
//! The page and its assets need an admin session like the JSON routes. Without a session
//! `/ops` answers 401 with a small sign-in page; a signed-in non-admin gets a 403 page. The
//! sign-in page's script, `/ops/login.js`, is the one thing here served to anyone: the
//! content security policy (`script-src 'self'`) forbids inline scripts, and it holds no data.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use keel::http::ApiError;
use keel::http::protect::KeepErrorBody;
use keel::http::rate_limit::{RateLimitLayerState, Tier, rate_limit};

use super::extract::AdminUser;
use super::routes::OpsApi;
use crate::api::ApiState;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const LOGIN_JS: &str = include_str!("assets/login.js");
const FORBIDDEN_HTML: &str = include_str!("assets/forbidden.html");

/// Every asset, for the size budget test.
pub const ASSETS: &[(&str, &str)] = &[
    ("index.html", INDEX_HTML),
    ("app.js", APP_JS),
    ("app.css", APP_CSS),
    ("login.html", LOGIN_HTML),
    ("login.js", LOGIN_JS),
    ("forbidden.html", FORBIDDEN_HTML),
];

/// The page and its assets (not in the OpenAPI document: they are HTML and scripts).
pub fn router(state: &ApiState) -> Router<OpsApi> {
    let limit = RateLimitLayerState {
        limiter: state.rate_limiter.clone(),
        platform: state.platform.clone(),
        tier: Tier::Public,
    };
    Router::new()
        .route("/ops", get(console))
        .route("/ops/app.js", get(app_js))
        .route("/ops/app.css", get(app_css))
        .route("/ops/login.js", get(login_js))
        .route_layer(from_fn_with_state(limit, rate_limit))
}

fn asset(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    (
        status,
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        // The 401 and 403 pages are HTML for a person: not rewritten into the JSON envelope.
        axum::Extension(KeepErrorBody),
        body,
    )
        .into_response()
}

const HTML: &str = "text/html; charset=utf-8";

async fn console(admin: Result<AdminUser, ApiError>) -> Response {
    match admin {
        Ok(_) => asset(StatusCode::OK, HTML, INDEX_HTML),
        Err(ApiError::Unauthorized) => asset(StatusCode::UNAUTHORIZED, HTML, LOGIN_HTML),
        Err(ApiError::Forbidden) => asset(StatusCode::FORBIDDEN, HTML, FORBIDDEN_HTML),
        Err(other) => other.into_response(),
    }
}

async fn app_js(admin: Result<AdminUser, ApiError>) -> Response {
    match admin {
        Ok(_) => asset(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        Err(error) => error.into_response(),
    }
}

async fn app_css(admin: Result<AdminUser, ApiError>) -> Response {
    match admin {
        Ok(_) => asset(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        Err(error) => error.into_response(),
    }
}

async fn login_js() -> Response {
    asset(StatusCode::OK, "text/javascript; charset=utf-8", LOGIN_JS)
}
