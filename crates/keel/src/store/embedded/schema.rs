//! The file layout of the embedded store and its catalog.
//!
//! One SQLite file (`PATH/keel.db`, WAL, `synchronous=FULL`). SQLite is used as a durable,
//! transactional ordered key-value layer; nothing about a document's meaning is left to SQL:
//! - `c{N}(id BLOB PRIMARY KEY, doc BLOB)`: one table per collection, `id` the order-preserving
//!   encoding of `_id` (`engine::encode_key`), `doc` the document as BSON bytes;
//! - `i{N}(key BLOB, id BLOB)`: one table per secondary index, `key` the concatenated encodings
//!   of the indexed values (one row per key of a multikey document); the primary key is
//!   `(key)` for a unique index, `(key, id)` otherwise, so SQLite enforces uniqueness;
//! - `keel_collections` / `keel_indexes`: the catalog (names are user input and never become SQL
//!   identifiers: tables are named by catalog number);
//! - `keel_meta`: the catalog version (bumped in the transaction that changes the catalog, so a
//!   reader can tell whether its in-memory catalog matches its snapshot) and the change log's
//!   trim point;
//! - `keel_changes`: the change log (see `changes.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bson::{Bson, Document};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::super::engine;
use super::super::{IndexSpec, StoreError, StoreResult};
use super::sql_error;

/// The name of the implicit unique index on `_id`, as MongoDB names it.
pub const ID_INDEX: &str = "_id_";

/// Everything the store knows about its collections and indexes.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub version: i64,
    pub collections: HashMap<String, CollectionMeta>,
}

#[derive(Debug, Clone)]
pub struct CollectionMeta {
    pub number: i64,
    pub indexes: Vec<IndexMeta>,
}

impl CollectionMeta {
    pub fn table(&self) -> String {
        format!("c{}", self.number)
    }
}

#[derive(Debug, Clone)]
pub struct IndexMeta {
    pub number: i64,
    pub name: String,
    pub keys: Document,
    /// The indexed paths, in key order.
    pub fields: Vec<String>,
    pub unique: bool,
    pub expire_after: Option<Duration>,
    /// Some document has held several keys (an array) for this index: range conditions on it
    /// may not be intersected.
    pub multikey: bool,
}

impl IndexMeta {
    pub fn table(&self) -> String {
        format!("i{}", self.number)
    }

    /// The index keys of `document` as bytes: for a compound index, every combination of the
    /// per-field keys. Also says whether the document makes the index multikey.
    pub fn keys_of(&self, document: &Document) -> (Vec<Vec<u8>>, bool) {
        let mut combined: Vec<Vec<u8>> = vec![Vec::new()];
        let mut multikey = false;
        for field in &self.fields {
            let values = engine::index_keys(document, field);
            multikey |= values.len() > 1 || values.iter().any(|v| matches!(v, Bson::Array(_)));
            let encoded: Vec<Vec<u8>> = values.iter().map(engine::encode_key).collect();
            combined = combined
                .iter()
                .flat_map(|prefix| {
                    encoded.iter().map(move |part| {
                        let mut key = prefix.clone();
                        key.extend_from_slice(part);
                        key
                    })
                })
                .collect();
        }
        combined.sort();
        combined.dedup();
        (combined, multikey)
    }

    /// The offending key of a duplicate-key error, rendered as MongoDB's `keyValue` document.
    pub fn key_value(&self, document: &Document) -> String {
        let mut rendered = Document::new();
        for field in &self.fields {
            let values = engine::index_keys(document, field);
            let value = if values.len() == 1 {
                values.into_iter().next().unwrap_or(Bson::Null)
            } else {
                Bson::Array(values)
            };
            rendered.insert(field.clone(), value);
        }
        rendered.to_string()
    }
}

/// SQLite's `unix-excl` VFS: the process takes one exclusive lock on the file when its first
/// connection does, and its connections coordinate among themselves in memory, with the WAL
/// index on the heap instead of a `-shm` file. One process per store is already the rule
/// (`dirlock.rs`). With the default VFS every read transaction made `fcntl` calls while holding
/// the process's shared-memory mutex, and two workers reading at once queued on that mutex
/// (1.6 `fcntl` and 0.6 `futex` calls per getData request, `docs/performance.md`).
///
/// Every connection of the store must use it: a lock taken or dropped through another VFS (or
/// a read-only open, which this VFS locks like the default one) would replace the process's
/// lock. Readers therefore open read-write and are kept read-only with `query_only`.
const VFS: &str = "unix-excl";

