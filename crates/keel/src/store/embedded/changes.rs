//! The change log and the change feed.
//!
//! Every write appends its event to `keel_changes` in the same transaction as the change, so
//! the log holds exactly the committed changes, in commit order (`seq`). A watcher is a cursor
//! over that table: it replays from its resume point, then waits on the writer's high-water
//! mark (a `tokio::sync::watch`, published after each commit) and reads again — no polling
//! delay, and a slow watcher only lags behind, it never holds up writers. The log is trimmed
//! by age and by count (`change_retention_hours` / `change_retention_events`); resuming from a
//! trimmed position is `ResumeTokenExpired`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, Document, doc};
use futures::StreamExt;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::super::engine::Filter;
use super::super::{
    ChangeEvent, ChangeOp, ChangeStream, ResumeToken, StoreError, StoreResult, WatchOptions,
};
use super::reader::{ReadSize, Readers};
use super::schema;
use super::sql_error;
use super::writer::Txn;

/// Events read from the log per round trip.
const PAGE: i64 = 512;
/// A page of one collection's events after a position.
const READ_PAGE: &str = "SELECT seq, op, id, doc, time_ms FROM keel_changes
                         WHERE collection = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
/// Log entries deleted per trimming transaction (keeps each one short).
const TRIM_CHUNK: i64 = 20_000;

fn op_name(op: ChangeOp) -> &'static str {
    match op {
        ChangeOp::Insert => "insert",
        ChangeOp::Update => "update",
        ChangeOp::Replace => "replace",
        ChangeOp::Delete => "delete",
    }
}

fn op_from_name(name: &str) -> StoreResult<ChangeOp> {
    match name {
        "insert" => Ok(ChangeOp::Insert),
        "update" => Ok(ChangeOp::Update),
        "replace" => Ok(ChangeOp::Replace),
        "delete" => Ok(ChangeOp::Delete),
        other => Err(StoreError::Backend(format!(
            "change log holds an unknown op {other:?}"
        ))),
    }
}

/// Appends one event (inside the write's transaction).
pub fn append(
    txn: &mut Txn<'_>,
    collection: &str,
    op: ChangeOp,
    id: &Bson,
    document: Option<&[u8]>,
) -> StoreResult<()> {
    let id = doc! {"_id": id.clone()}
        .to_vec()
        .map_err(|e| StoreError::invalid(format!("_id cannot be encoded: {e}")))?;
    txn.conn
        .prepare_cached(
            "INSERT INTO keel_changes (collection, op, id, doc, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                collection,
                op_name(op),
                id,
                document,
                bson::DateTime::now().timestamp_millis()
            ])
        })
        .map_err(|e| sql_error("appending to the change log", e))?;
    txn.last_seq = txn.conn.last_insert_rowid();
    Ok(())
}

/// The last sequence number ever assigned (trimmed or not).
pub fn last_seq(conn: &Connection) -> StoreResult<i64> {
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'keel_changes'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|seq| seq.unwrap_or(0))
    .map_err(|e| sql_error("reading the change log position", e))
}

pub fn token(seq: i64) -> ResumeToken {
    ResumeToken(doc! {"seq": seq})
}

fn seq_of(token: &ResumeToken) -> StoreResult<i64> {
    match token.0.get("seq") {
        Some(Bson::Int64(seq)) if *seq >= 0 => Ok(*seq),
        Some(Bson::Int32(seq)) if *seq >= 0 => Ok(i64::from(*seq)),
        _ => Err(StoreError::invalid(
            "not a resume token of the embedded store (expected {seq: <non-negative integer>})",
        )),
    }
}

/// How long and how much the log keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_events: u64,
}

