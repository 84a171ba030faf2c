//! The vocabulary of the store: errors, options, results and change events.
//!
//! These types are the contract every backend honours; the conformance suite
//! (`tests/store/`) checks that they mean the same thing on each one.

use std::time::Duration;

use bson::{Bson, Document, RawDocument};
use serde::{Deserialize, Serialize};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write. `key` is the offending key, rendered as extended JSON.
    #[error("duplicate key in index {index}: {key}")]
    DuplicateKey { index: String, key: String },
    #[error("not found")]
    NotFound,
    /// An operator, stage or option outside what the backend implements. Never silently ignored.
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    /// A malformed filter, update, pipeline or option (e.g. `$inc` on a string).
    #[error("invalid query: {reason}")]
    InvalidQuery { reason: String },
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("store unavailable: {reason}")]
    Unavailable { reason: String },
    /// A watcher asked to resume from a position the change log no longer holds.
    #[error("resume token is older than the change log's retention window")]
    ResumeTokenExpired,
    /// Anything else the backend reported, with context.
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn invalid(reason: impl Into<String>) -> Self {
        StoreError::InvalidQuery {
            reason: reason.into(),
        }
    }

    pub fn unsupported(what: impl Into<String>) -> Self {
        StoreError::Unsupported { what: what.into() }
    }

    /// True for errors worth retrying (connection loss, failover, a busy writer).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Names the documents of one read: two reads that give the same stamp returned the same
/// documents, byte for byte, in the same order. The embedded store stamps the pages its read
/// connections remember until the data changes (`embedded/reader.rs`, `Pages`); a stamp is
/// never given to other documents in the process's life, so whatever a caller made from a
/// stamped read's documents alone (their rendering) is right for every read with that stamp.
/// MongoDB's reads carry none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageStamp(u64);

impl PageStamp {
    /// A stamp no read has had or will have (reads take theirs from here too), so one made
    /// by a caller never names a store's documents.
    pub fn fresh() -> PageStamp {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        PageStamp(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// What `Collection::find_page` hands a read to: the read's stamp, when it has one, then its
/// documents.
pub trait PageVisitor {
    /// The documents about to be visited are those of every read stamped `stamp`. Returning
    /// true ends the read here, no document visited: the visitor already has what it makes
    /// of them.
    fn stamped(&mut self, stamp: PageStamp) -> bool;

    /// The next document, as stored. An error ends the read and is returned.
    fn document(&mut self, document: &RawDocument) -> StoreResult<()>;
}

/// `find_each`'s visitor: each document to the closure, stamps ignored.
pub(crate) struct EachDocument<F>(pub F);

impl<F: FnMut(&RawDocument) -> StoreResult<()>> PageVisitor for EachDocument<F> {
    fn stamped(&mut self, _: PageStamp) -> bool {
        false
    }

    fn document(&mut self, document: &RawDocument) -> StoreResult<()> {
        (self.0)(document)
    }
}

/// Options of `find` / `find_one`. `sort` and `projection` are MongoDB-style documents.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    pub sort: Option<Document>,
    pub skip: Option<u64>,
    pub limit: Option<i64>,
    pub projection: Option<Document>,
}

impl FindOptions {
    pub fn sort(mut self, sort: Document) -> Self {
        self.sort = Some(sort);
        self
    }
    pub fn skip(mut self, skip: u64) -> Self {
        self.skip = Some(skip);
        self
    }
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = Some(limit);
        self
    }
    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateOptions {
    pub upsert: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateResult {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Bson>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReturnDocument {
    #[default]
    Before,
    After,
}

#[derive(Debug, Clone, Default)]
pub struct FindOneAndUpdateOptions {
    pub upsert: bool,
    pub return_document: ReturnDocument,
    pub sort: Option<Document>,
    pub projection: Option<Document>,
}

/// One operation of an unordered `bulk_write`.
#[derive(Debug, Clone)]
pub enum WriteOp {
    InsertOne {
        document: Document,
    },
    UpdateOne {
        filter: Document,
        update: Document,
        upsert: bool,
    },
    UpdateMany {
        filter: Document,
        update: Document,
        upsert: bool,
    },
    DeleteOne {
        filter: Document,
    },
    DeleteMany {
        filter: Document,
    },
}

/// Totals of a `bulk_write`; `errors` pairs the index of each failed operation with its error.
#[derive(Debug, Clone, Default)]
pub struct BulkWriteResult {
    pub inserted: u64,
    pub matched: u64,
    pub modified: u64,
    pub deleted: u64,
    pub upserted: u64,
    pub errors: Vec<(usize, StoreError)>,
}

/// An index to create. `keys` is MongoDB's key document (`{field: 1}` or `{a: 1, b: -1}`).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub keys: Document,
    pub unique: bool,
    /// TTL: a document is deleted once the date in the (single) indexed field is older than this.
    pub expire_after: Option<Duration>,
    /// Defaults to MongoDB's naming (`field_1_other_-1`).
    pub name: Option<String>,
}

impl IndexSpec {
    pub fn new(keys: Document) -> Self {
        Self {
            keys,
            unique: false,
            expire_after: None,
            name: None,
        }
    }
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    pub fn ttl(mut self, expire_after: Duration) -> Self {
        self.expire_after = Some(expire_after);
        self
    }
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The index name MongoDB would give these keys.
    pub fn resolved_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.keys
            .iter()
            .map(|(field, dir)| format!("{field}_{dir}"))
            .collect::<Vec<_>>()
            .join("_")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Insert,
    Update,
    Replace,
    Delete,
}

/// An opaque position in a collection's change feed. Store it (it is a plain BSON document)
/// and pass it back to `watch` to continue after the event it came with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeToken(pub Document);

/// One change to a collection, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: ChangeOp,
    /// The changed document's `_id`.
    pub id: Bson,
    /// The document after the change; `None` for deletes (and when it was deleted since).
    pub full_document: Option<Document>,
    pub resume_token: ResumeToken,
    pub cluster_time: Option<bson::DateTime>,
}

/// Options of `watch`. `filter` is a filter over the changed document (its full document after
/// the change); a non-empty filter therefore never passes delete events.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub filter: Option<Document>,
    pub ops: Option<Vec<ChangeOp>>,
    pub resume_after: Option<ResumeToken>,
}