/// Opens (creating if needed) the database file with the pragmas keel relies on.
pub fn open_writer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS)
        .map_err(|e| sql_error("opening the database", e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA busy_timeout = 5000;
         CREATE TABLE IF NOT EXISTS keel_meta (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             catalog_version INTEGER NOT NULL,
             trimmed_through INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO keel_meta (id, catalog_version, trimmed_through) VALUES (1, 0, 0);
         CREATE TABLE IF NOT EXISTS keel_collections (
             number INTEGER PRIMARY KEY,
             name TEXT NOT NULL UNIQUE
         );
         CREATE TABLE IF NOT EXISTS keel_indexes (
             number INTEGER PRIMARY KEY,
             collection TEXT NOT NULL,
             name TEXT NOT NULL,
             keys BLOB NOT NULL,
             is_unique INTEGER NOT NULL,
             expire_after_ms INTEGER,
             multikey INTEGER NOT NULL DEFAULT 0,
             UNIQUE (collection, name)
         );
         CREATE TABLE IF NOT EXISTS keel_changes (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             collection TEXT NOT NULL,
             op TEXT NOT NULL,
             id BLOB NOT NULL,
             doc BLOB,
             time_ms INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS keel_changes_by_collection ON keel_changes (collection, seq);",
    )
    .map_err(|e| sql_error("preparing the database", e))?;
    plan_once(&conn)?;
    Ok(conn)
}

/// Each statement is planned once, when it is prepared, not again for the values bound to it.
/// Without this SQLite re-prepares a statement whose plan looked at a parameter's value — a
/// `LIMIT ?`, a range with `ORDER BY … LIMIT` — every time new values are bound: a parse and a
/// plan on each read of the change log and each index range read (docs/performance.md, round
/// 16). Plans cannot depend on values here anyway: keel never gathers statistics (`ANALYZE`)
/// and never uses `LIKE`.
fn plan_once(conn: &Connection) -> StoreResult<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(|_| ())
        .map_err(|e| sql_error("configuring the query planner", e))
}

/// A read-only connection to the same file (the writer must have created it): opened
/// read-write for [`VFS`]'s sake, refusing every change (`query_only`).
pub fn open_reader(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags_and_vfs(path, flags, VFS)
        .map_err(|e| sql_error("opening a read connection", e))?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
        .map_err(|e| sql_error("preparing a read connection", e))?;
    plan_once(&conn)?;
    Ok(conn)
}

/// The catalog version the connection's current snapshot holds.
pub fn catalog_version(conn: &Connection) -> StoreResult<i64> {
    conn.prepare_cached("SELECT catalog_version FROM keel_meta WHERE id = 1")
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(|e| sql_error("reading the catalog version", e))
}

/// Bumps the catalog version (inside the transaction that changes the catalog).
pub fn bump_catalog_version(conn: &Connection, catalog: &mut Catalog) -> StoreResult<()> {
    catalog.version += 1;
    conn.prepare_cached("UPDATE keel_meta SET catalog_version = ?1 WHERE id = 1")
        .and_then(|mut s| s.execute([catalog.version]))
        .map_err(|e| sql_error("updating the catalog version", e))?;
    Ok(())
}

/// Reads the whole catalog as the connection's snapshot sees it.
pub fn load_catalog(conn: &Connection) -> StoreResult<Catalog> {
    let context = |e| sql_error("loading the catalog", e);
    let mut catalog = Catalog {
        version: catalog_version(conn)?,
        collections: HashMap::new(),
    };
    let mut collections = conn
        .prepare_cached("SELECT number, name FROM keel_collections")
        .map_err(context)?;
    let rows = collections
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(context)?;
    for row in rows {
        let (number, name) = row.map_err(context)?;
        let meta = CollectionMeta {
            number,
            indexes: Vec::new(),
        };
        catalog.collections.insert(name, meta);
    }
    let mut indexes = conn
        .prepare_cached(
            "SELECT number, collection, name, keys, is_unique, expire_after_ms, multikey
             FROM keel_indexes ORDER BY number",
        )
        .map_err(context)?;
    let rows = indexes
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, bool>(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, bool>(6)?,
            ))
        })
        .map_err(context)?;
    for row in rows {
        let (number, collection, name, keys, unique, expire_ms, multikey) = row.map_err(context)?;
        let keys = Document::from_reader(keys.as_slice())
            .map_err(|e| StoreError::Backend(format!("catalog index {name} is corrupt: {e}")))?;
        let index = IndexMeta {
            number,
            name,
            fields: keys.keys().cloned().collect(),
            keys,
            unique,
            expire_after: expire_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
            multikey,
        };
        if let Some(meta) = catalog.collections.get_mut(&collection) {
            meta.indexes.push(index);
        }
    }
    Ok(catalog)
}

