//! Order pricing: the CPU work of the `process-orders` job (the guides' `workers/processOrders`).
//!
//! Pure: JSON in, JSON out, no store — so it runs on a pool thread or, unchanged, in an isolated
//! child process (`workers.isolated = ["process-orders"]`). Money is computed in whole cents.
//!
//! Rules, in order: each line is `qty × price`; a line of 10 or more units gets 5 % off
//! (volume); when the discounted subtotal reaches 500.00 the order gets another 2 % off
//! (large order); tax is `tax_rate` on what remains; amounts round half away from zero to the
//! cent. The checksum (SHA-256 of the canonical priced order, 16 hex digits) lets a consumer
//! verify that a stored price was produced from exactly these lines.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const PROCESS_ORDERS_KIND: &str = "process-orders";

const VOLUME_MIN_QTY: i64 = 10;
const VOLUME_DISCOUNT: f64 = 0.05;
const LARGE_ORDER_CENTS: i64 = 50_000;
const LARGE_ORDER_DISCOUNT: f64 = 0.02;
const MAX_QTY: i64 = 10_000;
const MAX_PRICE: f64 = 1_000_000.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingBatch {
    pub batch_id: String,
    pub tax_rate: f64,
    pub orders: Vec<OrderToPrice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderToPrice {
    pub id: String,
    pub lines: Vec<LineToPrice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineToPrice {
    pub sku: String,
    pub qty: i64,
    pub price: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricedOrder {
    pub order_id: String,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
    pub checksum: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderError {
    pub order_id: String,
    pub error: String,
}

/// `{batchId, processed, errors}` as the guide's worker returns it, plus the priced orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingResult {
    pub batch_id: String,
    pub processed: u32,
    pub errors: Vec<OrderError>,
    pub priced: Vec<PricedOrder>,
}

/// The computation: `PricingBatch` JSON → `PricingResult` JSON.
pub fn process_orders_job(input: serde_json::Value) -> Result<serde_json::Value, String> {
    let batch: PricingBatch =
        serde_json::from_value(input).map_err(|e| format!("not a pricing batch: {e}"))?;
    if !(0.0..=1.0).contains(&batch.tax_rate) {
        return Err(format!("tax rate {} is not within 0..=1", batch.tax_rate));
    }
    serde_json::to_value(price_batch(&batch)).map_err(|e| format!("cannot encode the result: {e}"))
}

pub fn price_batch(batch: &PricingBatch) -> PricingResult {
    let mut result = PricingResult {
        batch_id: batch.batch_id.clone(),
        processed: 0,
        errors: Vec::new(),
        priced: Vec::new(),
    };
    for order in &batch.orders {
        match price_order(order, batch.tax_rate) {
            Ok(priced) => {
                result.processed += 1;
                result.priced.push(priced);
            }
            Err(error) => result.errors.push(OrderError {
                order_id: order.id.clone(),
                error,
            }),
        }
    }
    result
}

pub fn price_order(order: &OrderToPrice, tax_rate: f64) -> Result<PricedOrder, String> {
    if order.lines.is_empty() {
        return Err("an order needs at least one line".to_owned());
    }
    let mut canonical = order.id.clone();
    let (mut subtotal, mut discount) = (0_i64, 0_i64);
    for (i, line) in order.lines.iter().enumerate() {
        let price_cents =
            cents(line.price).ok_or_else(|| format!("line {i}: invalid price {}", line.price))?;
        if !(1..=MAX_QTY).contains(&line.qty) {
            return Err(format!(
                "line {i}: quantity {} is not within 1..={MAX_QTY}",
                line.qty
            ));
        }
        if line.sku.trim().is_empty() {
            return Err(format!("line {i}: empty sku"));
        }
        let amount = price_cents * line.qty;
        subtotal += amount;
        if line.qty >= VOLUME_MIN_QTY {
            discount += fraction_of(amount, VOLUME_DISCOUNT);
        }
        canonical.push_str(&format!("|{}:{}:{}", line.sku, line.qty, price_cents));
    }
    if subtotal - discount >= LARGE_ORDER_CENTS {
        discount += fraction_of(subtotal - discount, LARGE_ORDER_DISCOUNT);
    }
    let taxable = subtotal - discount;
    let tax = fraction_of(taxable, tax_rate);
    let total = taxable + tax;
    canonical.push_str(&format!("|{subtotal}|{discount}|{tax}|{total}"));
    let digest = Sha256::digest(canonical.as_bytes());
    let checksum = keel::store::lower_hex(&digest[..8]);
    Ok(PricedOrder {
        order_id: order.id.clone(),
        subtotal_cents: subtotal,
        discount_cents: discount,
        tax_cents: tax,
        total_cents: total,
        checksum,
    })
}

/// A price as whole cents: finite, non-negative, at most two decimals, at most 1,000,000.
fn cents(price: f64) -> Option<i64> {
    if !price.is_finite() || !(0.0..=MAX_PRICE).contains(&price) {
        return None;
    }
    let scaled = price * 100.0;
    let rounded = scaled.round();
    ((scaled - rounded).abs() < 1e-6).then_some(rounded as i64)
}

/// `amount × rate` in cents, rounded half away from zero.
fn fraction_of(amount_cents: i64, rate: f64) -> i64 {
    (amount_cents as f64 * rate).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, lines: &[(&str, i64, f64)]) -> OrderToPrice {
        OrderToPrice {
            id: id.to_owned(),
            lines: lines
                .iter()
                .map(|(sku, qty, price)| LineToPrice {
                    sku: (*sku).to_owned(),
                    qty: *qty,
                    price: *price,
                })
                .collect(),
        }
    }

    #[test]
    fn a_small_order_pays_its_lines_plus_tax() {
        let priced =
            price_order(&order("o1", &[("A", 2, 19.99), ("B", 1, 5.0)]), 0.2).expect("valid");
        assert_eq!(priced.subtotal_cents, 4498);
        assert_eq!(priced.discount_cents, 0);
        assert_eq!(priced.tax_cents, 900); // 899.6 rounds up
        assert_eq!(priced.total_cents, 5398);
        assert_eq!(priced.checksum.len(), 16);
    }

    #[test]
    fn volume_and_large_order_discounts_stack_in_order() {
        // 10 × 60.00 = 600.00 → volume 5 % = 30.00 → 570.00 ≥ 500 → large 2 % = 11.40.
        let priced = price_order(&order("o2", &[("BULK", 10, 60.0)]), 0.0).expect("valid");
        assert_eq!(priced.subtotal_cents, 60_000);
        assert_eq!(priced.discount_cents, 3_000 + 1_140);
        assert_eq!(priced.total_cents, 60_000 - 4_140);
    }

    #[test]
    fn the_checksum_changes_with_any_line() {
        let a = price_order(&order("o", &[("A", 1, 1.0)]), 0.1).expect("valid");
        let b = price_order(&order("o", &[("A", 2, 1.0)]), 0.1).expect("valid");
        let again = price_order(&order("o", &[("A", 1, 1.0)]), 0.1).expect("valid");
        assert_ne!(a.checksum, b.checksum);
        assert_eq!(a.checksum, again.checksum);
    }

    #[test]
    fn invalid_orders_are_reported_per_order_without_failing_the_batch() {
        let batch = PricingBatch {
            batch_id: "b1".into(),
            tax_rate: 0.1,
            orders: vec![
                order("good", &[("A", 1, 1.0)]),
                order("empty", &[]),
                order("fractional", &[("A", 1, 1.001)]),
                order("huge-qty", &[("A", 20_000, 1.0)]),
            ],
        };
        let result = price_batch(&batch);
        assert_eq!(result.processed, 1);
        let failed: Vec<&str> = result.errors.iter().map(|e| e.order_id.as_str()).collect();
        assert_eq!(failed, ["empty", "fractional", "huge-qty"]);
    }

    #[test]
    fn the_job_kind_speaks_json_and_refuses_bad_input() {
        let input = serde_json::json!({
            "batchId": "b2", "taxRate": 0.0,
            "orders": [{"id": "x", "lines": [{"sku": "A", "qty": 3, "price": 2.5}]}]
        });
        let output = process_orders_job(input).expect("valid batch");
        assert_eq!(output["batchId"], "b2");
        assert_eq!(output["processed"], 1);
        assert_eq!(output["priced"][0]["totalCents"], 750);
        assert!(process_orders_job(serde_json::json!({"orders": 1})).is_err());
        assert!(
            process_orders_job(serde_json::json!({"batchId": "b", "taxRate": 7.0, "orders": []}))
                .is_err()
        );
    }
}
