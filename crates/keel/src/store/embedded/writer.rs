//! The single writer: one thread owns the write connection and commits queued writes together.
//!
//! Every write is a job sent over a bounded channel with a oneshot for its answer. The thread
//! takes whatever is queued (up to `MAX_BATCH`), runs each job in its own SAVEPOINT (a failing
//! write, e.g. a duplicate key, is rolled back alone) and COMMITs once: one fsync for every
//! waiting write (group commit). Writers answered by one commit usually write again at once;
//! so that they join the next commit instead of the one after, a batch that has fewer jobs
//! than expected waits for them a little (at most half a commit's time, `MAX_GATHER`). A lone
//! writer is expected alone and never waits. Answers are sent only after COMMIT returns, so an
//! acknowledged write is durable. Read-modify-write jobs (updates, `find_one_and_update`) read
//! through the same connection inside the transaction, which makes each of them atomic.
//!
//! After a commit the thread publishes the catalog (when it changed) and the change log's new
//! high-water mark, in that order, before answering: whoever sees an answer also sees both.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::super::{StoreError, StoreResult};
use super::schema::{self, Catalog};
use super::sql_error;

/// Jobs committed together at most; bounds the latency a batch adds to its first write.
const MAX_BATCH: usize = 2048;
/// The longest a batch waits for expected writers to join it.
const MAX_GATHER: Duration = Duration::from_millis(2);
/// How often the writer looks for them meanwhile.
const GATHER_POLL: Duration = Duration::from_micros(25);
/// Writes waiting for the writer at most; further writers wait for room (backpressure).
pub const QUEUE_DEPTH: usize = 4096;

/// What a job gets to work with: the write connection inside the open transaction, the
/// writer's working catalog, and the last change-log sequence written so far.
pub struct Txn<'c> {
    pub conn: &'c Connection,
    pub catalog: &'c mut Catalog,
    pub last_seq: i64,
}

impl Txn<'_> {
    /// Runs `work` in a savepoint: on error everything it did is undone (including catalog
    /// changes and change-log sequence numbers) and the error is returned.
    pub fn atomically<T>(
        &mut self,
        work: impl FnOnce(&mut Txn<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let run = |sql: &str| {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute([]))
                .map_err(|e| sql_error("managing a savepoint", e))
        };
        run("SAVEPOINT keel_write")?;
        let seq_before = self.last_seq;
        let catalog_version = self.catalog.version;
        // A panic in a job (a bug, never input) must not take the writer thread down with
        // every queued write: it becomes this write's error and is rolled back like one.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(self)))
            .unwrap_or_else(|_| {
                tracing::error!("a store write panicked; it is rolled back");
                Err(StoreError::Backend("internal error while writing".into()))
            });
        let run = |sql: &str| {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute([]))
                .map_err(|e| sql_error("managing a savepoint", e))
        };
        match result {
            Ok(value) => {
                run("RELEASE keel_write")?;
                Ok(value)
            }
            Err(error) => {
                run("ROLLBACK TO keel_write")?;
                run("RELEASE keel_write")?;
                self.last_seq = seq_before;
                if self.catalog.version != catalog_version {
                    *self.catalog = schema::load_catalog(self.conn)?;
                }
                Err(error)
            }
        }
    }
}

/// Sends a job's answer once its transaction's fate is known.
pub type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write job: runs inside the writer's transaction (`None`: the transaction could not be
/// opened) and returns what to do once the commit is over.
pub type Job = Box<dyn FnOnce(Option<&mut Txn<'_>>) -> Reply + Send>;

pub enum Command {
    Run(Job),
    /// Commit what is queued before this, then stop.
    Close(oneshot::Sender<()>),
}

/// The async side of the writer: submits jobs and waits for their durable answers.
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<Command>,
}

impl Writer {
    /// Runs `work` atomically in the writer thread; answers after the commit.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Txn<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = match txn {
                Some(txn) => txn.atomically(work),
                None => Err(super::closed()),
            };
            Box::new(move |committed: StoreResult<()>| {
                let _ = reply.send(committed.and(result));
            })
        });
        self.sender
            .send(Command::Run(job))
            .await
            .map_err(|_| super::closed())?;
        answer.await.map_err(|_| super::closed())?
    }

    /// True once the writer thread has stopped (after `close`).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Commits everything queued, then stops the thread.
    pub async fn close(&self) -> StoreResult<()> {
        let (done, finished) = oneshot::channel();
        if self.sender.send(Command::Close(done)).await.is_err() {
            return Ok(());
        }
        finished.await.ok();
        Ok(())
    }
}

/// Where the writer publishes what readers and watchers need after each commit.
pub struct Published {
    pub catalog: Arc<RwLock<Arc<Catalog>>>,
    pub high_water: watch::Sender<i64>,
}

/// Starts the writer thread on `conn`.
pub fn spawn(
    conn: Connection,
    catalog: Catalog,
    last_seq: i64,
    published: Published,
) -> StoreResult<Writer> {
    let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
    std::thread::Builder::new()
        .name("keel-store-writer".into())
        .spawn(move || write_loop(conn, catalog, last_seq, receiver, published))
        .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
    Ok(Writer { sender })
}

