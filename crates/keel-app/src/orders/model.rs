//! Orders: lines of `{sku, qty, price}` priced in cents; totals are computed here, never taken
//! from the client.

use bson::oid::ObjectId;
use keel::validation::FieldErrors;
use serde::{Deserialize, Serialize};

use crate::money::Price;

/// A stock-keeping unit: 1 to 64 of `A-Z a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(field: &str, raw: &str) -> Result<Sku, FieldErrors> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_CHARS
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Sku(raw.to_string()))
        } else {
            Err(FieldErrors::single(
                field,
                "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A line quantity: 1..=10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qty(u32);

impl Qty {
    pub const MAX: i64 = 10_000;

    pub fn parse(field: &str, raw: i64) -> Result<Qty, FieldErrors> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Qty(raw as u32))
        } else {
            Err(FieldErrors::single(
                field,
                format!("must be between 1 and {}", Self::MAX),
            ))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

pub const MAX_LINES: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    #[schema(required, value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$", example = "ANVIL-1")]
    pub sku: Option<String>,
    #[schema(required, value_type = i64, minimum = 1, maximum = 10000, example = 2)]
    pub qty: Option<i64>,
    /// At most two decimals.
    #[schema(required, value_type = f64, minimum = 0, maximum = 1000000, example = 19.99)]
    pub price: Option<f64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    #[schema(required, value_type = Vec<OrderLineRequest>, min_items = 1, max_items = 100)]
    pub lines: Option<Vec<OrderLineRequest>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderLine {
    pub sku: Sku,
    pub qty: Qty,
    pub price: Price,
}

impl OrderLine {
    pub fn amount(&self) -> Price {
        Price::from_cents(self.price.cents() * i64::from(self.qty.get()))
    }
}

/// A valid order: 1 to 100 lines.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub lines: Vec<OrderLine>,
}

impl CreateOrderRequest {
    pub fn parse(self) -> Result<NewOrder, FieldErrors> {
        let mut errors = FieldErrors::new();
        let raw_lines = self.lines.unwrap_or_default();
        if raw_lines.is_empty() {
            errors.push("lines", "must contain at least one line");
        }
        if raw_lines.len() > MAX_LINES {
            errors.push("lines", format!("at most {MAX_LINES} lines"));
            return Err(errors);
        }
        let mut lines = Vec::with_capacity(raw_lines.len());
        for (i, raw) in raw_lines.into_iter().enumerate() {
            let mut line_errors = FieldErrors::new();
            let sku = required(
                &mut line_errors,
                "sku",
                raw.sku.map(|s| Sku::parse("sku", &s)),
            );
            let qty = required(
                &mut line_errors,
                "qty",
                raw.qty.map(|q| Qty::parse("qty", q)),
            );
            let price = required(
                &mut line_errors,
                "price",
                raw.price.map(|p| Price::parse("price", p)),
            );
            match (sku, qty, price) {
                (Some(sku), Some(qty), Some(price)) if line_errors.is_empty() => {
                    lines.push(OrderLine { sku, qty, price })
                }
                _ => errors.extend_prefixed(&format!("lines[{i}]"), line_errors),
            }
        }
        errors.finish(|| Some(NewOrder { lines }))
    }
}

fn required<T>(
    errors: &mut FieldErrors,
    field: &str,
    parsed: Option<Result<T, FieldErrors>>,
) -> Option<T> {
    match parsed {
        Some(r) => errors.take(r),
        None => {
            errors.push(field, "is required");
            None
        }
    }
}

/// Where an order is in its life. The API creates `pending`; background work moves it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Processing,
    Processed,
    Completed,
    Cancelled,
    Failed,
}

impl OrderStatus {
    pub fn parse(raw: &str) -> Result<OrderStatus, FieldErrors> {
        serde_json::from_value(serde_json::Value::String(raw.trim().to_string())).map_err(|_| {
            FieldErrors::single(
                "status",
                "must be one of pending, processing, processed, completed, cancelled, failed",
            )
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Processed => "processed",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderLineRecord {
    pub sku: String,
    pub qty: i64,
    pub price: f64,
}

/// An order as stored in `orders`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: ObjectId,
    pub lines: Vec<OrderLineRecord>,
    pub subtotal: f64,
    /// Volume and large-order discounts (`orders::pricing`); absent on orders stored
    /// before discounts applied to API orders.
    #[serde(default)]
    pub discount: f64,
    pub tax: f64,
    /// `subtotal - discount + tax`.
    pub total: f64,
    pub status: OrderStatus,
    pub created_at: bson::DateTime,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderLineView {
    pub price: f64,
    pub qty: i64,
    pub sku: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    #[serde(rename = "_id")]
    pub id: String,
    pub created_at: String,
    pub discount: f64,
    pub lines: Vec<OrderLineView>,
    pub status: OrderStatus,
    pub subtotal: f64,
    pub tax: f64,
    pub total: f64,
}

impl From<OrderRecord> for OrderView {
    fn from(o: OrderRecord) -> Self {
        OrderView {
            id: o.id.to_hex(),
            lines: o
                .lines
                .into_iter()
                .map(|l| OrderLineView {
                    sku: l.sku,
                    qty: l.qty,
                    price: l.price,
                })
                .collect(),
            subtotal: o.subtotal,
            discount: o.discount,
            tax: o.tax,
            total: o.total,
            status: o.status,
            created_at: o.created_at.try_to_rfc3339_string().unwrap_or_default(),
        }
    }
}

/// `GET /api/orders?status=` as it arrives.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    /// Default 100.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    #[param(value_type = Option<u32>, minimum = 0, maximum = 100000)]
    pub skip: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Result<NewOrder, FieldErrors> {
        serde_json::from_value::<CreateOrderRequest>(v)
            .unwrap()
            .parse()
    }

    #[test]
    fn lines_parse_and_amounts_are_exact() {
        let order = parse(json!({"lines": [{"sku": "A-1", "qty": 3, "price": 0.1}]})).unwrap();
        assert_eq!(order.lines[0].amount().cents(), 30);
    }

    #[test]
    fn every_bad_line_field_is_reported_with_its_path() {
        let errors = parse(json!({"lines": [
            {"sku": "ok", "qty": 1, "price": 1},
            {"sku": "bad sku!", "qty": 0},
        ]}))
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["lines[1].sku", "lines[1].qty", "lines[1].price"]);
    }

    #[test]
    fn an_order_needs_lines() {
        assert!(parse(json!({})).is_err());
        assert!(parse(json!({"lines": []})).is_err());
    }

    #[test]
    fn status_is_whitelisted() {
        assert_eq!(OrderStatus::parse("pending").unwrap(), OrderStatus::Pending);
        assert!(OrderStatus::parse("{\"$ne\":1}").is_err());
    }
}
