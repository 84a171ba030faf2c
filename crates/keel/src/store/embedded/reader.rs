//! Readers: a small pool of read-only connections, used off the async runtime.
//!
//! A *bounded* read — a point lookup (an `_id`, or exact keys of a unique index), an
//! unfiltered read of at most `INLINE_MAX_DOCUMENTS` documents in table order, or a count of a
//! whole collection — runs right on the calling thread: a few microseconds to a few hundred of
//! CPU on pages SQLite has cached, less than any handoff to another thread costs (a handoff
//! wakes a thread and moves the runtime's other tasks; it was a large share of a request's time
//! in the profiles of `docs/performance.md`). Any other read may examine a whole collection, so
//! it runs on the store's read threads (`read_threads`), off the async workers.
//! (`block_in_place` saved the handoff, a few tens of microseconds beside a scan's hundreds,
//! but handed the worker's role to another thread, whose allocator heap then filled again: a
//! scheduled task's reads in the middle of a load were a 4 MiB step in resident memory,
//! `docs/performance.md`, round 10. Round 20 moved them from tokio's blocking pool, whose
//! threads a task's run left behind for good.)
//!
//! WAL lets readers run beside the writer, each in its own snapshot. Every read runs in a
//! read transaction and first checks the catalog version its snapshot holds: when the
//! published catalog is not that version (a commit landed in between), the catalog is read
//! from the snapshot itself, so plans always match the data they scan. The snapshot's first
//! statement is `PRAGMA data_version`; the catalog version is read from the file only when that
//! moved since the connection last read it (nothing committed, nothing changed).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ops::{ControlFlow, Deref};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bson::{Document, RawDocument, RawDocumentBuf};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::super::engine::{Filter, IndexScan, Projection, Sort};
use super::super::{EachDocument, PageStamp, PageVisitor, StoreError, StoreResult};
use super::closed;
use super::read_threads::ReadThreads;
use super::scan::{self, Columns};
use super::schema::{self, Catalog, CollectionMeta, IndexMeta};

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    permits: Arc<Semaphore>,
    /// One per connection, for the reads that do not run on the calling thread.
    threads: ReadThreads,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    closed: AtomicBool,
}

impl Readers {
    /// A pool of the connections `idle` (opened with the store, `schema::open_reader`) and as
    /// many read threads: as many reads run at once as there are connections. One dropped by
    /// a read that panicked is opened again on demand.
    pub fn new(
        path: PathBuf,
        idle: Vec<Connection>,
        catalog: Arc<RwLock<Arc<Catalog>>>,
    ) -> StoreResult<Readers> {
        let connections = idle.len().max(1);
        Ok(Readers {
            path,
            permits: Arc::new(Semaphore::new(connections)),
            threads: ReadThreads::start(connections)?,
            idle: Mutex::new(idle.into_iter().map(Reader::new).collect()),
            catalog,
            closed: AtomicBool::new(false),
        })
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        self.threads.close();
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs `work` on a pooled connection inside one read snapshot: on the calling thread when
    /// the read is `Bounded` (see the module comment), else without blocking other tasks of the
    /// async runtime.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        size: ReadSize,
        work: impl FnOnce(&Reader, &Catalog) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        if size == ReadSize::Bounded {
            return self.read_here(work).await;
        }
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
        self.threads
            .run(move || {
                let _permit = permit;
                readers.with_reader(work)
            })
            .await
    }

    /// Runs `work` on a pooled connection inside one read snapshot, on the calling thread: only
    /// for a `Bounded` read (see the module comment). `work` may borrow from the caller, so
    /// what it reads can go straight into the caller's output while SQLite still holds it.
    pub async fn read_here<T>(
        &self,
        work: impl FnOnce(&Reader, &Catalog) -> StoreResult<T>,
    ) -> StoreResult<T> {
        if self.is_closed() {
            return Err(closed());
        }
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        self.with_reader(work)
    }

    /// `work` on an idle connection (one dropped by a read that panicked is opened again).
    fn with_reader<T>(
        &self,
        work: impl FnOnce(&Reader, &Catalog) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let conn = match self.lock_idle().pop() {
            Some(conn) => conn,
            None => Reader::new(schema::open_reader(&self.path)?),
        };
        let result = self.in_snapshot(&conn, work);
        if !self.is_closed() {
            self.lock_idle().push(conn);
        }
        result
    }

