//! The embedded backend: SQLite (through rusqlite) as a durable ordered key-value layer, keel's
//! query engine (`super::engine`) on top.
//!
//! - `schema`: the file layout and the catalog of collections and indexes;
//! - `writer`: the single writer thread and its group commit;
//! - `ops`: the write operations as they run inside the writer's transaction;
//! - `reader`: the pool of read connections and the read operations;
//! - `scan`: the planner (which index narrows a filter) and the candidate scan;
//! - `changes`: the change log and the change feed; `ttl`: the background sweeper.
//!
//! Async methods here only parse their input (so malformed queries fail before touching the
//! database) and hand the work to the writer thread or to a read connection on
//! `spawn_blocking`; nothing here blocks the async runtime.

mod bulk;
mod changes;
mod ops;
mod reader;
mod scan;
mod schema;
mod ttl;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bson::{Bson, Document};
use tokio::sync::watch;

use super::engine::{Filter, Pipeline, Projection, Sort, Update};
use super::{
    BulkWriteResult, ChangeStream, DatabaseConfig, FindOneAndUpdateOptions, FindOptions, IndexSpec,
    ReturnDocument, StoreError, StoreResult, UpdateOptions, UpdateResult, WatchOptions, WriteOp,
};
use reader::{Query, Readers};
use schema::{Catalog, IndexMeta};
use writer::{Published, Writer};

/// The database file inside the store's directory.
pub const DATABASE_FILE: &str = "keel.db";

/// Maps a SQLite error to the store's vocabulary: a busy or locked database is retryable.
pub(crate) fn sql_error(context: &str, error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if matches!(e.code, DatabaseBusy | DatabaseLocked) => {
            StoreError::Unavailable {
                reason: format!("{context}: {error}"),
            }
        }
        _ => StoreError::Backend(format!("{context}: {error}")),
    }
}

/// What every handle on one embedded store shares.
pub struct Inner {
    writer: Writer,
    readers: Arc<Readers>,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    high_water: watch::Receiver<i64>,
    retention: changes::Retention,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Inner {
    fn published_catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn stop_sweeper(&self) {
        let handle = self
            .sweeper
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_sweeper();
    }
}

#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in directory `path`.
    pub async fn open(path: &str, config: &DatabaseConfig) -> StoreResult<EmbeddedStore> {
        if path.is_empty() {
            return Err(StoreError::invalid("embedded:// needs a directory path"));
        }
        let directory = PathBuf::from(path);
        let file = directory.join(DATABASE_FILE);
        let opened = {
            let file = file.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&directory).map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", directory.display()))
                })?;
                let conn = schema::open_writer(&file)?;
                let catalog = schema::load_catalog(&conn)?;
                let last_seq = changes::last_seq(&conn)?;
                Ok::<_, StoreError>((conn, catalog, last_seq))
            })
            .await
            .map_err(|e| StoreError::Backend(format!("opening the store failed: {e}")))??
        };
        let (conn, catalog, last_seq) = opened;
        let published_catalog = Arc::new(RwLock::new(Arc::new(catalog.clone())));
        let (high_water_sender, high_water) = watch::channel(last_seq);
        let writer = writer::spawn(
            conn,
            catalog,
            last_seq,
            Published {
                catalog: Arc::clone(&published_catalog),
                high_water: high_water_sender,
            },
        )?;
        let readers = Arc::new(Readers::new(
            file,
            config.read_connections,
            Arc::clone(&published_catalog),
        ));
        let inner = Arc::new(Inner {
            writer,
            readers,
            catalog: published_catalog,
            high_water,
            retention: changes::Retention {
                max_age: Duration::from_secs(config.change_retention_hours.saturating_mul(3600)),
                max_events: config.change_retention_events,
            },
            sweeper: Mutex::new(None),
        });
        let interval = Duration::from_millis(config.ttl_sweep_interval_ms);
        let sweeper = ttl::spawn_sweeper(Arc::downgrade(&inner), interval);
        *inner
            .sweeper
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sweeper);
        tracing::info!(path, "embedded store open");
        Ok(EmbeddedStore { inner })
    }

    pub fn collection(&self, name: &str) -> EmbeddedCollection {
        EmbeddedCollection {
            inner: Arc::clone(&self.inner),
            name: Arc::from(name),
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        if self.inner.writer.is_closed() {
            return Err(StoreError::Unavailable {
                reason: "the embedded store is closed".into(),
            });
        }
        self.inner
            .readers
            .read(|conn, _| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(|e| sql_error("ping", e))
            })
            .await
    }

    /// Commits every queued write, stops the writer and the sweeper; later operations fail
    /// with `Unavailable`.
    pub async fn close(&self) -> StoreResult<()> {
        self.inner.stop_sweeper();
        self.inner.writer.close().await?;
        self.inner.readers.close();
        Ok(())
    }
}

#[derive(Clone)]
pub struct EmbeddedCollection {
    inner: Arc<Inner>,
    name: Arc<str>,
}

fn find_query(filter: &Document, options: FindOptions) -> StoreResult<Query> {
    Ok(Query {
        filter: Filter::parse(filter)?,
        sort: options.sort.as_ref().map(Sort::parse).transpose()?,
        skip: usize::try_from(options.skip.unwrap_or(0)).unwrap_or(usize::MAX),
        limit: match options.limit {
            None | Some(0) => None,
            Some(limit) => Some(usize::try_from(limit.unsigned_abs()).unwrap_or(usize::MAX)),
        },
        projection: options
            .projection
            .as_ref()
            .map(Projection::parse)
            .transpose()?,
    })
}

