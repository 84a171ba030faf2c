//! What the ops console stores (audit records, heartbeats) and the JSON views its routes answer
//! with. Times in views are RFC 3339 strings (UTC); durations say their unit in the name.

use bson::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One audited action, as stored in `ops_audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub at: DateTime,
    /// The user's id, or `None` for the CLI.
    #[serde(default)]
    pub actor_id: Option<String>,
    /// The user's email, or `cli:USER@HOST`.
    pub actor: String,
    /// `task.run`, `job.retry`, `jobs.purge`, `users.grant-admin`, `ops.denied`, …
    pub action: String,
    /// What it acted on: a task name, a job id, a status, an email, a path.
    pub target: String,
    /// `success`, `failure`, `skipped`, `denied`, `started`, …
    pub outcome: String,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
}

/// One replica's heartbeat, as stored in `ops_instances` (one document per replica).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    #[serde(rename = "_id")]
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub roles: Vec<String>,
    pub version: String,
    pub started_at: DateTime,
    pub last_seen_at: DateTime,
}

/// RFC 3339 text of a stored time.
pub fn time_text(at: DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub action: String,
    pub actor: String,
    pub at: String,
    pub detail: Option<String>,
    pub ip: Option<String>,
    pub outcome: String,
    pub target: String,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        AuditView {
            at: time_text(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            detail: r.detail,
            ip: r.ip,
        }
    }
}

/// The signed-in admin, for the page's header.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmIView {
    /// `grant` (a role in the store) or `config` (listed in `ops.admin_emails`).
    pub admin_by: String,
    pub email: String,
    /// This replica's instance id (as in the Instances view).
    pub instance: String,
}

/// A task, its schedule and its recent runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub description: String,
    pub enabled: bool,
    /// The lock its runs take (`x3OrderImporter` for `order-importer`).
    pub lock: String,
    #[schema(example = "process-data")]
    pub name: String,
    /// The next fire time, when enabled and scheduled.
    pub next_run_at: Option<String>,
    /// The last runs, newest first.
    pub recent_runs: Vec<TaskRunView>,
    /// Runs recorded as running now, on any replica.
    pub running: Vec<TaskRunView>,
    /// Cron expression (seconds first), `None`: manual only.
    pub schedule: Option<String>,
}

/// One `task_runs` record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunView {
    pub duration_ms: Option<i64>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub forced: bool,
    pub host: Option<String>,
    pub id: String,
    /// `running`, `success`, `failure`, `skipped`, `cancelled`.
    pub outcome: String,
    pub processed: Option<i64>,
    pub rejected: Option<i64>,
    pub started_at: Option<String>,
    /// `schedule` or `manual`.
    pub trigger: String,
}

/// What "run now" did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunNowView {
    /// The holder of the lock, when skipped.
    pub holder: Option<String>,
    /// One line for a person, e.g. "skipped, lock held by web-1:4242".
    pub message: String,
    /// `success`, `failure`, `skipped` (lock held), `cancelled`, or `running` (still going
    /// after a couple of seconds: its record appears in the task's runs).
    pub outcome: String,
    pub task: String,
}

/// Jobs by status, and a page of them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsView {
    pub counts: JobCounts,
    /// The newest jobs (of `status`, when given), at most `limit`.
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct JobCounts {
    pub dead: u64,
    pub done: u64,
    pub queued: u64,
    pub running: u64,
}

/// One durable job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub attempts: i32,
    pub created_at: String,
    /// Every failed attempt, oldest first (`GET /api/ops/jobs/{id}` only; lists leave it out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<JobAttemptError>,
    pub finished_at: Option<String>,
    pub id: String,
    pub kind: String,
    pub last_error: Option<String>,
    pub lease_expires_at: Option<String>,
    pub lease_owner: Option<String>,
    pub max_attempts: i32,
    /// The job's payload (relaxed extended JSON).
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub run_at: String,
    /// `queued` (pending), `running`, `done`, `dead`.
    pub status: String,
    pub updated_at: String,
}

impl From<keel::jobs::Job> for JobView {
    fn from(job: keel::jobs::Job) -> Self {
        JobView {
            id: job.id,
            kind: job.kind,
            status: job.status.as_str().to_owned(),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: time_text(job.run_at),
            created_at: time_text(job.created_at),
            errors: Vec::new(),
            updated_at: time_text(job.updated_at),
            finished_at: job.finished_at.map(time_text),
            lease_owner: job.lease_owner,
            lease_expires_at: job.lease_expires_at.map(time_text),
            last_error: job.last_error,
            payload: serde_json::to_value(&job.payload).unwrap_or(Value::Null),
            result: job
                .result
                .map(|r| serde_json::to_value(&r).unwrap_or(Value::Null)),
        }
    }
}

/// One failed attempt of a job, from its `errors` history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobAttemptError {
    pub at: Option<String>,
    pub attempt: Option<i64>,
    pub error: String,
}

/// `POST /api/ops/jobs/purge`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Must be `true`: the page asks the person first.
    pub confirm: bool,
    /// `done` or `dead`.
    #[schema(example = "dead")]
    pub status: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurgeView {
    pub deleted: u64,
    pub status: String,
}

/// A watcher.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatcherView {
    /// Consecutive failures while restarting.
    pub attempt: Option<u32>,
    /// Events handled since this replica started.
    pub events_handled: u64,
    /// The error of the event that keeps failing (it comes again after each backoff): a poison
    /// event, when `attempt` keeps growing.
    pub failing_error: Option<String>,
    /// How far behind the feed: time from a change's commit to its handling, the 99th
    /// percentile over the last minute (this replica).
    pub lag_p99_ms: Option<f64>,
    /// When it last saved its position (handled an event), on any replica.
    pub last_event_at: Option<String>,
    pub name: String,
    /// Events set aside after `watchers.max_event_attempts` failures
    /// (`watcher_poison_events`), newest first.
    pub poison_events: Vec<PoisonEventView>,
    /// Restarts since this replica started.
    pub restarts: u64,
    /// On this replica: `starting`, `running`, `restarting`, `stopped`, or `not-here` (this
    /// replica does not run the `watchers` role).
    pub state: String,
}

/// An event a watcher's handler kept failing on, set aside.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoisonEventView {
    pub at: Option<String>,
    pub attempts: Option<i64>,
    /// The changed document's `_id`.
    pub document_id: Option<String>,
    pub error: String,
    /// `insert`, `update`, `replace`, `delete`.
    pub op: String,
}

/// A lock of `__system_locks`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockView {
    pub acquired_at: Option<String>,
    pub expires_at: Option<String>,
    /// `host:pid` of the last taker.
    pub holder: Option<String>,
    /// Held now (unexpired).
    pub is_held: bool,
    pub name: String,
    /// The fencing token: grows by one at each acquisition.
    pub token: Option<i64>,
}

/// A replica.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub host: String,
    pub id: String,
    /// The replica answering this request.
    pub is_self: bool,
    /// No heartbeat for three intervals: probably gone (its record expires after 10 min).
    pub is_stale: bool,
    pub last_heartbeat_at: String,
    pub pid: i64,
    pub roles: Vec<String>,
    pub started_at: String,
    /// From its start to its last heartbeat.
    pub uptime_secs: i64,
    pub version: String,
}

/// Samples of the runtime, oldest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeView {
    pub interval_ms: u64,
    /// `false` when `[metrics] enabled = false`: nothing is measured.
    pub metrics_enabled: bool,
    pub points: Vec<RuntimePoint>,
}

/// One sample: values over the interval that ended at `at`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePoint {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// Per route pattern (`GET /api/items`): requests/s and p99 latency over the interval.
    pub routes: Vec<RateStat>,
    /// How late the runtime's probe task woke (the event-loop lag), ms.
    pub scheduler_lag_ms: Option<f64>,
    /// Per store operation (`embedded find`): operations/s and p99 latency.
    pub store_ops: Vec<RateStat>,
    /// CPU worker pool: jobs waiting for a thread, running, threads.
    pub worker_queued: Option<f64>,
    pub worker_running: Option<f64>,
    pub worker_threads: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateStat {
    pub name: String,
    /// `None` when nothing happened in the interval.
    pub p99_ms: Option<f64>,
    pub per_sec: f64,
}
