//! `AppState`: the state of the application router outside the API — the probes, `/metrics`
//! and the test-only routes. Built once by `build`; cheap to clone.
//!
//! It holds the platform (config, readiness, shutdown, store), the process's roles and its
//! background machinery. The API's handlers have their own states (`api::ApiState`, shared, and
//! each component's `api::ComponentState`, docs/architecture.md). Nothing is global.

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
