//! `orders`: every query here is scoped by `userId` — a user can only ever reach their own.

use bson::{Document, doc, oid::ObjectId};
use keel::store::{Collection, FindOptions, IndexSpec, Store, StoreResult};

use super::model::{OrderRecord, OrderStatus};
use crate::indexes::IndexDecl;
use crate::paging::{Limit, Skip};

pub const ORDERS: &str = "orders";

#[derive(Clone)]
pub struct OrderRepository {
    orders: Collection,
}

impl OrderRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            orders: store.collection(ORDERS),
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
