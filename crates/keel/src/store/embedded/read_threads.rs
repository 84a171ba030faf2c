//! The threads the store's long reads run on: as many as there are read connections, started
//! with the store and kept for its life.
//!
//! A read that may examine a whole collection cannot run on an async worker (`reader.rs`). It
//! ran on tokio's blocking pool, which starts a thread whenever none is idle and lets one go
//! after 10 s without work: a scheduled task's batch reads beside a load's started new threads,
//! and the store's periodic small reads (a watcher's page of the change log, a filtered count)
//! woke the idle ones in turn, so none reached its 10 s and all of them stayed, each with its
//! stack and its allocator heap (`docs/performance.md`, round 20: 9 threads before a task's run
//! under a load, 13 for good after it).
//!
//! Here a fixed set of threads takes the reads in order. Reads only come with a read
//! connection's permit (`Readers::read`), so a read never waits for a thread, only for a
//! connection. The blocks a read allocates are mostly freed later, by the async worker that
//! uses them, onto this thread's pages, which only a collection on this thread hands back
//! (`crate::memory`): a thread collects after a read that leaves it nothing queued (at most once
//! a second, the collection's own limit) and again once it has been idle for [`IDLE_COLLECT`],
//! by then with its last reads' blocks freed.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::super::{StoreError, StoreResult};

/// How long a thread that has read waits for the next read before it collects its heap.
const IDLE_COLLECT: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A job runs outside the lock, so a panic never poisons it; recover anyway.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The read threads. Dropping this (or [`ReadThreads::close`]) lets them finish the reads
/// already given and stop.
pub struct ReadThreads {
    shared: Arc<Shared>,
}

impl ReadThreads {
    /// Starts `count` threads (at least one), named `keel-store-read`.
    pub fn start(count: usize) -> StoreResult<ReadThreads> {
        let shared = Arc::new(Shared::default());
        let threads = ReadThreads {
            shared: Arc::clone(&shared),
        };
        for _ in 0..count.max(1) {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("keel-store-read".into())
                .spawn(move || read_loop(&shared))
                .map_err(|e| {
                    StoreError::Backend(format!("cannot start the store's read threads: {e}"))
                })?;
        }
        Ok(threads)
    }

    /// Runs `read` on a read thread and answers what it returns. A read that panics answers an
    /// error; the thread goes on with the next read.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(super::closed());
            }
            queue.jobs.push_back(Box::new(move || {
                let _ = reply.send(read());
            }));
        }
        self.shared.ready.notify_one();
        answer
            .await
            .map_err(|_| StoreError::Backend("a store read failed: it panicked".into()))?
    }

    /// Stops taking reads; the threads finish those already given and stop.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Drop for ReadThreads {
    fn drop(&mut self) {
        self.close();
    }
}

fn read_loop(shared: &Shared) {
    // Whether this thread read since it last collected its heap once idle.
    let mut read_since_collect = false;
    let mut queue = shared.lock();
    loop {
        let collect = if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            // A panicking read drops its reply (its caller gets an error) and its connection
            // (`Readers::with_reader` opens another), not this thread.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            read_since_collect = true;
            queue = shared.lock();
            // Reads that keep coming more often than `IDLE_COLLECT` never leave the thread idle
            // that long; a collection when none is queued is what they get.
            queue.jobs.is_empty()
        } else if queue.closed {
            return;
        } else if read_since_collect {
            let (guard, waited) = shared
                .ready
                .wait_timeout(queue, IDLE_COLLECT)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue = guard;
            read_since_collect = !(waited.timed_out() && queue.jobs.is_empty());
            !read_since_collect
        } else {
            queue = shared
                .ready
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            false
        };
        if collect {
            drop(queue);
            crate::memory::collect_thread_retained();
            queue = shared.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    fn thread_name() -> StoreResult<String> {
        Ok(std::thread::current().name().unwrap_or_default().to_owned())
    }

    #[tokio::test]
    async fn reads_run_on_the_read_threads_and_answer_their_results() {
        let threads = ReadThreads::start(2).unwrap();
        assert_eq!(threads.run(thread_name).await.unwrap(), "keel-store-read");
        let answers =
            futures::future::join_all((0..20).map(|i| threads.run(move || Ok(i * 2)))).await;
        let answers: Vec<i32> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        let failed = threads
            .run(|| Err::<(), _>(StoreError::invalid("bad read")))
            .await;
        assert!(
            matches!(failed, Err(StoreError::InvalidQuery { .. })),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_read_answers_an_error_and_the_thread_reads_on() {
        let threads = ReadThreads::start(1).unwrap();
        let panicked = threads
            .run(|| -> StoreResult<()> { panic!("a read that panics") })
            .await;
        let Err(StoreError::Backend(message)) = panicked else {
            panic!("expected an error, got {panicked:?}");
        };
        assert!(message.contains("panicked"), "{message}");
        // The only thread survived it.
        assert_eq!(threads.run(thread_name).await.unwrap(), "keel-store-read");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn closed_threads_refuse_reads_and_finish_those_given() {
        let threads = Arc::new(ReadThreads::start(1).unwrap());
        let finished = Arc::new(AtomicUsize::new(0));
        let (started, wait_started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let given = {
            let (threads, finished) = (Arc::clone(&threads), Arc::clone(&finished));
            tokio::spawn(async move {
                threads
                    .run(move || {
                        started.send(()).unwrap();
                        released.recv().unwrap();
                        finished.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        };
        wait_started.recv_timeout(Duration::from_secs(10)).unwrap();
        threads.close();
        let refused = threads.run(|| Ok(())).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { .. })),
            "{refused:?}"
        );
        release.send(()).unwrap();
        given.await.unwrap().unwrap();
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    /// The collection after a read (nothing queued) and the one after `IDLE_COLLECT` idle are
    /// both counted: the test's collector has no once-a-second limit, unlike the binary's.
    #[tokio::test]
    async fn a_thread_collects_its_heap_after_a_read_and_again_once_idle() {
        crate::memory::counting::register();
        let threads = ReadThreads::start(1).unwrap();
        let (thread, before) = threads
            .run(|| {
                let thread = std::thread::current().id();
                Ok((thread, crate::memory::counting::calls_on(thread)))
            })
            .await
            .unwrap();
        let deadline = Instant::now() + IDLE_COLLECT * 5;
        while crate::memory::counting::calls_on(thread) < before + 2 {
            assert!(
                Instant::now() < deadline,
                "the read thread collected {} times, not after its read and once idle",
                crate::memory::counting::calls_on(thread) - before
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
