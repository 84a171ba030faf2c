//! Unordered `bulk_write`: every operation in its own savepoint inside one writer job, so a
//! failing operation is reported with its position and the others still apply (and all of
//! them share one commit).

use super::super::engine::{Filter, Update};
use super::super::{BulkWriteResult, StoreResult, WriteOp};
use super::ops;
use super::writer::Txn;

pub fn run(txn: &mut Txn<'_>, collection: &str, operations: Vec<WriteOp>) -> BulkWriteResult {
    let mut result = BulkWriteResult::default();
    for (position, operation) in operations.into_iter().enumerate() {
        if let Err(error) = txn.atomically(|txn| apply(txn, collection, operation, &mut result)) {
            result.errors.push((position, error));
        }
    }
    result
}

fn apply(
    txn: &mut Txn<'_>,
    collection: &str,
    operation: WriteOp,
    totals: &mut BulkWriteResult,
) -> StoreResult<()> {
    match operation {
        WriteOp::InsertOne { document } => {
            ops::insert(txn, collection, document)?;
            totals.inserted += 1;
        }
        WriteOp::UpdateOne {
            filter,
            update,
            upsert,
        } => update_totals(txn, collection, &filter, &update, false, upsert, totals)?,
        WriteOp::UpdateMany {
            filter,
            update,
            upsert,
        } => update_totals(txn, collection, &filter, &update, true, upsert, totals)?,
        WriteOp::DeleteOne { filter } => {
            totals.deleted += ops::delete(txn, collection, &Filter::parse(&filter)?, false)?;
        }
        WriteOp::DeleteMany { filter } => {
            totals.deleted += ops::delete(txn, collection, &Filter::parse(&filter)?, true)?;
        }
    }
    Ok(())
}

fn update_totals(
    txn: &mut Txn<'_>,
    collection: &str,
    filter: &bson::Document,
    update: &bson::Document,
    multi: bool,
    upsert: bool,
    totals: &mut BulkWriteResult,
) -> StoreResult<()> {
    let (filter, update) = (Filter::parse(filter)?, Update::parse(update)?);
    let result = ops::update(txn, collection, &filter, &update, multi, upsert)?;
    totals.matched += result.matched;
    totals.modified += result.modified;
    totals.upserted += u64::from(result.upserted_id.is_some());
    Ok(())
}
