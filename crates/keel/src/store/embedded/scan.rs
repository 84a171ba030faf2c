//! The planner and the candidate scan, shared by readers and the writer.
//!
//! An index only narrows: the plan picks the cheapest source of candidates (the `_id` itself,
//! a secondary index's key ranges, or the whole table) and `Filter::matches` decides every
//! candidate. Index tables hold concatenated, prefix-free key encodings, so every condition on
//! an index's first field becomes a byte range over its table.

use std::collections::HashSet;
use std::ops::ControlFlow;

use bson::{Document, RawDocument};
use rusqlite::{Connection, Row};

use super::super::engine::{self, Filter, IndexScan, Sort};
use super::super::{StoreError, StoreResult};
use super::schema::{CollectionMeta, IndexMeta};
use super::sql_error;

/// A half-open byte range `[lower, upper)`; `upper == None` runs to the end.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRange {
    pub lower: Vec<u8>,
    pub upper: Option<Vec<u8>>,
}

/// Where the candidates of a filter come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One `_id`.
    IdPoint(Vec<u8>),
    /// Ranges of the collection table itself (`_id` conditions).
    IdRanges(Vec<KeyRange>),
    /// Ranges of a secondary index.
    Index {
        table: String,
        ranges: Vec<KeyRange>,
    },
    /// Every document.
    FullScan,
}

/// The smallest byte string greater than every string that starts with `prefix`
/// (`None` when there is none: the prefix is all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < 0xFF {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// The byte ranges an index scan covers. A key is a concatenation that starts with the
/// encoding of the first field's value, so each bound is a prefix bound.
pub fn ranges(scan: &IndexScan) -> Vec<KeyRange> {
    match scan {
        IndexScan::Keys(values) => {
            let mut ranges: Vec<KeyRange> = values
                .iter()
                .map(|value| {
                    let key = engine::encode_key(value);
                    KeyRange {
                        upper: prefix_successor(&key),
                        lower: key,
                    }
                })
                .collect();
            ranges.sort_by(|a, b| a.lower.cmp(&b.lower));
            ranges.dedup();
            ranges
        }
        IndexScan::Range { lower, upper } => {
            let lower = match lower {
                None => Vec::new(),
                Some((value, true)) => engine::encode_key(value),
                Some((value, false)) => match prefix_successor(&engine::encode_key(value)) {
                    Some(key) => key,
                    None => return Vec::new(),
                },
            };
            let upper = match upper {
                None => None,
                Some((value, true)) => prefix_successor(&engine::encode_key(value)),
                Some((value, false)) => Some(engine::encode_key(value)),
            };
            if upper.as_ref().is_some_and(|upper| *upper <= lower) {
                return Vec::new();
            }
            vec![KeyRange { lower, upper }]
        }
    }
}

/// Chooses the candidate source: the `_id`, then exact keys of an index (unique first), then
/// `_id` ranges, then an index range, else the whole table.
pub fn plan(meta: &CollectionMeta, filter: &Filter) -> Plan {
    if let Some(id) = filter.id_equality() {
        return Plan::IdPoint(engine::encode_key(id));
    }
    let mut scans: Vec<(&IndexMeta, IndexScan)> = meta
        .indexes
        .iter()
        .filter_map(|index| {
            let field = index.fields.first()?;
            let scan = filter.index_scan_for(field, index.multikey)?;
            Some((index, scan))
        })
        .collect();
    scans.sort_by_key(|(index, scan)| (!matches!(scan, IndexScan::Keys(_)), !index.unique));
    let index_plan = |(index, scan): &(&IndexMeta, IndexScan)| Plan::Index {
        table: index.table(),
        ranges: ranges(scan),
    };
    if let Some(best @ (_, IndexScan::Keys(_))) = scans.first() {
        return index_plan(best);
    }
    if let Some(scan) = filter.index_scan_for("_id", false) {
        return Plan::IdRanges(ranges(&scan));
    }
    scans.first().map(index_plan).unwrap_or(Plan::FullScan)
}

