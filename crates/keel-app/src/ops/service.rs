//! What the console's routes ask for: the views of tasks, jobs, watchers, locks, replicas and
//! the runtime, the three actions (run a task now, retry a dead job, purge done or dead jobs),
//! and the audit trail every action and refusal is written to.

use std::time::Duration;

use bson::Document;
use chrono::Utc;
use keel::Platform;
use keel::jobs::{JobError, JobStatus};
use keel::store::StoreError;
use keel::tasks::{RunOutcome, RunRequest};
use keel::watchers::WatcherState;

use super::heartbeat::Instance;
use super::model::{
    AuditRecord, AuditView, InstanceView, JobAttemptError, JobCounts, JobView, JobsView, LockView,
    PoisonEventView, PurgeView, RunNowView, TaskRunView, TaskView, WatcherView, time_text,
};
use super::repository::OpsRepository;
use super::runtime::RuntimeSampler;
use crate::background::Background;

/// How long "run now" waits for the run to finish before answering `running`.
pub const RUN_NOW_WAIT: Duration = Duration::from_secs(3);

/// Runs shown per task.
const RECENT_RUNS: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no task named {0:?}")]
    UnknownTask(String),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Task(String),
}

/// Who did something, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<String>,
    pub name: String,
    pub ip: Option<String>,
}

#[derive(Clone)]
pub struct OpsService {
    platform: Platform,
    repository: OpsRepository,
    background: Background,
    sampler: RuntimeSampler,
    instance: Instance,
    watcher_names: Vec<String>,
}

impl OpsService {
    pub fn new(
        platform: Platform,
        repository: OpsRepository,
        background: Background,
        sampler: RuntimeSampler,
        instance: Instance,
        watcher_names: Vec<String>,
    ) -> Self {
        Self {
            platform,
            repository,
            background,
            sampler,
            instance,
            watcher_names,
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance.id
    }

    /// Logs `evt {category: "ops", name: action, outcome}` and records the action in
    /// `ops_audit`. A failed record is logged, never hidden behind the action's own answer.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        outcome: &str,
        detail: Option<String>,
    ) {
        record_audit(&self.repository, actor, action, target, outcome, detail).await;
    }

    pub async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditView>, OpsError> {
        let records = self.repository.recent_audit(limit.clamp(1, 500)).await?;
        Ok(records.into_iter().map(AuditView::from).collect())
    }

    // Tasks

    pub async fn tasks(&self) -> Result<Vec<TaskView>, OpsError> {
        let background = &self.background;
        let runner = &background.tasks;
        let mut views = Vec::new();
        for task in runner.registry().iter() {
            let name = task.name();
            let settings = runner.config_for(name);
            let schedule = settings.parsed_schedule().ok().flatten();
            let next_run_at = schedule
                .as_ref()
                .filter(|_| settings.enabled)
                .and_then(|s| s.upcoming(Utc).next())
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let recent = runner
                .recent_runs(name, RECENT_RUNS)
                .await
                .map_err(|e| OpsError::Task(e.to_string()))?;
            let running = self.repository.running_runs(name).await?;
            views.push(TaskView {
                name: name.to_owned(),
                description: task.description().to_owned(),
                lock: task.lock_name().to_owned(),
                schedule: settings.schedule.clone(),
                enabled: settings.enabled,
                next_run_at,
                running: running.iter().map(run_view).collect(),
                recent_runs: recent.iter().map(run_view).collect(),
            });
        }
        Ok(views)
    }

