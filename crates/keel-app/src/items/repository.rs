//! `items`: the only code that turns an item query or a getData filter into a store query.
//!
//! Listings hand each stored item to the caller as the store reads it (`find_page`): the
//! service writes it straight into the response, or the page it rendered for the read's stamp.
//!
//! Client text only ever becomes a *value* in the documents built here (never a key, never an
//! operator); search text is regex-escaped before it becomes a `$regex`.

use bson::{Bson, Document, doc};
use keel::lock::{Fence, fenced};
use keel::store::{
    Collection, FindOptions, IndexSpec, PageVisitor, Store, StoreResult, UpdateOptions,
};
use keel::validation::escape_regex;

use super::filter::{DataFilter, FilterValue, Operand};
use super::model::{ItemQuery, ItemRecord, ItemSort};
use crate::indexes::IndexDecl;
use crate::paging::Limit;

pub const ITEMS: &str = "items";

#[derive(Clone)]
pub struct ItemRepository {
    items: Collection,
}

impl ItemRepository {
    pub fn new(store: &Store) -> Self {
        Self {
            items: store.collection(ITEMS),
        }
    }

    /// Listings filter by brand and price range and sort by price; `process-data` scans
    /// unprocessed items.
    pub fn indexes() -> Vec<IndexDecl> {
        vec![
            IndexDecl::new(ITEMS, IndexSpec::new(doc! {"brand": 1})),
            IndexDecl::new(ITEMS, IndexSpec::new(doc! {"price": 1})),
            IndexDecl::new(ITEMS, IndexSpec::new(doc! {"processed": 1})),
            // The listing's sort orders (`sort_document`), each read in either direction.
            IndexDecl::new(ITEMS, IndexSpec::new(doc! {"name": 1, "_id": 1})),
            IndexDecl::new(ITEMS, IndexSpec::new(doc! {"price": 1, "_id": 1})),
            IndexDecl::new(ITEMS, IndexSpec::new(doc! {"createdAt": 1, "_id": 1})),
        ]
    }

    pub async fn insert(&self, item: &ItemRecord) -> StoreResult<()> {
        self.items.insert_as(item).await.map(|_| ())
    }

    pub async fn find_by_id(&self, id: bson::oid::ObjectId) -> StoreResult<Option<ItemRecord>> {
        self.items
            .find_one_as(doc! {"_id": id}, FindOptions::default())
            .await
    }

    /// One page of a listing, its stamp and each item handed to `visitor` as stored, and the
    /// number of items matching it.
    pub async fn list(
        &self,
        query: &ItemQuery,
        visitor: &mut (impl PageVisitor + Send),
    ) -> StoreResult<u64> {
        let filter = list_filter(query);
        let options = FindOptions::default()
            .sort(sort_document(query.sort))
            .skip(u64::from(query.skip.get()))
            .limit(i64::from(query.limit.get()));
        let ((), total) = futures::try_join!(
            self.items.find_page(filter.clone(), options, visitor),
            self.items.count(filter)
        )?;
        Ok(total)
    }

    /// getData: the typed filter, at most `limit` items, the read's stamp and each item handed
    /// to `visitor` as stored, in the store's natural order — the guides' `[{$match: filter},
    /// {$limit: limit}]`. No sort and no count, so the scan stops after `limit` matches.
    pub async fn find_matching(
        &self,
        filter: &DataFilter,
        limit: Limit,
        visitor: &mut (impl PageVisitor + Send),
    ) -> StoreResult<()> {
        let options = FindOptions::default().limit(i64::from(limit.get()));
        self.items
            .find_page(data_filter_document(filter), options, visitor)
            .await
    }
}

fn list_filter(query: &ItemQuery) -> Document {
    let mut filter = Document::new();
    if let Some(brand) = &query.brand {
        filter.insert("brand", brand.as_str());
    }
    let mut price = Document::new();
    if let Some(min) = query.min_price {
        price.insert("$gte", min.as_f64());
    }
    if let Some(max) = query.max_price {
        price.insert("$lte", max.as_f64());
    }
    if !price.is_empty() {
        filter.insert("price", price);
    }
    if let Some(text) = &query.name_contains {
        filter.insert("name", doc! {"$regex": escape_regex(text), "$options": "i"});
    }
    filter
}