/// A plan that reads the documents in `sort`'s order, so a sorted page can stop after its
/// last document instead of reading every match: an index on exactly the sorted paths, all in
/// one direction (`descending`: read backwards), ending with `_id`. Its keys then order the
/// documents as the sort does, with no ties (`engine::encode_key` orders as `compare_values`,
/// a missing field is `null` in both). Not for a multikey index (an array sorts by its
/// smallest or largest element, and a document has a key per element), and only when the
/// filter has no index of its own or narrows by the sorted index's first field (those ranges
/// are walked instead). `{_id: ±1}` alone: see `by_id_within_one_key`. `None` otherwise.
pub fn ordered_plan(meta: &CollectionMeta, sort: &Sort, filter: &Filter) -> Option<(Plan, bool)> {
    let (paths, descending) = sort.uniform_paths()?;
    if paths.last().map(String::as_str) != Some("_id") {
        return None;
    }
    if paths.len() == 1 {
        return by_id_within_one_key(meta, filter).map(|plan| (plan, descending));
    }
    let index = meta
        .indexes
        .iter()
        .find(|index| !index.multikey && index.fields == paths)?;
    let ranges = match plan(meta, filter) {
        Plan::FullScan => vec![KeyRange {
            lower: Vec::new(),
            upper: None,
        }],
        Plan::Index { .. } => ranges(&filter.index_scan_for(&index.fields[0], false)?),
        Plan::IdPoint(_) | Plan::IdRanges(_) => return None,
    };
    Some((
        Plan::Index {
            table: index.table(),
            ranges,
        },
        descending,
    ))
}

/// `{_id: ±1}` when the filter's plan is one exact key of a single-field index that is not
/// multikey (`?brand=` sorted by insertion): the index's entries for one key are ordered by
/// `_id` (its rows are ordered by key, then id), so the page can stop early there too.
fn by_id_within_one_key(meta: &CollectionMeta, filter: &Filter) -> Option<Plan> {
    let plan = plan(meta, filter);
    let Plan::Index { table, .. } = &plan else {
        return None;
    };
    let index = meta.indexes.iter().find(|index| index.table() == *table)?;
    let one_key = matches!(
        filter.index_scan_for(&index.fields[0], index.multikey),
        Some(IndexScan::Keys(keys)) if keys.len() == 1
    );
    (one_key && index.fields.len() == 1 && !index.multikey).then_some(plan)
}

/// How many entries of `index` have a key whose first field lies in `scan` (its byte
/// ranges, counted in the index table without reading a document).
pub fn count_keys(conn: &Connection, index: &IndexMeta, scan: &IndexScan) -> StoreResult<u64> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE key >= ?1 AND key < ?2",
        index.table()
    );
    let unbounded = format!("SELECT count(*) FROM {} WHERE key >= ?1", index.table());
    let mut total = 0u64;
    for range in ranges(scan) {
        let counted = match &range.upper {
            Some(upper) => conn.prepare_cached(&sql).and_then(|mut s| {
                s.query_row(rusqlite::params![range.lower, upper], |r| {
                    r.get::<_, i64>(0)
                })
            }),
            None => conn.prepare_cached(&unbounded).and_then(|mut s| {
                s.query_row(rusqlite::params![range.lower], |r| r.get::<_, i64>(0))
            }),
        }
        .map_err(|e| sql_error("counting index keys", e))?;
        total += counted.max(0) as u64;
    }
    Ok(total)
}

/// Whether `filter` reads at most a few documents whatever the collection holds: an `_id`
/// point, or a few exact keys of a single-field unique index (a session, a user by email, a
/// brand by name).
pub fn is_point_lookup(meta: &CollectionMeta, filter: &Filter) -> bool {
    const FEW_KEYS: usize = 16;
    if filter.id_equality().is_some() {
        return true;
    }
    meta.indexes
        .iter()
        .filter(|index| index.unique && index.fields.len() == 1)
        .any(|index| {
            matches!(
                filter.index_scan_for(&index.fields[0], index.multikey),
                Some(IndexScan::Keys(keys)) if keys.len() <= FEW_KEYS
            )
        })
}

/// Whether the stored document `bytes` matches `filter`: read from the bytes where the filter
/// allows it (`Filter::matches_raw`: conditions on top-level fields), else decoded, and then
/// the document is handed back so that it is decoded once.
pub fn matches_stored(filter: &Filter, bytes: &[u8]) -> StoreResult<(bool, Option<Document>)> {
    if let Ok(raw) = RawDocument::from_bytes(bytes)
        && let Some(matched) = filter.matches_raw(raw)
    {
        return Ok((matched, None));
    }
    let document = decode(bytes)?;
    Ok((filter.matches(&document), Some(document)))
}

pub fn decode(bytes: &[u8]) -> StoreResult<Document> {
    Document::from_reader(bytes).map_err(corrupt)
}

/// A stored document that does not decode.
pub(super) fn corrupt(e: bson::error::Error) -> StoreError {
    StoreError::Backend(format!("a stored document is corrupt: {e}"))
}

