//! keel's query engine: MongoDB's filter, update, projection, sort and pipeline semantics over
//! BSON documents, as pure functions. The embedded backend stores bytes; every decision about
//! which document matches, how it changes and in what order it comes back is made here, in one
//! place, so the semantics never depend on SQL's type rules.
//!
//! NOTE for the embedded backend: `Filter::index_scan(field)` is sound for multikey indexes
//! (it never intersects two range conditions); when an index is known to hold no arrays,
//! `Filter::index_scan_for(field, false)` intersects `$gte`/`$lt` into one range. Build index
//! keys with `index_keys(document, field)` so they agree with the planner (each array element
//! and the whole array; `Null` when the field is missing). `nesting_depth` lets inserts refuse
//! documents too deep to compare recursively.

mod arith;
mod compare;
mod filter;
mod keyenc;
mod matcher;
mod path;
mod pattern;
mod plan;
mod update;
mod writepath;

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod update_tests;

use std::cmp::Ordering;

use bson::Document;

use super::StoreResult;

pub use compare::{compare_documents, compare_values, nesting_depth, type_rank, values_equal};
pub use filter::{Filter, MAX_FILTER_DEPTH, MAX_PATH_COMPONENTS};
pub use keyenc::encode_key;
pub use path::index_keys;
pub use plan::IndexScan;
pub use update::Update;

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
