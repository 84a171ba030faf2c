//! The ops console (`GET /ops`, docs/ops.md): one page for the people who run keel — tasks and
//! their runs (run now), the job queue (retry, purge), watchers, locks, runtime charts and every
//! replica — over `/api/ops/*` JSON routes, for users with the `admin` role. Every action is
//! audited (`ops_audit` and an `evt` line).
//!
//! `routes` (JSON, in the OpenAPI document) → `service` → `repository` (the console's own
//! collections, read-only looks at the platform's); `pages` serves the embedded page;
//! `heartbeat` makes every replica visible; `runtime` samples this replica's metrics.

pub mod extract;
pub mod heartbeat;
pub mod model;
pub mod pages;
pub mod repository;
pub mod routes;
pub mod runtime;
pub mod service;

use keel::Platform;
use keel::store::Store;

pub use service::OpsService;

use crate::Role;
use crate::background::Background;

/// Starts this process's heartbeat (every role) and, for the API role, the runtime sampler;
/// returns the service the routes use.
pub fn start(
    platform: &Platform,
    store: &Store,
    roles: &[Role],
    background: &Background,
) -> OpsService {
    let repository = repository::OpsRepository::new(store);
    let instance = heartbeat::Instance::current(roles);
    heartbeat::start(platform, repository.clone(), instance.clone());
    let sampler = runtime::RuntimeSampler::new(platform, background.workers.clone());
    if roles.contains(&Role::Api) {
        sampler.start(platform);
    }
    let watcher_names = background
        .watchers()
        .iter()
        .map(|w| w.name().to_owned())
        .collect();
    OpsService::new(
        platform.clone(),
        repository,
        background.clone(),
        sampler,
        instance,
        watcher_names,
    )
}

/// The ops console component: its JSON routes and page, and the indexes of `ops_audit` and
/// `ops_instances`.
pub struct Ops;

impl crate::component::Component for Ops {
    fn name(&self) -> &'static str {
        "ops"
    }

    /// Starts this replica's heartbeat and runtime sampler (a process without the API role
    /// starts them from `crate::build`).
    fn routes(
        &self,
        api: &crate::api::ApiState,
    ) -> utoipa_axum::router::OpenApiRouter<crate::api::ApiState> {
        let ops = start(&api.platform, api.store(), &api.roles, &api.background);
        routes::router(api, ops)
    }

    fn indexes(&self) -> Vec<keel::store::migrate::IndexDecl> {
        repository::OpsRepository::indexes()
    }
}