fn write_loop(
    conn: Connection,
    mut catalog: Catalog,
    mut last_seq: i64,
    mut receiver: mpsc::Receiver<Command>,
    published: Published,
) {
    // How many jobs the next batch can expect: those already queued when the last batch was
    // answered plus the writers it answered, who typically write again right away.
    let mut expected = 1usize;
    let mut last_commit = Duration::ZERO;
    while let Some(first) = receiver.blocking_recv() {
        let mut close = None;
        let mut replies: Vec<Reply> = Vec::new();
        let began = conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map_err(|e| sql_error("starting a write transaction", e));
        let seq_before = last_seq;
        let mut txn = Txn {
            conn: &conn,
            catalog: &mut catalog,
            last_seq,
        };
        // Take jobs while they come: drain the queue, then give the expected writers a
        // moment (a fraction of one commit's time) to join this commit rather than wait for
        // the next fsync. A lone writer is expected alone and never waits.
        let gather_until = Instant::now() + (last_commit / 2).min(MAX_GATHER);
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Run(job) => match began {
                    Ok(_) => replies.push(job(Some(&mut txn))),
                    Err(_) => replies.push(job(None)),
                },
                Command::Close(done) => close = Some(done),
            }
            while close.is_none() && replies.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(command) => {
                        next = Some(command);
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty)
                        if replies.len() < expected && Instant::now() < gather_until =>
                    {
                        std::thread::sleep(GATHER_POLL);
                    }
                    Err(_) => break,
                }
            }
        }
        last_seq = txn.last_seq;
        let commit_started = Instant::now();
        let committed = began.and_then(|_| commit(&conn));
        match &committed {
            Ok(()) => publish(&published, &catalog, last_seq),
            Err(error) => {
                tracing::error!(%error, "store write batch failed; its writes are rolled back");
                last_seq = seq_before;
                match schema::load_catalog(&conn) {
                    Ok(reloaded) => catalog = reloaded,
                    Err(error) => tracing::error!(%error, "cannot reload the store catalog"),
                }
            }
        }
        let answered = replies.len();
        for reply in replies {
            reply(committed.clone());
        }
        last_commit = commit_started.elapsed();
        expected = (answered + receiver.len()).clamp(1, MAX_BATCH);
        if receiver.is_empty() {
            crate::memory::collect_thread_retained();
        }
        if let Some(done) = close {
            // Closed before answering, so `is_closed()` is true once `close()` returns.
            receiver.close();
            let _ = done.send(());
            break;
        }
    }
    tracing::debug!("store writer stopped");
}

fn commit(conn: &Connection) -> StoreResult<()> {
    let result = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| sql_error("committing writes", e));
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

fn publish(published: &Published, catalog: &Catalog, last_seq: i64) {
    let stale = match published.catalog.read() {
        Ok(current) => current.version != catalog.version,
        Err(_) => true,
    };
    if stale {
        let fresh = Arc::new(catalog.clone());
        match published.catalog.write() {
            Ok(mut slot) => *slot = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }
    published.high_water.send_if_modified(|seq| {
        let advanced = *seq != last_seq;
        *seq = last_seq;
        advanced
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(e.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_is_rolled_back_alone_and_answers_come_after_commit() -> StoreResult<()>
    {
        let dir = tempfile::tempdir().map_err(backend)?;
        let path = dir.path().join("keel.db");
        let conn = schema::open_writer(&path)?;
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .map_err(backend)?;
        let catalog = schema::load_catalog(&conn)?;
        let (high_water, _) = watch::channel(0);
        let published = Published {
            catalog: Arc::new(RwLock::new(Arc::new(catalog.clone()))),
            high_water,
        };
        let writer = spawn(conn, catalog, 0, published)?;
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..200i64 {
            let writer = writer.clone();
            writes.spawn(async move {
                let result = writer
                    .run(move |txn| {
                        txn.conn
                            .execute("INSERT INTO t (n) VALUES (?1)", [n])
                            .map_err(backend)?;
                        if n % 7 == 0 {
                            return Err(StoreError::invalid("refused"));
                        }
                        Ok(n)
                    })
                    .await;
                (n, result)
            });
        }
        let reader = schema::open_reader(&path)?;
        while let Some(joined) = writes.join_next().await {
            let (n, result) = joined.map_err(backend)?;
            let visible: i64 = reader
                .query_row("SELECT count(*) FROM t WHERE n = ?1", [n], |r| r.get(0))
                .map_err(backend)?;
            match result {
                Ok(value) => assert_eq!((value, visible), (n, 1), "acknowledged ⇒ committed"),
                Err(_) => assert_eq!((n % 7, visible), (0, 0), "failed ⇒ rolled back alone"),
            }
        }
        writer.close().await?;
        assert!(writer.is_closed());
        let after = writer.run(|_| Ok(())).await;
        assert!(matches!(after, Err(StoreError::Unavailable { .. })));
        Ok(())
    }
}
