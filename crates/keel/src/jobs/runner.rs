//! `JobRunner`: claims due jobs and runs them, at most `concurrency` at a time.
//!
//! One runner per process (role `jobs`). It claims only the kinds it has handlers for, renews the
//! lease of each running job every third of the lease, and settles each attempt: done, retry
//! later (exponential backoff with jitter), or dead after the last attempt. On shutdown it stops
//! claiming, tells running handlers to stop, and hands interrupted jobs back to the queue without
//! counting the attempt.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Job, JobHandlers, JobQueue, JobRunContext};
use crate::workers::Workers;

/// How often an active runner refreshes the `keel_jobs{status}` gauges.
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct JobRunner {
    queue: JobQueue,
    handlers: Arc<JobHandlers>,
    workers: Workers,
    owner: Arc<str>,
    concurrency: usize,
}

impl JobRunner {
    pub fn new(queue: JobQueue, handlers: JobHandlers, workers: Workers) -> Self {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-host".to_owned());
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let concurrency = match queue.config().concurrency {
            0 => workers.pool().threads(),
            n => n,
        };
        JobRunner {
            owner: Arc::from(format!("{host}:{}:{}", std::process::id(), &unique[..8])),
            queue,
            handlers: Arc::new(handlers),
            workers,
            concurrency,
        }
    }