/// Creates a collection's table and catalog entry.
pub fn create_collection(
    conn: &Connection,
    catalog: &mut Catalog,
    name: &str,
) -> StoreResult<CollectionMeta> {
    let context = |e| sql_error("creating a collection", e);
    conn.execute("INSERT INTO keel_collections (name) VALUES (?1)", [name])
        .map_err(context)?;
    let number = conn.last_insert_rowid();
    let meta = CollectionMeta {
        number,
        indexes: Vec::new(),
    };
    conn.execute_batch(&format!(
        "CREATE TABLE {} (id BLOB PRIMARY KEY, doc BLOB NOT NULL) WITHOUT ROWID",
        meta.table()
    ))
    .map_err(context)?;
    catalog.collections.insert(name.to_owned(), meta.clone());
    bump_catalog_version(conn, catalog)?;
    Ok(meta)
}

/// Creates an (empty) index table and its catalog entry; the caller fills it.
pub fn create_index_table(
    conn: &Connection,
    collection: &str,
    index: &mut IndexMeta,
) -> StoreResult<()> {
    let context = |e| sql_error("creating an index", e);
    let keys = index
        .keys
        .to_vec()
        .map_err(|e| StoreError::invalid(format!("index keys cannot be encoded: {e}")))?;
    let expire_ms = index.expire_after.map(|d| d.as_millis() as i64);
    conn.execute(
        "INSERT INTO keel_indexes (collection, name, keys, is_unique, expire_after_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![collection, index.name, keys, index.unique, expire_ms],
    )
    .map_err(context)?;
    index.number = conn.last_insert_rowid();
    let primary_key = if index.unique { "key" } else { "key, id" };
    conn.execute_batch(&format!(
        "CREATE TABLE {} (key BLOB NOT NULL, id BLOB NOT NULL, PRIMARY KEY ({primary_key}))
         WITHOUT ROWID",
        index.table()
    ))
    .map_err(context)?;
    Ok(())
}

/// Records that an index has become multikey (a catalog change readers must see).
pub fn mark_multikey(
    conn: &Connection,
    catalog: &mut Catalog,
    index_number: i64,
) -> StoreResult<()> {
    conn.prepare_cached("UPDATE keel_indexes SET multikey = 1 WHERE number = ?1")
        .and_then(|mut s| s.execute([index_number]))
        .map_err(|e| sql_error("marking an index multikey", e))?;
    for meta in catalog.collections.values_mut() {
        for index in &mut meta.indexes {
            if index.number == index_number {
                index.multikey = true;
            }
        }
    }
    bump_catalog_version(conn, catalog)
}

/// The change log's trim point: events with `seq <= trimmed_through` are gone.
pub fn trimmed_through(conn: &Connection) -> StoreResult<i64> {
    conn.prepare_cached("SELECT trimmed_through FROM keel_meta WHERE id = 1")
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(|e| sql_error("reading the change log trim point", e))
}