fn sort_document(sort: ItemSort) -> Document {
    // `_id` breaks ties so pages never overlap or skip items with equal keys. It follows the
    // direction of the first key, so each order is one index read forwards or backwards
    // (`indexes()` declares them; MongoDB never sorts a listing in memory).
    match sort {
        ItemSort::Inserted => doc! {"_id": 1},
        ItemSort::NameAscending => doc! {"name": 1, "_id": 1},
        ItemSort::NameDescending => doc! {"name": -1, "_id": -1},
        ItemSort::PriceAscending => doc! {"price": 1, "_id": 1},
        ItemSort::PriceDescending => doc! {"price": -1, "_id": -1},
        ItemSort::OldestFirst => doc! {"createdAt": 1, "_id": 1},
        ItemSort::NewestFirst => doc! {"createdAt": -1, "_id": -1},
    }
}

/// Conditions on the same field merge into one operator document (`{price: {$gt: 1, $lt: 9}}`);
/// a plain equality becomes `$eq`, so the result is always `{field: {op: value}}`.
pub(crate) fn data_filter_document(filter: &DataFilter) -> Document {
    let mut out = Document::new();
    for condition in &filter.0 {
        let operand = match &condition.operand {
            Operand::One(v) => bson_value(v),
            Operand::Many(vs) => Bson::Array(vs.iter().map(bson_value).collect()),
        };
        let key = condition.field.key();
        match out.get_mut(key) {
            Some(Bson::Document(ops)) => {
                ops.insert(condition.op.key(), operand);
            }
            _ => {
                out.insert(key, doc! {condition.op.key(): operand});
            }
        }
    }
    out
}

fn bson_value(value: &FilterValue) -> Bson {
    match value {
        FilterValue::Text(s) => Bson::String(s.clone()),
        FilterValue::Number(n) => Bson::Double(*n),
    }
}

/// The background work's queries on items (`items/task.rs`, process-data).
impl ItemRepository {
    /// Up to `limit` unprocessed items in `_id` order, after the `_id` `after` if given: a run
    /// goes on from where its last batch ended instead of reading past every item it already
    /// marked, which made a run over n items read ~n²/(2 × limit) documents.
    pub async fn unprocessed_items(
        &self,
        limit: i64,
        after: Option<&Bson>,
    ) -> StoreResult<Vec<Document>> {
        let options = FindOptions::default().sort(doc! { "_id": 1 }).limit(limit);
        let mut filter = doc! { "processed": { "$exists": false } };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after.clone() });
        }
        self.items.find(filter, options).await
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::filter::{Condition, FilterField, FilterOp};
    use crate::items::model::ItemListQuery;

    #[test]
    fn listing_filters_become_value_only_documents() {
        let query = ItemListQuery {
            brand: Some("Acme".into()),
            min_price: Some("5".into()),
            max_price: Some("10".into()),
            q: Some("a.*(".into()),
            ..Default::default()
        }
        .parse()
        .unwrap();
        let filter = list_filter(&query);
        assert_eq!(
            filter,
            doc! {
                "brand": "Acme",
                "price": {"$gte": 5.0, "$lte": 10.0},
                "name": {"$regex": "a\\.\\*\\(", "$options": "i"}
            }
        );
    }

    #[test]
    fn conditions_on_one_field_merge() {
        let filter = DataFilter(vec![
            Condition {
                field: FilterField::Price,
                op: FilterOp::Gt,
                operand: Operand::One(FilterValue::Number(1.0)),
            },
            Condition {
                field: FilterField::Price,
                op: FilterOp::Lt,
                operand: Operand::One(FilterValue::Number(9.0)),
            },
            Condition {
                field: FilterField::Brand,
                op: FilterOp::In,
                operand: Operand::Many(vec![FilterValue::Text("A".into())]),
            },
        ]);
        assert_eq!(
            data_filter_document(&filter),
            doc! {"price": {"$gt": 1.0, "$lt": 9.0}, "brand": {"$in": ["A"]}}
        );
    }
}