    /// The lease owner this runner claims jobs as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and runs jobs until `shutdown` is cancelled, then waits for the running ones to
    /// stop (they are told to by the same token).
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds = self.handlers.kinds();
        if kinds.is_empty() {
            tracing::info!("no job handlers registered; job runner idle");
            shutdown.cancelled().await;
            return;
        }
        tracing::info!(owner = %self.owner, concurrency = self.concurrency, ?kinds, "job runner started");
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let wake = self.queue.wake_signal();
        let poll_interval = self.queue.config().poll_interval();
        let lease = self.queue.config().lease();
        let mut running = JoinSet::new();
        let mut gauges_refreshed: Option<Instant> = None;
        loop {
            while let Some(finished) = running.try_join_next() {
                if let Err(error) = finished {
                    tracing::error!(%error, "job execution task ended abnormally");
                }
            }
            if gauges_refreshed.is_none_or(|at| at.elapsed() >= GAUGE_REFRESH) {
                self.publish_queue_gauges().await;
                gauges_refreshed = Some(Instant::now());
            }
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed; ends the loop rather than spin
                },
            };
            match self.queue.claim(&self.owner, &kinds, lease).await {
                Ok(Some(job)) => {
                    let runner = self.clone();
                    let shutdown = shutdown.clone();
                    running.spawn(async move {
                        runner.execute(job, shutdown).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = wake.notified() => {}
                        () = tokio::time::sleep(poll_interval) => {}
                    }
                }
                Err(error) => {
                    drop(permit);
                    tracing::warn!(%error, "claiming a job failed; retrying after the poll interval");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(poll_interval) => {}
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
        tracing::info!(owner = %self.owner, "job runner stopped");
    }

    /// Claims every job of this runner's kinds that is due now and runs each to the end of its
    /// attempt, one at a time, until none is due; returns how many attempts ran. What `run` does,
    /// without its loop, poll interval or concurrency: a caller that must know the queue's work
    /// is done (a test, a one-off tool) calls this instead of waiting for a runner to notice.
    /// A failed attempt whose retry is already due (no backoff) runs again in the same call.
    pub async fn run_pending(&self) -> Result<usize, super::JobError> {
        let kinds = self.handlers.kinds();
        if kinds.is_empty() {
            return Ok(0);
        }
        let lease = self.queue.config().lease();
        let never_cancelled = CancellationToken::new();
        let mut ran = 0;
        while let Some(job) = self.queue.claim(&self.owner, &kinds, lease).await? {
            self.execute(job, never_cancelled.clone()).await;
            ran += 1;
        }
        Ok(ran)
    }

    /// Runs one claimed job to the end of its attempt and records the outcome.
    pub async fn execute(&self, job: Job, shutdown: CancellationToken) {
        let started = Instant::now();
        let kind = job.kind.clone();
        let span = tracing::info_span!("job", id = %job.id, kind = %kind, attempt = job.attempts);
        let outcome = self.attempt(job, &shutdown).instrument(span).await;
        metrics::counter!("keel_jobs_processed_total", "kind" => kind.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("keel_job_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
    }

    async fn attempt(&self, job: Job, shutdown: &CancellationToken) -> &'static str {
        if job.attempts > job.max_attempts {
            // Claimed again after its lease expired on the last attempt: its runner crashed or
            // stalled every time. Dead, with that as the reason.
            let error = "the lease expired during the last attempt (runner crashed or stalled)";
            return self.settle_failure(&job, error).await;
        }
        let Some(handler) = self.handlers.get(&job.kind) else {
            return self.settle_failure(&job, "no handler for this kind").await;
        };
        let cancel = shutdown.child_token();
        let heartbeat = tokio::spawn(keep_lease(
            self.queue.clone(),
            job.id.clone(),
            Arc::clone(&self.owner),
            cancel.clone(),
        ));
        let ctx = JobRunContext {
            workers: self.workers.clone(),
            cancel: cancel.clone(),
        };
        let timeout = self.queue.config().job_timeout();
        let run = AssertUnwindSafe(handler.run(job.clone(), ctx)).catch_unwind();
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err("the handler panicked".to_owned()),
            Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
        };
        heartbeat.abort();
        match result {
            Ok(output) => match self.queue.complete(&job.id, &self.owner, output).await {
                Ok(true) => {
                    tracing::info!("job done");
                    "done"
                }
                Ok(false) => {
                    tracing::warn!(
                        "job finished after its lease was lost; the new claimant decides"
                    );
                    "lease_lost"
                }
                Err(error) => {
                    tracing::error!(%error, "job done but not recorded; it will run again after its lease");
                    "unrecorded"
                }
            },
            Err(_) if shutdown.is_cancelled() => {
                if let Err(error) = self.queue.release(&job.id, &self.owner).await {
                    tracing::warn!(%error, "interrupted job not handed back; it runs again after its lease");
                }
                "interrupted"
            }
            Err(error) => self.settle_failure(&job, &error).await,
        }
    }

    /// Retries after a backoff while attempts remain, dead-letters otherwise.
    async fn settle_failure(&self, job: &Job, error: &str) -> &'static str {
        let retry_at = (job.attempts < job.max_attempts).then(|| {
            let delay = self
                .queue
                .config()
                .backoff()
                .delay(u32::try_from(job.attempts).unwrap_or(1));
            bson::DateTime::now().saturating_add_duration(delay)
        });
        let recorded = self.queue.fail(job, &self.owner, error, retry_at).await;
        let outcome = if retry_at.is_some() { "retry" } else { "dead" };
        match recorded {
            Ok(true) if outcome == "dead" => {
                tracing::error!(
                    error,
                    attempts = job.attempts,
                    "job dead-lettered after its last attempt"
                );
            }
            Ok(true) => tracing::warn!(
                error,
                attempts = job.attempts,
                "job attempt failed; will retry"
            ),
            Ok(false) => tracing::warn!(error, "job failed after its lease was lost"),
            Err(store_error) => {
                tracing::error!(error, %store_error, "job failure not recorded; it runs again after its lease");
            }
        }
        outcome
    }

    async fn publish_queue_gauges(&self) {
        match self.queue.count_by_status().await {
            Ok(counts) => {
                for (status, count) in counts {
                    metrics::gauge!("keel_jobs", "status" => status.as_str()).set(count as f64);
                }
            }
            Err(error) => tracing::debug!(%error, "job gauges not refreshed"),
        }
    }
}

/// Renews a running job's lease every third of it; when the lease turns out lost, cancels the
/// handler (another runner may already be running the job).
async fn keep_lease(queue: JobQueue, id: String, owner: Arc<str>, cancel: CancellationToken) {
    let lease = queue.config().lease();
    let period = (lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match queue.renew_lease(&id, &owner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %id, "job lease lost; cancelling its handler");
                cancel.cancel();
                return;
            }
            Err(error) => tracing::warn!(job = %id, %error, "job lease renewal failed; retrying"),
        }
    }
}
