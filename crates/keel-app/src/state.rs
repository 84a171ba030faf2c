//! `AppState`: what handlers can reach. Built once by `build`, cloned per request (an `Arc`).
//!
//! It wraps the platform (config, readiness, shutdown, store); components add their services
//! here as fields (`items: ItemService`) and handlers take `State<AppState>` or a `FromRef`
//! part of it. Nothing is global.

use std::sync::Arc;

use axum::extract::FromRef;
use keel::Platform;

use crate::Role;
use crate::background::Background;

#[derive(Clone)]
pub struct AppState {
    pub platform: Platform,
    pub roles: Arc<[Role]>,
    /// Worker pool, job queue, task runner, watcher health.
    pub background: Background,
}

impl AppState {
    pub fn new(platform: Platform, roles: &[Role], background: Background) -> Self {
        Self {
            platform,
            roles: roles.into(),
            background,
        }
    }

    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl FromRef<AppState> for Platform {
    fn from_ref(state: &AppState) -> Platform {
        state.platform.clone()
    }
}
