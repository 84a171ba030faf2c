//! The store queries of the background work — the only code here that builds filters and
//! updates. Every write that must happen once is a claim: its filter includes the state it moves
//! away from, so a replay or a second replica finds nothing to do.

use bson::{Bson, Document, doc};
use keel::lock::{Fence, fenced};
use keel::store::{
    Collection, FindOneAndUpdateOptions, FindOptions, ReturnDocument, Store, StoreError,
    StoreResult, UpdateOptions,
};

pub const ITEMS: &str = "items";
pub const ORDERS: &str = "orders";
pub const ORDERS_INBOX: &str = "orders_inbox";
pub const SURVEYS: &str = "surveys";
pub use crate::surveys::repository::SURVEY_STATS;

#[derive(Clone)]
pub struct BackgroundRepository {
    items: Collection,
    orders: Collection,
    inbox: Collection,
    surveys: Collection,
    stats: Collection,
}

/// Whether an inbox order was imported now or had been before (a re-run after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Now,
    Before,
}

impl BackgroundRepository {
    pub fn new(store: &Store) -> Self {
        BackgroundRepository {
            items: store.collection(ITEMS),
            orders: store.collection(ORDERS),
            inbox: store.collection(ORDERS_INBOX),
            surveys: store.collection(SURVEYS),
            stats: store.collection(SURVEY_STATS),
        }
    }

    // items (process-data)

    pub async fn unprocessed_items(&self, limit: i64) -> StoreResult<Vec<Document>> {
        let options = FindOptions::default().sort(doc! { "_id": 1 }).limit(limit);
        self.items
            .find(doc! { "processed": { "$exists": false } }, options)
            .await
    }

    /// Marks an item processed with its enrichment, unless a concurrent run already did or a
    /// newer holder of the task's lock wrote it (`fence`).
    pub async fn mark_item_processed(
        &self,
        id: &Bson,
        slug: &str,
        price_cents: i64,
        fence: Option<&Fence>,
    ) -> StoreResult<bool> {
        let now = bson::DateTime::now();
        let (filter, update) = fenced(
            fence,
            doc! { "_id": id, "processed": { "$exists": false } },
            doc! { "$set": { "slug": slug, "priceCents": price_cents, "processed": true, "processedAt": now } },
        );
        let result = self
            .items
            .update_one(filter, update, UpdateOptions::default())
            .await?;
        Ok(result.modified == 1)
    }

    /// Sets an item aside: `processed: false` with the reason, so it is not picked again.
    pub async fn mark_item_rejected(
        &self,
        id: &Bson,
        error: &str,
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        let (filter, update) = fenced(
            fence,
            doc! { "_id": id, "processed": { "$exists": false } },
            doc! { "$set": { "processed": false, "processError": error, "processedAt": bson::DateTime::now() } },
        );
        self.items
            .update_one(filter, update, UpdateOptions::default())
            .await?;
        Ok(())
    }

    // orders_inbox → orders (order-importer)

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
        let filter = match fence {
            Some(fence) => fence.guard(doc! { "_id": id }),
            None => doc! { "_id": id },
        };
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

    // orders (process-orders job)

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
        ids_after(&self.orders, doc! { "status": "pending" }, after, limit).await
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

    // surveys (surveys watcher)

    /// `_id`s of completed, unclaimed surveys after `after`, in `_id` order (the surveys
    /// watcher's catch-up).
    pub async fn completed_unclaimed_survey_ids(
        &self,
        after: Option<&Bson>,
        limit: i64,
    ) -> StoreResult<Vec<Bson>> {
        let filter = doc! { "status": "completed", "processed": false };
        ids_after(&self.surveys, filter, after, limit).await
    }

    /// Claims a completed, unprocessed survey: `processed: false → true` in one atomic step.
    /// `None` when it was not completed, or someone (a replay, another replica) claimed it first.
    pub async fn claim_completed_survey(&self, id: &Bson) -> StoreResult<Option<Document>> {
        let update = doc! { "$set": { "processed": true, "processedDate": bson::DateTime::now() } };
        let options = FindOneAndUpdateOptions {
            return_document: ReturnDocument::After,
            ..FindOneAndUpdateOptions::default()
        };
        self.surveys
            .find_one_and_update(
                doc! { "_id": id, "status": "completed", "processed": false },
                update,
                options,
            )
            .await
    }

    /// Adds one response in `bucket` (`promoters`, `passives`, `detractors`) to `day`'s stats
    /// and returns the counts after it.
    pub async fn add_survey_response(
        &self,
        day: &str,
        bucket: &str,
    ) -> StoreResult<Option<Document>> {
        let update = doc! { "$set": { "day": day }, "$inc": { "responses": 1_i64, bucket: 1_i64 } };
        let options = FindOneAndUpdateOptions {
            upsert: true,
            return_document: ReturnDocument::After,
            ..FindOneAndUpdateOptions::default()
        };
        self.stats
            .find_one_and_update(doc! { "_id": day }, update, options)
            .await
    }

    /// Stores the NPS computed from `responses` responses — only if no response was added
    /// since (then the writer of that one stores a fresher NPS).
    pub async fn set_day_nps(&self, day: &str, responses: i64, nps: f64) -> StoreResult<()> {
        self.stats
            .update_one(
                doc! { "_id": day, "responses": responses },
                doc! { "$set": { "nps": nps } },
                UpdateOptions::default(),
            )
            .await
            .map(|_| ())
    }
}

/// One page of the `_id`s matching `filter`, after `after`, in `_id` order.
async fn ids_after(
    collection: &Collection,
    mut filter: Document,
    after: Option<&Bson>,
    limit: i64,
) -> StoreResult<Vec<Bson>> {
    if let Some(after) = after {
        filter.insert("_id", doc! { "$gt": after.clone() });
    }
    let options = FindOptions::default().sort(doc! { "_id": 1 }).limit(limit);
    Ok(collection
        .find(filter, options)
        .await?
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect())
}