    /// Hands back the page caches of the idle connections (SQLite's
    /// `sqlite3_db_release_memory`); a connection in use keeps its cache. What a read needs
    /// again is read again from the file, which the OS caches.
    pub fn release_memory(&self) {
        for reader in self.lock_idle().iter() {
            if let Err(error) = reader.conn.release_memory() {
                tracing::debug!(%error, "a read connection kept its page cache");
            }
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Reader>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn in_snapshot<T>(
        &self,
        conn: &Reader,
        work: impl FnOnce(&Reader, &Catalog) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let statement = |sql: &str| {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute([]))
                .map_err(|e| super::sql_error("managing a read transaction", e))
        };
        statement("BEGIN")?;
        let result = (|| {
            let version = conn.begin_snapshot()?;
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
        conn.snapshot_version.set(None);
        if !conn.is_autocommit() {
            statement("COMMIT")?;
        }
        result
    }
}

/// A pooled read connection, and what it remembers of the data it read: whole-collection
/// counts and pages in table order.
///
/// `GET /api/items` counts its collection on every page, and counting 10,000 documents walks
/// every page of an index; getData and a listing's first pages read the same documents again
/// and again between writes. SQLite's `PRAGMA data_version` is the same on a connection for as
/// long as no other connection has committed (a checkpoint may change it too, which only costs
/// a read), and is read inside the snapshot, so what was read at the same version is what
/// reading the same data again gives. Readers never write.
pub struct Reader {
    conn: Connection,
    /// The `data_version` of the snapshot being read (`None` between reads): read once per
    /// snapshot, as it starts it.
    snapshot_version: Cell<Option<i64>>,
    /// The catalog version last read, and the `data_version` it was read at: the same while
    /// nothing was committed, so a read at that data version need not read it again.
    catalog_version: Cell<Option<(i64, i64)>>,
    /// By table: the `data_version` a count was read at, and the count.
    counts: RefCell<HashMap<String, (i64, u64)>>,
    pages: RefCell<Pages>,
}

/// Tables whose counts one connection remembers at most (the catalog bounds them anyway).
const REMEMBERED_COUNTS: usize = 64;

impl Reader {
    fn new(conn: Connection) -> Reader {
        Reader {
            conn,
            snapshot_version: Cell::new(None),
            catalog_version: Cell::new(None),
            counts: RefCell::new(HashMap::new()),
            pages: RefCell::new(Pages::default()),
        }
    }

    /// Starts the read transaction `BEGIN` opened (its first statement takes the snapshot):
    /// reads the snapshot's `data_version`, kept for the rest of it, and returns the catalog
    /// version the snapshot holds — read from `keel_meta` only when the data version moved
    /// since it was last read (a catalog change is a commit of the writer, which moves it).
    fn begin_snapshot(&self) -> StoreResult<i64> {
        let data_version = self.read_data_version()?;
        self.snapshot_version.set(Some(data_version));
        if let Some((_, version)) = self
            .catalog_version
            .get()
            .filter(|&(at, _)| at == data_version)
        {
            return Ok(version);
        }
        let version = schema::catalog_version(&self.conn)?;
        self.catalog_version.set(Some((data_version, version)));
        Ok(version)
    }

    /// SQLite's `PRAGMA data_version` in the current snapshot.
    fn data_version(&self) -> StoreResult<i64> {
        match self.snapshot_version.get() {
            Some(version) => Ok(version),
            None => self.read_data_version(),
        }
    }

    fn read_data_version(&self) -> StoreResult<i64> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |row| row.get::<_, i64>(0)))
            .map_err(|e| super::sql_error("reading the data version", e))
    }

