//! Task `order-importer` (the guides' `x3OrderImporter`): moves documents from `orders_inbox`
//! into `orders`, under the lock `x3OrderImporter`.
//!
//! Each inbox document is validated; a valid one is inserted into `orders` under the inbox
//! document's own `_id`, then removed from the inbox. A crash between the two steps leaves the
//! inbox copy; the next run's insert then collides on `_id` ("imported before") and only removes
//! it — so an order is never lost and never duplicated. An invalid document stays in the inbox,
//! marked with `importError`, for a human to fix; it is not picked up again until they remove
//! the mark.

use bson::{Bson, Document, doc};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::store::Store;
use keel::tasks::{Task, TaskContext, TaskError, TaskSummary};

use super::pricing::{LineToPrice, OrderToPrice, price_order};
use super::repository::{Imported, OrderRepository};

pub const ORDER_IMPORTER: &str = "order-importer";
pub const ORDER_IMPORTER_LOCK: &str = "x3OrderImporter";
const DEFAULT_BATCH_SIZE: i64 = 100;

pub struct OrderImporter {
    repository: OrderRepository,
    tax_rate: f64,
}

impl OrderImporter {
    pub fn new(store: &Store, tax_rate: f64) -> Self {
        OrderImporter {
            repository: OrderRepository::new(store),
            tax_rate,
        }
    }
}

impl Task for OrderImporter {
    fn name(&self) -> &str {
        ORDER_IMPORTER
    }

    fn description(&self) -> &str {
        "move orders_inbox into orders with validation; invalid documents stay marked"
    }

    fn lock_name(&self) -> &str {
        ORDER_IMPORTER_LOCK
    }

    fn run<'a>(&'a self, ctx: &'a TaskContext) -> BoxFuture<'a, Result<TaskSummary, TaskError>> {
        async move {
            let batch_size = ctx.setting::<i64>("batch_size")?.unwrap_or(DEFAULT_BATCH_SIZE).clamp(1, 10_000);
            let mut summary = TaskSummary::default();
            loop {
                ctx.check_cancelled()?;
                let batch = self.repository.inbox_batch(batch_size).await?;
                if batch.is_empty() {
                    return Ok(summary);
                }
                for inbox in batch {
                    ctx.check_cancelled()?;
                    let Some(id) = inbox.get("_id").cloned() else { continue };
                    match to_order(&inbox, self.tax_rate) {
                        Ok(order) => {
                            if self.repository.insert_imported_order(order).await? == Imported::Before {
                                tracing::info!(inbox_id = %id, "inbox order was imported by an earlier run; removing the copy");
                            }
                            self.repository.remove_from_inbox(&id, ctx.fence()).await?;
                            summary.processed += 1;
                        }
                        Err(error) => {
                            tracing::warn!(inbox_id = %id, %error, "inbox order is invalid; kept and marked");
                            self.repository.mark_inbox_invalid(&id, &error, ctx.fence()).await?;
                            summary.rejected += 1;
                        }
                    }
                    ctx.progress().inc(1);
                }
            }
        }
        .boxed()
    }
}

/// The `orders` document for a valid inbox document: its lines, totals and `pending` status.
fn to_order(inbox: &Document, tax_rate: f64) -> Result<Document, String> {
    let id = inbox.get("_id").cloned().ok_or("no _id")?;
    let raw_lines = inbox
        .get_array("lines")
        .map_err(|_| "lines must be an array".to_owned())?;
    let mut lines = Vec::with_capacity(raw_lines.len());
    for (i, raw) in raw_lines.iter().enumerate() {
        let line = raw
            .as_document()
            .ok_or_else(|| format!("line {i} is not an object"))?;
        let sku = line
            .get_str("sku")
            .map_err(|_| format!("line {i}: sku must be text"))?;
        let qty = match line.get("qty") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            _ => return Err(format!("line {i}: qty must be an integer")),
        };
        let price = match line.get("price") {
            Some(Bson::Double(p)) => *p,
            Some(Bson::Int32(p)) => f64::from(*p),
            Some(Bson::Int64(p)) => *p as f64,
            _ => return Err(format!("line {i}: price must be a number")),
        };
        lines.push(LineToPrice {
            sku: sku.to_owned(),
            qty,
            price,
        });
    }
    let order = OrderToPrice {
        id: id.to_string(),
        lines,
    };
    let priced = price_order(&order, tax_rate)?;
    let stored_lines: Vec<Bson> = order
        .lines
        .iter()
        .map(|l| Bson::Document(doc! { "sku": &l.sku, "qty": l.qty, "price": l.price }))
        .collect();
    let now = bson::DateTime::now();
    let mut order = doc! {
        "_id": id,
        "lines": stored_lines,
        "subtotal": priced.subtotal_cents as f64 / 100.0,
        "discount": priced.discount_cents as f64 / 100.0,
        "tax": priced.tax_cents as f64 / 100.0,
        "total": priced.total_cents as f64 / 100.0,
        "status": "pending",
        "source": "orders_inbox",
        "createdAt": inbox.get("createdAt").cloned().unwrap_or(Bson::DateTime(now)),
        "importedAt": now,
    };
    // The customer's account, when the source system knows it: the API shows users their own.
    if let Some(Bson::ObjectId(user_id)) = inbox.get("userId") {
        order.insert("userId", *user_id);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_inbox_document_becomes_a_pending_order_under_the_same_id() {
        let inbox = doc! { "_id": "x3-1", "lines": [ { "sku": "A", "qty": 2, "price": 10.0 } ] };
        let order = to_order(&inbox, 0.1).expect("valid");
        assert_eq!(order.get_str("_id").ok(), Some("x3-1"));
        assert_eq!(order.get_str("status").ok(), Some("pending"));
        assert_eq!(order.get_f64("total").ok(), Some(22.0));
    }

    #[test]
    fn invalid_inbox_documents_say_what_is_wrong() {
        for (inbox, expected) in [
            (doc! { "_id": 1 }, "lines must be an array"),
            (doc! { "_id": 1, "lines": [ 5 ] }, "line 0 is not an object"),
            (
                doc! { "_id": 1, "lines": [ { "sku": "A", "qty": "2", "price": 1.0 } ] },
                "line 0: qty must be an integer",
            ),
            (
                doc! { "_id": 1, "lines": [] },
                "an order needs at least one line",
            ),
        ] {
            assert_eq!(to_order(&inbox, 0.1).err().as_deref(), Some(expected));
        }
    }
}
