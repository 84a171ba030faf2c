//! Routes mounted only when `env = "test"`: they let the integration tests drive behaviour
//! that no real route should offer on demand (a panic, a slow request spanning a shutdown, a
//! job that takes as long as a test needs). `keel-app::build` refuses to mount them, and
//! `Background::start` to register the `test-sleep` job kind, in any other environment.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use bson::doc;
use futures::FutureExt;
use keel::http::{ApiError, Data};
use keel::jobs::{Job, JobHandlers, JobRunContext, NewJob};
use keel::store::Store;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/__test/slow", get(slow))
        .route("/__test/panic", get(panic))
        .route("/__test/internal", get(internal))
        .route("/__test/echo", post(echo))
        .route("/__test/jobs/sleep", post(enqueue_sleep))
        .route("/__test/jobs/dead", post(insert_dead_job))
        .route("/__test/locks/hold", post(hold_lock))
}

/// The kind of the test-only job: sleeps `payload.ms`, recording each start.
pub const SLEEP_JOB_KIND: &str = "test-sleep";

/// Where each start of a `test-sleep` job is recorded: `{jobId, pid, attempt}`. A job that ran
/// once has one record; one re-run after its runner died has two, from two processes.
pub const SLEEP_JOB_STARTS: &str = "test_job_starts";

/// Registers `test-sleep` (only in `env = "test"`; see `Background::start`).
pub fn register_test_jobs(handlers: &mut JobHandlers, store: &Store) {
    let starts = store.collection(SLEEP_JOB_STARTS);
    handlers.register(SLEEP_JOB_KIND, move |job: Job, ctx: JobRunContext| {
        let starts = starts.clone();
        async move {
            let ms = job
                .payload
                .get_i64("ms")
                .map_err(|e| format!("payload ms: {e}"))?;
            starts
                .insert_one(doc! {
                    "jobId": &job.id,
                    "pid": i64::from(std::process::id()),
                    "attempt": job.attempts,
                    "startedAt": bson::DateTime::now(),
                })
                .await
                .map_err(|e| e.to_string())?;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)) => {}
                () = ctx.cancel.cancelled() => return Err("cancelled".to_owned()),
            }
            Ok(Some(doc! { "pid": i64::from(std::process::id()) }))
        }
        .boxed()
    });
}

#[derive(Deserialize)]
struct SleepJob {
    ms: i64,
}

/// `POST /__test/jobs/sleep?ms=N`: enqueues a `test-sleep` job of N milliseconds; answers its id.
async fn enqueue_sleep(
    State(state): State<AppState>,
    Query(request): Query<SleepJob>,
) -> Result<Data<Value>, ApiError> {
    let enqueued = state
        .background
        .jobs()
        .enqueue(NewJob::new(SLEEP_JOB_KIND, doc! { "ms": request.ms }).max_attempts(3))
        .await
        .map_err(ApiError::internal)?;
    Ok(Data(json!({ "id": enqueued.id })))
}

/// The kind of the dead job `/__test/jobs/dead` makes: no runner has a handler for it, so once
/// retried it stays queued (pending) — what the ops console's tests look for.
pub const DEAD_JOB_KIND: &str = "test-unhandled";

/// `POST /__test/jobs/dead`: a job that used its attempts up and is dead, with its last error.
async fn insert_dead_job(State(state): State<AppState>) -> Result<Data<Value>, ApiError> {
    let store = state.platform.store();
    let id = bson::oid::ObjectId::new().to_hex();
    let now = bson::DateTime::now();
    store
        .collection(keel::jobs::JOBS_COLLECTION)
        .insert_one(doc! {
            "_id": &id,
            "kind": DEAD_JOB_KIND,
            "payload": { "order": "A-17", "note": "made by /__test/jobs/dead" },
            "status": "dead",
            "runAt": now,
            "attempts": 3_i32,
            "maxAttempts": 3_i32,
            "lastError": "pricing service answered 502",
            "errors": [
                { "attempt": 1_i32, "error": "timeout after 30000 ms", "at": now },
                { "attempt": 2_i32, "error": "timeout after 30000 ms", "at": now },
                { "attempt": 3_i32, "error": "pricing service answered 502", "at": now },
            ],
            "createdAt": now,
            "updatedAt": now,
            "finishedAt": now,
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(Data(json!({ "id": id })))
}

#[derive(Deserialize)]
struct HoldLock {
    name: String,
    ms: u64,
}

/// `POST /__test/locks/hold?name=N&ms=M`: takes lock N and holds it for M milliseconds (or
/// until shutdown), as another replica's run would; answers once it is held.
async fn hold_lock(
    State(state): State<AppState>,
    Query(request): Query<HoldLock>,
) -> Result<Data<Value>, ApiError> {
    let store = state.platform.store();
    let lease = keel::lock::Locks::new(store)
        .acquire(&request.name, Duration::from_millis(request.ms.max(1000)))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::Conflict(format!("lock {} is held", request.name)))?;
    let token = lease.token();
    let stop = state.platform.shutdown().token();
    state
        .platform
        .shutdown()
        .spawn("test-lock-holder", async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(request.ms)) => {}
                () = stop.cancelled() => {}
            }
            let _ = lease.release().await;
        });
    Ok(Data(json!({ "token": token })))
}

#[derive(Deserialize)]
struct SlowParams {
    /// How long to take, in milliseconds.
    ms: u64,
    /// Start counting only once the server's shutdown has begun: the request is then
    /// guaranteed to be in flight when SIGTERM arrives.
    #[serde(default)]
    after_shutdown: bool,
}

async fn slow(State(state): State<AppState>, Query(params): Query<SlowParams>) -> Data<Value> {
    tracing::warn!(
        ms = params.ms,
        after_shutdown = params.after_shutdown,
        "test slow request started"
    );
    if params.after_shutdown {
        state.platform.shutdown().triggered().await;
    }
    tokio::time::sleep(Duration::from_millis(params.ms)).await;
    Data(json!({ "sleptMs": params.ms }))
}

async fn panic() -> Data<Value> {
    panic!("test route panicked on purpose")
}

async fn internal() -> Result<Data<Value>, ApiError> {
    Err(ApiError::internal("database password is swordfish"))
}

async fn echo(body: Bytes) -> Data<Value> {
    Data(json!({ "bytes": body.len() }))
}
