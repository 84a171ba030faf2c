//! Readers: a small pool of read-only connections, used off the async runtime.
//!
//! On a multi-threaded runtime (how keel serves) a read runs in `block_in_place`: the worker's
//! other tasks move to another thread while this one reads, so nothing waits behind it, and
//! the read skips the thread handoff of `spawn_blocking`, which costs more than a point lookup
//! itself (~10-30 µs against ~5 µs; see `benches/store.rs`). On a current-thread runtime
//! (`block_in_place` is not available there) reads go to `spawn_blocking`.
//!
//! WAL lets readers run beside the writer, each in its own snapshot. Every read runs in a
//! read transaction and first checks the catalog version its snapshot holds: when the
//! published catalog is not that version (a commit landed in between), the catalog is read
//! from the snapshot itself, so plans always match the data they scan.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bson::Document;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::super::engine::{Filter, Projection, Sort};
use super::super::{StoreError, StoreResult};
use super::scan;
use super::schema::{self, Catalog};

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    closed: AtomicBool,
}

fn closed() -> StoreError {
    StoreError::Unavailable {
        reason: "the embedded store is closed".into(),
    }
}

impl Readers {
    pub fn new(path: PathBuf, connections: u32, catalog: Arc<RwLock<Arc<Catalog>>>) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(connections.max(1) as usize)),
            catalog,
            closed: AtomicBool::new(false),
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs `work` on a pooled connection inside one read snapshot, without blocking other
    /// tasks of the async runtime.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Connection, &Catalog) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        if self.is_closed() {
            return Err(closed());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let readers = Arc::clone(self);
        let run = move || {
            let _permit = permit;
            let conn = match readers.lock_idle().pop() {
                Some(conn) => conn,
                None => schema::open_reader(&readers.path)?,
            };
            let result = readers.in_snapshot(&conn, work);
            if !readers.is_closed() {
                readers.lock_idle().push(conn);
            }
            result
        };
        let flavor = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("the store is used outside a tokio runtime".into()))?
            .runtime_flavor();
        if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(run);
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| StoreError::Backend(format!("a store read failed: {e}")))?
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn in_snapshot<T>(
        &self,
        conn: &Connection,
        work: impl FnOnce(&Connection, &Catalog) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let statement = |sql: &str| {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute([]))
                .map_err(|e| super::sql_error("managing a read transaction", e))
        };
        statement("BEGIN")?;
        let result = (|| {
            let version = schema::catalog_version(conn)?;
            let published = self
                .catalog
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if published.version == version {
                work(conn, &published)
            } else {
                work(conn, &schema::load_catalog(conn)?)
            }
        })();
        if !conn.is_autocommit() {
            statement("COMMIT")?;
        }
        result
    }
}

/// What `find` asks for, parsed.
pub struct Query {
    pub filter: Filter,
    pub sort: Option<Sort>,
    pub skip: usize,
    /// `None`: no limit (MongoDB's `limit(0)` too).
    pub limit: Option<usize>,
    pub projection: Option<Projection>,
}

/// Runs a query on one connection: candidates, sort, skip, limit, projection.
pub fn find(
    conn: &Connection,
    catalog: &Catalog,
    collection: &str,
    query: &Query,
) -> StoreResult<Vec<Document>> {
    let Some(meta) = catalog.collections.get(collection) else {
        return Ok(Vec::new());
    };
    // `{_id: 1}` over the table's own order (any plan but a secondary index) is already sorted:
    // take the early-stopping path instead of reading and sorting every match.
    let in_id_order = |sort: &Sort| {
        sort.is_id_ascending()
            && !matches!(scan::plan(meta, &query.filter), scan::Plan::Index { .. })
    };
    let mut documents: Vec<Document> = match &query.sort {
        None => {
            let wanted = query.limit.map(|limit| limit.saturating_add(query.skip));
            scan::collect(conn, meta, &query.filter, wanted)?
                .into_iter()
                .map(|(_, document)| document)
                .collect()
        }
        Some(sort) if in_id_order(sort) => {
            let wanted = query.limit.map(|limit| limit.saturating_add(query.skip));
            scan::collect(conn, meta, &query.filter, wanted)?
                .into_iter()
                .map(|(_, document)| document)
                .collect()
        }
        Some(sort) => {
            let mut all: Vec<Document> = scan::collect(conn, meta, &query.filter, None)?
                .into_iter()
                .map(|(_, document)| document)
                .collect();
            all.sort_by(|a, b| sort.compare(a, b));
            all
        }
    };
    let documents: Vec<Document> = documents
        .drain(..)
        .skip(query.skip)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(match &query.projection {
        Some(projection) => documents.iter().map(|d| projection.apply(d)).collect(),
        None => documents,
    })
}

/// How many documents match.
pub fn count(
    conn: &Connection,
    catalog: &Catalog,
    collection: &str,
    filter: &Filter,
) -> StoreResult<u64> {
    let Some(meta) = catalog.collections.get(collection) else {
        return Ok(0);
    };
    if filter.is_empty() {
        return conn
            .prepare_cached(&format!("SELECT count(*) FROM {}", meta.table()))
            .and_then(|mut s| s.query_row([], |row| row.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(|e| super::sql_error("counting documents", e));
    }
    let mut count = 0u64;
    scan::scan(conn, meta, filter, |_, _| {
        count += 1;
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    Ok(count)
}
