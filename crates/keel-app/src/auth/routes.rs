//! `/api/auth/{register,login,logout,logout-all,me}`.
//!
//! Register and login start a fresh session (new id; any previous one is deleted) and set the
//! `sessionId` cookie; logout deletes the session and clears the cookie; logout-all ends every
//! session of the user (every device, every replica within `session.cache_ttl`). Register and login sit
//! in the `auth` rate tier (5 / 15 min per client), the others in `api`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::SET_COOKIE;
use keel::http::json::{ApiJson, GuardedInput};
use keel::http::rate_limit::Tier;
use keel::http::session::CurrentSession;
use keel::http::{ApiError, Created, Data};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::AuthUser;
use super::model::{CredentialsRequest, UserView};
use super::service::AuthError;
use super::service::AuthService;
use crate::api::{ApiState, ComponentState, ErrorBody};
use keel::http::session::SessionManager;

/// An email (≤ 254) and a password (≤ 128 characters) fit in far less than 4 KB.
impl GuardedInput for CredentialsRequest {
    const MAX_BODY_BYTES: usize = 4 * 1024;
}

/// What the auth handlers use.
pub struct Services {
    auth: AuthService,
    sessions: SessionManager,
}

/// The handlers' state: the shared API state and this component's services.
type AuthApi = ComponentState<Services>;

pub fn router(state: &ApiState) -> OpenApiRouter<ApiState> {
    let services = Services {
        auth: AuthService::new(state.store(), &state.platform.config().auth),
        sessions: state.sessions.clone(),
    };
    OpenApiRouter::new()
        .routes(state.limited(Tier::Auth, routes!(register)))
        .routes(state.limited(Tier::Auth, routes!(login)))
        .routes(state.limited(Tier::Api, routes!(logout)))
        .routes(state.limited(Tier::Api, routes!(logout_all)))
        .routes(state.limited(Tier::Api, routes!(me)))
        .with_state(ComponentState::new(state, services))
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(fields) => fields.into(),
            AuthError::EmailTaken => ApiError::Conflict("email already registered".into()),
            AuthError::InvalidCredentials => ApiError::Unauthorized,
            AuthError::Throttled { retry_after_secs } => {
                ApiError::TooManyRequests { retry_after_secs }
            }
            AuthError::Hashing(reason) => ApiError::internal(reason),
            AuthError::Store(e) => e.into(),
        }
    }
}

/// Creates an account and logs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = CredentialsRequest,
    responses(
        (status = 201, description = "Account created, session cookie set", body = Created<UserView>),
        (status = 400, description = "Invalid email or password (every problem listed)", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
async fn register(
    State(api): State<AuthApi>,
    CurrentSession(previous): CurrentSession,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Response, ApiError> {
    let credentials = body.parse()?;
    let user = api.auth.register(credentials).await?;
    let cookie = api
        .sessions
        .start(&user.id.to_hex(), previous.as_ref())
        .await?;
    let mut response = Created(UserView::from(&user)).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

/// Logs in: the same 401 for an unknown email and a wrong password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = CredentialsRequest,
    responses(
        (status = 200, description = "Logged in, session cookie set (a new session id)", body = Data<UserView>),
        (status = 400, description = "Malformed credentials", body = ErrorBody),
        (status = 401, description = "Invalid email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or too many failed logins for this account (auth.max_failed_logins); Retry-After says when", body = ErrorBody),
    ))]
async fn login(
    State(api): State<AuthApi>,
    CurrentSession(previous): CurrentSession,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Response, ApiError> {
    let credentials = body.parse()?;
    let user = match api.auth.login(credentials).await {
        Ok(user) => user,
        Err(AuthError::InvalidCredentials) => {
            keel::evt!(
                WARN,
                "authentication",
                "loginFailed",
                "failure",
                "login refused"
            );
            return Err(ApiError::Unauthorized);
        }
        Err(AuthError::Throttled { retry_after_secs }) => {
            keel::evt!(
                WARN,
                "security",
                "loginThrottled",
                "failure",
                retry_after_secs,
                "login refused: too many failed logins for this account"
            );
            return Err(ApiError::TooManyRequests { retry_after_secs });
        }
        Err(e) => return Err(e.into()),
    };
    keel::evt!(INFO, "authentication", "login", "success", user_id = %user.id, "logged in");
    let cookie = api
        .sessions
        .start(&user.id.to_hex(), previous.as_ref())
        .await?;
    let mut response = Data(UserView::from(&user)).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LoggedOut {
    logged_out: bool,
}

/// Ends the session: the record is deleted and the cookie cleared.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses(
        (status = 200, description = "Logged out", body = Data<LoggedOut>),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn logout(State(api): State<AuthApi>, user: AuthUser) -> Result<Response, ApiError> {
    let cookie = api.sessions.end(&user.session).await?;
    let mut response = Data(LoggedOut { logged_out: true }).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LoggedOutEverywhere {
    /// Sessions ended, this one included.
    sessions_ended: u64,
}

/// Ends every session of the user — every device — and clears this cookie. Other replicas
/// honour it within `session.cache_ttl` (2 s).
#[utoipa::path(post, path = "/api/auth/logout-all", tag = "auth",
    responses(
        (status = 200, description = "Every session ended", body = Data<LoggedOutEverywhere>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Cross-origin request refused (CSRF)", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn logout_all(State(api): State<AuthApi>, user: AuthUser) -> Result<Response, ApiError> {
    let ended = api.sessions.end_all(&user.session.user_id).await?;
    keel::evt!(
        INFO,
        "authentication",
        "logoutEverywhere",
        "success",
        user_id = %user.id,
        sessions_ended = ended,
        "every session of the user ended"
    );
    let mut response = Data(LoggedOutEverywhere {
        sessions_ended: ended,
    })
    .into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, api.sessions.clearing_cookie());
    Ok(response)
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The current user", body = Data<UserView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn me(State(api): State<AuthApi>, user: AuthUser) -> Result<Data<UserView>, ApiError> {
    match api.auth.user_by_id(user.id).await? {
        Some(record) => Ok(Data(UserView::from(&record))),
        // The account is gone but the session outlived it: not logged in.
        None => Err(ApiError::Unauthorized),
    }
}
