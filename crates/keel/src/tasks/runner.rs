//! `TaskRunner`: runs one task once, the same way whether the scheduler or the CLI asked.
//!
//! Each run: take the task's lock (held elsewhere → `skipped`, recorded) → insert a `task_runs`
//! record `{task, trigger, startedAt, outcome: "running"}` and log `evt {category: "task", name,
//! outcome: "started"}` → run the task with a context cancelled on shutdown or a lost lock (a
//! panic is caught and is a failure) → complete the record (`endedAt, outcome, processed,
//! rejected, error`) and log the finish with its outcome → release the lock.
//!
//! `force` skips the lock. That is for an operator who *knows* the holder is gone (a crashed
//! host whose lease has not expired yet): if the holder is in fact alive, both run the task at
//! the same time — exactly what the lock exists to prevent. Forced runs are recorded as such.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bson::{Bson, Document, doc};
use futures::FutureExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Progress, TaskConfig, TaskContext, TaskError, TaskRegistry, TaskSummary, TasksConfig};
use crate::config::Config;
use crate::lock::{Lease, Locks};
use crate::store::{Collection, FindOptions, IndexSpec, Store, UpdateOptions};

pub const TASK_RUNS_COLLECTION: &str = "task_runs";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// How to run: who asked, whether to skip the lock, whether to draw a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRequest {
    pub trigger: Trigger,
    pub force: bool,
    pub progress_bar: bool,
    /// The scheduled fire time this run is for: every replica's scheduler computes the same
    /// one, and the lock lets each be run once (`Locks::acquire_for_tick`).
    pub tick: Option<bson::DateTime>,
}

impl RunRequest {
    pub fn scheduled() -> Self {
        Self {
            trigger: Trigger::Schedule,
            force: false,
            progress_bar: false,
            tick: None,
        }
    }

    /// The scheduled run of fire time `tick`: skipped when another replica already ran it.
    pub fn scheduled_at(tick: bson::DateTime) -> Self {
        Self {
            tick: Some(tick),
            ..Self::scheduled()
        }
    }

    pub fn manual(force: bool, progress_bar: bool) -> Self {
        Self {
            trigger: Trigger::Manual,
            force,
            progress_bar,
            tick: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Success(TaskSummary),
    Failure {
        error: String,
        processed: u64,
    },
    /// The lock was held by `holder` (when known).
    Skipped {
        holder: Option<String>,
    },
    /// Stopped early by shutdown or a lost lock; the next run continues the work.
    Cancelled {
        processed: u64,
    },
}

impl RunOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Success(_) => "success",
            RunOutcome::Failure { .. } => "failure",
            RunOutcome::Skipped { .. } => "skipped",
            RunOutcome::Cancelled { .. } => "cancelled",
        }
    }

    /// `keel task run`'s exit code: 0 success, 1 failure or cancelled, 3 lock held.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunOutcome::Success(_) => 0,
            RunOutcome::Failure { .. } | RunOutcome::Cancelled { .. } => 1,
            RunOutcome::Skipped { .. } => 3,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error("no task named {0:?} (see `keel task list`)")]
    UnknownTask(String),
}

/// Runs tasks. Cheap to clone.
#[derive(Clone)]
pub struct TaskRunner {
    registry: Arc<TaskRegistry>,
    /// The live `[tasks]` table: read at each run and by the scheduler, replaced on reload.
    config: Arc<watch::Sender<Arc<TasksConfig>>>,
    locks: Locks,
    runs: Collection,
    store: Store,
    shutdown: CancellationToken,
}

impl TaskRunner {
    pub fn new(
        store: &Store,
        registry: TaskRegistry,
        config: TasksConfig,
        shutdown: CancellationToken,
    ) -> Self {
        TaskRunner {
            registry: Arc::new(registry),
            config: Arc::new(watch::Sender::new(Arc::new(config))),
            locks: Locks::new(store),
            runs: store.collection(TASK_RUNS_COLLECTION),
            store: store.clone(),
            shutdown,
        }
    }

    pub fn registry(&self) -> &TaskRegistry {
        &self.registry
    }

    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// `[tasks.NAME]` as it is now, or the defaults for a task without a table. `process_data`
    /// is accepted for `process-data`: environment variable names cannot hold a `-`.
    pub fn config_for(&self, name: &str) -> TaskConfig {
        let config = self.config.borrow();
        config
            .get(name)
            .or_else(|| config.get(&super::env_spelling(name)))
            .cloned()
            .unwrap_or_default()
    }

