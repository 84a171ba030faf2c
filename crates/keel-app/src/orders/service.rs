//! Order use-cases: price an order and store it `pending`; read back only the caller's own
//! orders.
//!
//! One pricing rule for every order: `orders::pricing::price_order` — line amounts, the
//! volume and large-order discounts, tax at `[orders] tax_rate` on what remains, all in cents —
//! is what the API, the order importer and the `process-orders` job all apply, so an order
//! created here gets the same total the job later computes for it. API orders do get the
//! discounts: a customer ordering 10 units pays the same through either door.

use bson::oid::ObjectId;
use keel::config::OrdersConfig;
use keel::store::{Store, StoreError};
use keel::validation::FieldErrors;

use super::model::{NewOrder, OrderLineRecord, OrderRecord, OrderStatus};
use super::pricing::{LineToPrice, OrderToPrice, price_order};
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
            tax_rate: super::tax_rate(settings),
        }
    }

    #[tracing::instrument(name = "orders.create", skip_all, fields(lines = order.lines.len()))]
    pub async fn create(
        &self,
        user_id: ObjectId,
        order: NewOrder,
    ) -> Result<OrderRecord, OrderError> {
        let record = price(user_id, order, self.tax_rate).map_err(|reason| {
            let mut errors = FieldErrors::new();
            errors.push("lines", reason);
            OrderError::Invalid(errors)
        })?;
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

/// Prices an order by the one pricing rule (see the module comment).
fn price(user_id: ObjectId, order: NewOrder, tax_rate: f64) -> Result<OrderRecord, String> {
    let id = ObjectId::new();
    let lines: Vec<OrderLineRecord> = order
        .lines
        .iter()
        .map(|l| OrderLineRecord {
            sku: l.sku.as_str().to_string(),
            qty: i64::from(l.qty.get()),
            price: l.price.as_f64(),
        })
        .collect();
    let priced = price_order(&to_price(id, &lines), tax_rate)?;
    let amount = |cents| Price::from_cents(cents).as_f64();
    Ok(OrderRecord {
        id,
        user_id,
        lines,
        subtotal: amount(priced.subtotal_cents),
        discount: amount(priced.discount_cents),
        tax: amount(priced.tax_cents),
        total: amount(priced.total_cents),
        status: OrderStatus::Pending,
        created_at: bson::DateTime::now(),
    })
}

/// An order's lines as the pricing rule takes them.
fn to_price(id: ObjectId, lines: &[OrderLineRecord]) -> OrderToPrice {
    OrderToPrice {
        id: id.to_hex(),
        lines: lines
            .iter()
            .map(|l| LineToPrice {
                sku: l.sku.clone(),
                qty: l.qty,
                price: l.price,
            })
            .collect(),
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
        let record = price(ObjectId::new(), order, 0.08).unwrap();
        assert_eq!(record.subtotal, 20.29);
        assert_eq!(record.discount, 0.0);
        assert_eq!(record.tax, 1.62);
        assert_eq!(record.total, 21.91);
        assert_eq!(record.status, OrderStatus::Pending);
    }

    /// The API, the importer and the job price one order alike (here: the volume discount).
    #[test]
    fn an_api_order_gets_the_total_the_pricing_job_computes() {
        let order = serde_json::from_value::<CreateOrderRequest>(json!({"lines": [
            {"sku": "BOLT", "qty": 10, "price": 2.5},
            {"sku": "NUT", "qty": 1, "price": 1.0}
        ]}))
        .unwrap()
        .parse()
        .unwrap();
        let record = price(ObjectId::new(), order, 0.1).unwrap();
        assert_eq!(record.subtotal, 26.0);
        assert_eq!(record.discount, 1.25, "5 % off the 10-unit line");
        assert_eq!(record.tax, 2.48);
        assert_eq!(record.total, 27.23);
        let job = price_order(&to_price(record.id, &record.lines), 0.1).unwrap();
        assert_eq!(Price::from_cents(job.total_cents).as_f64(), record.total);
    }
}
