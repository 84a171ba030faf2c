//! keel-app: the reference application (the guides' `app/_webserver`).
//!
//! Components `auth`, `brands`, `items`, `orders`, `surveys`, each `routes → service →
//! repository`, plus the application's tasks, watchers and jobs. Built on `keel`.
//!
//! `build` is the one entry point the binary (and the HTTP tests) call: it turns the platform
//! into the application's state and router. Each component adds its `router()` to `routes`.

pub mod api;
pub mod auth;
pub mod brands;
pub mod indexes;
pub mod items;
pub mod money;
pub mod orders;
pub mod paging;
mod state;
pub mod surveys;
mod test_routes;

use axum::Router;
use keel::Platform;
use keel::config::Environment;

pub use state::AppState;

/// What `keel serve --role …` asks this process to run (default: all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The HTTP API.
    Api,
    /// Scheduled tasks.
    Scheduler,
    /// Change-stream watchers.
    Watchers,
    /// The durable job queue's workers.
    Jobs,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Api, Role::Scheduler, Role::Watchers, Role::Jobs];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Scheduler => "scheduler",
            Role::Watchers => "watchers",
            Role::Jobs => "jobs",
        }
    }
}

/// The running application: its state and its fully layered router.
pub struct App {
    pub state: AppState,
    pub router: Router,
}

/// Builds the application on `platform`. Components register their routes here; background
/// roles (scheduler, watchers, jobs) are started by their own issues from `roles`.
pub fn build(platform: Platform, roles: &[Role]) -> App {
    if let Some(store) = platform.store().cloned() {
        platform.readiness().add_probe("store", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        });
    }
    let state = AppState::new(platform, roles);
    let config = state.platform.config();
    let mut routes: Router<AppState> = Router::new().merge(keel::http::probes::routes(
        state.platform.readiness().clone(),
    ));
    if let Some(store) = state.platform.store() {
        let (api_routes, _document) =
            api::router(api::ApiState::new(state.platform.clone(), store));
        routes = routes.merge(api_routes);
    }
    if config.env == Environment::Test {
        routes = routes.merge(test_routes::router());
    }
    let router = keel::http::chassis(routes, &config).with_state(state.clone());
    App { state, router }
}
