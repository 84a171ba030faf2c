//! `AdminUser`: the guard of everything under `/ops` and `/api/ops/*`.
//!
//! It is `AuthUser` first — no session: 401 (logged and recorded like every auth failure); a
//! state-changing request from a foreign origin: 403 (the API's CSRF rule) — then the role:
//! the user must hold `admin` (granted by `keel users grant-admin`) or be listed in
//! `ops.admin_emails`. Anyone else gets 403, an `evt {category: "security", name:
//! "opsForbidden"}` warning and an `ops.denied` audit record (written without delaying the
//! answer).

use axum::extract::FromRequestParts;
use http::request::Parts;
use keel::http::{ApiError, ClientIp};

use super::routes::OpsApi;
use super::service::Actor;
use crate::auth::extract::AuthUser;
use crate::auth::model::ADMIN_ROLE;

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub email: String,
    /// `grant` or `config`.
    pub admin_by: &'static str,
    pub actor: Actor,
}

impl FromRequestParts<OpsApi> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &OpsApi) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        let Some(record) = state.users.user_by_id(user.id).await? else {
            return Err(ApiError::Unauthorized);
        };
        let actor = Actor {
            id: Some(user.id.to_hex()),
            name: record.email.clone(),
            ip: parts.extensions.get::<ClientIp>().map(|c| c.0.to_string()),
        };
        let admin_by = if record.has_role(ADMIN_ROLE) {
            "grant"
        } else if state
            .api()
            .platform
            .config()
            .ops
            .is_bootstrap_admin(&record.email)
        {
            "config"
        } else {
            refuse(parts, state, actor);
            return Err(ApiError::Forbidden);
        };
        Ok(AdminUser {
            email: record.email,
            admin_by,
            actor,
        })
    }
}

fn refuse(parts: &Parts, state: &OpsApi, actor: Actor) {
    let path = parts.uri.path().to_owned();
    keel::evt!(
        WARN,
        "security",
        "opsForbidden",
        "failure",
        url = %path,
        user = %actor.name,
        "the ops console needs the admin role"
    );
    let ops = state.ops.clone();
    let method = parts.method.as_str().to_owned();
    state
        .api()
        .platform
        .shutdown()
        .spawn("ops-denied-audit", async move {
            ops.audit(
                &actor,
                "ops.denied",
                &format!("{method} {path}"),
                "denied",
                None,
            )
            .await;
        });
}
