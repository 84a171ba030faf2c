//! `orders`: every query here is scoped by `userId` — a user can only ever reach their own.

use bson::{Bson, Document, doc, oid::ObjectId};
use keel::lock::{Fence, fenced, guarded};
use keel::store::{
    Collection, FindOptions, IndexSpec, Store, StoreError, StoreResult, UpdateOptions,
};

use super::model::{OrderRecord, OrderStatus};
use crate::indexes::IndexDecl;
use crate::paging::{Limit, Skip};

pub const ORDERS: &str = "orders";
/// Orders dropped off by another system, imported by `order-importer`.
pub const ORDERS_INBOX: &str = "orders_inbox";

#[derive(Clone)]
pub struct OrderRepository {
    orders: Collection,
    inbox: Collection,
}

impl OrderRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            orders: store.collection(ORDERS),
            inbox: store.collection(ORDERS_INBOX),
        }
    }

    /// A user's orders by status; background processing scans by status.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![
            IndexDecl::new(ORDERS, IndexSpec::new(doc! {"userId": 1, "status": 1})),
            // The caller's listing, newest first (its sort is read from the index).
            IndexDecl::new(ORDERS, IndexSpec::new(doc! {"userId": 1, "_id": -1})),
            IndexDecl::new(ORDERS, IndexSpec::new(doc! {"status": 1})),
        ]
    }

    pub async fn insert(&self, order: &OrderRecord) -> StoreResult<()> {
        self.orders.insert_as(order).await.map(|_| ())
    }

    pub async fn find_own(
        &self,
        user_id: ObjectId,
        id: ObjectId,
    ) -> StoreResult<Option<OrderRecord>> {
        self.orders
            .find_one_as(doc! {"_id": id, "userId": user_id}, FindOptions::default())
            .await
    }

    /// Newest first.
    pub async fn list_own(
        &self,
        user_id: ObjectId,
        status: Option<OrderStatus>,
        limit: Limit,
        skip: Skip,
    ) -> StoreResult<(Vec<OrderRecord>, u64)> {
        let mut filter: Document = doc! {"userId": user_id};
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        let options = FindOptions::default()
            .sort(doc! {"_id": -1})
            .skip(u64::from(skip.get()))
            .limit(i64::from(limit.get()));
        futures::try_join!(
            self.orders.find_as(filter.clone(), options),
            self.orders.count(filter)
        )
    }
}

/// Whether an inbox order was imported now or had been before (a re-run after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Now,
    Before,
}

/// The background work's queries on orders: the importer (`orders/importer.rs`), the
/// durable pricing job (`orders/job.rs`) and the watcher's catch-up (`orders/watcher.rs`).
impl OrderRepository {
    /// Inbox documents not yet set aside as invalid, oldest first.
    pub async fn inbox_batch(&self, limit: i64) -> StoreResult<Vec<Document>> {
        let options = FindOptions::default().sort(doc! { "_id": 1 }).limit(limit);
        self.inbox
            .find(doc! { "importError": { "$exists": false } }, options)
            .await
    }

    /// Inserts the order under its inbox `_id`: a duplicate means an earlier run inserted it and
    /// stopped before removing the inbox copy.
    pub async fn insert_imported_order(&self, order: Document) -> StoreResult<Imported> {
        match self.orders.insert_one(order).await {
            Ok(_) => Ok(Imported::Now),
            Err(StoreError::DuplicateKey { .. }) => Ok(Imported::Before),
            Err(error) => Err(error),
        }
    }

    /// Deletes an imported inbox document, unless a newer holder of the importer's lock has
    /// written it since (`fence`).
    pub async fn remove_from_inbox(&self, id: &Bson, fence: Option<&Fence>) -> StoreResult<()> {
        let filter = guarded(fence, doc! { "_id": id });
        self.inbox.delete_one(filter).await.map(|_| ())
    }

    /// Keeps an invalid inbox document, marked with why it was not imported.
    pub async fn mark_inbox_invalid(
        &self,
        id: &Bson,
        error: &str,
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        let (filter, update) = fenced(
            fence,
            doc! { "_id": id },
            doc! { "$set": { "importError": error, "importFailedAt": bson::DateTime::now() } },
        );
        self.inbox
            .update_one(filter, update, UpdateOptions::default())
            .await
            .map(|_| ())
    }

    /// The orders among `ids` that are still pending (and belong to `owner`, when given).
    pub async fn pending_orders(
        &self,
        ids: &[Bson],
        owner: Option<&Bson>,
    ) -> StoreResult<Vec<Document>> {
        let mut filter = doc! { "_id": { "$in": ids.to_vec() }, "status": "pending" };
        if let Some(owner) = owner {
            filter.insert("userId", owner.clone());
        }
        self.orders.find(filter, FindOptions::default()).await
    }

    /// `_id`s of pending orders after `after`, in `_id` order (the orders watcher's catch-up).
    pub async fn pending_order_ids(
        &self,
        after: Option<&Bson>,
        limit: i64,
    ) -> StoreResult<Vec<Bson>> {
        crate::paging::ids_after(&self.orders, doc! { "status": "pending" }, after, limit).await
    }

    /// Records the pricing and moves the order on, if it is still pending.
    pub async fn mark_order_priced(&self, id: &Bson, pricing: Document) -> StoreResult<bool> {
        let update = doc! { "$set": { "status": "processed", "pricing": pricing, "processedAt": bson::DateTime::now() } };
        let result = self
            .orders
            .update_one(
                doc! { "_id": id, "status": "pending" },
                update,
                UpdateOptions::default(),
            )
            .await?;
        Ok(result.modified == 1)
    }
}
