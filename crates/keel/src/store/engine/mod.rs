//! keel's query engine: MongoDB's filter, update, projection, sort and pipeline semantics over
//! BSON documents, as pure functions. The embedded backend stores bytes; every decision about
//! which document matches, how it changes and in what order it comes back is made here, in one
//! place, so the semantics never depend on SQL's type rules.
//!
//! SCAFFOLD: the signatures below are the contract the embedded backend codes against; the
//! bodies are being written (issue #3).

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::StoreResult;

/// MongoDB's total order over BSON values (type brackets first: MinKey < null < numbers <
/// string < object < array < binary < ObjectId < bool < date < timestamp < regex < MaxKey;
/// numbers compare by value across int32/int64/double/decimal).
pub fn compare_values(a: &Bson, b: &Bson) -> Ordering {
    let _ = (a, b);
    todo!("engine::compare_values")
}

/// An order-preserving byte encoding of a value: `encode_key(a) < encode_key(b)` (bytewise)
/// exactly when `compare_values(a, b) == Less`; equal values (e.g. 1 and 1.0) encode equal.
pub fn encode_key(value: &Bson) -> Vec<u8> {
    let _ = value;
    todo!("engine::encode_key")
}

/// A parsed filter. Parsing rejects unknown operators with `Unsupported` and malformed ones
/// with `InvalidQuery`.
#[derive(Debug, Clone)]
pub struct Filter {}

/// What an index on one field can contribute to a query: candidate keys, never the final say.
/// The backend scans these keys, then `Filter::matches` decides every candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexScan {
    /// Exact keys (`$eq`, `$in`, `{field: value}`).
    Keys(Vec<Bson>),
    /// A range; bounds are `(value, inclusive)`. Within one type bracket, as MongoDB does.
    Range {
        lower: Option<(Bson, bool)>,
        upper: Option<(Bson, bool)>,
    },
}

impl Filter {
    pub fn parse(filter: &Document) -> StoreResult<Filter> {
        let _ = filter;
        todo!("engine::Filter::parse")
    }

    pub fn matches(&self, document: &Document) -> bool {
        let _ = document;
        todo!("engine::Filter::matches")
    }

    /// The `_id` this filter pins, if it is `{_id: v}` or `{_id: {$eq: v}}` (possibly and-ed).
    pub fn id_equality(&self) -> Option<&Bson> {
        todo!("engine::Filter::id_equality")
    }

    /// How an index on `field` can narrow this filter, when it can (top-level and-ed conditions).
    pub fn index_scan(&self, field: &str) -> Option<IndexScan> {
        let _ = field;
        todo!("engine::Filter::index_scan")
    }

    /// The document an upsert starts from: the filter's equality conditions (MongoDB's seeding).
    pub fn upsert_seed(&self) -> Document {
        todo!("engine::Filter::upsert_seed")
    }
}

/// A parsed update document (operators only: `$set $unset $inc $push $pull $addToSet
/// $setOnInsert $currentDate`).
#[derive(Debug, Clone)]
pub struct Update {}

impl Update {
    pub fn parse(update: &Document) -> StoreResult<Update> {
        let _ = update;
        todo!("engine::Update::parse")
    }

    /// Applies the update in place. `is_insert` enables `$setOnInsert`; `now` feeds
    /// `$currentDate`. Returns whether the document changed. Changing `_id` is an error.
    pub fn apply(
        &self,
        document: &mut Document,
        is_insert: bool,
        now: bson::DateTime,
    ) -> StoreResult<bool> {
        let _ = (document, is_insert, now);
        todo!("engine::Update::apply")
    }
}

/// A parsed sort specification (`{field: 1, other: -1}`).
#[derive(Debug, Clone)]
pub struct Sort {}

impl Sort {
    pub fn parse(sort: &Document) -> StoreResult<Sort> {
        let _ = sort;
        todo!("engine::Sort::parse")
    }

    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        let _ = (a, b);
        todo!("engine::Sort::compare")
    }
}

/// A parsed projection (inclusion or exclusion; `_id` included unless excluded).
#[derive(Debug, Clone)]
pub struct Projection {}

impl Projection {
    pub fn parse(projection: &Document) -> StoreResult<Projection> {
        let _ = projection;
        todo!("engine::Projection::parse")
    }

    pub fn apply(&self, document: &Document) -> Document {
        let _ = document;
        todo!("engine::Projection::apply")
    }
}

/// A parsed aggregation pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {}

impl Pipeline {
    pub fn parse(stages: &[Document]) -> StoreResult<Pipeline> {
        let _ = stages;
        todo!("engine::Pipeline::parse")
    }

    /// A leading `$match` the backend may use to pick candidates (it is still applied by `run`).
    pub fn leading_filter(&self) -> Option<&Filter> {
        todo!("engine::Pipeline::leading_filter")
    }

    pub fn run(&self, documents: Vec<Document>) -> StoreResult<Vec<Document>> {
        let _ = documents;
        todo!("engine::Pipeline::run")
    }
}