impl IndexMeta {
    /// Checks an index request; `None` for `{_id: 1}`, the implicit `_id_` index.
    pub fn from_spec(spec: &IndexSpec) -> StoreResult<Option<IndexMeta>> {
        if spec.keys.is_empty() {
            return Err(StoreError::invalid("an index needs at least one key"));
        }
        let mut keys = Document::new();
        for (field, direction) in &spec.keys {
            if field.is_empty() || field.starts_with('$') || field.split('.').any(str::is_empty) {
                return Err(StoreError::invalid(format!(
                    "invalid index field {field:?}"
                )));
            }
            let direction = match direction {
                Bson::Int32(n) => f64::from(*n),
                Bson::Int64(n) => *n as f64,
                Bson::Double(n) => *n,
                Bson::String(kind) => {
                    return Err(StoreError::unsupported(format!("{kind} indexes")));
                }
                other => {
                    return Err(StoreError::invalid(format!(
                        "index direction must be 1 or -1, got {other}"
                    )));
                }
            };
            if direction == 0.0 || direction.is_nan() {
                return Err(StoreError::invalid("index direction must be 1 or -1"));
            }
            keys.insert(field.clone(), if direction > 0.0 { 1 } else { -1 });
        }
        if spec.expire_after.is_some() && keys.len() != 1 {
            return Err(StoreError::invalid(
                "a TTL index must have exactly one field",
            ));
        }
        if keys.len() == 1 && keys.contains_key("_id") {
            if spec.unique || spec.expire_after.is_some() {
                return Err(StoreError::invalid(
                    "the _id index cannot take unique or TTL options",
                ));
            }
            return Ok(None);
        }
        Ok(Some(IndexMeta {
            number: 0,
            name: spec.resolved_name(),
            fields: keys.keys().cloned().collect(),
            keys,
            unique: spec.unique,
            expire_after: spec.expire_after,
            multikey: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn index(keys: Document) -> IndexMeta {
        IndexMeta::from_spec(&IndexSpec::new(keys))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("valid index spec"))
    }

    /// Readers see the writer's commits through the in-memory WAL index (no `-shm` file is
    /// made, so every connection is on `unix-excl`), and refuse to change anything.
    #[test]
    fn readers_share_the_writers_wal_in_memory_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let writer = open_writer(&path).unwrap();
        let reader = open_reader(&path).unwrap();
        writer
            .execute("UPDATE keel_meta SET catalog_version = 7 WHERE id = 1", [])
            .unwrap();
        assert_eq!(catalog_version(&reader).unwrap(), 7);
        assert!(path.with_extension("db-wal").exists());
        assert!(!path.with_extension("db-shm").exists());
        let refused = reader.execute("UPDATE keel_meta SET catalog_version = 8 WHERE id = 1", []);
        assert!(refused.is_err(), "a reader changed the database");
        assert_eq!(catalog_version(&writer).unwrap(), 7);
    }

    #[test]
    fn compound_multikey_keys_are_every_combination() {
        let index = index(doc! {"a": 1, "b": -1});
        let (keys, multikey) = index.keys_of(&doc! {"a": [1, 2], "b": "x"});
        assert!(multikey);
        // 1, 2 and the whole array, each with "x".
        assert_eq!(keys.len(), 3);
        let (keys, multikey) = index.keys_of(&doc! {"a": 1});
        assert!(!multikey);
        let mut expected = engine::encode_key(&Bson::Int32(1));
        expected.extend(engine::encode_key(&Bson::Null));
        assert_eq!(keys, vec![expected], "a missing field is indexed as null");
    }

    #[test]
    fn special_index_kinds_are_unsupported_and_id_is_implicit() {
        let text = IndexMeta::from_spec(&IndexSpec::new(doc! {"body": "text"}));
        assert!(matches!(text, Err(StoreError::Unsupported { .. })));
        let zero = IndexMeta::from_spec(&IndexSpec::new(doc! {"a": 0}));
        assert!(matches!(zero, Err(StoreError::InvalidQuery { .. })));
        let id = IndexMeta::from_spec(&IndexSpec::new(doc! {"_id": 1}));
        assert!(matches!(id, Ok(None)));
        let ttl = IndexSpec::new(doc! {"a": 1, "b": 1}).ttl(Duration::from_secs(1));
        assert!(
            IndexMeta::from_spec(&ttl).is_err(),
            "TTL needs a single field"
        );
    }

    #[test]
    fn catalog_round_trips_through_the_database() -> StoreResult<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(e.to_string()))?;
        let conn = open_writer(&dir.path().join("keel.db"))?;
        let mut catalog = load_catalog(&conn)?;
        let meta = create_collection(&conn, &mut catalog, "users")?;
        let mut email = index(doc! {"email": 1});
        email.unique = true;
        create_index_table(&conn, "users", &mut email)?;
        mark_multikey(&conn, &mut catalog, email.number)?;
        let reloaded = load_catalog(&conn)?;
        let users = &reloaded.collections["users"];
        assert_eq!(users.number, meta.number);
        assert_eq!(users.indexes.len(), 1);
        assert!(users.indexes[0].unique && users.indexes[0].multikey);
        assert_eq!(reloaded.version, catalog.version);
        Ok(())
    }
}