/// Calls `visit` with every document of the collection that matches `filter` (in key order of
/// the plan, each document once) until it breaks.
pub fn scan(
    conn: &Connection,
    meta: &CollectionMeta,
    filter: &Filter,
    visit: impl FnMut(Vec<u8>, Document) -> StoreResult<ControlFlow<()>>,
) -> StoreResult<()> {
    scan_along(conn, meta, &plan(meta, filter), false, filter, visit)
}

/// `scan` along a given plan; `descending` reads its ranges backwards (`ordered_plan`).
fn scan_along(
    conn: &Connection,
    meta: &CollectionMeta,
    plan: &Plan,
    descending: bool,
    filter: &Filter,
    mut visit: impl FnMut(Vec<u8>, Document) -> StoreResult<ControlFlow<()>>,
) -> StoreResult<()> {
    scan_raw(
        conn,
        meta,
        plan,
        descending,
        filter,
        Columns::IdAndDocument,
        |id, bytes, decoded| {
            let id = id.ok_or_else(|| StoreError::Backend("a scan did not read the _id".into()))?;
            let document = match decoded {
                Some(document) => document,
                None => decode(bytes)?,
            };
            visit(id.to_vec(), document)
        },
    )
}

/// What a scan reads of each row and hands on. A typed read needs only the stored document:
/// not selecting the `_id` key saves SQLite decoding and copying it (~100 instructions a row)
/// and rusqlite fetching it (~135 more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// The `_id` key and the decoded document (`scan`): a filter is matched on the decoded
    /// document, which is handed on, as every match is decoded anyway.
    IdAndDocument,
    /// The stored bytes (typed reads, counts): a filter on top-level fields is matched on the
    /// bytes (`matches_stored`), so a row is decoded only for other filters.
    Document,
}

/// Column `column` of `row` as the blob it must be (an `id` or a `doc`), borrowed from SQLite.
pub(super) fn blob<'r>(row: &'r Row<'_>, column: usize, doing: &str) -> StoreResult<&'r [u8]> {
    row.get_ref(column)
        .and_then(|v| Ok(v.as_blob()?))
        .map_err(|e| sql_error(doing, e))
}

