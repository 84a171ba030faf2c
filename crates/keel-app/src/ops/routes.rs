//! `/api/ops/*`: the JSON routes of the ops console, every one behind `AdminUser` and the
//! `api` rate tier, declared once with their OpenAPI entries (tag `ops`).

use axum::extract::{Path, Query, State};
use keel::http::json::{ApiJson, GuardedInput};
use keel::http::rate_limit::Tier;
use keel::http::{ApiError, Data, List};
use keel::jobs::{JobError, JobStatus};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::AdminUser;
use super::model::{
    AuditView, InstanceView, JobView, JobsView, LockView, PurgeRequest, PurgeView, RunNowView,
    RuntimeView, TaskView, WatcherView, WhoAmIView,
};
use super::service::{OpsError, OpsService};
use crate::api::{ApiState, ComponentState, ErrorBody};
use crate::auth::service::AuthService;

impl GuardedInput for PurgeRequest {}

/// What the console's handlers (and `AdminUser`) use.
pub struct Services {
    pub ops: OpsService,
    /// To read the signed-in user's roles.
    pub users: AuthService,
}

/// The console's handler state: the shared API state and its services.
pub type OpsApi = ComponentState<Services>;

/// The JSON routes and the page (`pages.rs`), on `ops`.
pub fn router(state: &ApiState, ops: OpsService) -> OpenApiRouter<ApiState> {
    let services = Services {
        ops,
        users: AuthService::new(state.store(), &state.platform.config().auth),
    };
    let pages = super::pages::router(state);
    OpenApiRouter::new()
        .routes(state.limited(Tier::Api, routes!(me)))
        .routes(state.limited(Tier::Api, routes!(tasks)))
        .routes(state.limited(Tier::Api, routes!(run_task)))
        .routes(state.limited(Tier::Api, routes!(jobs)))
        .routes(state.limited(Tier::Api, routes!(job)))
        .routes(state.limited(Tier::Api, routes!(retry_job)))
        .routes(state.limited(Tier::Api, routes!(purge_jobs)))
        .routes(state.limited(Tier::Api, routes!(watchers)))
        .routes(state.limited(Tier::Api, routes!(locks)))
        .routes(state.limited(Tier::Api, routes!(instances)))
        .routes(state.limited(Tier::Api, routes!(runtime)))
        .routes(state.limited(Tier::Api, routes!(audit)))
        .merge(OpenApiRouter::from(pages))
        .with_state(ComponentState::new(state, services))
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::UnknownTask(name) => ApiError::NotFound(format!("task {name}")),
            OpsError::Job(JobError::NotFound(id)) => ApiError::NotFound(format!("job {id}")),
            OpsError::Job(JobError::Invalid(message)) => ApiError::Conflict(message),
            OpsError::Job(JobError::InvalidStatus(status)) => {
                ApiError::BadRequest(format!("unknown job status {status:?}"))
            }
            OpsError::Job(JobError::Store(e)) | OpsError::Store(e) => e.into(),
            OpsError::Task(message) => ApiError::internal(message),
        }
    }
}

/// Job ids are the queue's own (`ObjectId` hex, or `kind:key`): visible ASCII, bounded.
fn job_id(id: &str) -> Result<&str, ApiError> {
    if id.is_empty() || id.len() > 300 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest("not a job id".into()));
    }
    Ok(id)
}

