//! Unordered `bulk_write` without `Client::bulk_write` (that command needs MongoDB 8.0; keel
//! supports 7). Runs of consecutive inserts go as one unordered `insert_many`; every other
//! operation is its own call. A failed operation is recorded with its index and the rest still
//! run — except when the database is unreachable (`Unavailable`): then the whole call fails,
//! since every remaining operation would wait out the server-selection timeout to fail the same
//! way. Operations are sent in the caller's order; unordered only means failures don't stop it.

use bson::Document;
use mongodb::error::ErrorKind;

use super::errors::{batch_write_error, store_error};
use crate::store::{BulkWriteResult, StoreError, StoreResult, WriteOp};

pub async fn bulk_write(
    collection: &mongodb::Collection<Document>,
    operations: Vec<WriteOp>,
) -> StoreResult<BulkWriteResult> {
    let mut bulk = Bulk {
        collection,
        context: format!("bulk_write on {}", collection.name()),
        result: BulkWriteResult::default(),
        inserts: Vec::new(),
    };
    for (index, operation) in operations.into_iter().enumerate() {
        match operation {
            WriteOp::InsertOne { document } => bulk.inserts.push((index, document)),
            other => {
                bulk.flush_inserts().await?;
                bulk.run(index, other).await?;
            }
        }
    }
    bulk.flush_inserts().await?;
    Ok(bulk.result)
}

struct Bulk<'a> {
    collection: &'a mongodb::Collection<Document>,
    context: String,
    result: BulkWriteResult,
    /// Inserts waiting to go as one `insert_many`, with their index in the caller's list.
    inserts: Vec<(usize, Document)>,
}

impl Bulk<'_> {
    async fn flush_inserts(&mut self) -> StoreResult<()> {
        if self.inserts.is_empty() {
            return Ok(());
        }
        let (indexes, documents): (Vec<usize>, Vec<Document>) = self.inserts.drain(..).unzip();
        let count = documents.len() as u64;
        let error = match self.collection.insert_many(documents).ordered(false).await {
            Ok(_) => {
                self.result.inserted += count;
                return Ok(());
            }
            Err(error) => error,
        };
        let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
            // Refused as a whole (e.g. a document the driver cannot encode): none was inserted.
            let error = store_error(&self.context, error);
            for index in indexes {
                self.record_or_fail(index, error.clone())?;
            }
            return Ok(());
        };
        let write_errors = failure.write_errors.clone().unwrap_or_default();
        if write_errors.is_empty() {
            // Only a write-concern error: the inserts happened but were not acknowledged as
            // asked. Report it against the first insert; do not count them as failed.
            self.result.inserted += count;
            return self.record_or_fail(indexes[0], store_error(&self.context, error));
        }
        let response = error
            .server_response()
            .and_then(|raw| Document::try_from(raw).ok());
        self.result.inserted += count.saturating_sub(write_errors.len() as u64);
        for failed in write_errors {
            let original = indexes.get(failed.index).copied().unwrap_or(indexes[0]);
            let mapped = batch_write_error(
                &self.context,
                failed.code,
                &failed.message,
                response.as_ref(),
                failed.index,
            );
            self.result.errors.push((original, mapped));
        }
        Ok(())
    }

    async fn run(&mut self, index: usize, operation: WriteOp) -> StoreResult<()> {
        let outcome = match operation {
            WriteOp::InsertOne { document } => {
                self.inserts.push((index, document));
                return self.flush_inserts().await;
            }
            WriteOp::UpdateOne {
                filter,
                update,
                upsert,
            } => {
                self.collection
                    .update_one(filter, update)
                    .upsert(upsert)
                    .await
            }
            WriteOp::UpdateMany {
                filter,
                update,
                upsert,
            } => {
                self.collection
                    .update_many(filter, update)
                    .upsert(upsert)
                    .await
            }
            WriteOp::DeleteOne { filter } => {
                return self.deleted(index, self.collection.delete_one(filter).await);
            }
            WriteOp::DeleteMany { filter } => {
                return self.deleted(index, self.collection.delete_many(filter).await);
            }
        };
        match outcome {
            Ok(updated) => {
                self.result.matched += updated.matched_count;
                self.result.modified += updated.modified_count;
                self.result.upserted += u64::from(updated.upserted_id.is_some());
                Ok(())
            }
            Err(error) => self.record_or_fail(index, store_error(&self.context, error)),
        }
    }

    fn deleted(
        &mut self,
        index: usize,
        outcome: mongodb::error::Result<mongodb::results::DeleteResult>,
    ) -> StoreResult<()> {
        match outcome {
            Ok(deleted) => {
                self.result.deleted += deleted.deleted_count;
                Ok(())
            }
            Err(error) => self.record_or_fail(index, store_error(&self.context, error)),
        }
    }

    /// Records a failed operation, or fails the whole call when the database is out of reach.
    fn record_or_fail(&mut self, index: usize, error: StoreError) -> StoreResult<()> {
        if error.is_retryable() {
            return Err(error);
        }
        self.result.errors.push((index, error));
        Ok(())
    }
}
