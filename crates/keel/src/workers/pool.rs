//! The CPU worker pool: a fixed set of OS threads fed by a bounded queue.
//!
//! The async runtime must never run long CPU work (it would stall every request on that runtime
//! thread — the guides' "never block the event loop"). Work goes here instead:
//!
//! - `threads` OS threads take jobs from one bounded queue. A full queue is refused at once with
//!   `WorkerError::Busy` (back-pressure; HTTP maps it to 503 + Retry-After) instead of growing
//!   without limit.
//! - `submit` enqueues synchronously and hands back a `JobHandle`; awaiting it gives the result.
//! - Every job has a timeout. A thread cannot be killed safely, so a job that overruns is
//!   *abandoned*: the caller gets `Timeout` at once, the job's `JobContext::is_cancelled` turns
//!   true (a cooperative job stops early), and the thread stays busy until the job returns — the
//!   `keel_worker_running` gauge keeps counting it, so an operator sees the lost slot. Work that
//!   must be killable belongs in an isolated child process (`super::isolated`).
//! - A panicking job fails alone: the panic is caught on its thread, reported to its caller as
//!   `Panicked`, and the thread goes on to the next job, so the pool never shrinks.
//! - A job whose caller is gone (timed out or dropped the handle) before it started is skipped.

use std::any::Any;
use std::future::IntoFuture;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::WorkerError;

type QueuedJob = Box<dyn FnOnce() + Send + 'static>;

/// What a running job can ask of the pool: whether its caller has given up on it.
#[derive(Clone, Debug, Default)]
pub struct JobContext {
    cancelled: Arc<AtomicBool>,
}

impl JobContext {
    /// True once the caller timed out or went away: a long job should check this between steps
    /// and return early, giving its thread back.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Counters of the pool since it started, plus the current queue and running gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub threads: usize,
    pub queue_capacity: usize,
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub rejected: u64,
    pub skipped: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    running: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    rejected: AtomicU64,
    skipped: AtomicU64,
}

impl Counters {
    fn publish_gauges(&self) {
        metrics::gauge!("keel_worker_queued").set(self.queued.load(Ordering::Relaxed) as f64);
        metrics::gauge!("keel_worker_running").set(self.running.load(Ordering::Relaxed) as f64);
    }
}

fn count_outcome(counter: &AtomicU64, outcome: &'static str) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("keel_worker_jobs_total", "outcome" => outcome).increment(1);
}

struct PoolInner {
    /// `None` once the pool is shut down; dropping the last sender ends the threads.
    sender: Mutex<Option<SyncSender<QueuedJob>>>,
    threads: Mutex<Vec<ThreadHandle<()>>>,
    counters: Arc<Counters>,
    thread_count: usize,
    queue_capacity: usize,
    default_timeout: Duration,
}

/// A handle on the pool. Cheap to clone; all clones share the same threads.
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("threads", &self.inner.thread_count)
            .field("queue_capacity", &self.inner.queue_capacity)
            .finish()
    }
}

impl WorkerPool {
    /// Starts `threads` threads (at least one) behind a queue of `queue_capacity` jobs (at least
    /// one); `default_timeout` applies to `submit`.
    pub fn new(threads: usize, queue_capacity: usize, default_timeout: Duration) -> Self {
        let thread_count = threads.max(1);
        let queue_capacity = queue_capacity.max(1);
        let (sender, receiver) = sync_channel::<QueuedJob>(queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let handles = (0..thread_count)
            .map(|i| {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("keel-worker-{i}"))
                    .spawn(move || worker_thread(&receiver))
                    // Start-up, not input: a machine that cannot start a handful of threads
                    // cannot run keel at all.
                    .expect("the OS must allow starting worker threads")
            })
            .collect();
        let counters = Arc::new(Counters::default());
        counters.publish_gauges();
        metrics::gauge!("keel_worker_threads").set(thread_count as f64);
        WorkerPool {
            inner: Arc::new(PoolInner {
                sender: Mutex::new(Some(sender)),
                threads: Mutex::new(handles),
                counters,
                thread_count,
                queue_capacity,
                default_timeout,
            }),
        }
    }

    pub fn threads(&self) -> usize {
        self.inner.thread_count
    }

    pub fn default_timeout(&self) -> Duration {
        self.inner.default_timeout
    }

    pub fn stats(&self) -> PoolStats {
        let c = &self.inner.counters;
        PoolStats {
            threads: self.inner.thread_count,
            queue_capacity: self.inner.queue_capacity,
            queued: c.queued.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
        }
    }

