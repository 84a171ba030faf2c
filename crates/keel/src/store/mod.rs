//! The store: the guides' `db.js`, the one place that knows which database is underneath.
//!
//! `Store` is opened once at start-up from `[database]` and cloned into whatever needs it;
//! `Collection` offers MongoDB's operations on BSON documents with MongoDB's meaning. Two
//! backends sit behind the same methods: `embedded` (SQLite as a durable ordered key-value layer
//! with keel's own query engine on top; the default, zero setup) and `mongo` (the official driver).
//! Code above this module never learns which one it talks to; the conformance suite in
//! `tests/store/` runs the same cases against both.

mod config;
pub mod embedded;
pub mod engine;
pub mod input;
pub mod migrate;
pub mod mongo;
pub mod raw;
mod types;

use std::sync::Arc;

use bson::{Bson, Document, RawDocument, RawDocumentBuf};
use futures::stream::BoxStream;
use serde::{Serialize, de::DeserializeOwned};

pub use config::DatabaseConfig;
pub use types::*;

/// A live change feed: events in commit order, each with the token to resume after it.
pub type ChangeStream = BoxStream<'static, StoreResult<ChangeEvent>>;

/// A handle on the database. Cheap to clone; every clone shares the same connections.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(embedded::EmbeddedStore),
    Mongo(mongo::MongoStore),
}

impl Store {
    /// Opens the database named by `database.url`: `embedded://PATH` or `mongodb://…`.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Store> {
        let url = config.url.expose();
        let backend = if let Some(path) = url.strip_prefix("embedded://") {
            Backend::Embedded(embedded::EmbeddedStore::open(path, config).await?)
        } else if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
            Backend::Mongo(mongo::MongoStore::connect(config).await?)
        } else {
            return Err(StoreError::invalid(
                "database.url must start with embedded:// or mongodb:// (or mongodb+srv://)",
            ));
        };
        Ok(Store { backend })
    }

    /// Like `connect`, but a MongoDB server is not contacted: the client connects on first use
    /// and after every outage by itself. `check_server` then says whether it answers. The
    /// embedded store opens its files as `connect` does. `keel serve` starts this way, so a
    /// database that is down at start makes keel wait (`/api/ready` 503), not exit.
    pub async fn connect_lazily(config: &DatabaseConfig) -> StoreResult<Store> {
        let url = config.url.expose();
        if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
            let backend = Backend::Mongo(mongo::MongoStore::connect_lazily(config).await?);
            return Ok(Store { backend });
        }
        Store::connect(config).await
    }

    /// What `connect` proves beyond opening: the database answers (and, on MongoDB with
    /// `require_change_streams`, can serve change streams). `Unavailable` while it cannot.
    pub async fn check_server(&self, config: &DatabaseConfig) -> StoreResult<()> {
        match &self.backend {
            Backend::Embedded(s) => s.ping().await,
            Backend::Mongo(s) => s.check_server(config.require_change_streams).await,
        }
    }

    /// Where the data is, for logs: MongoDB's `host:port` list (never the URL, which may carry
    /// credentials), or `embedded`.
    pub fn location_for_logs(&self) -> String {
        match &self.backend {
            Backend::Embedded(_) => "embedded".to_owned(),
            Backend::Mongo(s) => s.hosts().to_owned(),
        }
    }

    /// `"embedded"` or `"mongodb"`: for logs and metric labels.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Mongo(_) => "mongodb",
        }
    }

    pub fn collection(&self, name: &str) -> Collection {
        let inner = match &self.backend {
            Backend::Embedded(s) => CollectionBackend::Embedded(s.collection(name)),
            Backend::Mongo(s) => CollectionBackend::Mongo(s.collection(name)),
        };
        Collection {
            inner,
            name: Arc::from(name),
        }
    }

    /// A cheap round trip proving the database answers (used by `/api/ready`).
    pub async fn ping(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Embedded(s) => s.ping().await,
            Backend::Mongo(s) => s.ping().await,
        }
    }

    /// Hands back the memory a large job made the store hold (`TaskRunner` calls it after
    /// every task run): the embedded store's page caches and the C heap's free memory. The
    /// MongoDB driver keeps no such cache; there it does nothing.
    pub async fn release_memory(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Embedded(s) => s.release_memory().await,
            Backend::Mongo(_) => Ok(()),
        }
    }

    /// Flushes and closes; later operations fail with `Unavailable`.
    pub async fn close(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Embedded(s) => s.close().await,
            Backend::Mongo(s) => s.close().await,
        }
    }
}