    /// Publishes a new `[tasks]` table (a SIGHUP reload): the next run of each task reads its
    /// settings from it, and the scheduler re-reads schedules and `enabled`. Runs in progress
    /// keep the settings they started with.
    pub fn replace_config(&self, config: TasksConfig) {
        self.config.send_replace(Arc::new(config));
    }

    /// A receiver that sees every table published by `replace_config`.
    pub fn watch_config(&self) -> watch::Receiver<Arc<TasksConfig>> {
        self.config.subscribe()
    }

    /// Follows the platform's configuration until `shutdown`: each published configuration
    /// whose `[tasks]` table differs is passed to `replace_config`.
    pub async fn follow(
        &self,
        mut configs: watch::Receiver<Arc<Config>>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = configs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let tasks = configs.borrow_and_update().tasks.clone();
            if **self.config.borrow() != tasks {
                tracing::info!("task settings reloaded");
                self.replace_config(tasks);
            }
        }
    }

    pub fn indexes() -> Vec<IndexSpec> {
        vec![IndexSpec::new(doc! { "task": 1, "startedAt": -1 })]
    }

    /// The most recent runs of `task`, newest first.
    pub async fn recent_runs(&self, task: &str, limit: i64) -> Result<Vec<Document>, TaskError> {
        let options = FindOptions::default()
            .sort(doc! { "startedAt": -1 })
            .limit(limit.max(1));
        Ok(self.runs.find(doc! { "task": task }, options).await?)
    }

    /// Runs task `name` once now.
    pub async fn run(&self, name: &str, request: RunRequest) -> Result<RunOutcome, RunError> {
        let span = tracing::info_span!("task", name, trigger = request.trigger.as_str());
        self.run_in_span(name, request).instrument(span).await
    }

    async fn run_in_span(&self, name: &str, request: RunRequest) -> Result<RunOutcome, RunError> {
        let task = self
            .registry
            .get(name)
            .ok_or_else(|| RunError::UnknownTask(name.to_owned()))?;
        let config = self.config_for(name);
        let lock_name = task.lock_name().to_owned();
        let lease = if request.force {
            tracing::warn!(task = name, lock = %lock_name, "forced run: the lock is NOT taken; another holder may be running this task right now");
            None
        } else {
            let acquired = match request.tick {
                Some(tick) => {
                    self.locks
                        .acquire_for_tick(&lock_name, config.lock_ttl(), tick)
                        .await
                }
                None => self.locks.acquire(&lock_name, config.lock_ttl()).await,
            };
            match acquired {
                Ok(Some(lease)) => Some(lease),
                Ok(None) => return Ok(self.skip(name, &lock_name, request).await),
                Err(error) => {
                    let outcome = RunOutcome::Failure {
                        error: format!("could not take lock {lock_name}: {error}"),
                        processed: 0,
                    };
                    self.record_unstarted(name, request, &outcome).await;
                    return Ok(outcome);
                }
            }
        };
        let outcome = self
            .run_locked(task.as_ref(), config, request, lease.as_ref())
            .await;
        if let Some(lease) = lease
            && !lease.is_lost()
            && let Err(error) = lease.release().await
        {
            tracing::warn!(task = name, %error, "lock not released; it expires after its ttl");
        }
        Ok(outcome)
    }

    async fn run_locked(
        &self,
        task: &dyn super::Task,
        config: TaskConfig,
        request: RunRequest,
        lease: Option<&Lease>,
    ) -> RunOutcome {
        let name = task.name().to_owned();
        let started = Instant::now();
        let started_at = bson::DateTime::now();
        let host = hostname::get().map_or_else(
            |_| "unknown-host".to_owned(),
            |h| h.to_string_lossy().into_owned(),
        );
        let run_id = bson::oid::ObjectId::new();
        let record = doc! {
            "_id": run_id,
            "task": &name,
            "trigger": request.trigger.as_str(),
            "forced": request.force,
            "host": host,
            "fencingToken": lease.map_or(Bson::Null, |l| Bson::Int64(l.token())),
            "startedAt": started_at,
            "outcome": "running",
        };
        if let Err(error) = self.runs.insert_one(record).await {
            tracing::warn!(task = %name, %error, "task run not recorded in task_runs; running anyway");
        }
        tracing::info!(evt.category = "task", evt.name = %name, evt.outcome = "started", trigger = request.trigger.as_str(), "task started");

        let ctx = TaskContext {
            name: name.clone(),
            shutdown: self.shutdown.clone(),
            lock_lost: lease.map(Lease::lost),
            fence: lease.map(Lease::fence),
            progress: Progress::new(&name, config.progress_every, request.progress_bar),
            config,
        };
        let result = AssertUnwindSafe(task.run(&ctx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(TaskError::Failed("the task panicked".to_owned())));
        ctx.progress().finish();
        let processed_so_far = ctx.progress().processed();
        let outcome = match result {
            Ok(summary) if ctx.is_cancelled() => RunOutcome::Cancelled {
                processed: summary.processed,
            },
            Ok(summary) => RunOutcome::Success(summary),
            Err(TaskError::Cancelled) => RunOutcome::Cancelled {
                processed: processed_so_far,
            },
            Err(error) => RunOutcome::Failure {
                error: error.to_string(),
                processed: processed_so_far,
            },
        };
        let duration = started.elapsed();
        self.complete_record(run_id, &outcome).await;
        log_finish(&name, &outcome, duration.as_millis() as u64);
        // A run over a whole collection fills the store's page caches, which then stay: a
        // step in resident memory after every task's first run (`docs/performance.md`).
        if let Err(error) = self.store.release_memory().await {
            tracing::debug!(task = %name, %error, "the store kept the memory of this run");
        }
        metrics::counter!("keel_task_runs_total", "task" => name.clone(), "outcome" => outcome.label()).increment(1);
        metrics::histogram!("keel_task_duration_seconds", "task" => name)
            .record(duration.as_secs_f64());
        outcome
    }

    async fn skip(&self, name: &str, lock_name: &str, request: RunRequest) -> RunOutcome {
        let holder = match self.locks.holder(lock_name).await {
            Ok(info) => info.map(|i| i.holder),
            Err(_) => None,
        };
        let outcome = RunOutcome::Skipped { holder };
        self.record_unstarted(name, request, &outcome).await;
        log_finish(name, &outcome, 0);
        metrics::counter!("keel_task_runs_total", "task" => name.to_owned(), "outcome" => "skipped").increment(1);
        outcome
    }

    /// Records a run that never started (skipped, or the lock could not be taken).
    async fn record_unstarted(&self, name: &str, request: RunRequest, outcome: &RunOutcome) {
        let now = bson::DateTime::now();
        let mut record = doc! {
            "task": name,
            "trigger": request.trigger.as_str(),
            "forced": request.force,
            "startedAt": now,
            "endedAt": now,
            "outcome": outcome.label(),
            "processed": 0_i64,
        };
        match outcome {
            RunOutcome::Skipped {
                holder: Some(holder),
            } => {
                record.insert("error", format!("lock held by {holder}"));
            }
            RunOutcome::Failure { error, .. } => {
                record.insert("error", error.as_str());
            }
            _ => {}
        }
        if let Err(error) = self.runs.insert_one(record).await {
            tracing::warn!(task = name, %error, "task run not recorded in task_runs");
        }
    }

    async fn complete_record(&self, run_id: bson::oid::ObjectId, outcome: &RunOutcome) {
        let mut set = doc! { "endedAt": bson::DateTime::now(), "outcome": outcome.label() };
        match outcome {
            RunOutcome::Success(summary) => {
                set.insert("processed", summary.processed as i64);
                set.insert("rejected", summary.rejected as i64);
            }
            RunOutcome::Failure { error, processed } => {
                set.insert("processed", *processed as i64);
                set.insert("error", error.as_str());
            }
            RunOutcome::Cancelled { processed } => {
                set.insert("processed", *processed as i64);
            }
            RunOutcome::Skipped { .. } => {}
        }
        if let Err(error) = self
            .runs
            .update_one(
                doc! { "_id": run_id },
                doc! { "$set": set },
                UpdateOptions::default(),
            )
            .await
        {
            tracing::warn!(%error, "task run outcome not recorded in task_runs");
        }
    }
}

/// The finish log: `evt {category: "task", name, outcome}`, at a level matching the outcome.
fn log_finish(name: &str, outcome: &RunOutcome, duration_ms: u64) {
    let label = outcome.label();
    match outcome {
        RunOutcome::Success(summary) => tracing::info!(
            evt.category = "task", evt.name = %name, evt.outcome = label,
            processed = summary.processed, rejected = summary.rejected, duration_ms,
            "task finished"
        ),
        RunOutcome::Failure { error, processed } => tracing::error!(
            evt.category = "task", evt.name = %name, evt.outcome = label,
            processed, duration_ms, error = %error,
            "task failed"
        ),
        RunOutcome::Skipped { holder } => tracing::info!(
            evt.category = "task", evt.name = %name, evt.outcome = label,
            holder = holder.as_deref().unwrap_or("unknown"),
            "task skipped: its lock is held"
        ),
        RunOutcome::Cancelled { processed } => tracing::warn!(
            evt.category = "task", evt.name = %name, evt.outcome = label,
            processed, duration_ms,
            "task cancelled"
        ),
    }
}