/// The signed-in admin.
#[utoipa::path(get, path = "/api/ops/me", tag = "ops",
    responses(
        (status = 200, description = "The admin and this replica", body = Data<WhoAmIView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn me(State(api): State<OpsApi>, admin: AdminUser) -> Result<Data<WhoAmIView>, ApiError> {
    Ok(Data(WhoAmIView {
        email: admin.email,
        admin_by: admin.admin_by.to_owned(),
        instance: api.ops.instance_id().to_owned(),
    }))
}

/// Every task: schedule, next run, runs in progress and the last runs.
#[utoipa::path(get, path = "/api/ops/tasks", tag = "ops",
    responses(
        (status = 200, description = "One entry per registered task", body = List<TaskView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn tasks(State(api): State<OpsApi>, _admin: AdminUser) -> Result<List<TaskView>, ApiError> {
    let items = api.ops.tasks().await?;
    let total = items.len() as u64;
    Ok(List { items, total })
}

/// Runs a task now, taking its lock like a scheduled run: `skipped` when the lock is held.
/// Answers within a few seconds; a longer run answers `running` and goes on. Audited.
#[utoipa::path(post, path = "/api/ops/tasks/{name}/run", tag = "ops",
    params(("name" = String, Path, description = "Task name, e.g. process-data")),
    responses(
        (status = 200, description = "The run's outcome (or `running`)", body = Data<RunNowView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, or a foreign origin (CSRF)", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn run_task(
    State(api): State<OpsApi>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> Result<Data<RunNowView>, ApiError> {
    Ok(Data(api.ops.run_task_now(&admin.actor, &name).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    /// `queued`, `running`, `done` or `dead`; all when absent.
    status: Option<String>,
    /// Default 50; clamped to 1..=200.
    limit: Option<i64>,
}

/// Counts by status and the newest jobs (optionally of one status).
#[utoipa::path(get, path = "/api/ops/jobs", tag = "ops", params(JobsQuery),
    responses(
        (status = 200, description = "Counts and a page of jobs", body = Data<JobsView>),
        (status = 400, description = "Unknown status", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn jobs(
    State(api): State<OpsApi>,
    _admin: AdminUser,
    Query(query): Query<JobsQuery>,
) -> Result<Data<JobsView>, ApiError> {
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(JobStatus::parse)
        .transpose()
        .map_err(OpsError::from)?;
    Ok(Data(api.ops.jobs(status, query.limit.unwrap_or(50)).await?))
}

/// One job: payload, attempts, last error, result.
#[utoipa::path(get, path = "/api/ops/jobs/{id}", tag = "ops",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = Data<JobView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn job(
    State(api): State<OpsApi>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Data<JobView>, ApiError> {
    Ok(Data(api.ops.job(job_id(&id)?).await?))
}

/// Puts a dead job back in the queue (pending, due now, fresh attempts). Audited.
#[utoipa::path(post, path = "/api/ops/jobs/{id}/retry", tag = "ops",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, queued again", body = Data<JobView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, or a foreign origin (CSRF)", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not dead", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn retry_job(
    State(api): State<OpsApi>,
    admin: AdminUser,
    Path(id): Path<String>,
) -> Result<Data<JobView>, ApiError> {
    Ok(Data(api.ops.retry_job(&admin.actor, job_id(&id)?).await?))
}

/// Deletes every done or every dead job; `confirm` must be `true`. Audited.
#[utoipa::path(post, path = "/api/ops/jobs/purge", tag = "ops", request_body = PurgeRequest,
    responses(
        (status = 200, description = "How many were deleted", body = Data<PurgeView>),
        (status = 400, description = "Not confirmed, or a status other than done/dead", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, or a foreign origin (CSRF)", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn purge_jobs(
    State(api): State<OpsApi>,
    admin: AdminUser,
    ApiJson(body): ApiJson<PurgeRequest>,
) -> Result<Data<PurgeView>, ApiError> {
    if !body.confirm {
        return Err(ApiError::BadRequest(
            "purging needs \"confirm\": true".into(),
        ));
    }
    let status = JobStatus::parse(&body.status).map_err(OpsError::from)?;
    if !matches!(status, JobStatus::Done | JobStatus::Dead) {
        return Err(ApiError::BadRequest(
            "only done or dead jobs can be purged".into(),
        ));
    }
    Ok(Data(api.ops.purge_jobs(&admin.actor, status).await?))
}

/// Every watcher: state here, last event, lag, restarts, the error of a failing event.
#[utoipa::path(get, path = "/api/ops/watchers", tag = "ops",
    responses(
        (status = 200, description = "One entry per registered watcher", body = List<WatcherView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn watchers(
    State(api): State<OpsApi>,
    _admin: AdminUser,
) -> Result<List<WatcherView>, ApiError> {
    let items = api.ops.watchers().await?;
    let total = items.len() as u64;
    Ok(List { items, total })
}

/// Every lock: holder, fencing token, expiry.
#[utoipa::path(get, path = "/api/ops/locks", tag = "ops",
    responses(
        (status = 200, description = "Every lock ever taken", body = List<LockView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn locks(State(api): State<OpsApi>, _admin: AdminUser) -> Result<List<LockView>, ApiError> {
    let items = api.ops.locks().await?;
    let total = items.len() as u64;
    Ok(List { items, total })
}

/// Every replica that reported a heartbeat in the last ten minutes.
#[utoipa::path(get, path = "/api/ops/instances", tag = "ops",
    responses(
        (status = 200, description = "The replicas", body = List<InstanceView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn instances(
    State(api): State<OpsApi>,
    _admin: AdminUser,
) -> Result<List<InstanceView>, ApiError> {
    let items = api.ops.instances().await?;
    let total = items.len() as u64;
    Ok(List { items, total })
}

/// This replica's runtime over the last five minutes: scheduler lag, requests/s and p99 per
/// route, store operation latency, worker pool queue.
#[utoipa::path(get, path = "/api/ops/runtime", tag = "ops",
    responses(
        (status = 200, description = "Samples, oldest first", body = Data<RuntimeView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn runtime(
    State(api): State<OpsApi>,
    _admin: AdminUser,
) -> Result<Data<RuntimeView>, ApiError> {
    Ok(Data(api.ops.runtime()))
}

/// The last 100 audited actions, newest first.
#[utoipa::path(get, path = "/api/ops/audit", tag = "ops",
    responses(
        (status = 200, description = "Audit records", body = List<AuditView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session" = [])))]
async fn audit(State(api): State<OpsApi>, _admin: AdminUser) -> Result<List<AuditView>, ApiError> {
    let items = api.ops.recent_audit(100).await?;
    let total = items.len() as u64;
    Ok(List { items, total })
}
