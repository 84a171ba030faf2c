//! Watcher `orders`: a new order with status `pending` gets a durable `process-orders` job.
//!
//! The watcher only enqueues; pricing runs on the worker pool of whichever replica claims the
//! job, and survives a crash there. The idempotency key (`order-ID`) makes a replayed event, or
//! the same event seen by two replicas, enqueue one job.

use bson::{Bson, doc};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::jobs::{JobQueue, NewJob};
use keel::store::{ChangeEvent, ChangeOp, Store, WatchOptions};
use keel::watchers::{Watcher, WatcherError, catch_up_in_pages};

use super::job::ProcessOrdersJob;
use super::repository::{ORDERS, OrderRepository};

pub const ORDERS_WATCHER: &str = "orders";

pub struct OrdersWatcher {
    jobs: JobQueue,
    repository: OrderRepository,
}

impl OrdersWatcher {
    pub fn new(jobs: JobQueue, store: &Store) -> Self {
        OrdersWatcher {
            jobs,
            repository: OrderRepository::new(store),
        }
    }

    async fn enqueue(&self, order_id: &Bson) -> Result<(), WatcherError> {
        let id = id_text(order_id);
        let job = NewJob::of(&ProcessOrdersJob {
            order_ids: vec![order_id.clone()],
        })
        .map_err(|e| WatcherError::handler(e.to_string()))?
        .idempotency_key(format!("order-{id}"));
        let enqueued = self
            .jobs
            .enqueue(job)
            .await
            .map_err(|e| WatcherError::handler(e.to_string()))?;
        tracing::debug!(order_id = %id, job_id = %enqueued.id, created = enqueued.created, "order queued for pricing");
        Ok(())
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
        self.enqueue(&event.id).boxed()
    }

    /// After a gap: every order still pending gets its job (the idempotency key makes the ones
    /// already queued a no-op).
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<u64>, WatcherError>> {
        catch_up_in_pages(
            move |after| {
                async move {
                    Ok(self
                        .repository
                        .pending_order_ids(after.as_ref(), 100)
                        .await?)
                }
                .boxed()
            },
            move |id| async move { self.enqueue(&id).await }.boxed(),
        )
        .boxed()
    }
}
