//! Task `process-data` (the guides' `tasks/processData.js`): enriches items that were never
//! processed, in batches of `[tasks.process-data] batch_size` (100), with a `slug` from the name
//! and `priceCents` from the price, and marks them `processed: true, processedAt`.
//!
//! Idempotent: it selects only items without `processed` and each mark is conditional on that,
//! so a re-run (or a run racing a `--force` one) never processes an item twice. An item that
//! cannot be enriched (no name, a bad price) is set aside with `processed: false, processError`
//! instead of failing the run or being picked up forever.
//!
//! A run walks the unprocessed items in `_id` order, each batch starting after the last `_id` of
//! the one before, so it reads each item once however many it has already marked; an item
//! inserted meanwhile with a smaller `_id` (another replica's clock) waits for the next run.

use bson::{Bson, Document};
use futures::FutureExt;
use futures::future::BoxFuture;
use keel::store::Store;
use keel::tasks::{Task, TaskContext, TaskError, TaskSummary};

use super::repository::ItemRepository;

pub const PROCESS_DATA: &str = "process-data";
const DEFAULT_BATCH_SIZE: i64 = 100;

pub struct ProcessData {
    repository: ItemRepository,
}

impl ProcessData {
    pub fn new(store: &Store) -> Self {
        ProcessData {
            repository: ItemRepository::new(store),
        }
    }
}

impl Task for ProcessData {
    fn name(&self) -> &str {
        PROCESS_DATA
    }

    fn description(&self) -> &str {
        "enrich unprocessed items (slug, priceCents) in batches and mark them processed"
    }

    fn run<'a>(&'a self, ctx: &'a TaskContext) -> BoxFuture<'a, Result<TaskSummary, TaskError>> {
        async move {
            let batch_size = ctx
                .setting::<i64>("batch_size")?
                .unwrap_or(DEFAULT_BATCH_SIZE)
                .clamp(1, 10_000);
            let mut summary = TaskSummary::default();
            let mut after: Option<Bson> = None;
            loop {
                ctx.check_cancelled()?;
                let batch = self
                    .repository
                    .unprocessed_items(batch_size, after.as_ref())
                    .await?;
                if batch.is_empty() {
                    return Ok(summary);
                }
                after = batch.last().and_then(|item| item.get("_id")).cloned();
                for item in &batch {
                    ctx.check_cancelled()?;
                    let Some(id) = item.get("_id") else { continue };
                    match enrich(item) {
                        Ok((slug, price_cents)) => {
                            if self
                                .repository
                                .mark_item_processed(id, &slug, price_cents, ctx.fence())
                                .await?
                            {
                                summary.processed += 1;
                            }
                        }
                        Err(error) => {
                            self.repository
                                .mark_item_rejected(id, &error, ctx.fence())
                                .await?;
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

/// The enrichment of one item: its slug and its price in cents.
fn enrich(item: &Document) -> Result<(String, i64), String> {
    let name = item
        .get_str("name")
        .map_err(|_| "the item has no name".to_owned())?;
    let slug = slugify(name);
    if slug.is_empty() {
        return Err(format!("the name {name:?} gives an empty slug"));
    }
    let price = match item.get("price") {
        Some(Bson::Double(p)) => *p,
        Some(Bson::Int32(p)) => f64::from(*p),
        Some(Bson::Int64(p)) => *p as f64,
        _ => return Err("the item has no numeric price".to_owned()),
    };
    if !price.is_finite() || !(0.0..=1e9).contains(&price) {
        return Err(format!("the price {price} is out of range"));
    }
    Ok((slug, (price * 100.0).round() as i64))
}

/// Lowercase ASCII letters and digits, runs of anything else become one `-`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn slugs_keep_letters_and_digits_and_collapse_the_rest() {
        assert_eq!(slugify("Acme Anvil 2000!"), "acme-anvil-2000");
        assert_eq!(slugify("  --Déjà vu--  "), "d-j-vu");
        assert_eq!(slugify("!!!"), "");
    }

    #[test]
    fn enrichment_needs_a_name_and_a_sane_price() {
        assert_eq!(
            enrich(&doc! { "name": "Anvil", "price": 19.99 }),
            Ok(("anvil".into(), 1999))
        );
        assert_eq!(
            enrich(&doc! { "name": "Anvil", "price": 20 }),
            Ok(("anvil".into(), 2000))
        );
        assert!(enrich(&doc! { "price": 1.0 }).is_err());
        assert!(enrich(&doc! { "name": "Anvil", "price": "cheap" }).is_err());
        assert!(enrich(&doc! { "name": "Anvil", "price": -1.0 }).is_err());
    }
}
