//! Job `process-orders`: prices a batch of pending orders (payload `{orderIds: [...]}`) on the
//! worker pool — or in an isolated child process when configured — and records each price on
//! its order (`status: "processed"`, `pricing`). The result kept on the job is the guides'
//! `{batchId, processed, errors}`.
//!
//! Re-running a batch is harmless: only orders still `pending` are loaded and marked.

use bson::{Bson, Document, doc};
use keel::jobs::{Job, JobKind, JobRunContext};
use keel::store::{Store, StoreError};
use keel::workers::{WorkerError, Workers};
use serde::{Deserialize, Serialize};

use super::pricing::{LineToPrice, OrderToPrice, PROCESS_ORDERS_KIND, PricingBatch, PricingResult};
use super::repository::OrderRepository;
use super::watcher::id_text;

/// Why a batch was not priced (per-order problems are not errors: they are in `errors`).
#[derive(Debug, thiserror::Error)]
pub enum ProcessOrdersError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("pricing data: {0}")]
    Encoding(String),
}

/// The durable job: price these orders. Its kind and payload shape live here only; the
/// orders watcher enqueues it with `NewJob::of`, the orders component (`Component::jobs`) registers its handler by type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessOrdersJob {
    pub order_ids: Vec<Bson>,
}

impl JobKind for ProcessOrdersJob {
    const KIND: &'static str = PROCESS_ORDERS_KIND;
}

#[derive(Clone)]
pub struct ProcessOrders {
    repository: OrderRepository,
    tax_rate: f64,
}

impl ProcessOrders {
    pub fn new(store: &Store, tax_rate: f64) -> Self {
        ProcessOrders {
            repository: OrderRepository::new(store),
            tax_rate,
        }
    }

    /// The handler of `ProcessOrdersJob`.
    pub async fn run(
        &self,
        payload: ProcessOrdersJob,
        job: Job,
        ctx: JobRunContext,
    ) -> Result<Option<Document>, String> {
        self.process(&job.id, &payload.order_ids, None, &ctx.workers)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Prices the pending orders among `ids` (only `owner`'s, when given) on `workers` and
    /// records each price; returns `{batchId, processed, errors}`.
    pub async fn process(
        &self,
        batch_id: &str,
        ids: &[Bson],
        owner: Option<&Bson>,
        workers: &Workers,
    ) -> Result<Document, ProcessOrdersError> {
        let pending = self.repository.pending_orders(ids, owner).await?;
        let batch = PricingBatch {
            batch_id: batch_id.to_owned(),
            tax_rate: self.tax_rate,
            orders: pending.iter().map(order_to_price).collect(),
        };
        let input = serde_json::to_value(&batch)
            .map_err(|e| ProcessOrdersError::Encoding(e.to_string()))?;
        let output = workers.run_kind(PROCESS_ORDERS_KIND, input).await?;
        let result: PricingResult = serde_json::from_value(output)
            .map_err(|e| ProcessOrdersError::Encoding(e.to_string()))?;
        for priced in &result.priced {
            let Some(order) = pending.iter().find(|o| {
                o.get("_id")
                    .is_some_and(|id| id_text(id) == priced.order_id)
            }) else {
                continue;
            };
            let Some(id) = order.get("_id") else { continue };
            let pricing = keel::store::to_document(priced)?;
            self.repository.mark_order_priced(id, pricing).await?;
        }
        let mut errors: Vec<Bson> = result
            .errors
            .iter()
            .map(|e| Bson::Document(doc! { "orderId": &e.order_id, "error": &e.error }))
            .collect();
        for id in ids {
            if !pending.iter().any(|o| o.get("_id") == Some(id)) {
                errors.push(Bson::Document(
                    doc! { "orderId": id_text(id), "error": "not found or no longer pending" },
                ));
            }
        }
        Ok(
            doc! { "batchId": &result.batch_id, "processed": i64::from(result.processed), "errors": errors },
        )
    }
}

/// An `orders` document as pricing input; a malformed line is passed on as-is for the pricing
/// to reject with a message (a line that is not an object becomes an invalid line).
fn order_to_price(order: &Document) -> OrderToPrice {
    let number = |value: Option<&Bson>| match value {
        Some(Bson::Double(f)) => *f,
        Some(Bson::Int32(n)) => f64::from(*n),
        Some(Bson::Int64(n)) => *n as f64,
        _ => f64::NAN,
    };
    let lines = order
        .get_array("lines")
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    let line = line.as_document().cloned().unwrap_or_default();
                    LineToPrice {
                        sku: line.get_str("sku").unwrap_or_default().to_owned(),
                        qty: number(line.get("qty")) as i64,
                        price: number(line.get("price")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    OrderToPrice {
        id: order.get("_id").map(id_text).unwrap_or_default(),
        lines,
    }
}
