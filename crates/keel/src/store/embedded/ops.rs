//! The write operations, as they run inside the writer's transaction.
//!
//! Each function reads what it needs through the write connection (seeing the transaction's
//! own earlier writes), changes the collection table and every index table, and appends the
//! change event, all in the caller's savepoint: either all of it happens or none of it.

use bson::{Bson, Document, doc, oid::ObjectId};
use rusqlite::ErrorCode;

use super::super::engine::{self, Filter, Sort, Update};
use super::super::{ChangeOp, StoreError, StoreResult, UpdateResult};
use super::changes;
use super::scan;
use super::schema::{self, CollectionMeta, ID_INDEX, IndexMeta};
use super::sql_error;
use super::writer::Txn;

/// MongoDB's document size limit.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Documents nested deeper than this are refused (comparisons and encodings recurse).
const MAX_NESTING: usize = 100;

fn is_constraint(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation)
}

/// The collection's catalog entry, creating the collection on first use (as MongoDB does).
pub fn ensure_collection(txn: &mut Txn<'_>, name: &str) -> StoreResult<CollectionMeta> {
    if let Some(meta) = txn.catalog.collections.get(name) {
        return Ok(meta.clone());
    }
    if name.is_empty() || name.contains('\0') {
        return Err(StoreError::invalid(
            "a collection name must be non-empty text",
        ));
    }
    schema::create_collection(txn.conn, txn.catalog, name)
}