    /// `SELECT count(*) FROM table` in the current snapshot, remembered until the data changes.
    fn count_rows(&self, table: &str) -> StoreResult<u64> {
        let version = self.data_version()?;
        let remembered = self.counts.borrow().get(table).copied();
        if let Some((_, count)) = remembered.filter(|&(at, _)| at == version) {
            return Ok(count);
        }
        let count = self
            .conn
            .prepare_cached(&format!("SELECT count(*) FROM {table}"))
            .and_then(|mut s| s.query_row([], |row| row.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(|e| super::sql_error("counting documents", e))?;
        let mut counts = self.counts.borrow_mut();
        if counts.len() >= REMEMBERED_COUNTS && !counts.contains_key(table) {
            counts.clear();
        }
        counts.insert(table.to_owned(), (version, count));
        Ok(count)
    }
}

/// What the pages one connection remembers may hold (their documents' bytes plus
/// [`PAGE_OVERHEAD`] each): with the pool's 4 connections, ~1 MiB whatever the documents are.
/// A page larger than this is read every time.
const REMEMBERED_PAGE_BYTES: usize = 256 * 1024;
/// The most pages one connection remembers (each read looks through them).
const REMEMBERED_PAGES: usize = 16;
/// A page's own cost beyond its documents' bytes: its key and where each document ends.
const PAGE_OVERHEAD: usize = 128;

/// Pages of a collection in table order with no filter (getData's page, a listing's page in
/// `_id` order) that one connection read lately, each with the `data_version` it was read at.
#[derive(Default)]
struct Pages {
    /// Oldest first.
    pages: VecDeque<Page>,
}

/// The documents `skip`..`skip + limit` of a collection (by its number, the catalog's key for
/// its table) in table order, one after another in `bytes`, each ending where `ends` says.
struct Page {
    collection: i64,
    skip: usize,
    limit: usize,
    version: i64,
    /// Given to the read that made the page and to every read it answers (`PageStamp`).
    stamp: PageStamp,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Page {
    fn documents(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }

    fn size(&self) -> usize {
        self.bytes.len() + self.ends.len() * size_of::<usize>() + PAGE_OVERHEAD
    }

    fn is_for(&self, collection: i64, skip: usize, limit: usize) -> bool {
        self.collection == collection && self.skip == skip && self.limit == limit
    }
}

impl Pages {
    fn find(&self, collection: i64, skip: usize, limit: usize, version: i64) -> Option<&Page> {
        self.pages
            .iter()
            .find(|page| page.version == version && page.is_for(collection, skip, limit))
    }

    /// Keeps `page`, dropping every page read at another version (stale) or for the same
    /// query, then the oldest ones until it fits.
    fn keep(&mut self, page: Page) {
        let size = page.size();
        if size > REMEMBERED_PAGE_BYTES {
            return;
        }
        self.pages.retain(|kept| {
            kept.version == page.version && !kept.is_for(page.collection, page.skip, page.limit)
        });
        while self.pages.len() >= REMEMBERED_PAGES || self.bytes() + size > REMEMBERED_PAGE_BYTES {
            self.pages.pop_front();
        }
        self.pages.push_back(page);
    }

    /// What the remembered pages hold, as `REMEMBERED_PAGE_BYTES` counts it.
    fn bytes(&self) -> usize {
        self.pages.iter().map(Page::size).sum()
    }
}

impl Deref for Reader {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// Whether a read is cheap enough to run on the calling thread (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSize {
    Bounded,
    Unbounded,
}

/// The most documents a read on the calling thread may return.
pub const INLINE_MAX_DOCUMENTS: usize = 1000;

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
    conn: &Reader,
    catalog: &Catalog,
    collection: &str,
    query: &Query,
) -> StoreResult<Vec<Document>> {
    let Some(meta) = catalog.collections.get(collection) else {
        return Ok(Vec::new());
    };
    let walk = walk(meta, query);
    if walk.is_none()
        && let Some(page) = page_in_id_order(conn, meta, query)?
    {
        let page = page.iter().map(|bytes| scan::decode(bytes));
        return match &query.projection {
            Some(projection) => page.map(|d| Ok(projection.apply(&d?))).collect(),
            None => page.collect(),
        };
    }
    find_along(conn, meta, query, walk)
}

/// `find` once the read's plan is known (`walk`).
fn find_along(
    conn: &Reader,
    meta: &CollectionMeta,
    query: &Query,
    walk: Option<(scan::Plan, bool)>,
) -> StoreResult<Vec<Document>> {
    let wanted = query.limit.map(|limit| limit.saturating_add(query.skip));
    let mut documents: Vec<Document> = match (walk, &query.sort) {
        (Some((plan, descending)), _) => {
            scan::collect_along(conn, meta, &plan, descending, &query.filter, wanted)?
                .into_iter()
                .map(|(_, document)| document)
                .collect()
        }
        // A sorted page: the best skip+limit by their sort keys and ids only, then the page's
        // documents read again by id. Memory follows the page, not the number of matches.
        (None, Some(sort)) if query.limit.is_some() => {
            let mut top = sort.top_k(wanted.unwrap_or(usize::MAX));
            scan::scan(conn, meta, &query.filter, |id, document| {
                top.push(sort.keys_of(&document), id);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            let mut page = Vec::new();
            for id in top.finish().into_iter().skip(query.skip) {
                // Gone between the scan and now cannot happen: both run on this connection
                // inside one read.
                if let Some(document) = scan::fetch(conn, meta, &id)? {
                    page.push(document);
                }
            }
            return Ok(match &query.projection {
                Some(projection) => page.iter().map(|d| projection.apply(d)).collect(),
                None => page,
            });
        }
        // No limit: the caller asked for every match, sorted.
        (None, sort) => {
            let mut all: Vec<Document> = scan::collect(conn, meta, &query.filter, None)?
                .into_iter()
                .map(|(_, document)| document)
                .collect();
            if let Some(sort) = sort {
                sort.sort(&mut all);
            }
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

/// The plan that gives the query's matches in its order, so a read can stop after `skip +
/// limit` of them, and whether it is read backwards. In table order — no sort, or `{_id: 1}`
/// over any plan but a secondary index — that is the filter's own plan; a sorted page may have
/// an index in its sort's order (`scan::ordered_plan`). `None` when every match must be read
/// and sorted.
fn walk(meta: &CollectionMeta, query: &Query) -> Option<(scan::Plan, bool)> {
    let plan = scan::plan(meta, &query.filter);
    let in_table_order = query
        .sort
        .as_ref()
        .is_none_or(|sort| sort.is_id_ascending() && !matches!(plan, scan::Plan::Index { .. }));
    if in_table_order {
        return Some((plan, false));
    }
    match (&query.sort, query.limit) {
        (Some(sort), Some(_)) => scan::ordered_plan(meta, sort, &query.filter),
        _ => None,
    }
}

/// How many documents the collection holds, remembered until the data changes. A non-multikey
/// index holds exactly one entry per document (`Null` for a missing field) in rows a fraction
/// of a document's size: counting one reads far fewer pages.
fn whole_count(conn: &Reader, meta: &CollectionMeta) -> StoreResult<u64> {
    let table = meta
        .indexes
        .iter()
        .filter(|index| !index.multikey)
        .min_by_key(|index| index.fields.len())
        .map_or_else(|| meta.table(), |index| index.table());
    conn.count_rows(&table)
}

/// An index on the field of a filter `Filter::exact_scan` accepts, holding no arrays, and the
/// scan whose keys in it are exactly the filter's matches (one key per document).
fn exact_index<'m>(
    meta: &'m CollectionMeta,
    filter: &Filter,
) -> Option<(&'m IndexMeta, IndexScan)> {
    let (field, scan) = filter.exact_scan()?;
    let index = meta
        .indexes
        .iter()
        .find(|index| !index.multikey && index.fields.first().is_some_and(|f| f == field))?;
    Some((index, scan))
}

/// A page sorted by `_id` whose filter an index narrows (`?minPrice=` in insertion order): the
/// index gives the matches in its key order, so `walk` has no plan for it and every match is
/// read for a top-k. When the matches are dense — `matches² ≥ 8 · wanted · documents`, both
/// counted from indexes — the table read in `_id` order holds the page within about `wanted ·
/// documents / matches` rows, at most an eighth of the matches. A quarter of the matches (and
/// `wanted` more) are tried, so matches gathered unevenly in `_id` order are still found: the
/// page if it filled, `None` if not (the matches sit elsewhere), and then the index is read as
/// before, after at most 3/8 as many rows as it reads (`matches ≥ 8 · wanted` there). MongoDB's
/// planner tries plans against each other the same way. Only for a read `walk` has no plan for.
fn page_in_id_order(
    conn: &Reader,
    meta: &CollectionMeta,
    query: &Query,
) -> StoreResult<Option<Vec<Vec<u8>>>> {
    let Some((paths, descending)) = query.sort.as_ref().and_then(Sort::uniform_paths) else {
        return Ok(None);
    };
    let Some(limit) = query.limit.filter(|&limit| limit > 0) else {
        return Ok(None);
    };
    let wanted = limit.saturating_add(query.skip);
    if paths != ["_id"] || wanted > INLINE_MAX_DOCUMENTS {
        return Ok(None);
    }
    let Some((index, exact)) = exact_index(meta, &query.filter) else {
        return Ok(None);
    };
    if !matches!(scan::plan(meta, &query.filter), scan::Plan::Index { .. }) {
        return Ok(None);
    }
    let matches = u128::from(scan::count_keys(conn, index, &exact)?);
    let documents = u128::from(whole_count(conn, meta)?);
    let wanted = wanted as u128;
    if matches == 0 || matches * matches < 8 * wanted * documents {
        return Ok(None);
    }
    let rows = i64::try_from(matches / 4 + wanted).unwrap_or(i64::MAX);
    let order = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT doc FROM {} ORDER BY id {order} LIMIT ?1",
        meta.table()
    );
    let context = |e| super::sql_error("reading a page in _id order", e);
    let mut statement = conn.prepare_cached(&sql).map_err(context)?;
    let mut found = statement.query([rows]).map_err(context)?;
    let mut page = Vec::new();
    let mut to_skip = query.skip;
    while let Some(row) = found.next().map_err(context)? {
        let bytes = scan::blob(row, 0, "reading a page in _id order")?;
        if !scan::matches_stored(&query.filter, bytes)?.0 {
            continue;
        }
        if to_skip > 0 {
            to_skip -= 1;
            continue;
        }
        page.push(bytes.to_vec());
        if page.len() == limit {
            return Ok(Some(page));
        }
    }
    Ok(None)
}

impl Query {
    /// Bounded when it is a point lookup (`scan::is_point_lookup`), or when it has no filter
    /// and takes at most `INLINE_MAX_DOCUMENTS` in scan order or along an index in its sort's
    /// order (every row read is returned).
    pub fn size(&self, catalog: &Catalog, collection: &str) -> ReadSize {
        let Some(meta) = catalog.collections.get(collection) else {
            return ReadSize::Bounded;
        };
        if scan::is_point_lookup(meta, &self.filter) {
            return ReadSize::Bounded;
        }
        let few = self
            .limit
            .is_some_and(|limit| limit.saturating_add(self.skip) <= INLINE_MAX_DOCUMENTS);
        if few && self.filter.is_empty() && walk(meta, self).is_some() {
            ReadSize::Bounded
        } else {
            ReadSize::Unbounded
        }
    }
}

/// A count is bounded when it counts a whole collection (one SQL statement over an index) or
/// a point lookup; any other filter may test every document.
pub fn count_size(catalog: &Catalog, collection: &str, filter: &Filter) -> ReadSize {
    let is_point = catalog
        .collections
        .get(collection)
        .is_some_and(|meta| scan::is_point_lookup(meta, filter));
    if filter.is_empty() || is_point {
        ReadSize::Bounded
    } else {
        ReadSize::Unbounded
    }
}

/// `find` as stored BSON, for typed reads: in scan order without a projection the bytes are
/// copied out of SQLite as they are, with no `Document` built (see `scan::scan_raw`).
pub fn find_raw(
    conn: &Reader,
    catalog: &Catalog,
    collection: &str,
    query: &Query,
) -> StoreResult<Vec<RawDocumentBuf>> {
    let mut found = Vec::new();
    let mut collect = EachDocument(|document: &RawDocument| {
        found.push(document.to_owned());
        Ok(())
    });
    each_raw(conn, catalog, collection, query, &mut collect)?;
    Ok(found)
}

fn encode(document: &Document) -> StoreResult<RawDocumentBuf> {
    RawDocumentBuf::try_from(document)
        .map_err(|e| StoreError::Backend(format!("cannot encode a document: {e}")))
}

/// `find_raw`, each document handed to `visitor` as it is read: in scan order or along an
/// index in the sort's order (`walk`), the stored bytes SQLite holds for the row (no copy); a
/// page read from the table in `_id` order (`page_in_id_order`), its copied bytes; otherwise
/// each document `find` returns, encoded. A page in table order with no filter is remembered
/// by the connection until the data changes ([`Reader`]): read again, its documents come from
/// the copy. Such a page is stamped (`PageStamp`): the visitor hears the stamp before the
/// documents, the same stamp each time the remembered page answers, and may end the read there.
pub fn each_raw(
    conn: &Reader,
    catalog: &Catalog,
    collection: &str,
    query: &Query,
    visitor: &mut impl PageVisitor,
) -> StoreResult<()> {
    let Some(meta) = catalog.collections.get(collection) else {
        return Ok(());
    };
    if query.projection.is_some() {
        return find(conn, catalog, collection, query)?
            .iter()
            .try_for_each(|document| visitor.document(&encode(document)?));
    }
    let Some((plan, descending)) = walk(meta, query) else {
        if let Some(page) = page_in_id_order(conn, meta, query)? {
            for bytes in &page {
                visitor.document(RawDocument::from_bytes(bytes).map_err(scan::corrupt)?)?;
            }
            return Ok(());
        }
        return find_along(conn, meta, query, None)?
            .iter()
            .try_for_each(|document| visitor.document(&encode(document)?));
    };
    let limit = query.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    // A page worth remembering: the same at the same data version, at most
    // `INLINE_MAX_DOCUMENTS` documents, in table order (with no filter the plan is the whole
    // table, so no sort but `{_id: 1}`; the pages are not told apart by their sort).
    let rememberable = query.filter.is_empty()
        && limit.saturating_add(query.skip) <= INLINE_MAX_DOCUMENTS
        && query.sort.as_ref().is_none_or(Sort::is_id_ascending);
    let mut page = None;
    if rememberable {
        let version = conn.data_version()?;
        if let Some(found) = conn
            .pages
            .borrow()
            .find(meta.number, query.skip, limit, version)
        {
            if visitor.stamped(found.stamp) {
                return Ok(());
            }
            for bytes in found.documents() {
                visitor.document(RawDocument::from_bytes(bytes).map_err(scan::corrupt)?)?;
            }
            return Ok(());
        }
        let stamp = PageStamp::fresh();
        if visitor.stamped(stamp) {
            return Ok(());
        }
        page = Some(Page {
            collection: meta.number,
            skip: query.skip,
            limit,
            version,
            stamp,
            bytes: Vec::new(),
            ends: Vec::new(),
        });
    }
    let mut to_skip = query.skip;
    let mut taken = 0;
    scan::scan_raw(
        conn,
        meta,
        &plan,
        descending,
        &query.filter,
        Columns::Document,
        |_, bytes, _| {
            if to_skip > 0 {
                to_skip -= 1;
                return Ok(ControlFlow::Continue(()));
            }
            visitor.document(RawDocument::from_bytes(bytes).map_err(scan::corrupt)?)?;
            if let Some(kept) = &mut page {
                if kept.size() + bytes.len() <= REMEMBERED_PAGE_BYTES {
                    kept.bytes.extend_from_slice(bytes);
                    kept.ends.push(kept.bytes.len());
                } else {
                    page = None;
                }
            }
            taken += 1;
            Ok(if taken >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )?;
    if let Some(page) = page {
        conn.pages.borrow_mut().keep(page);
    }
    Ok(())
}

/// How many documents match.
pub fn count(
    conn: &Reader,
    catalog: &Catalog,
    collection: &str,
    filter: &Filter,
) -> StoreResult<u64> {
    let Some(meta) = catalog.collections.get(collection) else {
        return Ok(0);
    };
    if filter.is_empty() {
        return whole_count(conn, meta);
    }
    if let Some((index, scan)) = exact_index(meta, filter) {
        // One key per document, and the keys the scan covers are the matches.
        return scan::count_keys(conn, index, &scan);
    }
    let mut count = 0u64;
    let plan = scan::plan(meta, filter);
    scan::scan_raw(
        conn,
        meta,
        &plan,
        false,
        filter,
        Columns::Document,
        |_, _, _| {
            count += 1;
            Ok(ControlFlow::Continue(()))
        },
    )?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    fn page(collection: i64, skip: usize, version: i64, documents: &[usize]) -> Page {
        let mut page = Page {
            collection,
            skip,
            limit: 100,
            version,
            stamp: PageStamp::fresh(),
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for &len in documents {
            page.bytes.extend(std::iter::repeat_n(7u8, len));
            page.ends.push(page.bytes.len());
        }
        page
    }

    #[test]
    fn a_page_gives_back_its_documents_in_order() {
        let kept = page(1, 0, 1, &[5, 0, 3]);
        let lens: Vec<usize> = kept.documents().map(<[u8]>::len).collect();
        assert_eq!(lens, [5, 0, 3]);
        assert_eq!(page(1, 0, 1, &[]).documents().count(), 0);
    }

    #[test]
    fn remembered_pages_stay_within_their_bounds_and_their_version() {
        let mut pages = Pages::default();
        // More pages than the count bound: the oldest go.
        for skip in 0..40 {
            pages.keep(page(1, skip, 1, &[10]));
            assert!(pages.pages.len() <= REMEMBERED_PAGES);
        }
        assert!(
            pages.find(1, 39, 100, 1).is_some(),
            "the newest page is kept"
        );
        assert!(
            pages.find(1, 0, 100, 1).is_none(),
            "the oldest page is dropped"
        );
        assert!(
            pages.find(1, 39, 100, 2).is_none(),
            "another version is a miss"
        );
        assert!(
            pages.find(2, 39, 100, 1).is_none(),
            "another collection is a miss"
        );
        // Large pages: the bytes bound holds, each page's overhead counted (four quarters of
        // the bound and their overhead do not fit: three are kept).
        for skip in 0..10 {
            pages.keep(page(1, skip, 1, &[REMEMBERED_PAGE_BYTES / 4; 1]));
            assert!(pages.bytes() <= REMEMBERED_PAGE_BYTES, "{}", pages.bytes());
        }
        assert_eq!(pages.pages.len(), 3);
        // A page over the bound is not kept; one at a new version drops the stale ones.
        pages.keep(page(1, 500, 1, &[REMEMBERED_PAGE_BYTES]));
        assert!(pages.find(1, 500, 100, 1).is_none());
        pages.keep(page(1, 0, 2, &[10]));
        assert_eq!(pages.pages.len(), 1);
        assert!(pages.find(1, 0, 100, 2).is_some());
        // The same query read again replaces its page.
        pages.keep(page(1, 0, 2, &[20]));
        assert_eq!(pages.pages.len(), 1);
        assert_eq!(pages.find(1, 0, 100, 2).map(|p| p.bytes.len()), Some(20));
    }

    /// A read's snapshot starts with its `data_version`, and the catalog version it holds is
    /// read again once anything was committed: a catalog change committed in the middle of a
    /// read is not seen by it, and the next read plans with the changed catalog.
    #[tokio::test]
    async fn a_read_sees_the_catalog_of_its_own_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let writer = schema::open_writer(&path).unwrap();
        let published = Arc::new(RwLock::new(Arc::new(
            schema::load_catalog(&writer).unwrap(),
        )));
        let idle = vec![schema::open_reader(&path).unwrap()];
        let readers = Readers::new(path, idle, published).unwrap();
        let bump = || {
            writer
                .execute(
                    "UPDATE keel_meta SET catalog_version = catalog_version + 1 WHERE id = 1",
                    [],
                )
                .unwrap()
        };
        let versions = |conn: &Reader, catalog: &Catalog| {
            Ok((catalog.version, schema::catalog_version(conn)?))
        };

        assert_eq!(
            readers.read_here(|c, k| versions(c, k)).await.unwrap(),
            (0, 0)
        );
        let during = readers
            .read_here(|conn, catalog| {
                bump();
                versions(conn, catalog)
            })
            .await
            .unwrap();
        assert_eq!(during, (0, 0), "the commit landed inside the snapshot");
        // The published catalog is still version 0: a read that took its version from
        // memory would plan with it.
        assert_eq!(
            readers.read_here(|c, k| versions(c, k)).await.unwrap(),
            (1, 1)
        );
        assert_eq!(
            readers.read_here(|c, k| versions(c, k)).await.unwrap(),
            (1, 1)
        );
        bump();
        assert_eq!(
            readers.read_here(|c, k| versions(c, k)).await.unwrap(),
            (2, 2)
        );
    }

    /// The pool holds the connections the store opened, and reads that may scan run at once,
    /// one per connection, on the store's read threads: each waits (with a deadline) until all three
    /// have started, which a scan run on the calling thread — this test's, or its one worker's
    /// — would never see. No connection is opened later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn scans_run_at_once_on_the_connections_opened_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let writer = schema::open_writer(&path).unwrap();
        let catalog = schema::load_catalog(&writer).unwrap();
        let idle = (0..3)
            .map(|_| schema::open_reader(&path).unwrap())
            .collect();
        let readers =
            Arc::new(Readers::new(path, idle, Arc::new(RwLock::new(Arc::new(catalog)))).unwrap());
        assert_eq!(readers.lock_idle().len(), 3);

        let started = Arc::new(AtomicUsize::new(0));
        let scans = (0..3).map(|_| {
            let started = Arc::clone(&started);
            readers.read(ReadSize::Unbounded, move |conn, _| {
                started.fetch_add(1, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(10);
                while started.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
                    std::thread::yield_now();
                }
                Ok((
                    started.load(Ordering::SeqCst),
                    schema::catalog_version(conn)?,
                    std::thread::current().name().map(str::to_owned),
                ))
            })
        });
        let seen = futures::future::try_join_all(scans).await.unwrap();
        let on_read_threads = || (3, 0, Some("keel-store-read".to_owned()));
        assert_eq!(
            seen,
            [on_read_threads(), on_read_threads(), on_read_threads()],
            "the scans did not run at once on the store's read threads"
        );
        assert_eq!(
            readers.lock_idle().len(),
            3,
            "a connection was opened or lost"
        );
    }

    /// A store with the default settings in `dir`.
    async fn open_store(dir: &tempfile::TempDir) -> super::super::EmbeddedStore {
        let config = crate::store::DatabaseConfig::default();
        super::super::EmbeddedStore::open(dir.path().to_str().unwrap(), &config)
            .await
            .unwrap()
    }

    /// The bytes of SQLite's page cache on `conn` (`SQLITE_DBSTATUS_CACHE_USED`).
    fn cache_used(conn: &Connection) -> i64 {
        let (mut current, mut highest) = (0, 0);
        // SAFETY: the handle is `conn`'s own and open; the two out-pointers are live locals.
        let status = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut current,
                &mut highest,
                0,
            )
        };
        assert_eq!(status, rusqlite::ffi::SQLITE_OK);
        i64::from(current)
    }

    /// A whole-collection read and a write over every document fill the page caches of a read
    /// connection and of the writer; `release_memory` (run after every task) empties them,
    /// and what is read afterwards is read again from the file, whole.
    #[tokio::test]
    async fn released_page_caches_are_emptied_and_the_data_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let collection = store.collection("c");
        let filler = "x".repeat(400);
        let documents = (0..3000)
            .map(|n| bson::doc! {"_id": n, "filler": &filler})
            .collect();
        collection.insert_many(documents).await.unwrap();
        let everything = || collection.find(bson::doc! {}, crate::store::FindOptions::default());
        assert_eq!(everything().await.unwrap().len(), 3000);
        collection
            .update_many(
                bson::doc! {},
                bson::doc! {"$set": {"seen": true}},
                crate::store::UpdateOptions::default(),
            )
            .await
            .unwrap();
        let caches = || async {
            let readers: i64 = store
                .inner
                .readers
                .lock_idle()
                .iter()
                .map(|reader| cache_used(&reader.conn))
                .sum();
            let writer = store
                .inner
                .writer
                .run(|txn| Ok(cache_used(txn.conn)))
                .await
                .unwrap();
            (readers, writer)
        };
        let (readers, writer) = caches().await;
        assert!(
            readers > 1_000_000 && writer > 1_000_000,
            "the reads and writes did not fill the caches: {readers} / {writer} bytes"
        );

        store.release_memory().await.unwrap();
        let (readers_after, writer_after) = caches().await;
        assert!(
            readers_after < readers / 10 && writer_after < writer / 10,
            "caches not released: readers {readers} -> {readers_after}, \
             writer {writer} -> {writer_after} bytes"
        );
        let read_again = everything().await.unwrap();
        assert_eq!(read_again.len(), 3000);
        assert!(
            read_again
                .iter()
                .all(|d| d.get_bool("seen").unwrap_or(false))
        );
    }

    /// A page in `_id` order under a dense range is read from the table in `_id` order when
    /// its rows are where the counts say (forwards over matches spread evenly, backwards over
    /// matches at the end), and left to the index when they are not (forwards to matches at
    /// the end) or the range is sparse. Which plan ran does not change the page: the
    /// conformance case `a_page_in_id_order_under_a_range_is_the_page` compares the pages.
    #[tokio::test]
    async fn a_page_in_id_order_is_read_from_the_table_only_where_its_matches_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let collection = store.collection("c");
        collection
            .create_index(crate::store::IndexSpec::new(bson::doc! {"a": 1}))
            .await
            .unwrap();
        // `a` cycles through 0..10 over the first 200 documents, then counts up from 1,200.
        let documents = (0..400)
            .map(|n| bson::doc! {"_id": n, "a": if n < 200 { n % 10 } else { 1000 + n }})
            .collect();
        collection.insert_many(documents).await.unwrap();
        let tried = |filter: bson::Document, descending: bool| {
            let query = Query {
                filter: Filter::parse(&filter).unwrap(),
                sort: Some(
                    Sort::parse(&bson::doc! {"_id": if descending { -1 } else { 1 }}).unwrap(),
                ),
                skip: 2,
                limit: Some(5),
                projection: None,
            };
            let readers = Arc::clone(&store.inner.readers);
            async move {
                readers
                    .read(ReadSize::Bounded, move |conn, catalog| {
                        let meta = &catalog.collections["c"];
                        let page = page_in_id_order(conn, meta, &query)?;
                        Ok(page.map(|page| {
                            page.iter()
                                .map(|bytes| scan::decode(bytes).unwrap().get_i32("_id").unwrap())
                                .collect::<Vec<_>>()
                        }))
                    })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            tried(bson::doc! {"a": {"$gte": 5}}, false).await,
            Some(vec![7, 8, 9, 15, 16])
        );
        assert_eq!(
            tried(bson::doc! {"a": {"$gte": 1000}}, true).await,
            Some(vec![397, 396, 395, 394, 393])
        );
        assert_eq!(tried(bson::doc! {"a": {"$gte": 1000}}, false).await, None);
        assert_eq!(
            tried(bson::doc! {"a": {"$gte": 9, "$lt": 10}}, false).await,
            None,
            "20 matches of 400"
        );
        store.close().await.unwrap();
    }
}
