//! Accounts and login: `POST /api/auth/register`, `/login`, `/logout`, `GET /api/auth/me`.
//!
//! `model` parses credentials, `service` hashes and verifies with argon2id, `repository` owns the
//! `users` and `auth_failures` collections.

pub mod extract;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;

use keel::store::migrate::IndexDecl;
use utoipa_axum::router::OpenApiRouter;

use crate::api::ApiState;
use crate::component::Component;

/// The auth component: its routes and the indexes of `users`, `auth_failures` and
/// `login_failures`.
pub struct Auth;

impl Component for Auth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn routes(&self, api: &ApiState) -> OpenApiRouter<ApiState> {
        routes::router(api)
    }

    fn indexes(&self) -> Vec<IndexDecl> {
        [
            repository::UserRepository::indexes(),
            repository::AuthFailureRepository::indexes(),
            repository::LoginFailureRepository::indexes(),
        ]
        .concat()
    }
}