/// Encodes a document for storage after checking what MongoDB would refuse.
fn encode(document: &Document) -> StoreResult<Vec<u8>> {
    if engine::nesting_depth(document) > MAX_NESTING {
        return Err(StoreError::invalid(format!(
            "document nested deeper than {MAX_NESTING} levels"
        )));
    }
    let bytes = document
        .to_vec()
        .map_err(|e| StoreError::invalid(format!("document cannot be encoded: {e}")))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(StoreError::invalid(format!(
            "document of {} bytes exceeds the 16 MiB limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The document with `_id` first, generated as an ObjectId when absent.
fn with_id_first(mut document: Document) -> StoreResult<(Bson, Document)> {
    let id = document
        .remove("_id")
        .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
    if matches!(
        id,
        Bson::Array(_) | Bson::RegularExpression(_) | Bson::Undefined
    ) {
        return Err(StoreError::invalid(
            "_id cannot be an array, a regex or undefined",
        ));
    }
    let mut ordered = Document::new();
    ordered.insert("_id", id.clone());
    ordered.extend(document);
    Ok((id, ordered))
}

/// Inserts one document; returns its `_id` and the document as stored.
pub fn insert(
    txn: &mut Txn<'_>,
    collection: &str,
    document: Document,
) -> StoreResult<(Bson, Document)> {
    let (id, document) = with_id_first(document)?;
    let bytes = encode(&document)?;
    let meta = ensure_collection(txn, collection)?;
    let key = engine::encode_key(&id);
    let inserted = txn
        .conn
        .prepare_cached(&format!(
            "INSERT INTO {} (id, doc) VALUES (?1, ?2)",
            meta.table()
        ))
        .and_then(|mut s| s.execute(rusqlite::params![key, bytes]));
    match inserted {
        Ok(_) => {}
        Err(e) if is_constraint(&e) => {
            return Err(StoreError::DuplicateKey {
                index: ID_INDEX.into(),
                key: doc! {"_id": id}.to_string(),
            });
        }
        Err(e) => return Err(sql_error("inserting a document", e)),
    }
    update_index_entries(txn, &meta, &key, None, Some(&document))?;
    changes::append(txn, collection, ChangeOp::Insert, &id, Some(&bytes))?;
    Ok((id, document))
}

/// Replaces a stored document by its changed version.
fn write_back(
    txn: &mut Txn<'_>,
    meta: &CollectionMeta,
    collection: &str,
    key: &[u8],
    before: &Document,
    after: &Document,
) -> StoreResult<()> {
    let bytes = encode(after)?;
    txn.conn
        .prepare_cached(&format!(
            "UPDATE {} SET doc = ?1 WHERE id = ?2",
            meta.table()
        ))
        .and_then(|mut s| s.execute(rusqlite::params![bytes, key]))
        .map_err(|e| sql_error("updating a document", e))?;
    update_index_entries(txn, meta, key, Some(before), Some(after))?;
    let id = after.get("_id").cloned().unwrap_or(Bson::Null);
    changes::append(txn, collection, ChangeOp::Update, &id, Some(&bytes))
}

fn remove(
    txn: &mut Txn<'_>,
    meta: &CollectionMeta,
    collection: &str,
    key: &[u8],
    before: &Document,
) -> StoreResult<()> {
    txn.conn
        .prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", meta.table()))
        .and_then(|mut s| s.execute([key]))
        .map_err(|e| sql_error("deleting a document", e))?;
    update_index_entries(txn, meta, key, Some(before), None)?;
    let id = before.get("_id").cloned().unwrap_or(Bson::Null);
    changes::append(txn, collection, ChangeOp::Delete, &id, None)
}

/// Brings every index of the collection from `before`'s keys to `after`'s.
fn update_index_entries(
    txn: &mut Txn<'_>,
    meta: &CollectionMeta,
    id_key: &[u8],
    before: Option<&Document>,
    after: Option<&Document>,
) -> StoreResult<()> {
    for index in &meta.indexes {
        let (old_keys, _) = before.map(|d| index.keys_of(d)).unwrap_or_default();
        let (new_keys, multikey) = after.map(|d| index.keys_of(d)).unwrap_or_default();
        let table = index.table();
        for key in old_keys
            .iter()
            .filter(|k| new_keys.binary_search(k).is_err())
        {
            txn.conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1 AND id = ?2"))
                .and_then(|mut s| s.execute(rusqlite::params![key, id_key]))
                .map_err(|e| sql_error("updating an index", e))?;
        }
        for key in new_keys
            .iter()
            .filter(|k| old_keys.binary_search(k).is_err())
        {
            insert_index_entry(txn, index, key, id_key, after)?;
        }
        if multikey && !index.multikey {
            schema::mark_multikey(txn.conn, txn.catalog, index.number)?;
        }
    }
    Ok(())
}

fn insert_index_entry(
    txn: &Txn<'_>,
    index: &IndexMeta,
    key: &[u8],
    id_key: &[u8],
    document: Option<&Document>,
) -> StoreResult<()> {
    let inserted = txn
        .conn
        .prepare_cached(&format!(
            "INSERT INTO {} (key, id) VALUES (?1, ?2)",
            index.table()
        ))
        .and_then(|mut s| s.execute(rusqlite::params![key, id_key]));
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e) => Err(StoreError::DuplicateKey {
            index: index.name.clone(),
            key: document.map(|d| index.key_value(d)).unwrap_or_default(),
        }),
        Err(e) => Err(sql_error("writing an index entry", e)),
    }
}

/// `update_one` (`multi == false`) and `update_many`.
pub fn update(
    txn: &mut Txn<'_>,
    collection: &str,
    filter: &Filter,
    update: &Update,
    multi: bool,
    upsert: bool,
) -> StoreResult<UpdateResult> {
    let mut result = UpdateResult::default();
    if let Some(meta) = txn.catalog.collections.get(collection).cloned() {
        let limit = if multi { None } else { Some(1) };
        let now = bson::DateTime::now();
        for (key, before) in scan::collect(txn.conn, &meta, filter, limit)? {
            let mut after = before.clone();
            result.matched += 1;
            if update.apply(&mut after, false, now)? {
                write_back(txn, &meta, collection, &key, &before, &after)?;
                result.modified += 1;
            }
        }
    }
    if result.matched == 0 && upsert {
        let (id, _) = upsert_insert(txn, collection, filter, update)?;
        result.upserted_id = Some(id);
    }
    Ok(result)
}

fn upsert_insert(
    txn: &mut Txn<'_>,
    collection: &str,
    filter: &Filter,
    update: &Update,
) -> StoreResult<(Bson, Document)> {
    let mut seed = filter.upsert_seed();
    update.apply(&mut seed, true, bson::DateTime::now())?;
    insert(txn, collection, seed)
}

/// What `find_one_and_update` asks for, parsed.
pub struct FindAndUpdate {
    pub filter: Filter,
    pub update: Update,
    pub sort: Option<Sort>,
    pub upsert: bool,
    pub return_after: bool,
}

/// Finds the first match (by `sort`), updates it and returns it before or after the change.
pub fn find_one_and_update(
    txn: &mut Txn<'_>,
    collection: &str,
    request: &FindAndUpdate,
) -> StoreResult<Option<Document>> {
    let found = match txn.catalog.collections.get(collection).cloned() {
        None => None,
        Some(meta) => {
            // The first match by `sort` is kept as the scan goes (never every match: this
            // runs inside the single writer, e.g. the job claim).
            let first = match &request.sort {
                None => scan::collect(txn.conn, &meta, &request.filter, Some(1))?
                    .into_iter()
                    .next(),
                Some(sort) => {
                    let mut top = sort.top_k(1);
                    scan::scan(txn.conn, &meta, &request.filter, |id, document| {
                        top.push(sort.keys_of(&document), (id, document));
                        Ok(std::ops::ControlFlow::Continue(()))
                    })?;
                    top.finish().into_iter().next()
                }
            };
            first.map(|found| (meta, found))
        }
    };
    match found {
        Some((meta, (key, before))) => {
            let mut after = before.clone();
            if request
                .update
                .apply(&mut after, false, bson::DateTime::now())?
            {
                write_back(txn, &meta, collection, &key, &before, &after)?;
            }
            Ok(Some(if request.return_after { after } else { before }))
        }
        None if request.upsert => {
            let (_, inserted) = upsert_insert(txn, collection, &request.filter, &request.update)?;
            Ok(request.return_after.then_some(inserted))
        }
        None => Ok(None),
    }
}

/// `delete_one` (`multi == false`) and `delete_many`; returns how many were deleted.
pub fn delete(
    txn: &mut Txn<'_>,
    collection: &str,
    filter: &Filter,
    multi: bool,
) -> StoreResult<u64> {
    let Some(meta) = txn.catalog.collections.get(collection).cloned() else {
        return Ok(0);
    };
    let limit = if multi { None } else { Some(1) };
    let targets = scan::collect(txn.conn, &meta, filter, limit)?;
    for (key, before) in &targets {
        remove(txn, &meta, collection, key, before)?;
    }
    Ok(targets.len() as u64)
}

/// Creates the index (filling it from the existing documents) unless the same one exists.
pub fn create_index(
    txn: &mut Txn<'_>,
    collection: &str,
    mut index: IndexMeta,
) -> StoreResult<String> {
    let meta = ensure_collection(txn, collection)?;
    for existing in &meta.indexes {
        let same_options = existing.keys == index.keys
            && existing.unique == index.unique
            && existing.expire_after == index.expire_after;
        if existing.name == index.name && same_options {
            return Ok(existing.name.clone());
        }
        if existing.name == index.name || existing.keys == index.keys {
            return Err(StoreError::invalid(format!(
                "index {} already exists with different keys, options or name",
                existing.name
            )));
        }
    }
    schema::create_index_table(txn.conn, collection, &mut index)?;
    let all = Filter::parse(&Document::new())?;
    let mut multikey = false;
    for (key, document) in scan::collect(txn.conn, &meta, &all, None)? {
        let (entries, is_multikey) = index.keys_of(&document);
        multikey |= is_multikey;
        for entry in &entries {
            insert_index_entry(txn, &index, entry, &key, Some(&document))?;
        }
    }
    let name = index.name.clone();
    let number = index.number;
    if let Some(meta) = txn.catalog.collections.get_mut(collection) {
        meta.indexes.push(index);
    }
    schema::bump_catalog_version(txn.conn, txn.catalog)?;
    if multikey {
        schema::mark_multikey(txn.conn, txn.catalog, number)?;
    }
    Ok(name)
}
