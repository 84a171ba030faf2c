//! The embedded backend: SQLite (through rusqlite) as a durable ordered key-value layer, keel's
//! query engine (`super::engine`) on top.
//!
//! - `schema`: the file layout and the catalog of collections and indexes;
//! - `collection`: the operations of one collection, parsed and dispatched;
//! - `writer`: the single writer thread and its group commit;
//! - `ops`: the write operations as they run inside the writer's transaction (`bulk`: the
//!   unordered `bulk_write`);
//! - `reader`: the pool of read connections and the read operations (`read_threads`: the
//!   threads the long ones run on);
//! - `scan`: the planner (which index narrows a filter) and the candidate scan;
//! - `changes`: the change log and the change feed; `ttl`: the background sweeper.
//!
//! Async methods only parse their input and hand the work to the writer thread or to a read
//! connection on a read thread (a bounded read runs where it is called, `reader`); nothing here
//! blocks the async runtime.

mod bulk;
mod changes;
mod collection;
mod dirlock;
mod ops;
mod read_threads;
mod reader;
mod scan;
mod schema;
mod ttl;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::{DatabaseConfig, StoreError, StoreResult};
use reader::{ReadSize, Readers};
use schema::Catalog;
use writer::{Published, Writer};

pub use collection::EmbeddedCollection;

/// The error of any operation on a store that was closed.
fn closed() -> StoreError {
    StoreError::Unavailable {
        reason: "the embedded store is closed".into(),
    }
}

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
    /// This process's claim on the directory (`dirlock.rs`), released by `close`.
    lock: Mutex<Option<dirlock::DirectoryLock>>,
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
            let read_connections = config.read_connections.max(1);
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&directory).map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", directory.display()))
                })?;
                let lock = dirlock::lock(&directory)?;
                let conn = schema::open_writer(&file)?;
                let catalog = schema::load_catalog(&conn)?;
                let last_seq = changes::last_seq(&conn)?;
                // Every read connection now, not on the first busy moment: each holds its own
                // schema and page cache, and one opened minutes into a load (when a scheduled
                // task's read met two requests' reads) was a step in resident memory.
                let idle = (0..read_connections)
                    .map(|_| schema::open_reader(&file))
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok::<_, StoreError>((lock, conn, catalog, last_seq, idle))
            })
            .await
            .map_err(|e| StoreError::Backend(format!("opening the store failed: {e}")))??
        };
        let (lock, conn, catalog, last_seq, idle) = opened;
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
        let readers = Arc::new(Readers::new(file, idle, Arc::clone(&published_catalog))?);
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
            lock: Mutex::new(Some(lock)),
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
        EmbeddedCollection::new(Arc::clone(&self.inner), name)
    }

    pub async fn ping(&self) -> StoreResult<()> {
        if self.inner.writer.is_closed() {
            return Err(closed());
        }
        self.inner
            .readers
            .read(ReadSize::Bounded, |conn, _| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(|e| sql_error("ping", e))
            })
            .await
    }

    /// Hands back what a large job (a background task over a whole collection) made the store
    /// hold: the page caches of the writer and of the idle read connections, each up to SQLite's
    /// 2 MiB, and then the C heap's free memory, which glibc otherwise keeps (`malloc_trim`).
    /// Pages read again afterwards come from the OS's file cache.
    pub async fn release_memory(&self) -> StoreResult<()> {
        self.inner
            .writer
            .run(|txn| {
                txn.conn
                    .release_memory()
                    .map_err(|e| sql_error("releasing the writer's page cache", e))
            })
            .await?;
        self.inner.readers.release_memory();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: glibc's `malloc_trim` only returns free memory of its heaps to the kernel;
        // it is thread-safe and touches no live block.
        unsafe {
            libc::malloc_trim(0);
        }
        Ok(())
    }

    /// Commits every queued write, stops the writer and the sweeper; later operations fail
    /// with `Unavailable`.
    pub async fn close(&self) -> StoreResult<()> {
        self.inner.stop_sweeper();
        self.inner.writer.close().await?;
        self.inner.readers.close();
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        Ok(())
    }
}
