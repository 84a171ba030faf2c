//! Watcher `orders`: a new order with status `pending` gets a durable `process-orders` job.
//!
//! The watcher only enqueues; pricing runs on the worker pool of whichever replica claims the
//! job, and survives a crash there. The idempotency key (`order-ID`) makes a replayed event, or
//! the same event seen by two replicas, enqueue one job.

use bson::{Bson, doc};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::jobs::{JobQueue, NewJob};
use keel::store::{ChangeEvent, ChangeOp, WatchOptions};
use keel::watchers::{Watcher, WatcherError};

use super::pricing::PROCESS_ORDERS_KIND;
use super::repository::ORDERS;

pub const ORDERS_WATCHER: &str = "orders";

pub struct OrdersWatcher {
    jobs: JobQueue,
}

impl OrdersWatcher {
    pub fn new(jobs: JobQueue) -> Self {
        OrdersWatcher { jobs }
    }
}

/// The id as the job payload carries it: ObjectIds as hex, anything else as its text.
pub fn id_text(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        Bson::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl Watcher for OrdersWatcher {
    fn name(&self) -> &str {
        ORDERS_WATCHER
    }

    fn collection(&self) -> &str {
        ORDERS
    }

    fn options(&self) -> WatchOptions {
        WatchOptions {
            filter: Some(doc! { "status": "pending" }),
            ops: Some(vec![ChangeOp::Insert]),
            resume_after: None,
        }
    }

    fn handle<'a>(&'a self, event: &'a ChangeEvent) -> BoxFuture<'a, Result<(), WatcherError>> {
        async move {
            let id = id_text(&event.id);
            let job = NewJob::new(PROCESS_ORDERS_KIND, doc! { "orderIds": [ event.id.clone() ] })
                .idempotency_key(format!("order-{id}"));
            let enqueued = self
                .jobs
                .enqueue(job)
                .await
                .map_err(|e| WatcherError::handler(e.to_string()))?;
            tracing::debug!(order_id = %id, job_id = %enqueued.id, created = enqueued.created, "order queued for pricing");
            Ok(())
        }
        .boxed()
    }
}