/// One collection of the store. Cheap to clone.
#[derive(Clone)]
pub struct Collection {
    inner: CollectionBackend,
    name: Arc<str>,
}

#[derive(Clone)]
enum CollectionBackend {
    Embedded(embedded::EmbeddedCollection),
    Mongo(mongo::MongoCollection),
}

/// Calls the same method on whichever backend the collection lives in, and records its latency
/// (`keel_store_op_duration_seconds{backend, op}`) and failures (`keel_store_op_errors_total`).
/// Each call site keeps its two latency series (one per backend) once found.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        static LATENCY: [std::sync::OnceLock<std::sync::Arc<crate::metrics::Latency>>; 2] =
            [const { std::sync::OnceLock::new() }; 2];
        let started = std::time::Instant::now();
        let (backend, index, result) = match &$self.inner {
            CollectionBackend::Embedded(c) => ("embedded", 0, c.$method($($arg),*).await),
            CollectionBackend::Mongo(c) => ("mongodb", 1, c.$method($($arg),*).await),
        };
        let op = stringify!($method);
        LATENCY[index]
            .get_or_init(|| {
                crate::metrics::latency(
                    "keel_store_op_duration_seconds",
                    &[("backend", backend), ("op", op)],
                )
            })
            .record(started.elapsed());
        if result.is_err() {
            metrics::counter!("keel_store_op_errors_total", "backend" => backend, "op" => op)
                .increment(1);
        }
        result
    }};
}

impl Collection {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Inserts one document (an ObjectId `_id` is generated when absent); returns its `_id`.
    pub async fn insert_one(&self, document: Document) -> StoreResult<Bson> {
        dispatch!(self.insert_one(document))
    }

    /// Inserts in order, stopping at the first error; returns the `_id`s.
    pub async fn insert_many(&self, documents: Vec<Document>) -> StoreResult<Vec<Bson>> {
        dispatch!(self.insert_many(documents))
    }

    pub async fn find(&self, filter: Document, options: FindOptions) -> StoreResult<Vec<Document>> {
        dispatch!(self.find(filter, options))
    }

