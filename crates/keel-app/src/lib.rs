//! keel-app: the reference application built on `keel` — the service the guides describe
//! (docs/architecture.md).
//!
//! Each feature is a component folder — `auth`, `brands`, `items`, `orders`, `surveys`, `ops` —
//! holding its routes → service → repository, and its own tasks, watchers and jobs; its
//! `mod.rs` implements the [`component::Component`] contract, and [`component::COMPONENTS`]
//! lists them once. `api` mounts their routes, `indexes` gathers their indexes, `background`
//! runs their background work.
//!
//! `build` is the one entry point the binary (and the HTTP tests) call: it turns the platform
//! into the application's state and router.

pub mod api;
pub mod auth;
pub mod background;
pub mod brands;
pub mod component;
pub mod indexes;
pub mod items;
pub mod money;
pub mod ops;
pub mod orders;
pub mod paging;
mod state;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
#[path = "../../../tests/support/mod.rs"]
mod support;
pub mod surveys;
mod test_routes;

use axum::Router;
use keel::Platform;
use keel::config::Environment;
use keel::metrics::Scrapers;

pub use state::AppState;

/// The application's components, in the order their routes, indexes and background work are
/// registered.
pub const COMPONENTS: &[&dyn component::Component] = &[
    &auth::Auth,
    &brands::Brands,
    &items::Items,
    &orders::Orders,
    &surveys::Surveys,
    &ops::Ops,
];

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

/// The running application: its state and its routes inside keel's middleware stack.
pub struct App {
    pub state: AppState,
    pub router: keel::http::Chassis,
    /// The OpenAPI document the router serves at `/api/openapi.json` (with `Role::Api`).
    pub openapi: Option<std::sync::Arc<utoipa::openapi::OpenApi>>,
}

/// Builds the application on `platform` and starts the background parts `roles` ask for. The
/// HTTP API's routes are mounted only with `Role::Api`; every process serves the probes and
/// `/metrics` (so a jobs-only replica is still health-checked and scraped).
pub fn build(platform: Platform, roles: &[Role]) -> App {
    let store = platform.store().clone();
    let probed = store.clone();
    platform.readiness().add_probe("store", move || {
        let store = probed.clone();
        async move { store.ping().await.map_err(|e| e.to_string()) }
    });
    let config = platform.config();
    let child_program = if config.workers.isolated.is_empty() {
        None
    } else {
        std::env::current_exe().ok()
    };
    let background = background::Background::new(&platform, COMPONENTS, child_program);
    background.start(&platform, roles);
    let state = AppState::new(platform, roles, background);
    let operators = keel::http::OperatorAccess::new(config.metrics.token.as_ref());
    let mut openapi = None;
    let mut routes: Router<AppState> = Router::new().merge(keel::http::probes::routes(
        state.platform.readiness().clone(),
        operators.clone(),
    ));
    if state.runs(Role::Api) {
        let api = api::ApiState::new(state.platform.clone(), roles, state.background.clone());
        let (api_routes, document) = api::router(api, COMPONENTS);
        routes = routes.merge(api_routes);
        openapi = Some(document);
    } else {
        // Background-only replicas still report their heartbeat to the console (with the API,
        // the ops component starts it).
        ops::start(&state.platform, &store, roles, &state.background);
    }
    if state.runs(Role::Api) && config.env == Environment::Test {
        routes = routes.merge(test_routes::router());
    }
    routes = routes.layer(keel::metrics::HttpMetrics::default());
    routes = routes.merge(metrics_routes(&state.platform, operators));
    let router = keel::http::chassis_live(routes.with_state(state.clone()), &state.platform);
    App {
        state,
        router,
        openapi,
    }
}

/// `/metrics` on the API router, or on its own port (`metrics.port`), or nowhere.
fn metrics_routes(platform: &Platform, operators: keel::http::OperatorAccess) -> Router<AppState> {
    let config = platform.config();
    if !config.metrics.enabled {
        return Router::new();
    }
    let metrics = match keel::metrics::Metrics::install() {
        Ok(metrics) => metrics,
        Err(error) => {
            tracing::error!(%error, "metrics disabled");
            return Router::new();
        }
    };
    let shutdown = platform.shutdown().clone();
    let upkeep = metrics.clone();
    let token = shutdown.token();
    shutdown.spawn("metrics-upkeep", async move {
        let mut tick = tokio::time::interval(keel::metrics::UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => upkeep.run_upkeep(),
            }
        }
    });
    let Some(port) = config.metrics.port else {
        return metrics.router(Scrapers::Operators(operators));
    };
    let address = std::net::SocketAddr::new(config.server.host, port);
    let (listener_shutdown, drain) = (shutdown.clone(), config.server.shutdown_timeout);
    let limits = keel::http::ConnectionLimits::from(&config.server);
    shutdown.spawn("metrics-listener", async move {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                tracing::info!(addr = %address, "metrics listening");
                let router = metrics.router(Scrapers::OwnPort(operators));
                if let Err(error) =
                    keel::http::serve(listener, router, listener_shutdown, drain, limits).await
                {
                    tracing::error!(%error, "metrics listener failed");
                }
            }
            Err(error) => tracing::error!(addr = %address, %error, "cannot listen for /metrics"),
        }
    });
    Router::new()
}
