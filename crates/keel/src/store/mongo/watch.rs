//! `watch` on MongoDB: a change stream with `fullDocument: updateLookup`, turned into the
//! store's `ChangeEvent`s.
//!
//! The store's watch filter is a filter over the changed document, like the embedded backend's;
//! a change stream filters change *events*, so each field path is moved under `fullDocument.`
//! (logical operators recurse). Events are read as plain documents and mapped here, so the
//! mapping is unit-tested on the event shapes MongoDB documents. The resume token is the event's
//! `_id`, kept as the BSON document the server sent; it goes back to the driver unchanged.

use bson::{Bson, Document, doc};
use futures::StreamExt;
use mongodb::change_stream::event::ResumeToken as DriverResumeToken;
use mongodb::options::FullDocumentType;

use super::errors::store_error;
use crate::store::{
    ChangeEvent, ChangeOp, ChangeStream, ResumeToken, StoreError, StoreResult, WatchOptions,
};

/// Logical operators whose operands are whole filters.
const LOGICAL_OPERATORS: [&str; 3] = ["$and", "$or", "$nor"];

/// Opens the change stream of `collection` as the store's `ChangeStream`.
pub async fn open(
    collection: &mongodb::Collection<Document>,
    options: WatchOptions,
) -> StoreResult<ChangeStream> {
    let context = format!("watch on {}", collection.name());
    let pipeline = watch_pipeline(&options)?;
    let resume_after = options
        .resume_after
        .as_ref()
        .map(to_driver_token)
        .transpose()?;
    let stream = collection
        .watch()
        .pipeline(pipeline)
        .full_document(FullDocumentType::UpdateLookup)
        .resume_after(resume_after)
        .await
        .map_err(|e| store_error(&context, e))?
        .with_type::<Document>();
    // Events the store has no name for (drop, rename, DDL) are skipped; after an error —
    // including the invalidate that follows a drop — the stream ends.
    let events = futures::stream::unfold(Some(stream), move |state| {
        let context = context.clone();
        async move {
            let mut stream = state?;
            loop {
                let item = match stream.next().await? {
                    Ok(raw) => change_event(raw),
                    Err(e) => Err(store_error(&context, e)),
                };
                match item {
                    Ok(Some(event)) => return Some((Ok(event), Some(stream))),
                    Ok(None) => continue,
                    Err(e) => return Some((Err(e), None)),
                }
            }
        }
    });
    Ok(events.boxed())
}

/// The aggregation stages in front of the change stream: the operation filter, then the
/// document filter moved under `fullDocument`.
pub fn watch_pipeline(options: &WatchOptions) -> StoreResult<Vec<Document>> {
    let mut stages = Vec::new();
    if let Some(ops) = &options.ops {
        let names: Vec<&str> = ops.iter().map(|op| op_name(*op)).collect();
        stages.push(doc! { "$match": { "operationType": { "$in": names } } });
    }
    if let Some(filter) = options.filter.as_ref().filter(|f| !f.is_empty()) {
        // A filter is over the document after the change: events without one (deletes, or an
        // update whose document is gone by lookup time) never pass, whatever the filter says.
        let mut stage = doc! { "fullDocument": { "$type": "object" } };
        stage.extend(scope_to_full_document(filter)?);
        stages.push(doc! { "$match": stage });
    }
    Ok(stages)
}

/// Rewrites a document filter so it applies to `fullDocument` of a change event.
pub fn scope_to_full_document(filter: &Document) -> StoreResult<Document> {
    let mut scoped = Document::new();
    for (key, value) in filter {
        if LOGICAL_OPERATORS.contains(&key.as_str()) {
            let Bson::Array(clauses) = value else {
                return Err(StoreError::invalid(format!(
                    "{key} needs an array of filters"
                )));
            };
            let clauses = clauses
                .iter()
                .map(|clause| match clause {
                    Bson::Document(clause) => scope_to_full_document(clause).map(Bson::Document),
                    _ => Err(StoreError::invalid(format!(
                        "{key} needs an array of filters"
                    ))),
                })
                .collect::<StoreResult<Vec<_>>>()?;
            scoped.insert(key.clone(), clauses);
        } else if key == "$comment" {
            scoped.insert(key.clone(), value.clone());
        } else if key.starts_with('$') {
            // `$expr`, `$where`, `$text`…: their paths live inside expressions we do not rewrite.
            return Err(StoreError::unsupported(format!("{key} in a watch filter")));
        } else {
            scoped.insert(format!("fullDocument.{key}"), value.clone());
        }
    }
    Ok(scoped)
}

/// Maps one raw change event. `Ok(None)` for events the store does not surface.
pub fn change_event(raw: Document) -> StoreResult<Option<ChangeEvent>> {
    let op = match raw.get_str("operationType") {
        Ok("insert") => ChangeOp::Insert,
        Ok("update") => ChangeOp::Update,
        Ok("replace") => ChangeOp::Replace,
        Ok("delete") => ChangeOp::Delete,
        Ok("invalidate") => {
            return Err(StoreError::Backend(
                "the change stream was invalidated (its collection was dropped or renamed); \
                 open a new one"
                    .to_string(),
            ));
        }
        Ok(_) => return Ok(None),
        Err(_) => return Err(malformed("operationType")),
    };
    let resume_token = match raw.get("_id") {
        Some(Bson::Document(token)) => ResumeToken(token.clone()),
        _ => return Err(malformed("_id (the resume token)")),
    };
    let id = raw
        .get_document("documentKey")
        .ok()
        .and_then(|key| key.get("_id"))
        .cloned()
        .ok_or_else(|| malformed("documentKey._id"))?;
    let full_document = match (op, raw.get("fullDocument")) {
        (ChangeOp::Delete, _) => None,
        (_, Some(Bson::Document(document))) => Some(document.clone()),
        _ => None,
    };
    let cluster_time = match (raw.get("clusterTime"), raw.get("wallTime")) {
        (Some(Bson::Timestamp(ts)), _) => Some(bson::DateTime::from_millis(
            i64::from(ts.time).saturating_mul(1000),
        )),
        (_, Some(Bson::DateTime(wall))) => Some(*wall),
        _ => None,
    };
    Ok(Some(ChangeEvent {
        op,
        id,
        full_document,
        resume_token,
        cluster_time,
    }))
}

/// Our stored token (the event's `_id` document) as the driver's token type.
pub fn to_driver_token(token: &ResumeToken) -> StoreResult<DriverResumeToken> {
    bson::deserialize_from_bson(Bson::Document(token.0.clone()))
        .map_err(|e| StoreError::invalid(format!("not a MongoDB resume token: {e}")))
}

fn op_name(op: ChangeOp) -> &'static str {
    match op {
        ChangeOp::Insert => "insert",
        ChangeOp::Update => "update",
        ChangeOp::Replace => "replace",
        ChangeOp::Delete => "delete",
    }
}

fn malformed(field: &str) -> StoreError {
    StoreError::Backend(format!("change event without a usable {field}"))
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