/// `scan` over the stored bytes: `visit` gets each matching document's `_id` key (when
/// `columns` asks for it, or the plan reads it anyway to skip duplicates), its BSON, and the
/// decoded document when matching needed it. An empty filter matches without decoding, and
/// with `Columns::Document` so does one on top-level fields (`matches_stored`), so a caller
/// that wants bytes (a typed read, a listing, a count) builds a `Document` only for other
/// filters. The rows come in `plan`'s key order, backwards when `descending` (`ordered_plan`).
pub fn scan_raw(
    conn: &Connection,
    meta: &CollectionMeta,
    plan: &Plan,
    descending: bool,
    filter: &Filter,
    columns: Columns,
    mut visit: impl FnMut(Option<&[u8]>, &[u8], Option<Document>) -> StoreResult<ControlFlow<()>>,
) -> StoreResult<()> {
    let table = meta.table();
    let context = |e| sql_error("scanning a collection", e);
    let matches_everything = filter.is_empty();
    // An index's ranges may overlap: its rows are told apart by their `_id`.
    let dedup = matches!(plan, Plan::Index { .. });
    let with_id = columns == Columns::IdAndDocument || dedup;
    let selected = if with_id { "id, doc" } else { "doc" };
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut on_row = |row: &Row<'_>| -> StoreResult<ControlFlow<()>> {
        let (id, bytes) = if with_id {
            let id = blob(row, 0, "scanning a collection")?;
            if dedup && !seen.insert(id.to_vec()) {
                return Ok(ControlFlow::Continue(()));
            }
            (Some(id), blob(row, 1, "scanning a collection")?)
        } else {
            (None, blob(row, 0, "scanning a collection")?)
        };
        if matches_everything {
            return visit(id, bytes, None);
        }
        let (matched, document) = if columns == Columns::Document {
            matches_stored(filter, bytes)?
        } else {
            let document = decode(bytes)?;
            (filter.matches(&document), Some(document))
        };
        if matched {
            visit(id, bytes, document)
        } else {
            Ok(ControlFlow::Continue(()))
        }
    };
    let mut run = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
        let mut statement = conn.prepare_cached(sql).map_err(context)?;
        let mut rows = statement.query(params).map_err(context)?;
        while let Some(row) = rows.next().map_err(context)? {
            if on_row(row)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok::<_, StoreError>(ControlFlow::Continue(()))
    };
    let order = if descending { "DESC" } else { "ASC" };
    match plan {
        Plan::IdPoint(key) => {
            let _ = run(
                &format!("SELECT {selected} FROM {table} WHERE id = ?1"),
                &[&key],
            )?;
        }
        Plan::FullScan => {
            let _ = run(
                &format!("SELECT {selected} FROM {table} ORDER BY id {order}"),
                &[],
            )?;
        }
        Plan::IdRanges(ranges) => {
            for range in in_order(ranges, descending) {
                let flow = match &range.upper {
                    Some(upper) => run(
                        &format!(
                            "SELECT {selected} FROM {table} WHERE id >= ?1 AND id < ?2 \
                             ORDER BY id {order}"
                        ),
                        &[&range.lower, upper],
                    )?,
                    None => run(
                        &format!(
                            "SELECT {selected} FROM {table} WHERE id >= ?1 ORDER BY id {order}"
                        ),
                        &[&range.lower],
                    )?,
                };
                if flow.is_break() {
                    break;
                }
            }
        }
        Plan::Index {
            table: index_table,
            ranges,
        } => {
            let select = format!(
                "SELECT d.id, d.doc FROM {index_table} AS k JOIN {table} AS d ON d.id = k.id"
            );
            for range in in_order(ranges, descending) {
                let flow = match &range.upper {
                    Some(upper) => run(
                        &format!(
                            "{select} WHERE k.key >= ?1 AND k.key < ?2 \
                             ORDER BY k.key {order}, k.id {order}"
                        ),
                        &[&range.lower, upper],
                    )?,
                    None => run(
                        &format!("{select} WHERE k.key >= ?1 ORDER BY k.key {order}, k.id {order}"),
                        &[&range.lower],
                    )?,
                };
                if flow.is_break() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// A plan's ranges (sorted and disjoint) in reading order.
fn in_order(ranges: &[KeyRange], descending: bool) -> Box<dyn Iterator<Item = &KeyRange> + '_> {
    if descending {
        Box::new(ranges.iter().rev())
    } else {
        Box::new(ranges.iter())
    }
}

/// The document stored under `id`, if any.
pub fn fetch(conn: &Connection, meta: &CollectionMeta, id: &[u8]) -> StoreResult<Option<Document>> {
    let sql = format!("SELECT doc FROM {} WHERE id = ?1", meta.table());
    let context = |e| sql_error("reading a document", e);
    let mut statement = conn.prepare_cached(&sql).map_err(context)?;
    let mut rows = statement.query([id]).map_err(context)?;
    match rows.next().map_err(context)? {
        Some(row) => decode(blob(row, 0, "reading a document")?).map(Some),
        None => Ok(None),
    }
}

/// Every matching document, in plan order.
pub fn collect(
    conn: &Connection,
    meta: &CollectionMeta,
    filter: &Filter,
    limit: Option<usize>,
) -> StoreResult<Vec<(Vec<u8>, Document)>> {
    collect_along(conn, meta, &plan(meta, filter), false, filter, limit)
}

/// `collect` along a given plan, read backwards when `descending` (`ordered_plan`).
pub fn collect_along(
    conn: &Connection,
    meta: &CollectionMeta,
    plan: &Plan,
    descending: bool,
    filter: &Filter,
    limit: Option<usize>,
) -> StoreResult<Vec<(Vec<u8>, Document)>> {
    let mut found = Vec::new();
    if limit == Some(0) {
        return Ok(found);
    }
    scan_along(conn, meta, plan, descending, filter, |id, document| {
        found.push((id, document));
        Ok(if limit.is_some_and(|limit| found.len() >= limit) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use bson::Bson;

    use super::*;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn exact_keys_cover_compound_keys_starting_with_them() {
        let ranges = ranges(&IndexScan::Keys(vec![Bson::Int32(5)]));
        let five = engine::encode_key(&Bson::Int32(5));
        let mut compound = five.clone();
        compound.extend(engine::encode_key(&Bson::String("x".into())));
        let six = engine::encode_key(&Bson::Int32(6));
        let range = &ranges[0];
        let inside = |k: &Vec<u8>| *k >= range.lower && range.upper.as_ref().is_none_or(|u| k < u);
        assert!(inside(&five) && inside(&compound));
        assert!(!inside(&six));
    }

    #[test]
    fn exclusive_bounds_exclude_the_bound_value() {
        let scan = IndexScan::Range {
            lower: Some((Bson::Int32(1), false)),
            upper: Some((Bson::Int32(3), false)),
        };
        let range = &ranges(&scan)[0];
        let inside = |v: i32| {
            let k = engine::encode_key(&Bson::Int32(v));
            k >= range.lower && range.upper.as_ref().is_none_or(|u| k < *u)
        };
        assert_eq!((inside(1), inside(2), inside(3)), (false, true, false));
    }
}
