//! Order use-cases: price an order (subtotal, tax at the configured rate, total — all in cents)
//! and store it `pending`; read back only the caller's own orders.

use bson::oid::ObjectId;
use keel::config::OrdersConfig;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;

use super::model::{NewOrder, OrderLineRecord, OrderRecord, OrderStatus};
use super::repository::OrderRepository;
use crate::money::Price;
use crate::paging::{Limit, Skip};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    /// Unknown id or someone else's order: the same answer, so ids cannot be probed.
    #[error("order not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct OrderService {
    orders: OrderRepository,
    tax_rate: f64,
}

impl OrderService {
    pub fn new(store: &Store, settings: &OrdersConfig) -> Self {
        Self {
            orders: OrderRepository::new(store),
            tax_rate: settings.tax_rate.clamp(0.0, 1.0),
        }
    }

    #[tracing::instrument(name = "orders.create", skip_all, fields(lines = order.lines.len()))]
    pub async fn create(
        &self,
        user_id: ObjectId,
        order: NewOrder,
    ) -> Result<OrderRecord, OrderError> {
        let record = price(user_id, order, self.tax_rate);
        self.orders.insert(&record).await?;
        Ok(record)
    }

    pub async fn get(&self, user_id: ObjectId, id: ObjectId) -> Result<OrderRecord, OrderError> {
        self.orders
            .find_own(user_id, id)
            .await?
            .ok_or(OrderError::NotFound)
    }

    pub async fn list(
        &self,
        user_id: ObjectId,
        status: Option<OrderStatus>,
        limit: Limit,
        skip: Skip,
    ) -> Result<(Vec<OrderRecord>, u64), OrderError> {
        Ok(self.orders.list_own(user_id, status, limit, skip).await?)
    }
}

/// Computes the totals of an order in whole cents.
fn price(user_id: ObjectId, order: NewOrder, tax_rate: f64) -> OrderRecord {
    let subtotal = Price::from_cents(order.lines.iter().map(|l| l.amount().cents()).sum());
    let tax = subtotal.times_rate(tax_rate);
    let total = Price::from_cents(subtotal.cents() + tax.cents());
    OrderRecord {
        id: ObjectId::new(),
        user_id,
        lines: order
            .lines
            .iter()
            .map(|l| OrderLineRecord {
                sku: l.sku.as_str().to_string(),
                qty: i64::from(l.qty.get()),
                price: l.price.as_f64(),
            })
            .collect(),
        subtotal: subtotal.as_f64(),
        tax: tax.as_f64(),
        total: total.as_f64(),
        status: OrderStatus::Pending,
        created_at: bson::DateTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::orders::model::CreateOrderRequest;

    #[test]
    fn totals_are_computed_in_cents() {
        let order = serde_json::from_value::<CreateOrderRequest>(json!({"lines": [
            {"sku": "A", "qty": 3, "price": 0.1},
            {"sku": "B", "qty": 1, "price": 19.99}
        ]}))
        .unwrap()
        .parse()
        .unwrap();
        let record = price(ObjectId::new(), order, 0.08);
        assert_eq!(record.subtotal, 20.29);
        assert_eq!(record.tax, 1.62);
        assert_eq!(record.total, 21.91);
        assert_eq!(record.status, OrderStatus::Pending);
    }
}
