//! Orders: `POST /api/orders` (priced here, stored `pending`), `GET /api/orders/:id`,
//! `GET /api/orders?status=` — a user only ever sees their own.

pub mod importer;
pub mod job;
pub mod model;
pub mod pricing;
pub mod repository;
pub mod routes;
pub mod service;
#[cfg(test)]
mod store_tests;
pub mod watcher;

use std::sync::Arc;

use keel::jobs::JobHandlers;
use keel::store::migrate::IndexDecl;
use keel::tasks::TaskRegistry;
use keel::watchers::Watcher;
use keel::workers::Computations;
use utoipa_axum::router::OpenApiRouter;

use crate::api::ApiState;
use crate::component::{BackgroundContext, Component};

/// The orders component: its routes, the `orders` indexes, the `order-importer` task, the
/// orders watcher, the `process-orders` job and the pricing computation it runs on the pool.
pub struct Orders;

/// `[orders] tax_rate`, bounded to 0–1, as every pricing path (API, importer, job) applies it.
pub fn tax_rate(settings: &keel::config::OrdersConfig) -> f64 {
    settings.tax_rate.clamp(0.0, 1.0)
}

impl Component for Orders {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn routes(&self, api: &ApiState) -> OpenApiRouter<ApiState> {
        routes::router(api)
    }

    fn indexes(&self) -> Vec<IndexDecl> {
        repository::OrderRepository::indexes()
    }

    fn tasks(&self, context: &BackgroundContext, tasks: &mut TaskRegistry) {
        tasks.register(importer::OrderImporter::new(
            &context.store,
            tax_rate(&context.config.orders),
        ));
    }

    fn watchers(&self, context: &BackgroundContext) -> Vec<Arc<dyn Watcher>> {
        vec![Arc::new(watcher::OrdersWatcher::new(
            context.jobs.clone(),
            &context.store,
        ))]
    }

    fn jobs(&self, context: &BackgroundContext, handlers: &mut JobHandlers) {
        let process_orders =
            job::ProcessOrders::new(&context.store, tax_rate(&context.config.orders));
        handlers.register_typed(move |payload: job::ProcessOrdersJob, job, ctx| {
            let process_orders = process_orders.clone();
            async move { process_orders.run(payload, job, ctx).await }
        });
    }

    fn computations(&self, computations: &mut Computations) {
        computations.register(pricing::PROCESS_ORDERS_KIND, pricing::process_orders_job);
    }
}
