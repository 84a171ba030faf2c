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
//!
//! NOTE for the owner of `tests/store/main.rs`: the operator conformance cases live in
//! `tests/store/{operators,update_operators,pipeline_stages}.rs`; they need
//! `mod operators; mod update_operators; mod pipeline_stages;` in `main.rs` to run.

mod arith;
mod compare;
mod expr;
mod filter;
mod group;
mod keyenc;
mod matcher;
mod path;
mod pattern;
mod pipeline;
mod plan;
mod projection;
mod sort;
mod update;
mod writepath;

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod update_tests;

pub use compare::{compare_documents, compare_values, nesting_depth, type_rank, values_equal};
pub use expr::Expression;
pub use filter::{Filter, MAX_FILTER_DEPTH, MAX_PATH_COMPONENTS};
pub use keyenc::encode_key;
pub use path::index_keys;
pub use pipeline::Pipeline;
pub use plan::IndexScan;
pub use projection::Projection;
pub use sort::{Sort, SortKeys, TopK};
pub use update::Update;