/// Deletes up to `TRIM_CHUNK` entries beyond the retention window; returns whether more are
/// due (the caller runs it again).
pub fn trim(txn: &mut Txn<'_>, retention: Retention) -> StoreResult<bool> {
    let context = |e| sql_error("trimming the change log", e);
    let conn = txn.conn;
    let Some(first) = conn
        .query_row("SELECT min(seq) FROM keel_changes", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map_err(context)?
    else {
        return Ok(false);
    };
    let cutoff_ms = bson::DateTime::now().timestamp_millis()
        - i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let first_kept_by_age: Option<i64> = conn
        .prepare_cached("SELECT seq FROM keel_changes WHERE time_ms >= ?1 ORDER BY seq LIMIT 1")
        .and_then(|mut s| s.query_row([cutoff_ms], |r| r.get(0)).optional())
        .map_err(context)?;
    let by_age = first_kept_by_age.map_or(txn.last_seq, |seq| seq - 1);
    let by_count = txn.last_seq - i64::try_from(retention.max_events).unwrap_or(i64::MAX);
    let through = by_age.max(by_count);
    if through < first {
        return Ok(false);
    }
    let chunk_end = through.min(first + TRIM_CHUNK - 1);
    conn.execute("DELETE FROM keel_changes WHERE seq <= ?1", [chunk_end])
        .map_err(context)?;
    conn.execute(
        "UPDATE keel_meta SET trimmed_through = max(trimmed_through, ?1) WHERE id = 1",
        [chunk_end],
    )
    .map_err(context)?;
    Ok(chunk_end < through)
}

/// What a watcher keeps between reads.
struct Cursor {
    readers: Arc<Readers>,
    high_water: watch::Receiver<i64>,
    collection: Arc<str>,
    filter: Option<Filter>,
    ops: Option<Vec<ChangeOp>>,
    /// The last event read (the resume point).
    position: i64,
    /// Every event up to here has been read, of this collection or not.
    scanned_through: i64,
    pending: VecDeque<ChangeEvent>,
    finished: bool,
}

/// Opens a change feed on `collection` from now, or after `options.resume_after`.
pub async fn watch_collection(
    readers: Arc<Readers>,
    high_water: watch::Receiver<i64>,
    collection: &str,
    options: WatchOptions,
) -> StoreResult<ChangeStream> {
    let filter = match &options.filter {
        Some(filter) if !filter.is_empty() => Some(Filter::parse(filter)?),
        _ => None,
    };
    let now = *high_water.borrow();
    let position = match &options.resume_after {
        None => now,
        Some(token) => {
            let seq = seq_of(token)?;
            if seq > now {
                return Err(StoreError::invalid(
                    "resume token is ahead of this store's change log",
                ));
            }
            let trimmed = readers
                .read(ReadSize::Bounded, |conn, _| schema::trimmed_through(conn))
                .await?;
            if seq < trimmed {
                return Err(StoreError::ResumeTokenExpired);
            }
            seq
        }
    };
    let cursor = Cursor {
        readers,
        high_water,
        collection: Arc::from(collection),
        filter,
        ops: options.ops,
        position,
        scanned_through: position,
        pending: VecDeque::new(),
        finished: false,
    };
    Ok(futures::stream::unfold(cursor, next_event).boxed())
}

async fn next_event(mut cursor: Cursor) -> Option<(StoreResult<ChangeEvent>, Cursor)> {
    loop {
        if cursor.finished {
            return None;
        }
        if let Some(event) = cursor.pending.pop_front() {
            return Some((Ok(event), cursor));
        }
        let high_water = *cursor.high_water.borrow_and_update();
        if cursor.scanned_through < high_water {
            match read_page(&cursor).await {
                Ok((events, last_read)) => {
                    let exhausted = (events.len() as i64) < PAGE;
                    if let Some(last) = last_read {
                        cursor.position = last;
                    }
                    if exhausted {
                        // Nothing of this collection up to the high-water mark is left
                        // unread: moving the position there keeps it inside the retention
                        // window even when this collection is quiet.
                        cursor.position = high_water.max(cursor.position);
                    }
                    cursor.scanned_through = cursor.position;
                    cursor.pending = events
                        .into_iter()
                        .filter(|event| wanted(&cursor, event))
                        .collect();
                }
                Err(error) => {
                    cursor.finished = true;
                    return Some((Err(error), cursor));
                }
            }
            continue;
        }
        if cursor.high_water.changed().await.is_err() {
            cursor.finished = true;
            return Some((Err(super::closed()), cursor));
        }
    }
}

fn wanted(cursor: &Cursor, event: &ChangeEvent) -> bool {
    if cursor
        .ops
        .as_ref()
        .is_some_and(|ops| !ops.contains(&event.op))
    {
        return false;
    }
    match (&cursor.filter, &event.full_document) {
        (None, _) => true,
        (Some(filter), Some(document)) => filter.matches(document),
        (Some(_), None) => false,
    }
}

/// Reads the next page of this collection's events after the cursor's position.
async fn read_page(cursor: &Cursor) -> StoreResult<(Vec<ChangeEvent>, Option<i64>)> {
    let collection = Arc::clone(&cursor.collection);
    let position = cursor.position;
    cursor
        .readers
        .read(ReadSize::Unbounded, move |conn, _| {
            if schema::trimmed_through(conn)? > position {
                return Err(StoreError::ResumeTokenExpired);
            }
            let context = |e| sql_error("reading the change log", e);
            let mut statement = conn.prepare_cached(READ_PAGE).map_err(context)?;
            let mut rows = statement
                .query(params![&*collection, position, PAGE])
                .map_err(context)?;
            let mut events = Vec::new();
            let mut last = None;
            while let Some(row) = rows.next().map_err(context)? {
                let seq: i64 = row.get(0).map_err(context)?;
                let op: String = row.get(1).map_err(context)?;
                let id: Vec<u8> = row.get(2).map_err(context)?;
                let document: Option<Vec<u8>> = row.get(3).map_err(context)?;
                let time_ms: i64 = row.get(4).map_err(context)?;
                last = Some(seq);
                events.push(event(seq, &op, &id, document.as_deref(), time_ms)?);
            }
            Ok((events, last))
        })
        .await
}

fn event(
    seq: i64,
    op: &str,
    id: &[u8],
    document: Option<&[u8]>,
    time_ms: i64,
) -> StoreResult<ChangeEvent> {
    let corrupt = |e: bson::error::Error| {
        StoreError::Backend(format!("change log entry {seq} is corrupt: {e}"))
    };
    let id = Document::from_reader(id)
        .map_err(corrupt)?
        .remove("_id")
        .unwrap_or(Bson::Null);
    let full_document = document
        .map(Document::from_reader)
        .transpose()
        .map_err(corrupt)?;
    Ok(ChangeEvent {
        op: op_from_name(op)?,
        id,
        full_document,
        resume_token: token(seq),
        cluster_time: Some(bson::DateTime::from_millis(time_ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::schema::load_catalog;

    #[test]
    fn trimming_keeps_the_newest_events_and_records_the_trim_point() -> StoreResult<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(e.to_string()))?;
        let conn = schema::open_writer(&dir.path().join("keel.db"))?;
        let mut catalog = load_catalog(&conn)?;
        let mut txn = Txn {
            conn: &conn,
            catalog: &mut catalog,
            last_seq: 0,
        };
        for n in 0..10 {
            append(&mut txn, "items", ChangeOp::Insert, &Bson::Int32(n), None)?;
        }
        assert_eq!(txn.last_seq, 10);
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_events: 3,
        };
        assert!(!trim(&mut txn, retention)?, "one chunk is enough");
        assert_eq!(schema::trimmed_through(&conn)?, 7);
        let left: Vec<i64> = conn
            .prepare("SELECT seq FROM keel_changes ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        assert_eq!(left, vec![8, 9, 10]);
        assert_eq!(last_seq(&conn)?, 10, "sequence numbers are never reused");
        Ok(())
    }

    #[test]
    fn reading_the_log_again_does_not_prepare_its_statement_again() -> StoreResult<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(e.to_string()))?;
        let path = dir.path().join("keel.db");
        let writer = schema::open_writer(&path)?;
        let mut catalog = load_catalog(&writer)?;
        let mut txn = Txn {
            conn: &writer,
            catalog: &mut catalog,
            last_seq: 0,
        };
        for n in 0..10 {
            append(&mut txn, "items", ChangeOp::Insert, &Bson::Int32(n), None)?;
        }
        let backend = |e: rusqlite::Error| StoreError::Backend(e.to_string());
        for conn in [&writer, &schema::open_reader(&path)?] {
            let mut read = Vec::new();
            for (collection, position, limit) in [
                ("items", 0, PAGE),
                ("items", 7, PAGE),
                ("items", 300, 2),
                ("orders", 300, 2),
                ("items", 2, 2),
            ] {
                let mut statement = conn.prepare_cached(READ_PAGE).map_err(backend)?;
                let seqs: Vec<i64> = statement
                    .query_map(params![collection, position, limit], |row| row.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(backend)?;
                read.push(seqs);
                // SQLite counts each time it prepared the statement again (for a schema
                // change, or new values of parameters its plan looked at).
                let again = statement.get_status(rusqlite::StatementStatus::RePrepare);
                assert_eq!(again, 0, "{collection} after {position}, {limit} at most");
            }
            let expected: [&[i64]; 5] = [
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                &[8, 9, 10],
                &[],
                &[],
                &[3, 4],
            ];
            assert_eq!(read, expected);
        }
        Ok(())
    }

    #[test]
    fn resume_tokens_must_be_embedded_tokens() {
        assert_eq!(seq_of(&token(42)).ok(), Some(42));
        assert!(seq_of(&ResumeToken(doc! {"_data": "8263"})).is_err());
        assert!(seq_of(&ResumeToken(doc! {"seq": -1})).is_err());
    }
}
