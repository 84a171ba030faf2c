//! Items: `GET /api/items` (whitelisted filters, sort, paging), `GET /api/items/:id`,
//! `POST /api/items`, and the guides' `POST /api/getData` / `POST /api/createItem` on the same
//! service.

pub mod filter;
pub mod model;
pub mod render;
pub mod repository;
pub mod routes;
pub mod service;
pub mod task;

use keel::store::migrate::IndexDecl;
use keel::tasks::TaskRegistry;
use utoipa_axum::router::OpenApiRouter;

use crate::api::ApiState;
use crate::component::{BackgroundContext, Component};

/// The items component: its routes, the `items` indexes and the `process-data` task.
pub struct Items;

impl Component for Items {
    fn name(&self) -> &'static str {
        "items"
    }

    fn routes(&self, api: &ApiState) -> OpenApiRouter<ApiState> {
        routes::router(api)
    }

    fn indexes(&self) -> Vec<IndexDecl> {
        repository::ItemRepository::indexes()
    }

    fn tasks(&self, context: &BackgroundContext, tasks: &mut TaskRegistry) {
        tasks.register(task::ProcessData::new(&context.store));
    }
}