    pub async fn find_one(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Option<Document>> {
        dispatch!(self.find_one(filter, options))
    }

    pub async fn count(&self, filter: Document) -> StoreResult<u64> {
        dispatch!(self.count(filter))
    }

    pub async fn update_one(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        dispatch!(self.update_one(filter, update, options))
    }

    pub async fn update_many(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        dispatch!(self.update_many(filter, update, options))
    }

    /// Atomically finds one document (the first by `sort`), updates it and returns it as it was
    /// before or after. The building block of claims, leases and counters.
    pub async fn find_one_and_update(
        &self,
        filter: Document,
        update: Document,
        options: FindOneAndUpdateOptions,
    ) -> StoreResult<Option<Document>> {
        dispatch!(self.find_one_and_update(filter, update, options))
    }

    /// Returns how many documents were deleted (0 or 1).
    pub async fn delete_one(&self, filter: Document) -> StoreResult<u64> {
        dispatch!(self.delete_one(filter))
    }

    pub async fn delete_many(&self, filter: Document) -> StoreResult<u64> {
        dispatch!(self.delete_many(filter))
    }

    pub async fn aggregate(&self, pipeline: Vec<Document>) -> StoreResult<Vec<Document>> {
        dispatch!(self.aggregate(pipeline))
    }

    /// Runs every operation (unordered); a failed operation is reported, the others still run.
    pub async fn bulk_write(&self, operations: Vec<WriteOp>) -> StoreResult<BulkWriteResult> {
        dispatch!(self.bulk_write(operations))
    }

    /// Creates the index if it does not exist (idempotent); returns its name.
    pub async fn create_index(&self, spec: IndexSpec) -> StoreResult<String> {
        dispatch!(self.create_index(spec))
    }

    /// Opens a change feed on this collection, from now or after `resume_after`.
    pub async fn watch(&self, options: WatchOptions) -> StoreResult<ChangeStream> {
        dispatch!(self.watch(options))
    }

    // Typed helpers for repositories: serde at the edge, BSON inside.

    pub async fn insert_as<T: Serialize>(&self, value: &T) -> StoreResult<Bson> {
        self.insert_one(to_document(value)?).await
    }

    /// The stored documents as BSON bytes, for callers that decode them into their own types
    /// (`find_as`) without building `Document`s.
    pub async fn find_raw(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Vec<RawDocumentBuf>> {
        dispatch!(self.find_raw(filter, options))
    }

    /// `find_raw` without collecting: `visit` gets each stored document on the calling thread
    /// as it is read, for a caller that writes documents into its output as they come (a
    /// listing). On the embedded store a bounded read (a point lookup, or at most 1,000
    /// documents in table order) hands over the bytes SQLite holds, with no copy; MongoDB's
    /// documents come from the cursor, batch by batch. An error from `visit` ends the read and
    /// is returned.
    pub async fn find_each(
        &self,
        filter: Document,
        options: FindOptions,
        visit: impl FnMut(&RawDocument) -> StoreResult<()> + Send,
    ) -> StoreResult<()> {
        self.find_page(filter, options, &mut EachDocument(visit))
            .await
    }

    /// `find_each` with the read's stamp first (`PageStamp`): on the embedded store a bounded
    /// read in table order with no filter (getData's page, a listing's first pages in `_id`
    /// order) is stamped, and read again before the data changes it has the same stamp; a
    /// visitor that kept what it made of those documents answers `stamped` with true and the
    /// read ends there. MongoDB's reads are not stamped.
    pub async fn find_page(
        &self,
        filter: Document,
        options: FindOptions,
        visitor: &mut (impl PageVisitor + Send),
    ) -> StoreResult<()> {
        dispatch!(self.find_page(filter, options, visitor))
    }

    /// `find`, each document decoded into `T` straight from its stored bytes.
    pub async fn find_as<T: DeserializeOwned>(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Vec<T>> {
        self.find_raw(filter, options)
            .await?
            .iter()
            .map(|raw| from_raw(raw))
            .collect()
    }

    pub async fn find_one_as<T: DeserializeOwned>(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Option<T>> {
        self.find_raw(filter, options.limit(1))
            .await?
            .first()
            .map(|raw| from_raw(raw))
            .transpose()
    }
}

/// Serializes a value into a document, as repositories write them.
pub fn to_document<T: Serialize>(value: &T) -> StoreResult<Document> {
    bson::serialize_to_document(value)
        .map_err(|e| StoreError::invalid(format!("cannot encode document: {e}")))
}

/// An ObjectId's 24 lowercase hex digits (`ObjectId::to_hex` goes through a char iterator:
/// ~1,000 instructions, 100 times in a listing).
pub fn object_id_hex(id: &bson::oid::ObjectId) -> String {
    lower_hex(&id.bytes())
}

/// `bytes` as lowercase hex, two digits a byte, with one allocation (ids on hot paths: item
/// ids in listings, session record ids on every request).
pub fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// Decodes a stored document from its bytes (see `from_document`).
pub fn from_raw<T: DeserializeOwned>(document: &RawDocument) -> StoreResult<T> {
    bson::deserialize_from_slice(document.as_bytes())
        .map_err(|e| StoreError::Backend(format!("stored document has an unexpected shape: {e}")))
}

/// Decodes a stored document. Documents read back are input too: a shape mismatch is an error
/// naming the problem, never a panic.
pub fn from_document<T: DeserializeOwned>(document: Document) -> StoreResult<T> {
    bson::deserialize_from_document(document)
        .map_err(|e| StoreError::Backend(format!("stored document has an unexpected shape: {e}")))
}
