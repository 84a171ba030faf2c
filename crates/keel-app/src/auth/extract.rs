//! `AuthUser`: the per-route authentication guard (the guides' `middleware.auth`).
//!
//! A handler that takes `AuthUser` only runs for a logged-in user. Otherwise the request gets
//! the 401 envelope, a warn log with `evt {category: "authentication", name: "authFailed",
//! outcome: "failure"}`, url, ip and user agent, and a count in `auth_failures` (one document
//! per client, route and hour: `AuthFailureRepository::record`) — written by a
//! task owned by the platform's shutdown tracker, so the response never waits for it and a
//! failed write is logged, not surfaced. For state-changing requests it also checks
//! `Origin`/`Referer` against `server.cors_origins` (CSRF): the cookie proves who, not from where.

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use bson::oid::ObjectId;
use http::request::Parts;
use keel::http::request_id::RequestId;
use keel::http::session::{ActiveSession, CurrentSession};
use keel::http::{ApiError, ClientIp, csrf, rate_limit};

use super::repository::{AuthFailure, AuthFailureRepository};
use crate::api::ApiState;

/// Longest string kept in an auth-failure record.
pub const MAX_RECORDED_CHARS: usize = 512;

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: ObjectId,
    pub session: ActiveSession,
}

/// Works on the API's state and on any component state that contains it (`FromRef`).
impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    ApiState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = &ApiState::from_ref(state);
        let session = parts
            .extensions
            .get::<CurrentSession>()
            .and_then(|s| s.0.clone());
        let Some(session) = session else {
            return Err(refuse(parts, state));
        };
        let Ok(id) = ObjectId::parse_str(&session.user_id) else {
            return Err(refuse(parts, state));
        };
        let allowed = &state.platform.config().server.cors_origins;
        if !csrf::origin_allowed(&parts.method, &parts.headers, allowed) {
            keel::evt!(
                WARN,
                "security",
                "csrfRejected",
                "failure",
                url = %parts.uri.path(),
                origin = ?parts.headers.get(http::header::ORIGIN),
                "state-changing request from a foreign origin refused"
            );
            return Err(ApiError::Forbidden);
        }
        tracing::Span::current().record("user_id", session.user_id.as_str());
        Ok(AuthUser { id, session })
    }
}

/// Logs the failure, records it without waiting, and returns the 401.
fn refuse(parts: &Parts, state: &ApiState) -> ApiError {
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let url = parts.uri.path();
    keel::evt!(
        WARN,
        "authentication",
        "authFailed",
        "failure",
        url = %url,
        ip = %ip,
        user_agent = %user_agent,
        "authentication required"
    );
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("(unmatched)", MatchedPath::as_str);
    let client = parts
        .extensions
        .get::<ClientIp>()
        .map(|c| rate_limit::client_address(c.0).to_string())
        .unwrap_or_default();
    let record = AuthFailure {
        at: bson::DateTime::now(),
        route: sanitize(route),
        method: sanitize(parts.method.as_str()),
        ip: sanitize(&client),
        user_agent: sanitize(user_agent),
        request_id: parts
            .extensions
            .get::<RequestId>()
            .map(|r| sanitize(&r.to_string()))
            .unwrap_or_default(),
    };
    let failures = AuthFailureRepository::new(state.store());
    state
        .platform
        .shutdown()
        .spawn("auth-failure-record", async move {
            if let Err(e) = failures.record(&record).await {
                tracing::error!(error = %e, "recording an auth failure failed");
            }
        });
    ApiError::Unauthorized
}

/// The guides' `safeString`: control and bidi characters removed, length-capped.
fn sanitize(text: &str) -> String {
    keel::store::input::safe_string(text, MAX_RECORDED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_strings_are_capped_and_cleaned() {
        assert_eq!(sanitize("Mozilla\n\u{7}x"), "Mozillax");
        assert_eq!(sanitize(&"a".repeat(5000)).len(), MAX_RECORDED_CHARS);
    }
}