    /// Queues `job` with the pool's default timeout. Fails at once with `Busy` when the queue is
    /// full and `ShutDown` after `shutdown`; otherwise await the handle for the result.
    pub fn submit<T, F>(&self, job: F) -> Result<JobHandle<T>, WorkerError>
    where
        F: FnOnce(&JobContext) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit_with_timeout(self.inner.default_timeout, job)
    }

    /// As `submit`, with this job's own timeout (counted from now, so it includes queueing).
    pub fn submit_with_timeout<T, F>(
        &self,
        timeout: Duration,
        job: F,
    ) -> Result<JobHandle<T>, WorkerError>
    where
        F: FnOnce(&JobContext) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (result_tx, result_rx) = oneshot::channel();
        let context = JobContext::default();
        let counters = Arc::clone(&self.inner.counters);
        let job_context = context.clone();
        let queued: QueuedJob = Box::new(move || {
            run_queued(job, job_context, result_tx, &counters);
        });

        let sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(WorkerError::ShutDown)?;
        // Counted before the send so a fast thread never takes the gauge below zero.
        self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(queued) {
            Ok(()) => {
                self.inner.counters.publish_gauges();
                Ok(JobHandle {
                    result: result_rx,
                    context,
                    timeout,
                    counters: Arc::clone(&self.inner.counters),
                })
            }
            Err(refused) => {
                self.inner.counters.queued.fetch_sub(1, Ordering::Relaxed);
                match refused {
                    TrySendError::Full(_) => {
                        count_outcome(&self.inner.counters.rejected, "busy");
                        Err(WorkerError::Busy {
                            capacity: self.inner.queue_capacity,
                        })
                    }
                    TrySendError::Disconnected(_) => Err(WorkerError::ShutDown),
                }
            }
        }
    }

    /// Submits and awaits in one step.
    pub async fn run<T, F>(&self, job: F) -> Result<T, WorkerError>
    where
        F: FnOnce(&JobContext) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit(job)?.await
    }

    /// Refuses new jobs, lets the queued and running ones finish, and waits up to `deadline` for
    /// the threads to end. Returns false when some thread was still busy at the deadline (an
    /// abandoned job that never returns); that thread is left behind, not killed.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.inner
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let handles: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let join_all = tokio::task::spawn_blocking(move || {
            for handle in handles {
                // A worker thread never panics (jobs are caught), so a join error is impossible
                // in practice and carries nothing to act on.
                let _ = handle.join();
            }
        });
        matches!(tokio::time::timeout(deadline, join_all).await, Ok(Ok(())))
    }
}

fn worker_thread(receiver: &Mutex<Receiver<QueuedJob>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running it, so a
        // panicking job cannot poison it.
        let next = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        match next {
            Ok(job) => job(),
            Err(_) => return, // every sender dropped: the pool shut down
        }
    }
}

fn run_queued<T, F>(
    job: F,
    context: JobContext,
    result_tx: oneshot::Sender<Result<T, WorkerError>>,
    counters: &Counters,
) where
    F: FnOnce(&JobContext) -> T,
{
    counters.queued.fetch_sub(1, Ordering::Relaxed);
    if context.is_cancelled() || result_tx.is_closed() {
        count_outcome(&counters.skipped, "skipped");
        counters.publish_gauges();
        return;
    }
    counters.running.fetch_add(1, Ordering::Relaxed);
    counters.publish_gauges();
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| job(&context)));
    metrics::histogram!("keel_worker_job_duration_seconds").record(started.elapsed().as_secs_f64());
    counters.running.fetch_sub(1, Ordering::Relaxed);
    counters.publish_gauges();
    let result = match outcome {
        Ok(value) => {
            count_outcome(&counters.done, "done");
            Ok(value)
        }
        Err(panic) => {
            count_outcome(&counters.failed, "failed");
            let message = panic_message(panic.as_ref());
            tracing::error!(error = %message, "worker job panicked; the thread goes on");
            Err(WorkerError::Panicked(message))
        }
    };
    // The caller may have timed out meanwhile: then nobody wants the result.
    let _ = result_tx.send(result);
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// A queued job. Await it (it is `IntoFuture`) for the job's value, `Timeout` or `Panicked`.
/// Dropping it without awaiting tells the job it is no longer wanted.
pub struct JobHandle<T> {
    result: oneshot::Receiver<Result<T, WorkerError>>,
    context: JobContext,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl<T> JobHandle<T> {
    async fn wait(mut self) -> Result<T, WorkerError> {
        match tokio::time::timeout(self.timeout, &mut self.result).await {
            Ok(Ok(result)) => result,
            // The sender was dropped without a result: only when the pool dropped the queued job
            // on shutdown.
            Ok(Err(_)) => Err(WorkerError::ShutDown),
            Err(_) => {
                count_outcome(&self.counters.timed_out, "timeout");
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "worker job timed out; abandoned (its thread stays busy until it returns)"
                );
                Err(WorkerError::Timeout(self.timeout))
            }
        }
    }
}

impl<T: Send + 'static> IntoFuture for JobHandle<T> {
    type Output = Result<T, WorkerError>;
    type IntoFuture = BoxFuture<'static, Result<T, WorkerError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

impl<T> Drop for JobHandle<T> {
    fn drop(&mut self) {
        self.context.cancelled.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