    /// Runs `task` now through the same runner as the scheduler (its lock included). Waits up
    /// to `RUN_NOW_WAIT` for the outcome; a longer run goes on (owned by the platform's
    /// shutdown) and is audited when it ends.
    pub async fn run_task_now(&self, actor: &Actor, task: &str) -> Result<RunNowView, OpsError> {
        let runner = self.background.tasks.clone();
        if runner.registry().get(task).is_none() {
            return Err(OpsError::UnknownTask(task.to_owned()));
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        let (name, service, who) = (task.to_owned(), self.clone(), actor.clone());
        self.platform.shutdown().spawn("ops-run-now", async move {
            let result = runner.run(&name, RunRequest::manual(false, false)).await;
            let view = match result {
                Ok(outcome) => run_now_view(&name, &outcome),
                Err(error) => RunNowView {
                    task: name.clone(),
                    outcome: "failure".into(),
                    message: error.to_string(),
                    holder: None,
                },
            };
            service
                .audit(
                    &who,
                    "task.run",
                    &name,
                    &view.outcome,
                    Some(view.message.clone()),
                )
                .await;
            let _ = done.send(view);
        });
        match tokio::time::timeout(RUN_NOW_WAIT, outcome).await {
            Ok(Ok(view)) => Ok(view),
            _ => Ok(RunNowView {
                task: task.to_owned(),
                outcome: "running".into(),
                message: "started; still running".into(),
                holder: None,
            }),
        }
    }

    // Jobs

    pub async fn jobs(&self, status: Option<JobStatus>, limit: i64) -> Result<JobsView, OpsError> {
        let queue = &self.background.jobs();
        let counts = queue.count_by_status().await?;
        let count = |s| counts.get(&s).copied().unwrap_or(0);
        let jobs = queue.list(status, limit.clamp(1, 200)).await?;
        Ok(JobsView {
            counts: JobCounts {
                queued: count(JobStatus::Queued),
                running: count(JobStatus::Running),
                done: count(JobStatus::Done),
                dead: count(JobStatus::Dead),
            },
            jobs: jobs.into_iter().map(JobView::from).collect(),
        })
    }

    pub async fn job(&self, id: &str) -> Result<JobView, OpsError> {
        let queue = &self.background.jobs();
        let job = queue
            .get(id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        let mut view = JobView::from(job);
        view.errors = self
            .repository
            .job_errors(id)
            .await?
            .iter()
            .map(attempt_error)
            .collect();
        Ok(view)
    }

    /// Puts a dead job back in the queue (pending, fresh attempts); audited either way.
    pub async fn retry_job(&self, actor: &Actor, id: &str) -> Result<JobView, OpsError> {
        let queue = &self.background.jobs();
        let result = queue.retry(id).await;
        let (outcome, detail) = match &result {
            Ok(()) => ("success", None),
            Err(error) => ("failure", Some(error.to_string())),
        };
        self.audit(actor, "job.retry", id, outcome, detail).await;
        result?;
        self.job(id).await
    }

    /// Deletes every job of `status` (done or dead); audited either way.
    pub async fn purge_jobs(
        &self,
        actor: &Actor,
        status: JobStatus,
    ) -> Result<PurgeView, OpsError> {
        let queue = &self.background.jobs();
        let result = queue.purge(status).await;
        let (outcome, detail) = match &result {
            Ok(deleted) => ("success", Some(format!("{deleted} deleted"))),
            Err(error) => ("failure", Some(error.to_string())),
        };
        self.audit(actor, "jobs.purge", status.as_str(), outcome, detail)
            .await;
        Ok(PurgeView {
            status: status.as_str().to_owned(),
            deleted: result?,
        })
    }

    // Watchers, locks, instances, runtime

    pub async fn watchers(&self) -> Result<Vec<WatcherView>, OpsError> {
        let offsets = self.repository.watcher_offsets().await?;
        let poison = self.repository.poison_events(500).await?;
        let health = &self.background.watcher_health;
        let views = self
            .watcher_names
            .iter()
            .map(|name| {
                let state = health.state(name);
                let (label, attempt, failing_error) = match state {
                    None => ("not-here", None, None),
                    Some(WatcherState::Starting) => ("starting", None, None),
                    Some(WatcherState::Running) => ("running", None, None),
                    Some(WatcherState::Restarting { attempt, error }) => {
                        ("restarting", Some(attempt), Some(error))
                    }
                    Some(WatcherState::RetryingEvent { attempt, error }) => {
                        ("retrying-event", Some(attempt), Some(error))
                    }
                    Some(WatcherState::Stopped) => ("stopped", None, None),
                };
                let last_event_at = offsets
                    .iter()
                    .find(|d| d.get_str("_id").is_ok_and(|id| id == name))
                    .and_then(|d| d.get_datetime("updatedAt").ok().copied())
                    .map(time_text);
                let stats = self.sampler.watcher_stats(name);
                let poisoned: Vec<PoisonEventView> = poison
                    .iter()
                    .filter(|d| d.get_str("watcher").is_ok_and(|w| w == name))
                    .map(poison_view)
                    .collect();
                WatcherView {
                    poison_events: poisoned,
                    name: name.clone(),
                    state: label.to_owned(),
                    attempt,
                    failing_error,
                    last_event_at,
                    restarts: stats.restarts,
                    events_handled: stats.events_handled,
                    lag_p99_ms: stats.lag_p99_ms,
                }
            })
            .collect();
        Ok(views)
    }

    pub async fn locks(&self) -> Result<Vec<LockView>, OpsError> {
        let now = bson::DateTime::now();
        let locks = self.repository.locks().await?;
        Ok(locks
            .iter()
            .map(|d| {
                let expires = d.get_datetime("expiresAt").ok().copied();
                LockView {
                    name: d
                        .get("_id")
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .unwrap_or_default(),
                    holder: d.get_str("holder").ok().map(str::to_owned),
                    token: number(d, "token"),
                    acquired_at: d.get_datetime("acquiredAt").ok().copied().map(time_text),
                    expires_at: expires.map(time_text),
                    is_held: expires.is_some_and(|e| e > now),
                }
            })
            .collect())
    }

    pub async fn instances(&self) -> Result<Vec<InstanceView>, OpsError> {
        let now = bson::DateTime::now();
        let interval_ms = self.platform.config().ops.heartbeat_interval_ms as i64;
        let beats = self.repository.instances().await?;
        Ok(beats
            .into_iter()
            .map(|b| {
                let since_ms = now.timestamp_millis() - b.last_seen_at.timestamp_millis();
                InstanceView {
                    is_self: b.id == self.instance.id,
                    // Up to its last heartbeat: a stale replica's clock stopped there.
                    uptime_secs: (b.last_seen_at.timestamp_millis()
                        - b.started_at.timestamp_millis())
                        / 1000,
                    is_stale: since_ms > 3 * interval_ms,
                    started_at: time_text(b.started_at),
                    last_heartbeat_at: time_text(b.last_seen_at),
                    id: b.id,
                    host: b.host,
                    pid: b.pid,
                    roles: b.roles,
                    version: b.version,
                }
            })
            .collect())
    }

    pub fn runtime(&self) -> super::model::RuntimeView {
        self.sampler.view()
    }
}

/// Writes one audit record (and its `evt` line); shared by the routes and the CLI.
pub async fn record_audit(
    repository: &OpsRepository,
    actor: &Actor,
    action: &str,
    target: &str,
    outcome: &str,
    detail: Option<String>,
) {
    keel::evt!(
        INFO,
        "ops",
        action,
        outcome,
        actor = %actor.name,
        target = %target,
        detail = detail.as_deref().unwrap_or(""),
        "ops action"
    );
    let record = AuditRecord {
        at: bson::DateTime::now(),
        actor_id: actor.id.clone(),
        actor: actor.name.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: outcome.to_owned(),
        detail,
        ip: actor.ip.clone(),
    };
    if let Err(error) = repository.insert_audit(&record).await {
        tracing::error!(%error, action, "ops audit record not written");
    }
}

fn run_now_view(task: &str, outcome: &RunOutcome) -> RunNowView {
    let (message, holder) = match outcome {
        RunOutcome::Success(summary) => (
            format!(
                "success: {} processed, {} rejected",
                summary.processed, summary.rejected
            ),
            None,
        ),
        RunOutcome::Failure { error, processed } => (
            format!("failure after {processed} processed: {error}"),
            None,
        ),
        RunOutcome::Skipped { holder } => (
            format!(
                "skipped, lock held by {}",
                holder.as_deref().unwrap_or("another process")
            ),
            holder.clone(),
        ),
        RunOutcome::Cancelled { processed } => {
            (format!("cancelled after {processed} processed"), None)
        }
    };
    RunNowView {
        task: task.to_owned(),
        outcome: outcome.label().to_owned(),
        message,
        holder,
    }
}

fn poison_view(event: &Document) -> PoisonEventView {
    PoisonEventView {
        at: event.get_datetime("at").ok().copied().map(time_text),
        attempts: number(event, "attempts"),
        document_id: event.get("documentId").map(|id| match id {
            bson::Bson::ObjectId(oid) => oid.to_hex(),
            bson::Bson::String(text) => text.clone(),
            other => other.to_string(),
        }),
        error: event.get_str("error").unwrap_or("").to_owned(),
        op: event.get_str("op").unwrap_or("?").to_owned(),
    }
}

fn attempt_error(entry: &bson::Bson) -> JobAttemptError {
    match entry {
        bson::Bson::Document(d) => JobAttemptError {
            at: d.get_datetime("at").ok().copied().map(time_text),
            attempt: number(d, "attempt"),
            error: d.get_str("error").unwrap_or("").to_owned(),
        },
        other => JobAttemptError {
            at: None,
            attempt: None,
            error: other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned),
        },
    }
}

fn number(document: &Document, key: &str) -> Option<i64> {
    match document.get(key)? {
        bson::Bson::Int64(n) => Some(*n),
        bson::Bson::Int32(n) => Some(i64::from(*n)),
        bson::Bson::Double(f) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

fn run_view(run: &Document) -> TaskRunView {
    let started = run.get_datetime("startedAt").ok().copied();
    let ended = run.get_datetime("endedAt").ok().copied();
    TaskRunView {
        id: run
            .get("_id")
            .map(|v| match v {
                bson::Bson::ObjectId(id) => id.to_hex(),
                other => other.to_string(),
            })
            .unwrap_or_default(),
        trigger: run.get_str("trigger").unwrap_or("?").to_owned(),
        forced: run.get_bool("forced").unwrap_or(false),
        host: run.get_str("host").ok().map(str::to_owned),
        started_at: started.map(time_text),
        ended_at: ended.map(time_text),
        duration_ms: match (started, ended) {
            (Some(s), Some(e)) => Some(e.timestamp_millis() - s.timestamp_millis()),
            _ => None,
        },
        outcome: run.get_str("outcome").unwrap_or("?").to_owned(),
        processed: number(run, "processed"),
        rejected: number(run, "rejected"),
        error: run.get_str("error").ok().map(str::to_owned),
    }
}