impl EmbeddedCollection {
    pub async fn insert_one(&self, document: Document) -> StoreResult<Bson> {
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::insert(txn, &name, document).map(|(id, _)| id))
            .await
    }

    /// Ordered: the documents before a failing one stay inserted (as with MongoDB).
    pub async fn insert_many(&self, documents: Vec<Document>) -> StoreResult<Vec<Bson>> {
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| {
                let mut ids = Vec::with_capacity(documents.len());
                for document in documents {
                    match txn.atomically(|txn| ops::insert(txn, &name, document)) {
                        Ok((id, _)) => ids.push(id),
                        Err(error) => return Ok(Err(error)),
                    }
                }
                Ok(Ok(ids))
            })
            .await?
    }

    pub async fn find(&self, filter: Document, options: FindOptions) -> StoreResult<Vec<Document>> {
        let query = find_query(&filter, options)?;
        let name = Arc::clone(&self.name);
        self.inner
            .readers
            .read(move |conn, catalog| reader::find(conn, catalog, &name, &query))
            .await
    }

    pub async fn find_one(
        &self,
        filter: Document,
        options: FindOptions,
    ) -> StoreResult<Option<Document>> {
        let found = self.find(filter, options.limit(1)).await?;
        Ok(found.into_iter().next())
    }

    pub async fn count(&self, filter: Document) -> StoreResult<u64> {
        let filter = Filter::parse(&filter)?;
        let name = Arc::clone(&self.name);
        self.inner
            .readers
            .read(move |conn, catalog| reader::count(conn, catalog, &name, &filter))
            .await
    }

    pub async fn update_one(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        self.update(filter, update, options, false).await
    }

    pub async fn update_many(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> StoreResult<UpdateResult> {
        self.update(filter, update, options, true).await
    }

    async fn update(
        &self,
        filter: Document,
        update: Document,
        options: UpdateOptions,
        multi: bool,
    ) -> StoreResult<UpdateResult> {
        let (filter, update) = (Filter::parse(&filter)?, Update::parse(&update)?);
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::update(txn, &name, &filter, &update, multi, options.upsert))
            .await
    }

    pub async fn find_one_and_update(
        &self,
        filter: Document,
        update: Document,
        options: FindOneAndUpdateOptions,
    ) -> StoreResult<Option<Document>> {
        let request = ops::FindAndUpdate {
            filter: Filter::parse(&filter)?,
            update: Update::parse(&update)?,
            sort: options.sort.as_ref().map(Sort::parse).transpose()?,
            upsert: options.upsert,
            return_after: options.return_document == ReturnDocument::After,
        };
        let projection = options
            .projection
            .as_ref()
            .map(Projection::parse)
            .transpose()?;
        let name = Arc::clone(&self.name);
        let found = self
            .inner
            .writer
            .run(move |txn| ops::find_one_and_update(txn, &name, &request))
            .await?;
        Ok(match (found, projection) {
            (Some(document), Some(projection)) => Some(projection.apply(&document)),
            (found, _) => found,
        })
    }

    pub async fn delete_one(&self, filter: Document) -> StoreResult<u64> {
        self.delete(filter, false).await
    }

    pub async fn delete_many(&self, filter: Document) -> StoreResult<u64> {
        self.delete(filter, true).await
    }

    async fn delete(&self, filter: Document, multi: bool) -> StoreResult<u64> {
        let filter = Filter::parse(&filter)?;
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::delete(txn, &name, &filter, multi))
            .await
    }

    pub async fn aggregate(&self, pipeline: Vec<Document>) -> StoreResult<Vec<Document>> {
        let pipeline = Pipeline::parse(&pipeline)?;
        let name = Arc::clone(&self.name);
        self.inner
            .readers
            .read(move |conn, catalog| {
                let everything;
                let filter = match pipeline.leading_filter() {
                    Some(filter) => filter,
                    None => {
                        everything = Filter::parse(&Document::new())?;
                        &everything
                    }
                };
                let documents = match catalog.collections.get(&*name) {
                    Some(meta) => scan::collect(conn, meta, filter, None)?
                        .into_iter()
                        .map(|(_, document)| document)
                        .collect(),
                    None => Vec::new(),
                };
                pipeline.run(documents)
            })
            .await
    }

    pub async fn bulk_write(&self, operations: Vec<WriteOp>) -> StoreResult<BulkWriteResult> {
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| Ok(bulk::run(txn, &name, operations)))
            .await
    }

    pub async fn create_index(&self, spec: IndexSpec) -> StoreResult<String> {
        let Some(index) = IndexMeta::from_spec(&spec)? else {
            return Ok(schema::ID_INDEX.to_owned());
        };
        let name = Arc::clone(&self.name);
        self.inner
            .writer
            .run(move |txn| ops::create_index(txn, &name, index))
            .await
    }

    pub async fn watch(&self, options: WatchOptions) -> StoreResult<ChangeStream> {
        if self.inner.writer.is_closed() {
            return Err(StoreError::Unavailable {
                reason: "the embedded store is closed".into(),
            });
        }
        changes::watch_collection(
            Arc::clone(&self.inner.readers),
            self.inner.high_water.clone(),
            &self.name,
            options,
        )
        .await
    }
}
